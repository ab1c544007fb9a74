# SPDX-License-Identifier: Apache-2.0
"""Dictionary versions of :mod:`monai_adiff.transforms.slices.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform

from monai_adiff.transforms.slices.array import BrainMask, BrainSliceSelection, SliceLabel, slice_areas

__all__ = [
    "BrainMaskd",
    "BrainMaskD",
    "BrainMaskDict",
    "BrainSliceSelectiond",
    "BrainSliceSelectionD",
    "BrainSliceSelectionDict",
    "SliceLabeld",
    "SliceLabelD",
    "SliceLabelDict",
]


class BrainMaskd(MapTransform):
    """Dictionary version of :class:`BrainMask`: writes the mask of ``keys`` under ``output_key``.

    The mask is a spatial image: give it to later spatial transforms (``Resized`` with ``mode="nearest"``, ...) if it
    is made before them.
    """

    backend = BrainMask.backend

    def __init__(
        self, keys: KeysCollection, output_key: str = "brain", threshold: float = 0.0, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key
        self.masker = BrainMask(threshold)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.masker(d[key])
        return d


class BrainSliceSelectiond(MapTransform):
    """Dictionary version of :class:`BrainSliceSelection`.

    Writes the bool per-slice selection under ``output_key`` and the brain area per slice under ``area_key`` (when
    given). Neither is a spatial image, so later spatial transforms leave them alone.
    """

    backend = BrainSliceSelection.backend

    def __init__(
        self,
        keys: KeysCollection,
        output_key: str = "brain_slices",
        area_key: str | None = "brain_area",
        min_fraction: float = 0.1,
        slice_axis: int = -1,
        threshold: float = 0.0,
        rule: str = "area",
        min_intensity_sum: float = 0.5,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key
        self.area_key = area_key
        self.selector = BrainSliceSelection(min_fraction, slice_axis, threshold, rule, min_intensity_sum)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.selector(d[key])
            if self.area_key:
                d[self.area_key] = slice_areas(BrainMask(self.selector.threshold)(d[key]), self.selector.slice_axis)
        return d


class SliceLabeld(MapTransform):
    """Dictionary version of :class:`SliceLabel`; the tumour area per slice goes under ``area_key`` when given."""

    backend = SliceLabel.backend

    def __init__(
        self,
        keys: KeysCollection,
        output_key: str = "slice_label",
        area_key: str | None = "tumour_area",
        slice_axis: int = -1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key
        self.area_key = area_key
        self.labeller = SliceLabel(slice_axis)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.labeller(d[key])
            if self.area_key:
                d[self.area_key] = slice_areas(d[key] > 0, self.labeller.slice_axis)
        return d


BrainMaskD = BrainMaskDict = BrainMaskd
BrainSliceSelectionD = BrainSliceSelectionDict = BrainSliceSelectiond
SliceLabelD = SliceLabelDict = SliceLabeld
