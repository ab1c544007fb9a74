# SPDX-License-Identifier: Apache-2.0
"""Engine pieces for MONAI's ``SupervisedTrainer``/``SupervisedEvaluator``: noise prepare-batch, resume helper,
progress bar."""

from .calibration import (
    best_accuracy_threshold,
    calibrate_fpdm,
    conditioning_gap,
    load_network_weights,
    select_guidance,
)
from .checkpoint import latest_checkpoint
from .handlers import ProgressBarHandler
from .prepare_batch import ClassDropoutPrepareBatch, NoiseDiffusionPrepareBatch

__all__ = [
    "best_accuracy_threshold",
    "calibrate_fpdm",
    "conditioning_gap",
    "load_network_weights",
    "select_guidance",
    "ClassDropoutPrepareBatch",
    "NoiseDiffusionPrepareBatch",
    "ProgressBarHandler",
    "latest_checkpoint",
]
