# SPDX-License-Identifier: Apache-2.0
"""AnoFPDM (Che et al. 2025): see ``README.md`` beside this file.

``sweep``: the forward process (eqs. 2-4, 7, 10, 12, 18-21) and the slice scores; ``threshold``: Algorithm 1's
quantile; ``inferer``: the bundle's inferer; ``calibration``: the label-free choice of slice score, guidance, score
threshold and ``M_max``; ``gap``: the conditioning gap and its training handler; ``network``: the UNet with the public
code's dropout and conditioning.
"""

from .calibration import best_accuracy_threshold, calibrate_fpdm, select_guidance
from .gap import GAP_FIELDS, ConditioningGapHandler, conditioning_gap, summarize_gap
from .inferer import CALIBRATED_KEYS, FPDMInferer
from .network import CLASS_CONDITIONING, CFGDiffusionModelUNet, NullableClassEmbedding, ScaleShiftResnetBlock
from .sweep import (
    MAP_RESIDUALS,
    SLICE_SCORES,
    FPDMSweep,
    cosine_similarity,
    fpdm_step_grid,
    fpdm_sweep,
    relative_excess,
    rowwise_quantile,
)
from .threshold import fpdm_quantile

__all__ = [
    "CALIBRATED_KEYS",
    "CLASS_CONDITIONING",
    "ConditioningGapHandler",
    "GAP_FIELDS",
    "CFGDiffusionModelUNet",
    "FPDMInferer",
    "FPDMSweep",
    "MAP_RESIDUALS",
    "NullableClassEmbedding",
    "SLICE_SCORES",
    "ScaleShiftResnetBlock",
    "best_accuracy_threshold",
    "calibrate_fpdm",
    "conditioning_gap",
    "cosine_similarity",
    "fpdm_quantile",
    "fpdm_step_grid",
    "fpdm_sweep",
    "relative_excess",
    "rowwise_quantile",
    "select_guidance",
    "summarize_gap",
]
