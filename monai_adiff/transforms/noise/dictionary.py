# SPDX-License-Identifier: Apache-2.0
"""Dictionary version of :mod:`monai_adiff.transforms.noise.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import DtypeLike, KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Randomizable
from monai.utils import ensure_tuple

from monai_adiff.transforms.noise.array import RandSimplexNoise

__all__ = ["RandSimplexNoised", "RandSimplexNoiseD", "RandSimplexNoiseDict"]


class RandSimplexNoised(Randomizable, MapTransform):
    """Write a noise field shaped like ``d[key]`` to ``d[noise_key]`` (the image is left unchanged).

    One timestep is drawn per data dictionary and shared by all keys; key ``i`` uses seed ``seed + i`` so the
    fields of several keys (e.g. modalities stored separately) are independent. The timestep is stored under
    ``timestep_key`` when given (an int64 scalar tensor), so training code can noise the image at that ``t``.

    Args:
        keys: image keys whose shapes the fields copy.
        noise_key: output key(s), one per key (default ``"noise"``, which suits a single key).
        timestep_key: where to store the drawn timestep, or ``None``.
        timesteps, noise_type, octaves, persistence, frequency, dtype: see :class:`RandSimplexNoise`.
        allow_missing_keys: skip missing keys.
    """

    backend = RandSimplexNoise.backend

    def __init__(
        self,
        keys: KeysCollection,
        noise_key: KeysCollection = "noise",
        timestep_key: str | None = "timestep",
        timesteps: int | Sequence[int] = (0, 1000),
        noise_type: str = "simplex",
        octaves: int | None = None,
        persistence: float | None = None,
        frequency: float | None = None,
        dtype: DtypeLike | torch.dtype = torch.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.noise_keys = ensure_tuple(noise_key)
        if len(self.noise_keys) != len(self.keys):
            raise ValueError(f"give one noise_key per key: keys {self.keys}, noise_key {self.noise_keys}")
        self.timestep_key = timestep_key
        self.noiser = RandSimplexNoise(timesteps, noise_type, octaves, persistence, frequency, dtype)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandSimplexNoised:
        super().set_random_state(seed, state)
        self.noiser.set_random_state(seed, state)
        return self

    def randomize(self, data: Mapping | None = None) -> None:
        self.noiser.randomize(None)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize(d)
        base_seed = self.noiser.seed
        assert base_seed is not None  # set by randomize()
        for i, (key, noise_key) in enumerate(self.key_iterator(d, self.noise_keys)):
            self.noiser.seed = base_seed + i
            d[noise_key] = self.noiser(d[key], randomize=False)
        self.noiser.seed = base_seed
        if self.timestep_key is not None:
            d[self.timestep_key] = torch.tensor(self.noiser.timestep, dtype=torch.int64)
        return d


RandSimplexNoiseD = RandSimplexNoiseDict = RandSimplexNoised
