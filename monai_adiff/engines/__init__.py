# SPDX-License-Identifier: Apache-2.0
"""Generic engine pieces for MONAI's ``SupervisedTrainer``/``SupervisedEvaluator``: noise and classifier-free-guidance
prepare-batches, checkpoint helpers, progress bar. Method-specific fitting steps live in :mod:`monai_adiff.methods`."""

from .checkpoint import (
    CheckpointInfo,
    CheckpointLoader,
    CheckpointSaver,
    check_checkpoint,
    checkpoint_info,
    latest_checkpoint,
    load_network_weights,
    read_checkpoint,
    recorded_overrides,
)
from .handlers import ProgressBarHandler
from .prepare_batch import ClassDropoutPrepareBatch, NoiseDiffusionPrepareBatch
from .recipe import TrainedWith

__all__ = [
    "CheckpointInfo",
    "CheckpointLoader",
    "CheckpointSaver",
    "check_checkpoint",
    "checkpoint_info",
    "read_checkpoint",
    "recorded_overrides",
    "ClassDropoutPrepareBatch",
    "NoiseDiffusionPrepareBatch",
    "ProgressBarHandler",
    "TrainedWith",
    "latest_checkpoint",
    "load_network_weights",
]
