# SPDX-License-Identifier: Apache-2.0
"""Anomaly inferers: one ``monai.inferers.Inferer`` per method, all returning an image-shaped anomaly tensor."""

from .base import AnomalyInferer, AnomalyOutput, brain_from_inputs
from .intensity import IntensityInferer
from .iterative import IterativeReconstructionInferer
from .single_step import SingleStepInferer

__all__ = [
    "AnomalyInferer", "AnomalyOutput", "IntensityInferer", "IterativeReconstructionInferer", "SingleStepInferer",
    "brain_from_inputs",
]
