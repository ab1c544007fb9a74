# SPDX-License-Identifier: Apache-2.0
"""Dictionary versions of :mod:`monai_adiff.transforms.postprocessing.array`, and the unpacking of an inferer's
packed output (:class:`SplitAnomalyOutputd`).

:class:`AnomalyThresholdd` writes the mask under a new key (a MetaTensor with the map's meta when the map is one, so
``Invertd`` and ``SaveImaged`` can use it); the mask transforms work in place on ``keys``; :class:`AnomalyScored`
writes plain (non-spatial) per-slice and volume scores.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform

from monai_adiff.output import CHANNELS_META_KEY, PRED_LABEL, PRED_SCORE, VALUES_META_KEY, channel_names, slice_values
from monai_adiff.transforms.postprocessing.array import (
    AnomalyScore,
    AnomalyThreshold,
    BrainErosionMask,
    Dilate,
    KeepLargestComponents,
    MedianFilter,
    RemoveSmallComponents,
    volume_score,
)

__all__ = [
    "SplitAnomalyOutputd",
    "SplitAnomalyOutputD",
    "SplitAnomalyOutputDict",
    "AnomalyThresholdd",
    "AnomalyThresholdD",
    "AnomalyThresholdDict",
    "Dilated",
    "DilateD",
    "DilateDict",
    "KeepLargestComponentsd",
    "KeepLargestComponentsD",
    "KeepLargestComponentsDict",
    "MedianFilterd",
    "MedianFilterD",
    "MedianFilterDict",
    "BrainErosionMaskd",
    "BrainErosionMaskD",
    "BrainErosionMaskDict",
    "RemoveSmallComponentsd",
    "RemoveSmallComponentsD",
    "RemoveSmallComponentsDict",
    "AnomalyScored",
    "AnomalyScoreD",
    "AnomalyScoreDict",
]


class SplitAnomalyOutputd(MapTransform):
    """Unpack an anomaly inferer's packed output (one decollated item) into named keys.

    The inferer packs its :class:`~monai_adiff.output.AnomalyOutput` into one image-shaped tensor with named
    channels and per-slice values in its metadata (:meth:`~monai_adiff.output.AnomalyOutput.to_image`). This writes:
    the anomaly map back under ``keys`` (one channel, the input's metadata kept, so ``Invertd`` and the writers work
    on it), every other channel under its own name (``pred_mask`` where the method made its own mask; extras such
    as ``vote``), every per-slice value under its name (``pred_score``, ``pred_label``, extras such as ``t_e``),
    and for volumes the largest slice score and label under ``volume_score`` / ``volume_label``.

    Args:
        keys: the packed output (``"pred"``).
        volume_keys: ``{per-slice key: volume key}`` reductions by the maximum over slices.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        volume_keys: Mapping[str, str] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.volume_keys = (
            dict(volume_keys) if volume_keys is not None else {PRED_SCORE: "volume_score", PRED_LABEL: "volume_label"}
        )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            packed = d[key]
            if not isinstance(packed, torch.Tensor):
                raise TypeError(f"SplitAnomalyOutputd: {key!r} must be a tensor, got {type(packed).__name__}")
            names = channel_names(packed, channel_dim=0)
            values = slice_values(packed)
            for i, name in enumerate(names):
                part = packed[i : i + 1]
                if isinstance(part, MetaTensor):
                    part.meta.pop(CHANNELS_META_KEY, None)
                    part.meta.pop(VALUES_META_KEY, None)
                d[key if i == 0 else name] = part
            for name, v in values.items():
                d[name] = v
                if name in self.volume_keys:
                    d[self.volume_keys[name]] = volume_score(v)
        return d


class AnomalyThresholdd(MapTransform):
    """Dictionary version of :class:`AnomalyThreshold`: writes the mask of ``keys`` under ``output_key``.

    ``threshold`` is keyword-only and has no default: each method states its own (AnoDDPM 0.5, SSS 0.3, DTU-Net
    ``"otsu"``).

    Args:
        mask_key: key of the region Otsu's threshold is computed over (the brain); ignored for a number, and the
            whole map is used when the key is absent.
        overwrite: when ``False`` and ``output_key`` already holds a mask (one the method made itself, e.g.
            AnoFPDM's Algorithm 1 or SSS's common-regions vote), that mask wins and nothing is thresholded.
        slice_axis: with ``"otsu"``, one cut per slice along this spatial axis (:class:`AnomalyThreshold`).
    """

    backend = AnomalyThreshold.backend

    def __init__(
        self,
        keys: KeysCollection = "pred",
        *,
        threshold: float | str,
        channel: int = 0,
        output_key: str = "pred_mask",
        mask_key: str | None = "brain",
        overwrite: bool = True,
        slice_axis: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key
        self.mask_key = mask_key
        self.overwrite = overwrite
        self.thresholder = AnomalyThreshold(threshold, channel, slice_axis)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        if not self.overwrite and self.output_key in d:
            return d
        mask = d.get(self.mask_key) if self.mask_key is not None else None
        for key in self.key_iterator(d):
            d[self.output_key] = self.thresholder(d[key], mask)
        return d


class _InPlaced(MapTransform):
    """Applies ``self.transform`` to every key in place."""

    transform: Dilate | KeepLargestComponents | MedianFilter | RemoveSmallComponents

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


class Dilated(_InPlaced):
    """Dictionary version of :class:`Dilate` (in place on ``keys``)."""

    backend = Dilate.backend

    def __init__(
        self,
        keys: KeysCollection = "pred_mask",
        kernel_size: int = 3,
        slice_axis: int | None = -1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = Dilate(kernel_size, slice_axis)


class KeepLargestComponentsd(_InPlaced):
    """Dictionary version of :class:`KeepLargestComponents` (in place on ``keys``)."""

    backend = KeepLargestComponents.backend

    def __init__(
        self,
        keys: KeysCollection = "pred_mask",
        num_components: int = 1,
        slice_axis: int | None = -1,
        connectivity: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = KeepLargestComponents(num_components, slice_axis, connectivity)


class MedianFilterd(_InPlaced):
    """Dictionary version of :class:`MedianFilter` (in place on ``keys``; every channel is filtered)."""

    backend = MedianFilter.backend

    def __init__(
        self,
        keys: KeysCollection = "pred",
        kernel_size: int = 5,
        slice_axis: int | None = -1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = MedianFilter(kernel_size, slice_axis)


class BrainErosionMaskd(MapTransform):
    """Dictionary version of :class:`BrainErosionMask`: zero ``keys`` (the map) outside the eroded ``brain_key``.

    The brain mask under ``brain_key`` is not changed (evaluation still counts every brain pixel).
    """

    backend = BrainErosionMask.backend

    def __init__(
        self,
        keys: KeysCollection = "pred",
        brain_key: str = "brain",
        iterations: int = 3,
        slice_axis: int | None = -1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.brain_key = brain_key
        self.transform = BrainErosionMask(iterations, slice_axis)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        if self.brain_key not in d:
            raise KeyError(f"BrainErosionMaskd: brain mask key {self.brain_key!r} not in the data (keys: {list(d)})")
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], d[self.brain_key])
        return d


class RemoveSmallComponentsd(_InPlaced):
    """Dictionary version of :class:`RemoveSmallComponents` (in place on ``keys``)."""

    backend = RemoveSmallComponents.backend

    def __init__(
        self,
        keys: KeysCollection = "pred_mask",
        max_size: int = 40,
        slice_axis: int | None = None,
        connectivity: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = RemoveSmallComponents(max_size, slice_axis, connectivity)


class AnomalyScored(MapTransform):
    """Dictionary version of :class:`AnomalyScore`.

    Writes the per-slice scores of ``keys`` under ``output_key`` and their maximum (:func:`volume_score`) under
    ``volume_key`` (skipped when ``None``). Both are plain tensors, not spatial images.

    Args:
        brain_key: key of the brain mask ``(1, *spatial)``; ``None`` scores every pixel. A missing brain key is an
            error (scoring the background silently would change the numbers).
        overwrite: when ``False`` and ``output_key`` already holds scores (the method's own, e.g. AnoFPDM's
            ``1 - cos``), those win and nothing is computed.
    """

    backend = AnomalyScore.backend

    def __init__(
        self,
        keys: KeysCollection = "pred",
        brain_key: str | None = "brain",
        output_key: str = "pred_score",
        volume_key: str | None = "volume_score",
        reduction: str = "quantile",
        q: float = 0.99,
        slice_axis: int = -1,
        channel: int = 0,
        overwrite: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.brain_key = brain_key
        self.output_key = output_key
        self.volume_key = volume_key
        self.overwrite = overwrite
        self.scorer = AnomalyScore(reduction, q, slice_axis, channel)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        if not self.overwrite and self.output_key in d:
            return d
        for key in self.key_iterator(d):
            if self.brain_key is not None and self.brain_key not in d:
                raise KeyError(f"AnomalyScored: brain mask key {self.brain_key!r} not in the data (keys: {list(d)})")
            brain = None if self.brain_key is None else d[self.brain_key]
            d[self.output_key] = self.scorer(d[key], brain)
            if self.volume_key:
                d[self.volume_key] = volume_score(d[self.output_key])
        return d


SplitAnomalyOutputD = SplitAnomalyOutputDict = SplitAnomalyOutputd
AnomalyThresholdD = AnomalyThresholdDict = AnomalyThresholdd
DilateD = DilateDict = Dilated
KeepLargestComponentsD = KeepLargestComponentsDict = KeepLargestComponentsd
MedianFilterD = MedianFilterDict = MedianFilterd
BrainErosionMaskD = BrainErosionMaskDict = BrainErosionMaskd
RemoveSmallComponentsD = RemoveSmallComponentsDict = RemoveSmallComponentsd
AnomalyScoreD = AnomalyScoreDict = AnomalyScored
