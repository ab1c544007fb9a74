# SPDX-License-Identifier: Apache-2.0
"""The per-slice table of a dataset: for every axial slice (RAS, index 0 = inferior) its brain area, tumour area,
brain-slice flag and image-level label. It decides which slices train an unsupervised model (tumour-free brain
slices) or a weakly supervised one (all brain slices with their labels)."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence

import numpy as np

from monai_adiff.data.io import ras_axial, read_volume
from monai_adiff.errors import InputError
from monai_adiff.transforms.intensity.array import StandardizeBackground
from monai_adiff.transforms.slices.array import BrainMask, BrainSliceSelection, SliceLabel, slice_areas

__all__ = ["SLICE_TABLE_FIELDS", "case_slice_table", "build_slice_table", "summarize_slice_table", "table_to_csv"]

logger = logging.getLogger(__name__)

SLICE_TABLE_FIELDS = ("case", "slice", "brain_area", "tumour_area", "brain", "label")


def case_slice_table(
    item: dict, modalities: Sequence[str], min_brain_fraction: float = 0.1, label_key: str = "label"
) -> list[dict]:
    """Slice table of one case, computed from its NIfTI files at their native resolution.

    A voxel is brain when any of ``modalities`` differs from its background (0 for BraTS files; see
    :class:`~monai_adiff.transforms.StandardizeBackground`), or where the item's ``brainmask`` says so; a slice is
    a brain slice when its brain area exceeds ``min_brain_fraction`` of the largest slice's; its label is 1 when the
    segmentation has any voxel > 0.
    Without a segmentation, ``tumour_area`` and ``label`` are ``None``.
    """
    stack = []
    for m in modalities:
        if m not in item:
            raise InputError(item.get("case"), f"missing modality '{m}'")
        data, affine = read_volume(item[m])
        stack.append(ras_axial(data, affine)[0])
    shapes = {a.shape for a in stack}
    if len(shapes) != 1:
        raise InputError(item.get("case"), f"modalities have different shapes {sorted(shapes)}")
    mask = None
    if item.get("brainmask"):
        mask_data, mask_affine = read_volume(item["brainmask"], require_foreground=True)
        mask = ras_axial(mask_data, mask_affine)[0]
    try:
        image = StandardizeBackground()(np.stack(stack), mask)
    except InputError as e:  # name the case's files, not an in-memory array
        raise InputError(e.path or item.get("brainmask") or item[modalities[0]], e.problem) from e
    brain = BrainSliceSelection(min_brain_fraction)(image).numpy()
    area = slice_areas(BrainMask()(image)).numpy()
    tumour = label = None
    if item.get(label_key):
        seg, seg_affine = read_volume(item[label_key], require_foreground=False)
        seg = ras_axial(seg, seg_affine)[0]
        if seg.shape != image.shape[1:]:
            raise InputError(item[label_key], f"label shape {seg.shape} does not match image shape {image.shape[1:]}")
        tumour = slice_areas(seg[None] > 0).numpy()
        label = SliceLabel()(seg[None]).numpy()
    case = item.get("case", "")
    return [
        {
            "case": case,
            "slice": k,
            "brain_area": int(area[k]),
            "tumour_area": None if tumour is None else int(tumour[k]),
            "brain": bool(brain[k]),
            "label": None if label is None else int(label[k]),
        }
        for k in range(image.shape[-1])
    ]


def build_slice_table(
    items: Sequence[dict], modalities: Sequence[str], min_brain_fraction: float = 0.1, label_key: str = "label"
) -> tuple[list[dict], list[InputError]]:
    """Slice tables of many cases; a bad case is reported and skipped. Returns ``(rows, errors)``."""
    rows, errors = [], []
    for item in items:
        try:
            rows += case_slice_table(item, modalities, min_brain_fraction, label_key)
        except InputError as e:  # returned, for the caller to report once
            errors.append(e)
    return rows, errors


def summarize_slice_table(rows: Sequence[dict]) -> dict[str, dict]:
    """Per-case counts: ``slices``, ``brain_slices``, ``tumour_slices`` (brain or not), ``healthy_brain_slices``
    (brain slices without tumour, the unsupervised training set) and ``unhealthy_brain_slices``; the last three are
    ``None`` for a case without labels (unknown, not zero)."""
    out: dict[str, dict] = {}
    for r in rows:
        c = out.setdefault(
            r["case"],
            {
                "slices": 0,
                "brain_slices": 0,
                "tumour_slices": 0,
                "healthy_brain_slices": 0,
                "unhealthy_brain_slices": 0,
            },
        )
        c["slices"] += 1
        c["brain_slices"] += int(r["brain"])
        if r["label"] is None:
            c["tumour_slices"] = c["healthy_brain_slices"] = c["unhealthy_brain_slices"] = None
            continue
        c["tumour_slices"] += int(r["label"] == 1)
        c["healthy_brain_slices"] += int(r["brain"] and r["label"] == 0)
        c["unhealthy_brain_slices"] += int(r["brain"] and r["label"] == 1)
    return out


def table_to_csv(rows: Sequence[dict]) -> str:
    """The slice table as CSV text."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SLICE_TABLE_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if r[k] is None else r[k] for k in SLICE_TABLE_FIELDS})
    return buf.getvalue()
