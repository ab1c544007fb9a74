# SPDX-License-Identifier: Apache-2.0
"""AnoFPDM (Che et al. 2025): see ``README.md`` beside this file.

``sweep``: the forward process (eqs. 2-4, 7, 10, 12, 18-21); ``threshold``: Algorithm 1's quantile; ``inferer``: the
bundle's inferer; ``calibration``: the label-free choice of guidance, cosine threshold and ``M_max``; ``network``:
the dropout UNet of the public code.
"""

from .calibration import best_accuracy_threshold, calibrate_fpdm, conditioning_gap, select_guidance
from .inferer import CALIBRATED_KEYS, FPDMInferer
from .network import DropoutDiffusionModelUNet
from .sweep import FPDMSweep, cosine_similarity, fpdm_step_grid, fpdm_sweep, rowwise_quantile
from .threshold import fpdm_quantile

__all__ = [
    "CALIBRATED_KEYS",
    "DropoutDiffusionModelUNet",
    "FPDMInferer",
    "FPDMSweep",
    "best_accuracy_threshold",
    "calibrate_fpdm",
    "conditioning_gap",
    "cosine_similarity",
    "fpdm_quantile",
    "fpdm_step_grid",
    "fpdm_sweep",
    "rowwise_quantile",
    "select_guidance",
]
