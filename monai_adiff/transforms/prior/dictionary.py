# SPDX-License-Identifier: Apache-2.0
"""Dictionary version of the hyperintensity prior."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform

from .array import HyperintensityPrior

__all__ = ["HyperintensityPriord"]


class HyperintensityPriord(MapTransform):
    """Dictionary version of :class:`HyperintensityPrior`: scale ``keys`` (the map) by the FLAIR channel of
    ``image_key`` inside ``brain_key``. The image and the brain mask are not changed.
    """

    backend = HyperintensityPrior.backend

    def __init__(
        self,
        keys: KeysCollection = "pred",
        image_key: str = "image",
        brain_key: str = "brain",
        mode: str = "weight",
        channel: int = 0,
        high_quantile: float = 0.99,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key, self.brain_key = image_key, brain_key
        self.transform = HyperintensityPrior(mode, channel, high_quantile)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for k in (self.image_key, self.brain_key):
            if k not in d:
                raise KeyError(f"HyperintensityPriord: key {k!r} not in the data (keys: {list(d)})")
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], d[self.image_key], d[self.brain_key])
        return d
