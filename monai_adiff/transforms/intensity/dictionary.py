# SPDX-License-Identifier: Apache-2.0
"""Dictionary versions of :mod:`monai_adiff.transforms.intensity.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import DtypeLike, KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform

from monai_adiff.transforms.intensity.array import ScaleByPercentile, ScaleToSymmetricRange, StandardizeBackground

__all__ = [
    "ScaleByPercentiled",
    "ScaleByPercentileD",
    "ScaleByPercentileDict",
    "ScaleToSymmetricRanged",
    "ScaleToSymmetricRangeD",
    "ScaleToSymmetricRangeDict",
    "StandardizeBackgroundd",
    "StandardizeBackgroundD",
    "StandardizeBackgroundDict",
]


class ScaleByPercentiled(MapTransform):
    """Dictionary version of :class:`ScaleByPercentile`."""

    backend = ScaleByPercentile.backend

    def __init__(
        self,
        keys: KeysCollection,
        percentile: float = 99.0,
        clip: bool = False,
        nonzero: bool = True,
        channel_wise: bool = True,
        dtype: DtypeLike | torch.dtype = torch.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = ScaleByPercentile(percentile, clip, nonzero, channel_wise, dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
        return d


class ScaleToSymmetricRanged(MapTransform):
    """Dictionary version of :class:`ScaleToSymmetricRange`."""

    backend = ScaleToSymmetricRange.backend

    def __init__(
        self,
        keys: KeysCollection,
        mode: str = "global",
        vmin: float | None = None,
        vmax: float | None = None,
        slice_axis: int = -1,
        eps: float = 1e-5,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = ScaleToSymmetricRange(mode, vmin, vmax, slice_axis, eps)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
        return d


class StandardizeBackgroundd(MapTransform):
    """Dictionary version of :class:`StandardizeBackground`.

    Args:
        keys: the image key(s).
        mask_key: key of an optional brain mask (e.g. a loaded ``<case>_brainmask.nii.gz``); used when present.
        foreground_key: where to store the brain mask on the input's own grid (bool, (1, *spatial)), e.g. to keep
            inverted output masks inside the brain; ``None`` stores nothing.
        min_border_fraction: see :class:`StandardizeBackground`.
        allow_missing_keys: don't raise for missing image keys.
    """

    backend = StandardizeBackground.backend

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str | None = "brainmask",
        foreground_key: str | None = None,
        min_border_fraction: float = 0.5,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.foreground_key = foreground_key
        self.standardize = StandardizeBackground(min_border_fraction)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        mask = d.get(self.mask_key) if self.mask_key else None
        for key in self.key_iterator(d):
            d[key], foreground = self.standardize.standardize(d[key], mask)
            if self.foreground_key:
                d[self.foreground_key] = foreground
        return d


ScaleByPercentileD = ScaleByPercentileDict = ScaleByPercentiled
ScaleToSymmetricRangeD = ScaleToSymmetricRangeDict = ScaleToSymmetricRanged
StandardizeBackgroundD = StandardizeBackgroundDict = StandardizeBackgroundd
