# SPDX-License-Identifier: Apache-2.0
"""Draw a diffusion noise field (AnoDDPM simplex, DTU-Net Tsimplex or Gaussian) shaped like an image.

MONAI's ``RandGaussianNoise`` *adds* Gaussian noise to an image; diffusion pipelines need the noise field itself
(the scheduler mixes it with the image, and it is the regression target), for a given timestep, and simplex noise
does not exist in MONAI. This transform returns the field, so it can be precomputed in a data pipeline (e.g. on
worker processes) or drawn in a config.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.config import DtypeLike, NdarrayOrTensor
from monai.transforms import Randomizable, Transform
from monai.utils import TransformBackends
from monai.utils.type_conversion import convert_to_dst_type

from monai_adiff.noise import NoiseSpec, make_noise

__all__ = ["RandSimplexNoise"]


def _timestep_range(timesteps: int | Sequence[int]) -> tuple[int, int]:
    """``t`` -> ``(t, t + 1)``; ``(low, high)`` -> itself (high exclusive)."""
    if isinstance(timesteps, (int, np.integer)) and not isinstance(timesteps, bool):
        return int(timesteps), int(timesteps) + 1
    if (
        isinstance(timesteps, Sequence)
        and len(timesteps) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in timesteps)
    ):
        low, high = int(timesteps[0]), int(timesteps[1])
        if low < high:
            return low, high
    raise ValueError(f"timesteps must be an int or an int range (low, high) with low < high, got {timesteps!r}")


class RandSimplexNoise(Randomizable, Transform):
    """Return a noise field shaped like the channel-first image ``(C, H, W)`` or ``(C, D, H, W)``.

    Each call draws a fresh seed and a timestep ``t`` (uniform integer in ``[low, high)``, or the fixed ``t``) from
    the transform's random state, then returns ``make_noise(noise_type, (1, *img.shape), [t])[0]``: for simplex,
    ``sum_k p^k simplex3(x / f_k, y / f_k, t / f_k)`` per channel (4D noise with the slice as coordinate for
    volumes); for Tsimplex the channel is a noise coordinate (2D images only). The image's values are not used and
    not changed. The drawn ``t`` and seed are kept as :attr:`timestep` and :attr:`seed`.

    Args:
        timesteps: a fixed timestep, or ``(low, high)`` to draw one uniformly (high exclusive; default ``(0, 1000)``,
            MONAI's schedulers' range).
        noise_type: ``"simplex"``, ``"tsimplex"`` or ``"gaussian"``.
        octaves, persistence, frequency: octave settings; ``None`` takes the type's paper value
            (:data:`~monai_adiff.noise.NOISE_DEFAULTS`).
        dtype: output dtype.

    Returns:
        the field, same type (tensor / MetaTensor / ndarray), device and shape as the input.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        timesteps: int | Sequence[int] = (0, 1000),
        noise_type: str = "simplex",
        octaves: int | None = None,
        persistence: float | None = None,
        frequency: float | None = None,
        dtype: DtypeLike | torch.dtype = torch.float32,
    ) -> None:
        kind = str(noise_type).lower()
        octave_settings: dict[str, Any] = (
            {} if kind == "gaussian" else {"octaves": octaves, "persistence": persistence, "frequency": frequency}
        )
        self.noise = NoiseSpec(kind, **octave_settings)
        self.noise_type = self.noise.noise_type
        self.low, self.high = _timestep_range(timesteps)
        self.dtype = dtype
        self.timestep: int | None = None
        self.seed: int | None = None

    def randomize(self, data: NdarrayOrTensor | None = None) -> None:
        self.timestep = int(self.R.randint(self.low, self.high))
        self.seed = int(self.R.randint(-(2**31), 2**31 - 1))

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Draw (unless ``randomize=False``: reuse the last seed and timestep) and return the field for ``img``."""
        if randomize or self.seed is None:
            self.randomize()
        assert self.seed is not None  # set by randomize()
        shape = (1, *img.shape)
        if len(shape) not in (4, 5):
            raise ValueError(f"expected a channel-first 2D or 3D image (C, H, W) / (C, D, H, W), got {img.shape}")
        device = img.device if isinstance(img, torch.Tensor) else torch.device("cpu")
        if self.noise_type == "gaussian":
            gen = torch.Generator(device=device).manual_seed(self.seed)
            noise = make_noise("gaussian", shape, generator=gen, device=device)
        else:
            noise = self.noise(shape, self.timestep, seeds=[self.seed], device=device)
        out, *_ = convert_to_dst_type(noise[0], img, dtype=self.dtype)
        return out
