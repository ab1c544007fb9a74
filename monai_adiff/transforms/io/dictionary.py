# SPDX-License-Identifier: Apache-2.0
"""Dictionary versions of :mod:`monai_adiff.transforms.io.array`."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import cast

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import LoadImage, MapTransform, SaveImaged
from monai.utils import ensure_tuple_rep

from monai_adiff.errors import InputError
from monai_adiff.transforms.io.array import SaveNifti, input_files, save_overlay_png

__all__ = [
    "LoadOptionalImaged",
    "LoadOptionalImageD",
    "LoadOptionalImageDict",
    "SaveNiftid",
    "SaveNiftiD",
    "SaveNiftiDict",
    "SaveOverlayd",
    "SaveOverlayD",
    "SaveOverlayDict",
    "case_name",
    "pending_cases",
]


class LoadOptionalImaged(MapTransform):
    """Load the optional images of a data dict (a segmentation, a brain mask) when their keys are there.

    MONAI's ``LoadImaged(allow_missing_keys=True)`` does the same, but MONAI Label replaces every ``LoadImaged`` of a
    bundle's preprocessing with its own loader, which requires every key: a request without a segmentation then fails.
    Values that are already arrays pass through; absent keys and ``None`` are skipped.

    Args:
        keys: keys of the optional image paths.
        ensure_channel_first, image_only, reader: as ``monai.transforms.LoadImage``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        ensure_channel_first: bool = True,
        image_only: bool = True,
        reader: str | None = None,
    ) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.loader = LoadImage(reader=reader, image_only=image_only, ensure_channel_first=ensure_channel_first)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            if isinstance(value, (str, os.PathLike, list, tuple)):
                d[key] = self.loader(value)
            elif value is None:
                del d[key]
        return d


LoadOptionalImageD = LoadOptionalImageDict = LoadOptionalImaged


def case_name(d: Mapping, case_key: str = "case", image_key: str = "image") -> str:
    """The case id of a data dict: ``d[case_key]``, else the image file name without extension and modality."""
    case = d.get(case_key)
    if isinstance(case, (list, tuple)):
        case = case[0] if case else None
    if case:
        return str(case)
    files = input_files(d.get(image_key))
    if not files:
        raise InputError(None, f"cannot name the outputs: no '{case_key}' and no source file in '{image_key}'")
    name = os.path.basename(files[0])
    for ext in (".nii.gz", ".nii", ".mha", ".nrrd"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def pending_cases(
    data: Sequence[Mapping],
    output_dir: str,
    postfixes: Sequence[str] = ("anomaly_map", "anomaly_mask"),
    case_key: str = "case",
    image_key: str = "image",
) -> list[Mapping]:
    """The cases of ``data`` whose outputs (``<output_dir>/<case>_<postfix>.nii.gz`` for every postfix) are not all
    written yet: what a restarted inference still has to do. :class:`SaveNiftid` writes each file atomically, so a
    file that exists is complete."""

    def done(d: Mapping) -> bool:
        case = case_name(d, case_key, image_key)
        return all(os.path.isfile(os.path.join(output_dir, f"{case}_{p}.nii.gz")) for p in postfixes)

    return [d for d in data if not done(d)]


class _HostFilteredWriter(SaveImaged):
    """Marks a writer as a ``SaveImaged`` without sharing its behaviour (``__init__`` skips ``SaveImaged``'s).

    Hosts that write a bundle's prediction themselves drop every ``SaveImaged`` from its post-processing: MONAI
    Label's bundle task does (``post_filter=[SaveImaged]``), so a request writes nothing into the bundle folder. Our
    writers cannot be ``SaveImaged`` itself: they write atomically, protect the input files and name the outputs per
    case (NIfTI), or draw a PNG.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)


class SaveNiftid(_HostFilteredWriter):
    """Write ``keys`` as ``<output_dir>/<case>_<postfix>.nii.gz`` (e.g. ``_anomaly_map``, ``_anomaly_mask``).

    Use after ``Invertd`` so the volumes are back on the input's grid with its affine. The input files (from the
    image's metadata) are never overwritten, and an ``output_dir`` that is an input file's folder is refused. A
    ``SaveImaged`` for type checks only, so MONAI Label leaves it out (it returns the prediction itself).

    Args:
        keys: keys to write.
        output_dir: output folder.
        postfix: file postfix per key.
        dtype: numpy dtype per key.
        channel: channel to write per key (``None``: all channels).
        case_key: key holding the case id (falls back to the image file name).
        image_key: key of the input image (its source files are protected).
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str,
        postfix: str | Sequence[str] = ("anomaly_map", "anomaly_mask"),
        dtype: str | Sequence[str] = ("float32", "uint8"),
        channel: int | None | Sequence[int | None] = 0,
        case_key: str = "case",
        image_key: str = "image",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        n = len(self.keys)
        self.postfix = ensure_tuple_rep(postfix, n)
        dtypes = ensure_tuple_rep(dtype, n)
        channels = ensure_tuple_rep(channel, n)
        self.output_dir = output_dir
        self.savers = [SaveNifti(output_dir, channel=c, dtype=t) for c, t in zip(channels, dtypes)]
        self.case_key, self.image_key = case_key, image_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        inputs = input_files(d.get(self.image_key))
        out_dir = os.path.realpath(self.output_dir)
        if any(os.path.dirname(f) == out_dir for f in inputs):
            raise InputError(self.output_dir, "output folder is the input folder; choose another one")
        name = case_name(d, self.case_key, self.image_key)
        for key, postfix, saver in zip(self.key_iterator(d), self.postfix, self.savers):
            saver(d[key], f"{name}_{postfix}", protect=inputs)
        return d


class SaveOverlayd(_HostFilteredWriter):
    """Write ``<output_dir>/<case>_overlay.png`` showing the most anomalous axial slices (model resolution).

    A ``SaveImaged`` for type checks only, so MONAI Label leaves it out.

    Args:
        keys: the prediction key (channel 0 = map).
        output_dir: output folder.
        image_key, mask_key, label_key, score_key: keys of the image (channel 0 shown), predicted mask, ground truth
            and per-slice scores; missing ones are skipped.
        brain_slices_key: per-slice brain flags; when present, only brain slices are candidates.
        num_slices: how many slices to show.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str,
        image_key: str = "image",
        mask_key: str = "pred_mask",
        label_key: str = "label",
        score_key: str = "pred_score",
        case_key: str = "case",
        brain_slices_key: str = "brain_slices",
        num_slices: int = 3,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir = output_dir
        self.image_key, self.mask_key, self.label_key, self.score_key = image_key, mask_key, label_key, score_key
        self.case_key = case_key
        self.brain_slices_key = brain_slices_key
        self.num_slices = num_slices

    @staticmethod
    def _np(x) -> np.ndarray | None:
        return None if x is None else torch.as_tensor(x).detach().cpu().float().numpy()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        name = case_name(d, self.case_key, self.image_key)
        for key in self.key_iterator(d):
            amap = cast(np.ndarray, self._np(d[key]))[0]
            if amap.ndim != 3:  # 2D predictions: nothing to choose slices from
                continue
            mask, label = self._np(d.get(self.mask_key)), self._np(d.get(self.label_key))
            scores = self._np(d.get(self.score_key))
            if scores is None:
                scores = amap.reshape(-1, amap.shape[-1]).max(0)
            if self.brain_slices_key in d:  # show brain slices only, not the tips of the volume
                scores = scores * self._np(d[self.brain_slices_key])
            save_overlay_png(
                os.path.join(self.output_dir, f"{name}_overlay.png"),
                cast(np.ndarray, self._np(d[self.image_key]))[0],
                amap,
                None if mask is None else mask[0],
                None if label is None else label[0],
                scores,
                self.num_slices,
                title=name,
            )
        return d


SaveNiftiD = SaveNiftiDict = SaveNiftid
SaveOverlayD = SaveOverlayDict = SaveOverlayd
