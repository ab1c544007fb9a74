# SPDX-License-Identifier: Apache-2.0
"""Engine pieces for MONAI's ``SupervisedTrainer``/``SupervisedEvaluator``: noise prepare-batch, resume helper,
progress bar."""

from .checkpoint import latest_checkpoint
from .handlers import ProgressBarHandler
from .prepare_batch import NoiseDiffusionPrepareBatch

__all__ = ["NoiseDiffusionPrepareBatch", "ProgressBarHandler", "latest_checkpoint"]
