# SPDX-License-Identifier: Apache-2.0
"""Noise for diffusion anomaly detection: Gaussian, AnoDDPM simplex and DTU-Net Tsimplex, torch on any device.

``simplex_noise`` and ``tsimplex_noise`` reproduce ``opensimplex==0.4.5.1`` (the peers' reference) field for field,
with one independent field per sample; ``make_noise`` dispatches on a type string; :class:`NoiseSpec` is the one
description (type + octave settings, per-type defaults) that training and inference share.
"""

from __future__ import annotations

from monai_adiff.noise.factory import NOISE_TYPES, make_noise
from monai_adiff.noise.gaussian import gaussian_noise
from monai_adiff.noise.simplex import (
    clear_noise_cache,
    compiled_kernels_enabled,
    simplex_noise,
    tsimplex_noise,
    use_compiled_kernels,
)
from monai_adiff.noise.spec import NOISE_DEFAULTS, NoiseSpec

__all__ = [
    "NOISE_DEFAULTS",
    "NoiseSpec",
    "NOISE_TYPES",
    "clear_noise_cache",
    "compiled_kernels_enabled",
    "gaussian_noise",
    "make_noise",
    "simplex_noise",
    "tsimplex_noise",
    "use_compiled_kernels",
]
