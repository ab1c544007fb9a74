# SPDX-License-Identifier: Apache-2.0
"""Anomaly inferers: one ``monai.inferers.Inferer`` per method, all returning an image-shaped anomaly tensor."""

from .base import AnomalyInferer, AnomalyOutput, brain_from_inputs
from .conditional import ConditionalDiffusionInferer
from .fpdm import FPDM_CHANNELS, FPDMInferer, FPDMSweep, cosine_similarity, fpdm_step_grid, fpdm_sweep
from .iterative import IterativeReconstructionInferer
from .single_step import SingleStepInferer

__all__ = [
    "FPDM_CHANNELS",
    "FPDMInferer",
    "FPDMSweep",
    "ConditionalDiffusionInferer",
    "cosine_similarity",
    "fpdm_step_grid",
    "fpdm_sweep",
    "AnomalyInferer",
    "AnomalyOutput",
    "IterativeReconstructionInferer",
    "SingleStepInferer",
    "brain_from_inputs",
]
