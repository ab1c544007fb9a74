# SPDX-License-Identifier: Apache-2.0
"""Coarse noise: Gaussian noise drawn on a low-resolution grid, upsampled bilinearly and shifted at random
(Kascenas, Pugeault & O'Neil, "Denoising Autoencoders for Unsupervised Anomaly Detection in Brain MRI", MIDL 2022).

Pixel-wise noise is removed by a denoiser without learning what healthy tissue looks like; noise that covers blobs of
several millimetres makes it learn to restore whole regions, which is what erases a lesion. MONAI has pixel-wise
Gaussian noise (``RandGaussianNoise``) and coarse dropout, not low-resolution noise, hence this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.engines.utils import PrepareBatch, default_prepare_batch

from monai_adiff.inferers import brain_from_inputs

__all__ = ["coarse_noise", "CoarseNoise", "CoarseNoisePrepareBatch"]


def coarse_noise(
    shape: Sequence[int],
    resolution: int = 16,
    std: float = 0.2,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Noise of ``shape`` (B, C, H, W): ``N(0, std^2)`` on a ``resolution`` x ``resolution`` grid per sample and
    channel, bilinearly upsampled to (H, W), then rolled by a random offset per sample so that the grid of the blobs
    does not sit at the same place in every image.

    Args:
        shape: (B, C, H, W).
        resolution: side of the low-resolution grid (paper: 16 for 128 px slices, blobs of 8 px).
        std: standard deviation of the grid values, in the image's intensity units.
        generator: random generator on ``device`` (default: the device's global one).
        device: device of the noise (default: the generator's, else CPU).
        dtype: floating dtype.

    Raises:
        ValueError: a shape that is not 4-D, or a grid finer than the image.
    """
    if len(shape) != 4:
        raise ValueError(f"coarse noise needs a (B, C, H, W) shape, got {tuple(shape)}")
    b, c, h, w = (int(s) for s in shape)
    if not 1 <= int(resolution) <= min(h, w):
        raise ValueError(f"resolution must lie in [1, {min(h, w)}] for {h} x {w} slices, got {resolution}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    r = int(resolution)
    grid = torch.randn((b, c, r, r), generator=generator, device=device, dtype=torch.float32) * float(std)
    noise = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
    shifts = torch.stack(
        [torch.randint(0, n, (b,), generator=generator, device=device) for n in (h, w)], dim=1
    ).tolist()
    noise = torch.stack([torch.roll(noise[i], shifts=tuple(s), dims=(-2, -1)) for i, s in enumerate(shifts)])
    return noise.to(dtype)


class CoarseNoise:
    """The coarse noise a denoising autoencoder is trained with (:func:`coarse_noise`); call it to draw a field.

    Args:
        resolution: side of the low-resolution grid (paper: 16 at 128 px).
        std: standard deviation in the image's intensity units (paper: 0.2 on intensities in [0, 1], so 0.4 on the
            [-1, 1] range of these bundles).
    """

    def __init__(self, resolution: int = 16, std: float = 0.4) -> None:
        if int(resolution) < 1 or float(std) < 0:
            raise ValueError(f"resolution must be >= 1 and std >= 0, got {resolution}, {std}")
        self.resolution = int(resolution)
        self.std = float(std)

    def __call__(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        return coarse_noise(shape, self.resolution, self.std, generator=generator, device=device, dtype=dtype)

    def to_dict(self) -> dict[str, Any]:
        """The constructor arguments (JSON-friendly)."""
        return {"resolution": self.resolution, "std": self.std}

    def __repr__(self) -> str:
        return f"CoarseNoise(resolution={self.resolution}, std={self.std})"


class CoarseNoisePrepareBatch(PrepareBatch):
    """Prepare-batch for ``SupervisedTrainer`` + ``SimpleInferer`` training a denoising autoencoder: the input is the
    image with coarse noise added inside the brain, the target the clean image (the network learns to restore healthy
    tissue; the background stays exact, as the paper adds no noise outside the brain).

    Args:
        noise: the :class:`CoarseNoise` to add (or its arguments as a mapping).
        brain_tol: a pixel is brain when any channel exceeds ``-1 + brain_tol`` (the bundles' background is -1).
    """

    def __init__(self, noise: CoarseNoise | Mapping[str, Any] | None = None, brain_tol: float = 1e-3) -> None:
        self.noise = noise if isinstance(noise, CoarseNoise) else CoarseNoise(**dict(noise or {}))
        self.brain_tol = float(brain_tol)

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        images, _ = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        brain = brain_from_inputs(images, tol=self.brain_tol)
        noise = self.noise(images.shape, device=images.device, dtype=images.dtype)
        return images + noise * brain, images, (), {}
