# SPDX-License-Identifier: Apache-2.0
"""Metrics of the evaluation protocol (design section 6): pixel overlap and ranking scores over brain pixels,
the best-Dice oracle, PRO, the volume-by-volume :class:`AnomalyEvaluation` accumulator and JSON/CSV reports."""

from __future__ import annotations

from monai_adiff.metrics.evaluation import ORACLE_KEYS, RANKING_KEYS, SETUPS, AnomalyEvaluation
from monai_adiff.metrics.functional import (
    auroc,
    average_precision,
    best_dice_threshold,
    binary_clf_curve,
    confusion_counts,
    dice_score,
    iou_score,
    per_slice_scores,
    pr_curve,
    precision_score,
    pro_from_regions,
    pro_score,
    ranking_metrics,
    recall_score,
    scores_from_counts,
    spearman,
)
from monai_adiff.metrics.handler import AnomalyMetricsHandler
from monai_adiff.metrics.report import TABLE_COLUMNS, flatten_results, format_table, to_jsonable, write_report
from monai_adiff.metrics.threshold import HealthyQuantileHandler, healthy_quantile, read_threshold

__all__ = [
    "AnomalyEvaluation",
    "AnomalyMetricsHandler",
    "HealthyQuantileHandler",
    "healthy_quantile",
    "read_threshold",
    "SETUPS",
    "RANKING_KEYS",
    "ORACLE_KEYS",
    "auroc",
    "average_precision",
    "best_dice_threshold",
    "binary_clf_curve",
    "pr_curve",
    "confusion_counts",
    "dice_score",
    "iou_score",
    "per_slice_scores",
    "precision_score",
    "pro_score",
    "pro_from_regions",
    "ranking_metrics",
    "spearman",
    "recall_score",
    "scores_from_counts",
    "write_report",
    "format_table",
    "flatten_results",
    "to_jsonable",
    "TABLE_COLUMNS",
]
