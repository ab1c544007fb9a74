# SPDX-License-Identifier: Apache-2.0
"""Gaussian noise with the same calling convention as the simplex noises (for configs that switch noise type)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["gaussian_noise"]


def gaussian_noise(
    shape: Sequence[int],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise ``N(0, I)`` (the DDPM default, D3AD, AnoFPDM).

    Args:
        shape: any shape, e.g. ``(B, C, H, W)``.
        generator: random generator (default: the global one of ``device``).
        device: device of the noise (default: the generator's, else CPU).
        dtype: floating dtype.
    """
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(tuple(int(s) for s in shape), generator=generator, device=device, dtype=dtype)
