# SPDX-License-Identifier: Apache-2.0
"""The benchmark's table: one row per method and setup, from the evaluation reports of the bundles' ``evaluate``.

Nothing is computed here that the evaluation module does not compute: every number is read from the
``metrics.json`` that :class:`~monai_adiff.metrics.AnomalyMetricsHandler` wrote, so the table and the bundle's own
report cannot disagree.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from monai_adiff.metrics.evaluation import SETUPS
from monai_adiff.metrics.report import to_jsonable
from monai_adiff.utils import atomic_write_text

__all__ = ["FLAIR", "CSV_COLUMNS", "method_rows", "same_baseline", "write_results", "markdown_table"]

#: the FLAIR-intensity baseline's name in the bundles' reports and in the table
FLAIR = "flair_baseline"
#: the flat columns of ``results.csv`` (``*_sd``: population sd over the test patients)
CSV_COLUMNS = (
    "method",
    "setup",
    "dice",
    "iou",
    "precision",
    "recall",
    "auprc",
    "auroc",
    "pro",
    "best_dice",
    "auprc_patient_mean",
    "auprc_patient_sd",
    "dice_patient_mean",
    "dice_patient_sd",
    "dice_3d",
    "dice_3d_sd",
    "image_auroc",
    "seconds_per_volume",
    "training_minutes",
    "parameters",
    "n_slices",
    "n_patients",
    "evaluated_by",
)


def _spread(metrics: Mapping[str, Any], setup: str, key: str) -> tuple[float | None, float | None]:
    sp = (metrics.get("spread") or {}).get(setup) or {}
    s = sp.get(key)
    return (None, None) if not s else (s["mean"], s["std"])


def method_rows(
    name: str, metrics: Mapping[str, Any], evaluated_by: str, extra: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The table rows (one per setup) of one method's entry of an evaluation report.

    Args:
        name: the row's method name.
        metrics: the method's entry of ``metrics.json`` (``mixed``, ``unhealthy``, ``volume``, ``image``, ...).
        evaluated_by: the bundle whose ``evaluate`` produced it (the baseline is evaluated by every bundle).
        extra: further columns (``seconds_per_volume``, ``training_minutes``, ``parameters``).

    Returns:
        rows with the :data:`CSV_COLUMNS` and ``per_patient`` (``{case: {"auprc", "dice"}}``).
    """
    rows = []
    volume, image = metrics.get("volume") or {}, metrics.get("image") or {}
    for setup in SETUPS:
        r = metrics.get(setup) or {}
        auprc_m, auprc_sd = _spread(metrics, setup, "auprc")
        dice_m, dice_sd = _spread(metrics, setup, "dice_pooled")
        per_case = metrics.get("per_case") or {}
        rows.append(
            {
                "method": name,
                "setup": setup,
                # label-free masks pooled over the setup's brain pixels (the bundles' READMEs report these)
                "dice": r.get("dice_pooled"),
                "iou": r.get("iou_pooled"),
                "precision": r.get("precision_pooled"),
                "recall": r.get("recall_pooled"),
                "auprc": r.get("auprc"),
                "auroc": r.get("auroc"),
                "pro": r.get("pro"),
                "best_dice": r.get("best_dice"),
                "auprc_patient_mean": auprc_m,
                "auprc_patient_sd": auprc_sd,
                "dice_patient_mean": dice_m,
                "dice_patient_sd": dice_sd,
                "dice_3d": volume.get("dice_mean"),
                "dice_3d_sd": volume.get("dice_std"),
                "image_auroc": image.get("auroc"),
                "n_slices": r.get("n_slices"),
                "n_patients": r.get("n_volumes"),
                "evaluated_by": evaluated_by,
                "seconds_per_volume": None,
                "training_minutes": None,
                "parameters": None,
                **dict(extra or {}),
                "per_patient": {
                    case: {"auprc": c[setup]["auprc"], "dice": c[setup]["dice_pooled"]}
                    for case, c in per_case.items()
                    if setup in c and c[setup]["n_slices"]
                },
                "pr_curve": r.get("pr_curve"),
            }
        )
    return rows


def same_baseline(a: Mapping[str, Any], b: Mapping[str, Any], tol: float = 1e-9) -> bool:
    """Whether two bundles' FLAIR-baseline entries score the same slices the same way (maps alike)."""
    for setup in SETUPS:
        ra, rb = a.get(setup) or {}, b.get(setup) or {}
        for key in ("n_slices", "n_pixels", "auprc", "auroc"):
            va, vb = ra.get(key), rb.get(key)
            if va is None or vb is None:
                if va is not vb:
                    return False
            elif not math.isclose(va, vb, rel_tol=0, abs_tol=tol):
                return False
    return True


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, int):
        return f"{x / 1e6:.2f} M" if x >= 100_000 else str(x)
    return f"{x:.{digits}f}"


def _pm(mean: float | None, sd: float | None) -> str:
    return "-" if mean is None else f"{mean:.3f} ± {sd:.3f}"


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The README table: unhealthy setup first, then mixed; ``*`` marks the label-chosen ceiling."""
    head = (
        "| method | setup | Dice | IoU | precision | recall | AUPRC | AUPRC per patient | AUROC | PRO | best Dice* "
        "| Dice per patient | 3D Dice | image AUROC | s / volume | training min | parameters |"
    )
    lines = [head, "|" + " --- |" * head.count(" | ") + " --- |"]
    for setup in ("unhealthy", "mixed"):
        for r in rows:
            if r["setup"] != setup:
                continue
            lines.append(
                f"| {r['method']} | {setup} | {_fmt(r['dice'])} | {_fmt(r['iou'])} | {_fmt(r['precision'])} "
                f"| {_fmt(r['recall'])} | {_fmt(r['auprc'])} | {_pm(r['auprc_patient_mean'], r['auprc_patient_sd'])} "
                f"| {_fmt(r['auroc'])} | {_fmt(r.get('pro'))} | {_fmt(r['best_dice'])} "
                f"| {_pm(r['dice_patient_mean'], r['dice_patient_sd'])} "
                f"| {_pm(r['dice_3d'], r['dice_3d_sd'])} | {_fmt(r['image_auroc'])} "
                f"| {_fmt(r['seconds_per_volume'], 1)} | {_fmt(r['training_minutes'], 1)} | {_fmt(r['parameters'])} |"
            )
    return "\n".join(lines)


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in to_jsonable([dict(r) for r in rows]):
        w.writerow({k: "" if r.get(k) is None else r[k] for k in CSV_COLUMNS})
    return buf.getvalue()


def write_results(out_dir: str, rows: Sequence[Mapping[str, Any]], info: Mapping[str, Any], notes: str = "") -> dict:
    """Write ``results.json`` (rows, per-patient values, curves, the run's configuration), ``results.csv`` and
    ``results.md`` into ``out_dir``; return their paths."""
    import os

    paths = {ext: os.path.join(out_dir, f"results.{ext}") for ext in ("json", "csv", "md")}
    atomic_write_text(
        paths["json"], json.dumps(to_jsonable({**info, "rows": list(rows)}), indent=1, allow_nan=False) + "\n"
    )
    atomic_write_text(paths["csv"], _csv(rows))
    md = [markdown_table(rows)]
    if notes:
        md += ["", notes]
    atomic_write_text(paths["md"], "\n".join(md) + "\n")
    return paths
