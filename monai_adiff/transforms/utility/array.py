# SPDX-License-Identifier: Apache-2.0
"""Input checks inside a transform chain, for data that did not come through a checked datalist (MONAI Label,
in-memory arrays): the error names the source file and the problem instead of failing later in a network, or
giving a silently wrong result."""

from __future__ import annotations

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_to_tensor

from monai_adiff.errors import InputError
from monai_adiff.transforms.intensity.array import source_name

__all__ = ["CheckImage", "SkullStrippedCheck", "HEAD_VOLUME_ML", "RIM_RATIO"]

#: a foreground larger than this (millilitres) is a head, not a brain (adult brains: about 1.0-1.7 L; a head with
#: scalp and skull is well over 3 L)
HEAD_VOLUME_ML = 2500.0
#: a head's foreground has a bright rim (scalp) outside a dark band (skull): the darkest shell's median below this
#: fraction of the rim's (skull-stripped BraTS brains: 0.59 at the lowest, T2 with its bright CSF rim; phantom heads
#: with a skull and scalp: 0.04)
RIM_RATIO = 0.3


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


def _spacing(img: NdarrayOrTensor) -> np.ndarray:
    """Voxel sizes in mm from a MetaTensor's affine (1 mm without one)."""
    affine = getattr(img, "affine", None)
    if affine is None:
        return np.ones(3)
    a = np.asarray(convert_to_tensor(affine, track_meta=False), dtype=np.float64)[:3, :3]
    return np.linalg.norm(a, axis=0)


class SkullStrippedCheck(Transform):
    """Refuse a volume whose foreground is a whole head rather than a brain.

    The pipeline takes every voxel off the background as brain. A head that was not skull-stripped but sits on a
    zero background (common after registration or defacing tools) passes every other check, and its mask then
    lands on scalp and skull. MONAI has no such check. Two signs of a head, measured on the first channel with the
    voxel size from the affine:

    - the foreground is larger than :data:`HEAD_VOLUME_ML`;
    - its outer shell (scalp) is bright while a shell below it, down to ``depth_mm`` (skull), is dark: the darkest
      shell's median is below ``rim_ratio`` of the outer one's (shells ``shell_mm`` thick).

    Args:
        shell_mm, depth_mm: the shells' thickness and how deep they go.
        rim_ratio: see above (:data:`RIM_RATIO`).
        max_volume_ml: see above (:data:`HEAD_VOLUME_ML`).

    Raises:
        InputError: naming the file, the sign found and the fix (a brain mask beside it, a skull-stripping tool, or
            ``assume_skull_stripped``).
    """

    backend = [TransformBackends.NUMPY]

    def __init__(
        self,
        shell_mm: float = 2.0,
        depth_mm: float = 16.0,
        rim_ratio: float = RIM_RATIO,
        max_volume_ml: float = HEAD_VOLUME_ML,
    ) -> None:
        self.shell_mm, self.depth_mm = float(shell_mm), float(depth_mm)
        self.rim_ratio, self.max_volume_ml = float(rim_ratio), float(max_volume_ml)

    def measure(self, img: NdarrayOrTensor) -> dict[str, float]:
        """``{"volume_ml", "rim_ratio"}`` of a channel-first image whose background is 0."""
        from scipy import ndimage

        x = np.asarray(convert_to_tensor(img, track_meta=False)[0], dtype=np.float32)
        spacing = _spacing(img)
        fg = x > 0
        volume = float(fg.sum() * np.prod(spacing) / 1000.0)
        # erosions counted in voxels of the finest axis: never deeper than asked
        n = max(1, round(self.shell_mm / float(np.min(spacing))))
        medians, current = [], fg
        for _ in range(max(2, int(self.depth_mm / self.shell_mm))):
            inner = ndimage.binary_erosion(current, iterations=n)
            shell = x[current & ~inner]
            if shell.size == 0:
                break
            medians.append(float(np.median(shell)))
            current = inner
        if len(medians) < 2:
            return {"volume_ml": volume, "rim_ratio": float("inf")}
        return {"volume_ml": volume, "rim_ratio": min(medians[1:]) / max(medians[0], 1e-12)}

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        m = self.measure(img)
        sign = None
        if m["volume_ml"] > self.max_volume_ml:
            sign = f"its foreground is {m['volume_ml'] / 1000:.1f} L, more than a brain"
        elif m["rim_ratio"] < self.rim_ratio:
            sign = "its foreground has a bright rim outside a dark shell (scalp and skull)"
        if sign is not None:
            raise InputError(
                source_name(img),
                f"looks like a whole head, not a skull-stripped brain: {sign}; put a brain mask beside it as "
                "<case>_brainmask.nii.gz, or skull-strip it (e.g. SynthStrip, HD-BET); if it is stripped, pass "
                "--assume-skull-stripped",
            )
        return img
