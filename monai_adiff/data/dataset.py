# SPDX-License-Identifier: Apache-2.0
"""A 2D dataset of axial brain slices, prepared once per volume and cached in memory.

MONAI's ``CacheDataset`` caches whole volumes and ``RandSpatialCropSamplesd`` draws random slices from them, which
can neither restrict training to *tumour-free brain* slices nor give each slice its image-level label. This dataset
runs the volume chain (:func:`monai_adiff.transforms.volume_preprocessing`) once per case, keeps the selected slices
as one contiguous tensor, and serves them as dicts, so an epoch never re-reads a NIfTI file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from monai.transforms import Compose
from torch.utils.data import Dataset
from tqdm import tqdm

from monai_adiff.data.datalist import with_image_key
from monai_adiff.errors import InputError, find_input_error

__all__ = ["BrainSliceDataset", "SELECTIONS"]

logger = logging.getLogger(__name__)

SELECTIONS = ("healthy", "unhealthy", "brain", "all")


class BrainSliceDataset(Dataset):
    """Axial slices of brain volumes for 2D diffusion models.

    Args:
        data: datalist items (per-modality keys and/or ``image``, optional ``label``, ``case``).
        volume_transform: the volume chain (a ``Compose`` or a list of transforms), normally
            :func:`~monai_adiff.transforms.volume_preprocessing`; its output must hold ``image`` (C, H, W, S),
            ``brain_slices`` (S,) and, when labelled, ``label`` and ``slice_label``.
        selection: which slices to keep: ``"healthy"`` tumour-free brain slices (unsupervised training),
            ``"unhealthy"`` brain slices with tumour, ``"brain"`` all brain slices with their image-level labels
            (weakly supervised training, evaluation), ``"all"`` every slice. A case with neither a segmentation nor
            slice labels has unknown labels: only ``"all"`` keeps it (a tumour slice must never be taken as
            healthy), unless ``unlabelled_as_healthy``.
        modalities: when given, ``image`` is made from these per-modality keys of each item (in order).
        transform: per-slice transform applied on every access (augmentation), gets and returns the slice dict.
        image_key, label_key, brain_key: keys of the volume chain's output.
        slice_labels_key: datalist key of per-slice image-level labels (RAS axial order), used when a case has no
            segmentation (weak supervision and AnoFPDM's label-free calibration need only these).
        cache_dtype: dtype of the cached images (``"float16"`` halves the memory of large sets).
        unlabelled_as_healthy: count every slice of a case without labels as tumour-free (for scans known to be
            healthy; say so explicitly, or give the datalist slice labels).
        progress: show a progress bar while preparing the volumes (``None``: only on a terminal).

    Each item is a dict: ``image`` (C, H, W) float32, ``brain`` (1, H, W) float32 0/1, ``label`` (1, H, W) float32
    0/1 (zeros when the case has no segmentation), ``slice_label`` (int64 scalar), ``case`` (str), ``slice`` (int,
    axial index in RAS). Bad cases (:class:`~monai_adiff.errors.InputError`) are logged, listed in
    ``errors`` and skipped.
    """

    def __init__(
        self,
        data: Sequence[dict],
        volume_transform: Callable | Sequence[Callable],
        selection: str = "healthy",
        modalities: Sequence[str] | None = None,
        transform: Callable | None = None,
        image_key: str = "image",
        label_key: str = "label",
        brain_key: str = "brain",
        slice_labels_key: str = "slice_labels",
        cache_dtype: str | torch.dtype = "float32",
        progress: bool | None = None,
        unlabelled_as_healthy: bool = False,
    ) -> None:
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        self.selection = selection
        self.transform = transform
        self.image_key, self.label_key, self.brain_key = image_key, label_key, brain_key
        self.slice_labels_key = slice_labels_key
        self.unlabelled_as_healthy = bool(unlabelled_as_healthy)
        self.unlabelled: list[str] = []  # cases left out because their labels are unknown
        if not callable(volume_transform):
            volume_transform = Compose(list(volume_transform))
        items = with_image_key(data, modalities, image_key) if modalities else list(data)
        dtype = getattr(torch, cache_dtype) if isinstance(cache_dtype, str) else cache_dtype

        images, labels, brains, slice_labels, cases, indices = [], [], [], [], [], []
        self.errors: list[InputError] = []
        self.table: list[dict] = []  # every slice of every prepared case, selected or not
        for item in tqdm(
            items, desc="preparing slices", disable=None if progress is None else not progress, leave=False
        ):
            try:
                d = volume_transform(dict(item))
            except Exception as e:  # a bad case is skipped with its reason; anything else is a bug
                err = find_input_error(e)
                if err is None:
                    raise
                self.errors.append(err)
                logger.error("skipping case %s: %s", item.get("case"), err)
                continue
            keep, table = self._select(d, item)
            self.table += table
            if not keep.any():
                continue
            image = torch.as_tensor(d[image_key]).as_subclass(torch.Tensor)
            images.append(image[..., keep].permute(3, 0, 1, 2).to(dtype))
            brain = d.get(brain_key)
            brain = torch.ones_like(image[:1], dtype=torch.bool) if brain is None else torch.as_tensor(brain) > 0
            brains.append(brain.as_subclass(torch.Tensor)[..., keep].permute(3, 0, 1, 2))
            label = d.get(label_key)
            label = torch.zeros_like(image[:1], dtype=torch.bool) if label is None else torch.as_tensor(label) > 0
            labels.append(label.as_subclass(torch.Tensor)[..., keep].permute(3, 0, 1, 2))
            sl = torch.as_tensor(d.get("slice_label", torch.zeros(keep.shape[0], dtype=torch.long)))
            slice_labels.append(sl[keep].long())
            idx = torch.nonzero(keep).flatten()
            indices.append(idx)
            cases += [str(item.get("case", ""))] * len(idx)
        if not images and items:
            raise InputError(None, f"no '{selection}' slice found in {len(items)} case(s) ({len(self.errors)} bad)")
        if not images:  # no cases at all (e.g. an empty validation split): an empty dataset, not an error
            self.images = torch.zeros(0, 1, 1, 1, dtype=dtype)
            self.brains = self.labels = torch.zeros(0, 1, 1, 1, dtype=torch.bool)
            self.slice_labels = self.slice_indices = torch.zeros(0, dtype=torch.long)
            self.cases = []
            return
        self.images = torch.cat(images)
        self.brains = torch.cat(brains)
        self.labels = torch.cat(labels)
        self.slice_labels = torch.cat(slice_labels)
        self.slice_indices = torch.cat(indices)
        self.cases = cases

    def _select(self, d: dict, item: dict) -> tuple[torch.Tensor, list[dict]]:
        if "brain_slices" not in d:
            raise KeyError("the volume transform must add 'brain_slices' (BrainSliceSelectiond)")
        brain = torch.as_tensor(d["brain_slices"]).bool()
        has_label = "slice_label" in d
        if has_label:
            label = torch.as_tensor(d["slice_label"]).long()
        elif item.get(self.slice_labels_key) is not None:  # image-level labels only, no segmentation
            label = torch.as_tensor(item[self.slice_labels_key]).long().flatten()
            if label.shape != brain.shape:
                raise InputError(
                    item.get("case"),
                    f"'{self.slice_labels_key}' has {label.numel()} entries for " f"{brain.numel()} axial slices",
                )
            d["slice_label"], has_label = label, True
        else:
            label = torch.zeros_like(brain, dtype=torch.long)
        keep = {
            "healthy": brain & (label == 0),
            "unhealthy": brain & (label == 1),
            "brain": brain,
            "all": torch.ones_like(brain),
        }[self.selection]
        if not has_label and not self.unlabelled_as_healthy and self.selection != "all":
            self.unlabelled.append(str(item.get("case", "")))
            logger.warning(
                "case %s has no segmentation and no slice labels: left out (its tumour slices would be taken as "
                "healthy)",
                item.get("case"),
            )
            keep = torch.zeros_like(keep)
        area = d.get("brain_area")
        tumour = d.get("tumour_area")
        table = [
            {
                "case": str(item.get("case", "")),
                "slice": k,
                "brain_area": None if area is None else int(area[k]),
                "tumour_area": None if tumour is None else int(tumour[k]),
                "brain": bool(brain[k]),
                "label": int(label[k]) if has_label else None,
                "selected": bool(keep[k]),
            }
            for k in range(brain.shape[0])
        ]
        return keep, table

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict:
        d = {
            "image": self.images[index].float(),
            "brain": self.brains[index].float(),
            "label": self.labels[index].float(),
            "slice_label": self.slice_labels[index],
            "case": self.cases[index],
            "slice": int(self.slice_indices[index]),
        }
        return self.transform(d) if self.transform is not None else d
