# SPDX-License-Identifier: Apache-2.0
"""Reading and checking volumes: NIfTI, NRRD, MetaImage (MHA/MHD) and DICOM series (a folder).

MONAI's ``LoadImage`` reads a file but does not tell a user *which* of their files is broken and *why* (a corrupt
gzip surfaces as a reader-selection error, NaN voxels pass silently). These helpers read NIfTI with nibabel and the
ITK formats with SimpleITK (the pipeline itself reads them with MONAI's ``ITKReader``, whose RAS affine is the same),
and turn every problem the pipeline cannot work with into an :class:`~monai_adiff.errors.InputError` that names the
file and, for a wrong file name, the right one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np
import torch

from monai_adiff.errors import InputError

__all__ = [
    "read_volume",
    "check_volume",
    "check_case",
    "ras_axial",
    "volume_header",
    "volume_geometry",
    "is_dicom_folder",
    "strip_volume_suffix",
    "NIFTI_SUFFIXES",
    "ITK_SUFFIXES",
    "VOLUME_SUFFIXES",
]

#: NIfTI file endings (read with nibabel)
NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: other volume file endings, read through ITK (NRRD, MetaImage)
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
VOLUME_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES
_GZIP_MAGIC = b"\x1f\x8b"
#: the diagonal that turns ITK's LPS physical space into NIfTI's RAS
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def strip_volume_suffix(name: str) -> str:
    """A file name without its volume ending (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``, ...)."""
    for ext in VOLUME_SUFFIXES:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def is_dicom_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder of DICOM files (``*.dcm``, or files with the ``DICM`` preamble)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return False
    for entry in sorted(os.scandir(path), key=lambda e: e.name)[:50]:
        if not entry.is_file():
            continue
        if entry.name.lower().endswith(".dcm"):
            return True
        try:
            with open(entry.path, "rb") as f:
                head = f.read(132)
        except OSError:
            continue
        if head[128:132] == b"DICM":
            return True
    return False


def _check_name(path: str) -> None:
    """A gzip file named ``.nii`` (or a plain one named ``.nii.gz``), or an unknown ending: say which."""
    name = path.lower()
    try:
        with open(path, "rb") as f:
            head = f.read(348)
    except OSError as e:
        raise InputError(path, f"cannot be opened ({e.strerror or e})") from e
    if name.endswith(".nii") and head[:2] == _GZIP_MAGIC:
        raise InputError(path, "is gzip-compressed but named .nii: rename it to .nii.gz")
    plain_nifti = head[344:348] in (b"n+1\x00", b"ni1\x00") or head[4:8] == b"n+2\x00"
    if name.endswith(".nii.gz") and head[:2] != _GZIP_MAGIC and plain_nifti:
        raise InputError(path, "is named .nii.gz but is not gzip-compressed: rename it to .nii")
    if not name.endswith(VOLUME_SUFFIXES):
        raise InputError(
            path,
            "is not a volume this reads (NIfTI .nii/.nii.gz, NRRD .nrrd, MetaImage .mha/.mhd, or a folder of "
            "one DICOM series)",
        )


def _read_itk(path: str):
    """A SimpleITK image of an ITK-format file or of the one DICOM series in a folder."""
    import SimpleITK as sitk

    try:
        if os.path.isdir(path):
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(path)
            if not series:
                raise InputError(path, "holds no DICOM series")
            if len(series) > 1:
                raise InputError(path, f"holds {len(series)} DICOM series: give the folder of one")
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(path, series[0]))
            return reader.Execute()
        return sitk.ReadImage(path)
    except RuntimeError as e:  # SimpleITK's reader errors
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise InputError(path, f"cannot be read as a volume ({first[:200]})") from e


def _itk_affine(img) -> np.ndarray:
    """The RAS affine (NIfTI convention) of a SimpleITK image."""
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(img.GetSpacing())
    affine[:3, 3] = img.GetOrigin()
    return _LPS_TO_RAS @ affine


def volume_geometry(path: str | os.PathLike) -> tuple[tuple[int, ...], np.ndarray]:
    """``(shape, RAS affine)`` of a volume, from its header where the format allows."""
    path = os.fspath(path)
    if os.path.isdir(path) or path.lower().endswith(ITK_SUFFIXES):
        img = _read_itk(path) if os.path.isdir(path) else None
        if img is None:
            import SimpleITK as sitk

            reader = sitk.ImageFileReader()
            reader.SetFileName(path)
            try:
                reader.ReadImageInformation()
            except RuntimeError as e:
                raise InputError(path, f"cannot be read as a volume ({str(e).strip().splitlines()[-1][:200]})") from e
            img = reader
        return tuple(int(s) for s in img.GetSize()), _itk_affine(img)
    nii = volume_header(path)
    return tuple(int(s) for s in nii.shape), np.asarray(nii.affine, dtype=np.float64)


def volume_header(path: str | os.PathLike) -> nib.Nifti1Image:
    """Open a NIfTI file lazily (header only), with a clear error when it cannot be opened."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(path, "file does not exist")
    if os.path.isdir(path):
        raise InputError(path, "is a folder, expected a NIfTI file")
    _check_name(path)
    try:
        img = nib.load(path)
    except Exception as e:  # nibabel raises many types for truncated or non-NIfTI files
        why = str(e).replace(f"File {path} ", "").replace(path, "the file")  # the path leads the message already
        raise InputError(path, f"cannot be read as NIfTI ({type(e).__name__}: {why})") from e
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(path, f"is a {type(img).__name__}, expected a NIfTI image")
    return img


def _squeeze_to_3d(shape: Sequence[int], path: str) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    # a trailing singleton 4th dimension (X, Y, Z, 1) is a 3D volume written by some tools
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise InputError(path, f"expected a 3D volume, got a {len(shape)}D image of shape {shape}")
    return shape


def read_volume(
    path: str | os.PathLike, *, require_foreground: bool = True, dtype: np.dtype | type = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3D volume (NIfTI, NRRD, MetaImage, or a folder of one DICOM series) and check it.

    Args:
        path: the volume file or DICOM folder.
        require_foreground: raise when every voxel is zero (images; segmentations may be empty).
        dtype: dtype of the returned array.

    Returns:
        ``(array, affine)`` with the array in the file's voxel order (not reoriented) and the RAS affine.

    Raises:
        InputError: unreadable or corrupt file, not 3D, non-finite voxels, or an empty foreground.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(path, "file does not exist")
    if os.path.isdir(path) or path.lower().endswith(ITK_SUFFIXES):
        if os.path.isdir(path) and not is_dicom_folder(path):
            raise InputError(path, "is a folder without DICOM files, expected a volume")
        import SimpleITK as sitk

        itk_img = _read_itk(path)
        if itk_img.GetNumberOfComponentsPerPixel() > 1:
            raise InputError(path, f"has {itk_img.GetNumberOfComponentsPerPixel()} components per voxel, expected 1")
        arr = sitk.GetArrayFromImage(itk_img)  # (z, y, x): ITK's index order reversed
        data = np.asarray(arr, dtype=dtype).transpose(*reversed(range(arr.ndim)))
        data = data.reshape(_squeeze_to_3d(data.shape, path))
        check_volume(data, path, require_foreground=require_foreground)
        return data, _itk_affine(itk_img)
    img = volume_header(path)
    shape = _squeeze_to_3d(img.shape, path)
    try:
        data = np.asarray(img.dataobj, dtype=dtype).reshape(shape)
    except Exception as e:  # truncated gzip streams fail only when the data is read
        raise InputError(path, f"voxel data cannot be read ({type(e).__name__}: {e})") from e
    check_volume(data, path, require_foreground=require_foreground)
    return data, np.asarray(img.affine, dtype=np.float64)


def check_volume(data: np.ndarray, path: str | os.PathLike | None, *, require_foreground: bool = True) -> None:
    """Raise :class:`InputError` for non-finite voxels or (optionally) an all-zero volume."""
    bad = ~np.isfinite(data)
    if bad.any():
        raise InputError(path, f"contains {int(bad.sum())} non-finite voxels (NaN/Inf)")
    if require_foreground and not np.any(data != 0):
        raise InputError(path, "has an empty foreground (every voxel is 0)")


def check_case(item: dict, image_keys: Sequence[str], label_key: str | None = "label") -> None:
    """Check one datalist item without keeping its data: every image readable, 3D, finite, non-empty, and every
    image, the label and the brain mask (``brainmask``, when given) on the same voxel grid; without a mask, the
    images must have a constant background (see :class:`~monai_adiff.transforms.StandardizeBackground`).

    Raises:
        InputError: naming the first offending file.
    """
    from monai_adiff.transforms.intensity.array import StandardizeBackground

    ref_shape, ref_path = None, None
    arrays = []
    for key in image_keys:
        if key not in item or item[key] in (None, ""):
            where = item.get("case_dir") or item.get("case") or "datalist item"
            raise InputError(where, f"missing modality '{key}'")
        paths = item[key] if isinstance(item[key], (list, tuple)) else [item[key]]
        for p in paths:
            data, _ = read_volume(p, require_foreground=True)
            if ref_shape is None:
                ref_shape, ref_path = data.shape, p
            elif data.shape != ref_shape:
                raise InputError(p, f"shape {data.shape} does not match {ref_path} of shape {ref_shape}")
            arrays.append((p, data))
    mask = None
    checks: tuple[tuple[str | None, str, bool], ...] = ((label_key, "label", False), ("brainmask", "brain mask", True))
    for extra, name, foreground in checks:
        if extra and item.get(extra):
            seg, _ = read_volume(item[extra], require_foreground=foreground)
            if ref_shape is not None and seg.shape != ref_shape:
                raise InputError(
                    item[extra], f"{name} shape {seg.shape} does not match image shape {ref_shape} ({ref_path})"
                )
            mask = seg if extra == "brainmask" else mask
    if mask is None:
        for p, data in arrays:
            try:
                StandardizeBackground().background(torch.as_tensor(data))
            except InputError as e:
                raise InputError(p, e.problem) from e


def ras_axial(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorient a 3D array to RAS so that axial slices run along the last axis (index 0 = inferior).

    Returns:
        ``(array, affine)`` of the reoriented volume (a view where possible).
    """
    ornt = nib.orientations.io_orientation(affine)
    target = nib.orientations.axcodes2ornt(("R", "A", "S"))
    transform = nib.orientations.ornt_transform(ornt, target)
    out = nib.orientations.apply_orientation(data, transform)
    new_affine = affine @ nib.orientations.inv_ornt_aff(transform, data.shape)
    return out, new_affine
