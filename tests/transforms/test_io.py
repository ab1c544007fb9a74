# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_adiff.data import InputError
from monai_adiff.transforms import SaveNifti, SaveNiftid, SaveOverlayd, case_name
from tests.conftest import save_nifti


def _meta(data, affine, filename):
    return MetaTensor(torch.as_tensor(data), affine=torch.as_tensor(affine), meta={"filename_or_obj": filename})


def test_save_nifti_affine_dtype_and_atomic(tmp_path):
    affine = np.array([[-2.0, 0, 0, 10], [0, -2, 0, 20], [0, 0, 3, -5], [0, 0, 0, 1]])
    x = _meta(np.random.rand(2, 4, 5, 6).astype(np.float32), affine, "/in/a_flair.nii.gz")
    path = SaveNifti(str(tmp_path), channel=1, dtype="float32")(x, "a_map")
    img = nib.load(path)
    assert path.endswith("a_map.nii.gz") and img.shape == (4, 5, 6)
    np.testing.assert_allclose(img.affine, affine)
    np.testing.assert_allclose(np.asarray(img.dataobj), x[1].numpy())
    assert int(img.header["sform_code"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a_map.nii.gz"]  # no temporary left behind


def test_save_refuses_to_overwrite_input(tmp_path):
    src = tmp_path / "case_anomaly_map.nii.gz"
    src.write_bytes(b"input")
    x = _meta(np.zeros((1, 2, 2, 2), np.float32), np.eye(4), str(src))
    with pytest.raises(InputError, match="refusing to overwrite an input"):
        SaveNifti(str(tmp_path))(x, "case_anomaly_map", protect=[str(src)])
    d = {"image": _meta(np.ones((1, 2, 2, 2)), np.eye(4), str(tmp_path / "case_flair.nii.gz")), "pred": x}
    with pytest.raises(InputError, match="output folder is the input folder"):
        SaveNiftid(keys="pred", output_dir=str(tmp_path), postfix="anomaly_map", dtype="float32")(d)
    assert src.read_bytes() == b"input"


def test_save_niftid_names_and_masks(tmp_path):
    img = _meta(np.ones((1, 3, 3, 2)), np.eye(4), "/data/Brats_X/Brats_X_flair.nii.gz")
    d = {
        "image": img,
        "case": "Brats_X",
        "pred": _meta(np.random.rand(2, 3, 3, 2), np.eye(4), None),
        "pred_mask": _meta(np.ones((1, 3, 3, 2)), np.eye(4), None),
    }
    SaveNiftid(keys=["pred", "pred_mask"], output_dir=str(tmp_path))(d)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Brats_X_anomaly_map.nii.gz", "Brats_X_anomaly_mask.nii.gz"]
    assert nib.load(tmp_path / "Brats_X_anomaly_mask.nii.gz").get_data_dtype() == np.uint8


def test_case_name_fallbacks():
    assert case_name({"case": "A"}) == "A"
    assert case_name({"case": ["B"]}) == "B"
    img = _meta(np.ones((1, 2, 2, 2)), np.eye(4), "/x/y/vol_7.nii.gz")
    assert case_name({"image": img}) == "vol_7"
    with pytest.raises(InputError):
        case_name({"image": torch.ones(1)})


def test_overlay_png(tmp_path):
    rng = np.random.default_rng(0)
    image = torch.as_tensor(rng.uniform(-1, 1, (1, 16, 16, 6)), dtype=torch.float32)
    pred = torch.zeros(1, 16, 16, 6)
    pred[0, 4:8, 4:8, 3] = 2.0
    mask = (pred > 1).float()
    d = {
        "image": image,
        "pred": pred,
        "pred_mask": mask,
        "label": mask,
        "case": "C1",
        "pred_score": pred.amax(dim=(0, 1, 2)),
    }
    SaveOverlayd(keys="pred", output_dir=str(tmp_path), num_slices=2)(d)
    png = tmp_path / "C1_overlay.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_optional_images(tmp_path):
    from monai.transforms import LoadImage

    from monai_adiff.transforms import LoadOptionalImaged

    seg = save_nifti(tmp_path / "seg.nii.gz", np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    load = LoadOptionalImaged(keys=["label", "brainmask"])
    d = load({"image": "not touched", "label": str(seg), "brainmask": None})
    assert d["image"] == "not touched" and "brainmask" not in d  # None: dropped
    np.testing.assert_array_equal(np.asarray(d["label"]), np.asarray(LoadImage(ensure_channel_first=True)(str(seg))))
    assert load({"image": 1}) == {"image": 1}  # absent keys: nothing to do
    arr = np.zeros((1, 2, 2))
    assert load({"label": arr})["label"] is arr  # already loaded: passed through


def test_preprocessing_survives_monai_labels_strict_loader(tmp_path):
    """MONAI Label replaces every ``LoadImaged`` of a bundle's preprocessing with a loader that requires all of its
    keys; a request carries only the image. The bundle's preprocessing must still run."""
    from monai.bundle import ConfigParser
    from monai.transforms import LoadImaged

    from monai_adiff.bundle import bundle_config_files

    parser = ConfigParser()
    parser.read_config(bundle_config_files("sss", "inference"))
    parser.update({"bundle_root": "unused", "spatial_size": 16})
    pre = parser.get_parsed_content("preprocessing")
    strict = [
        LoadImaged(keys=t.keys, ensure_channel_first=True, image_only=True) if isinstance(t, LoadImaged) else t
        for t in pre.transforms
    ]
    assert any(isinstance(t, LoadImaged) for t in pre.transforms)
    vol = np.zeros((20, 20, 8), np.float32)
    vol[4:16, 4:16, 1:7] = 100.0
    path = save_nifti(tmp_path / "case_flair.nii.gz", vol)
    d = {"image": str(path)}
    for t in strict:
        d = t(d)
    assert tuple(d["image"].shape) == (1, 16, 16, 8) and "label" not in d
