# SPDX-License-Identifier: Apache-2.0
"""Slice counts of our table on real BraTS 2018 cases, against counts made directly with nibabel here."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from monai_adiff.data import case_slice_table, scan_brats_folder, summarize_slice_table

MODALITIES = ("flair", "t1", "t1ce", "t2")


def _direct_counts(case_dir, case, min_fraction=0.1):
    imgs = [nib.load(str(case_dir / f"{case}_{m}.nii.gz")) for m in MODALITIES]
    # BraTS volumes store axial slices on the third axis with superior pointing up: no reorientation needed
    assert nib.aff2axcodes(imgs[0].affine)[2] == "S"
    brain = np.zeros(imgs[0].shape, bool)
    for img in imgs:
        brain |= np.asarray(img.dataobj) > 0
    area = brain.sum(axis=(0, 1))
    brain_slice = (area > min_fraction * area.max()) & (area > 0)
    tumour = (np.asarray(nib.load(str(case_dir / f"{case}_seg.nii.gz")).dataobj) > 0).any(axis=(0, 1))
    return int(tumour.sum()), int((brain_slice & ~tumour).sum())


def test_slice_counts_match_nibabel(brats_root):
    items, errors = scan_brats_folder(brats_root, MODALITIES, validate=False)
    assert not errors and len(items) >= 1
    for item in items[:2]:
        case = item["case"]
        rows = case_slice_table(item, MODALITIES, min_brain_fraction=0.1)
        s = summarize_slice_table(rows)[case]
        tumour, healthy_brain = _direct_counts(brats_root / case, case)
        assert (s["tumour_slices"], s["healthy_brain_slices"]) == (tumour, healthy_brain), case
        # the dataset README's ranges
        assert 40 <= tumour <= 90 and 50 <= healthy_brain <= 95
