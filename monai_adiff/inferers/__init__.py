# SPDX-License-Identifier: Apache-2.0
"""Shared inferer layers: the slice-wise anomaly inferer base (every method's inferer builds on it), the
class-conditional training forward pass and classifier-free guidance. The methods' own inferers live in
:mod:`monai_adiff.methods`."""

from .base import (
    AGGREGATIONS,
    AnomalyInferer,
    brain_from_inputs,
    check_ensemble,
    device_generator,
    ensemble_error,
    reconstruction_error,
)
from .conditional import ConditionalDiffusionInferer
from .guidance import ClassifierFreeGuidance

__all__ = [
    "AGGREGATIONS",
    "AnomalyInferer",
    "ClassifierFreeGuidance",
    "ConditionalDiffusionInferer",
    "brain_from_inputs",
    "check_ensemble",
    "device_generator",
    "ensemble_error",
    "reconstruction_error",
]
