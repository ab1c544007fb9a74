# SPDX-License-Identifier: Apache-2.0
"""What a user hands to ``monai-adiff infer``, turned into datalist items: volume files (NIfTI, NRRD, MetaImage),
folders of one DICOM series, BraTS-style case folders, folders of case folders, and flat folders of
``<case>_<modality>`` files; plus a warning for voxel sizes far from those the models were trained on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np

from monai_adiff.data.datalist import BRATS_MODALITIES, case_id_from_path, scan_brats_folder, with_image_key
from monai_adiff.data.io import VOLUME_SUFFIXES, is_dicom_folder, strip_volume_suffix, volume_geometry
from monai_adiff.errors import InputError

__all__ = ["collect_inputs", "voxel_size_warnings", "MAX_SLICE_MM", "MAX_INPLANE_MM"]

#: slices thicker than this (mm) are far from the 1 mm scans the models learn from
MAX_SLICE_MM = 6.0
#: in-plane voxels larger than this (mm), likewise
MAX_INPLANE_MM = 2.0


def _volume_item(path: str) -> dict:
    """An item for one volume (file or DICOM folder), with ``<case>_brainmask`` beside it when there is one."""
    path = os.path.abspath(path)
    case = case_id_from_path(path)
    item = {"case": case, "image": path}
    for ext in VOLUME_SUFFIXES:
        mask = os.path.join(os.path.dirname(path), f"{case}_brainmask{ext}")
        if os.path.isfile(mask) and mask != path:
            item["brainmask"] = mask
            break
    return item


def _is_case(path: str) -> bool:
    name = os.path.basename(os.path.abspath(path))
    return any(f.startswith(name + "_") and f.lower().endswith(VOLUME_SUFFIXES) for f in os.listdir(path))


def _flat_folder(folder: str, modalities: Sequence[str]) -> tuple[list[dict], list[InputError]]:
    """Items of a folder of ``<case>_<modality>.<ext>`` files (no case sub-folders)."""
    cases: dict[str, dict] = {}
    for name in sorted(os.listdir(folder)):
        stem = strip_volume_suffix(name)
        if stem == name:
            continue
        for m in (*BRATS_MODALITIES, "seg", "brainmask"):
            if stem.endswith("_" + m):
                key = "label" if m == "seg" else m
                cases.setdefault(stem[: -len(m) - 1], {})[key] = os.path.join(folder, name)
    if not any(m in files for files in cases.values() for m in modalities):
        raise InputError(
            folder,
            f"holds no case folders and no <case>_{modalities[0]} volume files; pass volume files, case folders or "
            "a folder of either",
        )
    items, errors = [], []
    for case, files in cases.items():
        missing = [m for m in modalities if m not in files]
        if missing:
            errors.append(InputError(folder, f"case {case} has no {missing[0]} file ({case}_{missing[0]}.nii.gz)"))
        else:
            items.append({"case": case, **files})
    return with_image_key(items, modalities), errors


def collect_inputs(paths: Sequence[str], modalities: Sequence[str]) -> tuple[list[dict], list[InputError]]:
    """Datalist items (``case``, ``image``, optional ``brainmask``) for the given inputs, and the cases that cannot
    be used (each an :class:`InputError`).

    Raises:
        InputError: an input that cannot be used at all (a single-modality file for a bundle that needs several, a
            folder with nothing usable in it).
    """
    items: list[dict] = []
    failed: list[InputError] = []
    for path in paths:
        if os.path.isdir(path) and is_dicom_folder(path) or not os.path.isdir(path):
            if len(modalities) != 1:
                raise InputError(
                    path, f"this bundle needs {len(modalities)} modalities {list(modalities)}: give case folders"
                )
            items.append(_volume_item(path))
            continue
        subfolders = [e for e in os.scandir(path) if e.is_dir() and not e.name.startswith(".")]
        if not _is_case(path) and not subfolders:
            found, errors = _flat_folder(path, modalities)
            items += found
            failed += errors
            continue
        wanted = [m for m in BRATS_MODALITIES if m in modalities]
        root = os.path.dirname(os.path.abspath(path)) if _is_case(path) else path
        found, errors = scan_brats_folder(root, wanted, validate=False)
        if _is_case(path):
            case = os.path.basename(os.path.abspath(path))
            found = [it for it in found if it["case"] == case]
            errors = [e for e in errors if e.path and os.path.basename(e.path.rstrip(os.sep)) == case]
        failed += errors
        items += with_image_key(found, modalities)
    return items, failed


def voxel_size_warnings(items: Sequence[dict]) -> list[str]:
    """One line per input whose voxels are far from the 1 mm scans the models learn from (slices thicker than
    :data:`MAX_SLICE_MM`, in-plane voxels above :data:`MAX_INPLANE_MM`); unreadable inputs are left to the checks."""
    out = []
    for it in items:
        image = it["image"][0] if isinstance(it["image"], (list, tuple)) else it["image"]
        try:
            _, affine = volume_geometry(image)
        except InputError:
            continue
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        codes = nib.aff2axcodes(affine)
        axial = next((i for i, c in enumerate(codes) if c in ("S", "I")), 2)
        thick = float(spacing[axial])
        inplane = float(max(s for i, s in enumerate(spacing) if i != axial))
        if thick > MAX_SLICE_MM or inplane > MAX_INPLANE_MM:
            size = " x ".join(f"{s:.2g}" for s in spacing)
            out.append(
                f"warning: {image}: voxels of {size} mm (axial slices {thick:.2g} mm, in-plane {inplane:.2g} mm) are "
                "far from the 1 mm scans the models learn from; expect a poorer map"
            )
    return out
