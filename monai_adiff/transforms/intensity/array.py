# SPDX-License-Identifier: Apache-2.0
"""Intensity normalisation of brain MRI as the papers do it.

MONAI's ``ScaleIntensityRangePercentiles`` takes percentiles over *all* voxels and maps them to a range; brain MRI
papers divide each volume and modality by a percentile of the *foreground* (non-zero, skull-stripped) voxels, with or
without clipping, and some map each axial slice to [-1, 1] by its own min-max. Neither exists in MONAI.
"""

from __future__ import annotations

import torch
from monai.config import DtypeLike, NdarrayOrTensor
from monai.transforms import ScaleIntensity, Transform
from monai.utils import TransformBackends, convert_to_tensor
from monai.utils.type_conversion import convert_to_dst_type

from monai_adiff.errors import InputError

__all__ = ["ScaleByPercentile", "ScaleToSymmetricRange", "source_name"]


def source_name(img) -> str | None:
    """The file an image came from, when it is a MetaTensor loaded by ``LoadImage`` (for error messages)."""
    meta = getattr(img, "meta", None)
    if not meta:
        return None
    name = meta.get("filename_or_obj")
    if isinstance(name, (list, tuple)):
        name = ", ".join(map(str, name))
    return None if name is None else str(name)


def _percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """numpy's default (linear) percentile of a flat tensor; ``torch.quantile`` refuses inputs over 16 M elements."""
    pos = q / 100.0 * (values.numel() - 1)
    lo = int(pos)
    v_lo = values.kthvalue(lo + 1).values
    if pos == lo:
        return v_lo
    v_hi = values.kthvalue(lo + 2).values
    return v_lo + (v_hi - v_lo) * (pos - lo)


class ScaleByPercentile(Transform):
    """Divide each channel by a percentile of its foreground voxels (optionally clipping at it first).

    AnoFPDM divides by the 99th percentile of non-zero voxels with no clipping; the UPD benchmark clips at that
    percentile first (so the result is in [0, 1] for non-negative MRI).

    Args:
        percentile: the percentile in [0, 100].
        clip: clip each channel at its percentile before dividing.
        nonzero: take the percentile over non-zero voxels only (the skull-stripped brain).
        channel_wise: one percentile per channel (per modality); otherwise one over all channels.
        dtype: output dtype.

    Raises:
        InputError: a channel with no foreground voxel (names the source file when known).
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        percentile: float = 99.0,
        clip: bool = False,
        nonzero: bool = True,
        channel_wise: bool = True,
        dtype: DtypeLike | torch.dtype = torch.float32,
    ) -> None:
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {percentile}")
        self.percentile = percentile
        self.clip = clip
        self.nonzero = nonzero
        self.channel_wise = channel_wise
        self.dtype = dtype

    def _scale(self, x: torch.Tensor, src) -> torch.Tensor:
        values = x[x != 0] if self.nonzero else x.reshape(-1)
        if values.numel() == 0:
            raise InputError(source_name(src), "has an empty foreground (every voxel is 0), cannot normalise")
        p = _percentile(values.float(), self.percentile)
        if p <= 0:
            raise InputError(source_name(src), f"{self.percentile}th foreground percentile is {float(p)}, not > 0")
        if self.clip:
            x = torch.clamp(x, max=p)
        return x / p

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        x = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        if self.channel_wise:
            out = torch.stack([self._scale(c, img) for c in x])
        else:
            out = self._scale(x, img)
        return convert_to_dst_type(out, img, dtype=self.dtype)[0]


class ScaleToSymmetricRange(Transform):
    """Map intensities to [-1, 1], the range the diffusion models work in.

    Args:
        mode: ``"global"``: one linear map per channel over the whole image; ``"slice"``: a min-max per channel and
            per slice along ``slice_axis`` (AnoFPDM's loader, which MONAI lacks).
        vmin: with ``"global"``, the value that maps to -1 (default: the channel minimum).
        vmax: with ``"global"``, the value that maps to +1 (default: the channel maximum). With fixed ``vmin`` and
            ``vmax`` (e.g. 0 and 1 after clipped percentile scaling) the map does not depend on the image content.
        slice_axis: spatial axis of the slices for ``"slice"`` mode (-1: the last, axial in RAS); ignored for 2D
            images, which are one slice.
        eps: added to the range of ``"slice"`` mode (AnoFPDM: 1e-5) so constant slices stay finite.
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        mode: str = "global",
        vmin: float | None = None,
        vmax: float | None = None,
        slice_axis: int = -1,
        eps: float = 1e-5,
    ) -> None:
        if mode not in ("global", "slice"):
            raise ValueError(f"mode must be 'global' or 'slice', got {mode!r}")
        if (vmin is None) != (vmax is None):
            raise ValueError("give both vmin and vmax, or neither")
        if vmin is not None and vmax is not None and vmax <= vmin:
            raise ValueError(f"vmax ({vmax}) must be > vmin ({vmin})")
        self.mode = mode
        self.vmin = vmin
        self.vmax = vmax
        self.slice_axis = slice_axis
        self.eps = eps

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        x = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        if self.mode == "global":
            if self.vmin is not None:
                assert self.vmax is not None  # given together with vmin
                out = (x - self.vmin) / (self.vmax - self.vmin) * 2.0 - 1.0
            else:
                out = ScaleIntensity(minv=-1.0, maxv=1.0, channel_wise=True)(x)
        else:
            dims: tuple[int, ...]
            if x.ndim == 3:  # (C, H, W): the image is one slice
                dims = (1, 2)
            else:
                axis = self.slice_axis % (x.ndim - 1) + 1
                dims = tuple(d for d in range(1, x.ndim) if d != axis)
            lo = x.amin(dim=dims, keepdim=True)
            hi = x.amax(dim=dims, keepdim=True)
            out = (x - lo) / (hi - lo + self.eps) * 2.0 - 1.0
        return convert_to_dst_type(out, img, dtype=torch.float32)[0]
