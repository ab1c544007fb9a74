# SPDX-License-Identifier: Apache-2.0
"""Every bad-input case gets an InputError that names the file and the problem; folder scans skip bad cases."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from monai.transforms import Compose

from monai_adiff.data import InputError, check_case, find_input_error, read_volume, scan_brats_folder, validate_items
from monai_adiff.transforms import volume_preprocessing
from tests.conftest import make_case_arrays, save_nifti, write_case


def _good(tmp_path):
    return write_case(tmp_path, "Good")


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist") as e:
        read_volume(tmp_path / "nope.nii.gz")
    assert "nope.nii.gz" in str(e.value)


def test_not_nifti(tmp_path):
    p = tmp_path / "junk.nii.gz"
    p.write_bytes(b"this is not a nifti file at all")
    with pytest.raises(InputError, match="cannot be read") as e:
        read_volume(p)
    assert str(p) in str(e.value)


def test_truncated_gzip(tmp_path):
    p = save_nifti(tmp_path / "vol.nii.gz", make_case_arrays()["flair"])
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError) as e:
        read_volume(p)
    assert str(p) in str(e.value)


@pytest.mark.parametrize("shape,dims", [((24, 24), 2), ((8, 8, 8, 3), 4)])
def test_wrong_dimensionality(tmp_path, shape, dims):
    p = save_nifti(tmp_path / "x.nii.gz", np.ones(shape, np.float32))
    with pytest.raises(InputError, match=f"expected a 3D volume, got a {dims}D") as e:
        read_volume(p)
    assert str(p) in str(e.value)


def test_trailing_singleton_is_3d(tmp_path):
    p = save_nifti(tmp_path / "x.nii.gz", np.ones((8, 8, 8, 1), np.float32))
    assert read_volume(p)[0].shape == (8, 8, 8)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(tmp_path, bad):
    a = np.ones((8, 8, 8), np.float32)
    a[1, 2, 3] = bad
    a[4, 4, 4] = bad
    p = save_nifti(tmp_path / "x.nii.gz", a)
    with pytest.raises(InputError, match="2 non-finite voxels") as e:
        read_volume(p)
    assert str(p) in str(e.value)


def test_empty_foreground(tmp_path):
    p = save_nifti(tmp_path / "x.nii.gz", np.zeros((8, 8, 8), np.int16))
    with pytest.raises(InputError, match="empty foreground") as e:
        read_volume(p)
    assert str(p) in str(e.value)
    # an empty segmentation is fine
    assert read_volume(p, require_foreground=False)[0].sum() == 0


def test_label_shape_mismatch(tmp_path):
    item = _good(tmp_path)
    save_nifti(tmp_path / "seg.nii.gz", np.zeros((24, 24, 15), np.int16))
    item["label"] = str(tmp_path / "seg.nii.gz")
    with pytest.raises(InputError, match="does not match image shape") as e:
        check_case(item, ["flair", "t1"])
    assert "seg.nii.gz" in str(e.value)


def test_modality_shape_mismatch(tmp_path):
    item = _good(tmp_path)
    item["t1"] = str(save_nifti(tmp_path / "t1.nii.gz", np.ones((20, 24, 16), np.int16)))
    with pytest.raises(InputError, match="does not match") as e:
        check_case(item, ["flair", "t1"])
    assert "t1.nii.gz" in str(e.value)


def test_missing_modality_in_folder_scan(tmp_path):
    write_case(tmp_path, "A")
    write_case(tmp_path, "B", skip=("t1ce",))
    items, errors = scan_brats_folder(tmp_path)
    assert [it["case"] for it in items] == ["A"]
    assert len(errors) == 1 and "missing modality 't1ce'" in str(errors[0]) and "B" in str(errors[0])


def test_scan_reports_bad_cases_and_goes_on(tmp_path):
    write_case(tmp_path, "A")
    write_case(tmp_path, "B")
    write_case(tmp_path, "C")
    # corrupt B's FLAIR, put NaNs in C's T2
    (tmp_path / "B" / "B_flair.nii.gz").write_bytes(gzip.compress(b"garbage"))
    arr = make_case_arrays()["t2"].astype(np.float32)
    arr[3, 3, 3] = np.nan
    save_nifti(tmp_path / "C" / "C_t2.nii.gz", arr)
    items, errors = scan_brats_folder(tmp_path)
    assert [it["case"] for it in items] == ["A"]
    msgs = sorted(str(e) for e in errors)
    assert "B_flair.nii.gz" in msgs[0] and "C_t2.nii.gz" in msgs[1] and "non-finite" in msgs[1]


def test_scan_not_a_folder(tmp_path):
    with pytest.raises(InputError, match="is not a folder"):
        scan_brats_folder(tmp_path / "missing")


def test_validate_items_drops_bad(tmp_path, caplog):
    good = write_case(tmp_path, "A")
    bad = write_case(tmp_path, "B")
    save_nifti(tmp_path / "B" / "B_flair.nii.gz", np.zeros((24, 24, 16), np.int16))
    out = validate_items([good, bad], ["flair"])
    assert [it["case"] for it in out] == ["A"]
    assert "B_flair.nii.gz" in caplog.text and "empty foreground" in caplog.text
    with pytest.raises(InputError, match="no usable case"):
        validate_items([bad], ["flair"])


def _chain_error(item, **kw) -> InputError:
    """Run the volume chain and return the InputError it raised (MONAI wraps it in a RuntimeError)."""
    item = dict(item, image=item["flair"])
    with pytest.raises(RuntimeError) as e:
        Compose(volume_preprocessing(spatial_size=16, **kw))(item)
    err = find_input_error(e.value)
    assert err is not None, f"no InputError behind {e.value!r}"
    return err


def test_chain_rejects_4d_as_channels(tmp_path):
    item = _good(tmp_path)
    item["flair"] = str(save_nifti(tmp_path / "four.nii.gz", np.ones((24, 24, 16, 3), np.float32)))
    err = _chain_error(item, num_channels=1)
    assert "four.nii.gz" in str(err) and "expected 1 channel(s)" in str(err)


def test_chain_rejects_2d(tmp_path):
    item = _good(tmp_path)
    item["flair"] = str(save_nifti(tmp_path / "flat.nii.gz", np.ones((24, 24), np.float32)))
    err = _chain_error(item)
    assert "flat.nii.gz" in str(err) and "expected a 3D image" in str(err)


def test_chain_rejects_label_mismatch(tmp_path):
    item = _good(tmp_path)
    item["label"] = str(save_nifti(tmp_path / "seg.nii.gz", np.zeros((24, 24, 10), np.int16)))
    err = _chain_error(item)
    assert "seg.nii.gz" in str(err) and "does not match" in str(err)


def test_chain_rejects_nan_and_empty(tmp_path):
    item = _good(tmp_path)
    a = np.ones((24, 24, 16), np.float32)
    a[0, 0, 0] = np.nan
    item["flair"] = str(save_nifti(tmp_path / "nan.nii.gz", a))
    assert "nan.nii.gz" in str(_chain_error(item)) and "non-finite" in str(_chain_error(item))
    item["flair"] = str(save_nifti(tmp_path / "zero.nii.gz", np.zeros((24, 24, 16), np.float32)))
    err = _chain_error(item)
    assert "zero.nii.gz" in str(err) and "empty foreground" in str(err)


def test_input_error_message_format():
    e = InputError("/data/x.nii.gz", "has an empty foreground")
    assert str(e) == "/data/x.nii.gz: has an empty foreground" and e.path == "/data/x.nii.gz"
    assert isinstance(e, ValueError)
    assert str(InputError(None, "no usable case")) == "no usable case"
