# SPDX-License-Identifier: Apache-2.0
"""Input checks inside a transform chain, for data that did not come through a checked datalist (MONAI Label,
in-memory arrays): the error names the source file and the problem instead of failing later in a network."""

from __future__ import annotations

import torch
from monai.config import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_to_tensor

from monai_adiff.errors import InputError
from monai_adiff.transforms.intensity.array import source_name

__all__ = ["CheckImage"]


class CheckImage(Transform):
    """Check a channel-first image: spatial dimensionality, channel count, finite values, non-empty foreground.

    Args:
        spatial_dims: expected number of spatial dims (3 for volumes).
        num_channels: expected number of channels (one per modality); ``None`` accepts any. A 4D NIfTI file loaded
            with ``ensure_channel_first`` shows up as extra channels, which this catches.
        require_foreground: every channel must have a non-zero voxel.

    Raises:
        InputError: naming ``meta["filename_or_obj"]`` when the image is a MetaTensor.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, spatial_dims: int = 3, num_channels: int | None = None, require_foreground: bool = True) -> None:
        self.spatial_dims = spatial_dims
        self.num_channels = num_channels
        self.require_foreground = require_foreground

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        name = source_name(img)
        x = convert_to_tensor(img, track_meta=False)
        if x.ndim - 1 != self.spatial_dims:
            raise InputError(
                name, f"expected a {self.spatial_dims}D image, got {x.ndim - 1} spatial dims (shape {tuple(x.shape)})"
            )
        if self.num_channels is not None and x.shape[0] != self.num_channels:
            raise InputError(
                name,
                f"expected {self.num_channels} channel(s) (one per modality), got {x.shape[0]} "
                f"(shape {tuple(x.shape)}; a 4D file where a 3D volume is expected?)",
            )
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise InputError(name, f"contains {bad} non-finite voxels (NaN/Inf)")
        if self.require_foreground:
            empty = [c for c in range(x.shape[0]) if not bool((x[c] != 0).any())]
            if empty:
                raise InputError(name, f"has an empty foreground (every voxel is 0) in channel(s) {empty}")
        return img
