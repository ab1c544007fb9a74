# SPDX-License-Identifier: Apache-2.0
"""One entry point for the three noise types, so trainers, inferers and bundle configs name the noise by a string."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from monai_adiff.noise.gaussian import gaussian_noise
from monai_adiff.noise.simplex import simplex_noise, tsimplex_noise

__all__ = ["NOISE_TYPES", "make_noise"]

NOISE_TYPES = ("simplex", "tsimplex", "gaussian")
_SIMPLEX_ONLY = ("octaves", "persistence", "frequency", "seeds")
_COMMON = ("generator", "device", "dtype")


def make_noise(
    noise_type: str, shape: Sequence[int], timesteps: torch.Tensor | int | float | None = None, **kwargs: Any
) -> torch.Tensor:
    """Draw ``"simplex"`` (AnoDDPM), ``"tsimplex"`` (DTU-Net) or ``"gaussian"`` noise of ``shape``.

    Args:
        noise_type: one of :data:`NOISE_TYPES` (case-insensitive).
        shape: ``(B, C, H, W)`` (or ``(B, C, D, H, W)`` for simplex and gaussian).
        timesteps: ``(B,)`` timesteps or one number; required by the simplex noises, ignored by gaussian.
        kwargs: ``generator``, ``device``, ``dtype`` for all types; ``octaves``, ``persistence``, ``frequency``,
            ``seeds`` for the simplex types (ignored by gaussian, so one config can switch types).

    Raises:
        ValueError: unknown noise type or keyword, or missing timesteps for a simplex type.
    """
    kind = str(noise_type).lower()
    if kind not in NOISE_TYPES:
        raise ValueError(f"noise_type must be one of {NOISE_TYPES}, got {noise_type!r}")
    unknown = sorted(set(kwargs) - set(_SIMPLEX_ONLY) - set(_COMMON))
    if unknown:
        raise ValueError(f"make_noise: unknown keyword(s) {unknown}; allowed: {sorted(_SIMPLEX_ONLY + _COMMON)}")
    if kind == "gaussian":
        return gaussian_noise(shape, **{k: v for k, v in kwargs.items() if k in _COMMON})
    if timesteps is None:
        raise ValueError(f"{kind} noise depends on the timestep: pass timesteps ((B,) tensor or a number)")
    fn = simplex_noise if kind == "simplex" else tsimplex_noise
    return fn(shape, timesteps, **kwargs)
