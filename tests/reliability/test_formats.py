# SPDX-License-Identifier: Apache-2.0
"""The formats scanners and viewers write: NRRD, MetaImage and a DICOM series give the same map as the NIfTI
original (written from the same voxels and geometry with SimpleITK, the oracle), wrong file names are named as such,
a flat folder of ``<case>_flair`` files is accepted, and coarse voxels get a warning."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import save_nifti
from tests.reliability.test_corpus import brain_volume, infer, outputs


def _itk_image(data: np.ndarray, affine: np.ndarray):
    """A SimpleITK image with the voxels and the geometry of a NIfTI array and its RAS affine."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([float(v) for v in (lps / spacing).ravel()])
    img.SetOrigin([float(v) for v in np.diag([-1.0, -1.0, 1.0]) @ affine[:3, 3]])
    return img


def _write_dicom_series(img, folder: Path) -> None:
    import SimpleITK as sitk

    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = img.GetDirection()
    series = [
        ("0008|0060", "MR"),
        ("0020|000e", "1.2.826.0.1.3680043.2.1125.1.1"),
        ("0020|000d", "1.2.826.0.1.3680043.2.1125.1"),
        ("0020|0037", "\\".join(str(v) for v in (d[0], d[3], d[6], d[1], d[4], d[7]))),
        ("0008|103e", "FLAIR"),
    ]
    for k in range(img.GetDepth()):
        s = img[:, :, k]
        for tag, value in series:
            s.SetMetaData(tag, value)
        s.SetMetaData("0020|0032", "\\".join(str(v) for v in img.TransformIndexToPhysicalPoint((0, 0, k))))
        s.SetMetaData("0020|0013", str(k + 1))
        s.SetMetaData("0018|0050", str(img.GetSpacing()[2]))
        s.SetMetaData("0008|0018", f"1.2.826.0.1.3680043.2.1125.1.1.{k + 1}")
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(s)


@pytest.fixture(scope="module")
def original(tmp_path_factory, tiny_ckpt):
    """An int16 volume (what DICOM stores) as NIfTI, with its outputs."""
    root = tmp_path_factory.mktemp("formats")
    vol = np.round(brain_volume(seed=3)[0]).astype(np.int16)
    affine = np.array([[-1.0, 0, 0, 30], [0, -1.2, 0, 40], [0, 0, 2.0, -10], [0, 0, 0, 1]])
    path = save_nifti(root / "nii" / "case.nii.gz", vol, affine)
    code, err, dest = infer(root, tiny_ckpt, path)
    assert code == 0, err
    amap, _ = outputs(dest, "case")
    return {"root": root, "volume": vol, "affine": affine, "map": np.asarray(amap.dataobj), "map_affine": amap.affine}


@pytest.mark.parametrize("kind", ["nrrd", "mha", "dicom"])
def test_other_formats_give_the_niftis_map(kind, original, tmp_path, tiny_ckpt):
    import SimpleITK as sitk

    img = _itk_image(original["volume"], original["affine"])
    if kind == "dicom":
        path = tmp_path / "case"
        _write_dicom_series(img, path)
    else:
        path = tmp_path / f"case.{kind}"
        sitk.WriteImage(img, str(path))
    code, err, dest = infer(tmp_path, tiny_ckpt, path)
    assert code == 0, err
    amap, mask = outputs(dest, "case")  # written as NIfTI, on the input's grid and affine
    np.testing.assert_allclose(np.asarray(amap.dataobj), original["map"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(amap.affine, original["map_affine"], atol=1e-4)
    assert mask.shape == original["volume"].shape


def test_wrong_file_names_are_named_as_such(tmp_path, tiny_ckpt, original):
    src = original["root"] / "nii" / "case.nii.gz"
    gz_as_nii = tmp_path / "in" / "a.nii"
    gz_as_nii.parent.mkdir()
    shutil.copy(src, gz_as_nii)
    none = "error: none of the 1 requested case(s) can be scored"
    code, err, _ = infer(tmp_path, tiny_ckpt, gz_as_nii, out="o1")
    assert code == 1 and err[1:] == [none] and "is gzip-compressed but named .nii: rename it to .nii.gz" in err[0]
    plain_as_gz = tmp_path / "in" / "b.nii.gz"
    plain_as_gz.write_bytes(gzip.decompress(src.read_bytes()))
    code, err, _ = infer(tmp_path, tiny_ckpt, plain_as_gz, out="o2")
    assert code == 1 and err[1:] == [none] and "is not gzip-compressed: rename it to .nii" in err[0]
    other = tmp_path / "in" / "c.png"
    other.write_bytes(b"\x89PNG....")
    code, err, _ = infer(tmp_path, tiny_ckpt, other, out="o3")
    assert code == 1 and err[1:] == [none] and "is not a volume this reads" in err[0] and "DICOM" in err[0]


def test_a_flat_folder_of_case_files_is_accepted(tmp_path, tiny_ckpt, original):
    flat = tmp_path / "flat"
    flat.mkdir()
    for case in ("p01", "p02"):
        shutil.copy(original["root"] / "nii" / "case.nii.gz", flat / f"{case}_flair.nii.gz")
    (flat / "notes.txt").write_text("not a volume", encoding="utf-8")
    code, err, dest = infer(tmp_path, tiny_ckpt, flat)
    assert code == 0, err
    for case in ("p01", "p02"):
        np.testing.assert_allclose(np.asarray(outputs(dest, case)[0].dataobj), original["map"], rtol=1e-5, atol=1e-6)


def test_coarse_voxels_get_a_warning(tmp_path, tiny_ckpt):
    vol = brain_volume(seed=5)[0]
    path = save_nifti(tmp_path / "in" / "thick.nii.gz", vol, np.diag([1.0, 1.0, 20.0, 1.0]))
    code, err, _ = infer(tmp_path, tiny_ckpt, path)
    assert code == 0
    warnings = [line for line in err if line.startswith("warning: ")]
    assert len(warnings) == 1 and "thick.nii.gz" in warnings[0] and "axial slices 20 mm" in warnings[0]
    assert nib.load(tmp_path / "out" / "thick_anomaly_mask.nii.gz").shape == vol.shape
