# SPDX-License-Identifier: Apache-2.0
"""Dictionary versions of :mod:`monai_adiff.transforms.utility.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform

from monai_adiff.errors import InputError
from monai_adiff.transforms.intensity.array import source_name
from monai_adiff.transforms.utility.array import HEAD_VOLUME_ML, RIM_RATIO, CheckImage, SkullStrippedCheck

__all__ = [
    "CheckImaged",
    "CheckImageD",
    "CheckImageDict",
    "SkullStrippedCheckd",
    "SkullStrippedCheckD",
    "SkullStrippedCheckDict",
]


class CheckImaged(MapTransform):
    """Dictionary version of :class:`CheckImage`, which also checks that ``label_key`` (when present) lies on the
    same voxel grid as the image."""

    backend = CheckImage.backend

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str | None = "label",
        spatial_dims: int = 3,
        num_channels: int | None = None,
        require_foreground: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_key = label_key
        self.checker = CheckImage(spatial_dims, num_channels, require_foreground)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            self.checker(d[key])
            label = d.get(self.label_key) if self.label_key else None
            if label is not None and tuple(label.shape[1:]) != tuple(d[key].shape[1:]):
                raise InputError(
                    source_name(label),
                    f"label shape {tuple(label.shape[1:])} does not match image shape {tuple(d[key].shape[1:])} "
                    f"({source_name(d[key])})",
                )
        return d


CheckImageD = CheckImageDict = CheckImaged


class SkullStrippedCheckd(MapTransform):
    """Dictionary version of :class:`SkullStrippedCheck`; skipped for a case with a brain mask (``mask_key``
    present: the mask is the brain) and when ``enabled`` is off (the user says the scans are stripped)."""

    backend = SkullStrippedCheck.backend

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str | None = "brainmask",
        enabled: bool = True,
        shell_mm: float = 2.0,
        depth_mm: float = 16.0,
        rim_ratio: float = RIM_RATIO,
        max_volume_ml: float = HEAD_VOLUME_ML,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key, self.enabled = mask_key, bool(enabled)
        self.checker = SkullStrippedCheck(shell_mm, depth_mm, rim_ratio, max_volume_ml)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        if not self.enabled or (self.mask_key and d.get(self.mask_key) is not None):
            return d
        for key in self.key_iterator(d):
            self.checker(d[key])
        return d


SkullStrippedCheckD = SkullStrippedCheckDict = SkullStrippedCheckd
