# SPDX-License-Identifier: Apache-2.0
"""Per-slice bookkeeping of volumes: brain mask, brain-slice selection and image-level slice labels.

The 2D methods train and score axial slices; which slices count as brain slices and which slices are "unhealthy"
(image-level label: any tumour voxel) are decided here once, for the datalist's slice table, the training datasets
and the evaluation alike.
"""

from __future__ import annotations

import torch
from monai.config import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_to_tensor

from monai_adiff.transforms.intensity.array import ScaleByPercentile

__all__ = ["BrainMask", "BrainSliceSelection", "SliceLabel", "slice_areas", "SLICE_RULES"]

#: the brain-slice rules of :class:`BrainSliceSelection`
SLICE_RULES = ("area", "intensity")


def _slice_dim(ndim: int, slice_axis: int) -> int:
    """Tensor dim of the slice axis of a channel-first image with ``ndim - 1`` spatial dims."""
    return slice_axis % (ndim - 1) + 1


def slice_areas(mask: NdarrayOrTensor, slice_axis: int = -1) -> torch.Tensor:
    """Count the true voxels of a channel-first mask (any channel) in each slice along ``slice_axis``.

    Returns:
        int64 tensor of shape (S,); for a 2D image (C, H, W) a 0-dim tensor.
    """
    m = convert_to_tensor(mask, track_meta=False).bool().any(dim=0, keepdim=True)
    if m.ndim == 3:
        return m.sum()
    dim = _slice_dim(m.ndim, slice_axis)
    return m.sum(dim=tuple(d for d in range(m.ndim) if d != dim)).long()


class BrainMask(Transform):
    """Brain (foreground) mask of a skull-stripped image: any channel above ``threshold``.

    Apply it to intensities that are 0 outside the brain (raw or percentile-scaled), before mapping to [-1, 1].

    Returns:
        bool tensor shaped (1, *spatial).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, threshold: float = 0.0) -> None:
        self.threshold = threshold

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        x = convert_to_tensor(img, track_meta=False)
        return (x > self.threshold).any(dim=0, keepdim=True)


class BrainSliceSelection(Transform):
    """Which slices are brain slices.

    Two rules:

    - ``"area"`` (default): brain area above ``min_fraction`` of the volume's largest slice area.
    - ``"intensity"`` (the public AnoFPDM code's preprocessing): each channel divided by its 99th foreground
      percentile (no clipping), the channel mean summed over each slice; every slice from the first to the last one
      whose sum exceeds ``min_intensity_sum`` (0.5 there: in effect every slice with any brain, a contiguous range).

    Args:
        min_fraction: ``"area"``: fraction of the largest slice's brain area a slice must exceed (0 keeps every slice
            with any brain voxel).
        slice_axis: spatial axis of the slices (-1: the last, axial in RAS).
        threshold: intensity above which a voxel is brain (any channel).
        rule: ``"area"`` or ``"intensity"``.
        min_intensity_sum: ``"intensity"``: the per-slice sum a slice must exceed to bound the range.

    Returns:
        bool tensor (S,).
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        min_fraction: float = 0.1,
        slice_axis: int = -1,
        threshold: float = 0.0,
        rule: str = "area",
        min_intensity_sum: float = 0.5,
    ) -> None:
        if not 0.0 <= min_fraction < 1.0:
            raise ValueError(f"min_fraction must be in [0, 1), got {min_fraction}")
        if rule not in SLICE_RULES:
            raise ValueError(f"rule must be one of {SLICE_RULES}, got {rule!r}")
        self.min_fraction = min_fraction
        self.slice_axis = slice_axis
        self.threshold = threshold
        self.rule = rule
        self.min_intensity_sum = float(min_intensity_sum)

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        area = slice_areas(BrainMask(self.threshold)(img), self.slice_axis)
        if self.rule == "area":
            return (area > self.min_fraction * area.max()) & (area > 0)
        x = torch.as_tensor(ScaleByPercentile(percentile=99.0, clip=False)(convert_to_tensor(img, track_meta=False)))
        mean = x.mean(dim=0)
        dim = _slice_dim(x.ndim, self.slice_axis) - 1
        sums = mean.sum(dim=tuple(d for d in range(mean.ndim) if d != dim))
        above = sums > self.min_intensity_sum
        keep = torch.zeros_like(above)
        if bool(above.any()):
            idx = torch.nonzero(above).flatten()
            keep[int(idx[0]) : int(idx[-1]) + 1] = True
        return keep


class SliceLabel(Transform):
    """Image-level label of each slice: 1 when the segmentation has any voxel > 0 in it (the whole tumour).

    Returns:
        int64 tensor (S,) for a volume, or a 0-dim tensor for a 2D image.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, slice_axis: int = -1) -> None:
        self.slice_axis = slice_axis

    def __call__(self, label: NdarrayOrTensor) -> torch.Tensor:
        seg = convert_to_tensor(label, track_meta=False) > 0
        return (slice_areas(seg, self.slice_axis) > 0).long()
