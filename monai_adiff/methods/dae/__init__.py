# SPDX-License-Identifier: Apache-2.0
"""Denoising autoencoder with coarse noise (Kascenas et al. 2022), the learned non-diffusion peer baseline: see
``README.md`` beside this file."""

from .inferer import DenoisingInferer
from .loss import BrainMSELoss
from .noise import CoarseNoise, CoarseNoisePrepareBatch, coarse_noise

__all__ = ["BrainMSELoss", "CoarseNoise", "CoarseNoisePrepareBatch", "DenoisingInferer", "coarse_noise"]
