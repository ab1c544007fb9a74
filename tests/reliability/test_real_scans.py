# SPDX-License-Identifier: Apache-2.0
"""A real BraTS case and its z-scored copy (background -1.5, as intensity-standardised public datasets store it)
score alike: map AUPRC within 0.02 and masks with Dice >= 0.95 against each other. Skips without the dev data."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch
from monai.transforms import Compose

from monai_adiff.metrics.functional import average_precision, dice_score
from monai_adiff.transforms import volume_preprocessing
from tests.reliability.test_corpus import infer


def _zscore(path, out):
    img = nib.load(str(path))
    x = np.asarray(img.dataobj, dtype=np.float32)
    brain = x != 0
    z = np.full(x.shape, -1.5, np.float32)
    z[brain] = (x[brain] - x[brain].mean()) / x[brain].std()
    out.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(z, img.affine), str(out))
    return out, brain


def test_z_scored_copy_of_a_dev_case_scores_like_the_original(brats_root, tmp_path, tiny_ckpt):
    case = sorted(p for p in brats_root.iterdir() if p.is_dir())[0]
    flair = case / f"{case.name}_flair.nii.gz"
    seg = np.asarray(nib.load(str(case / f"{case.name}_seg.nii.gz")).dataobj) > 0
    zpath, brain = _zscore(flair, tmp_path / "z" / f"{case.name}_flair.nii.gz")
    # the FLAIR-intensity baseline the evaluation computes: the same AUPRC on both
    pre = Compose(volume_preprocessing(spatial_size=None, num_channels=1, baseline_key="baseline"))
    aps = []
    for p in (flair, zpath):
        d = pre({"image": str(p), "label": str(case / f"{case.name}_seg.nii.gz")})
        aps.append(average_precision(d["baseline"][d["brain"]], d["label"][d["brain"]]))
    prevalence = float(seg[brain].mean())
    assert abs(aps[0] - aps[1]) < 0.02 and aps[0] > 3 * prevalence, (aps, prevalence)
    # the method's map and mask (a tiny SSS network), on the input grid: threshold = 0.95 brain quantile of the
    # original's map, so the masks are not trivially empty or full
    code, err, dest = infer(tmp_path, tiny_ckpt, flair, out="o0")
    assert code == 0, err
    ref = np.asarray(nib.load(str(dest / f"{case.name}_anomaly_map.nii.gz")).dataobj)
    thr = float(np.quantile(ref[brain], 0.95))
    maps, masks = [], []
    for name, p in (("o1", flair), ("o2", zpath)):
        code, err, dest = infer(tmp_path, tiny_ckpt, p, out=name, extra=["--set", f"threshold={thr}"])
        assert code == 0, err
        maps.append(np.asarray(nib.load(str(dest / f"{case.name}_anomaly_map.nii.gz")).dataobj))
        masks.append(np.asarray(nib.load(str(dest / f"{case.name}_anomaly_mask.nii.gz")).dataobj))
    ap = [average_precision(torch.as_tensor(m[brain]), torch.as_tensor(seg[brain])) for m in maps]
    assert abs(ap[0] - ap[1]) < 0.02, ap
    assert masks[0].sum() > 1000 and dice_score(masks[0] > 0, masks[1] > 0) >= 0.95
