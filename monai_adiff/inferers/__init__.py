# SPDX-License-Identifier: Apache-2.0
"""Shared inferer layers: the slice-wise anomaly inferer base (every method's inferer builds on it) and the
class-conditional training forward pass. The methods' own inferers live in :mod:`monai_adiff.methods`."""

from .base import AnomalyInferer, brain_from_inputs, device_generator
from .conditional import ConditionalDiffusionInferer

__all__ = ["AnomalyInferer", "ConditionalDiffusionInferer", "brain_from_inputs", "device_generator"]
