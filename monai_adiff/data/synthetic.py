# SPDX-License-Identifier: Apache-2.0
"""Synthetic demo data: small multi-modal brain-MRI phantoms in the BraTS folder layout.

The demo, the tutorials and the tests need brain-like volumes with and without tumours that can be made anywhere
in seconds; the BraTS data cannot be shipped (see ``../shared/data/README.md``). MONAI's
``monai.data.synthetic.create_test_image_3d`` draws random spheres on a flat background, which has none of what
the anomaly methods rely on (a skull-stripped brain whose cross-section shrinks toward the poles, tissue
contrasts that differ per modality, tumour-free slices next to tumour slices), so this module builds its own
phantom:

- an irregular, randomly sized and rotated ellipsoidal brain on an exact-zero background, with a few empty axial
  slices at the top and the bottom of the volume;
- white matter, a folded cortical ribbon of grey matter (sulci from the zero crossings of a smooth random
  field), deep grey matter, two lateral ventricles and the interhemispheric fissure;
- periventricular caps: thin rims around the frontal and occipital horns of the ventricles that are normal but as
  bright on FLAIR as a tumour (as in real FLAIR, where ependymal caps, the cortex and artefacts are hyperintense
  without disease), so the brightest FLAIR voxels are not always lesions and a plain FLAIR threshold makes false
  positives;
- smooth, spatially correlated tissue texture, a bias field per modality and mild Rician noise;
- optional glioma-like lesions (BraTS labels 1 necrotic core, 4 enhancing rim, 2 oedema) spanning a minority of
  the axial brain slices, bright on FLAIR and T2, dark on T1, with a bright rim on T1ce;
- raw int16 intensities with a random global scale per case and modality, written with a BraTS-like affine
  (``diag(-sx, -sy, sz)``, origin at ``(0, (ny - 1) * sy, 0)``, LPS axis codes) as ``.nii.gz``.

The contrasts are qualitative (ordering of tissues per modality as in clinical MRI), not a physical simulation.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage

from monai_adiff.errors import InputError
from monai_adiff.utils import atomic_write

__all__ = ["MODALITIES", "BRATS_LABELS", "make_phantom_case", "make_demo_dataset", "brats_affine"]

MODALITIES: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")
"""The modalities a phantom case has, in BraTS naming."""

BRATS_LABELS: dict[str, int] = {"necrosis": 1, "oedema": 2, "enhancing": 4}
"""BraTS 2017/18 label values written to ``seg``; the whole tumour is ``seg > 0``."""

# tissue classes of the internal label image (the seg labels are derived from the lesion classes)
_BG, _CSF, _GM, _WM, _DGM, _OED, _ENH, _NEC, _CAP = range(9)

# relative intensity per modality and tissue class, ordered as in clinical MRI (brightest tissue ~1):
# FLAIR: CSF suppressed, GM a little above WM, oedema bright; T1: WM > GM > CSF, tumour hypointense;
# T1ce: like T1 plus a bright enhancing rim; T2: CSF brightest, tumour bright. CAP: normal periventricular caps,
# FLAIR-bright like oedema (slightly brighter), mildly T2-bright, near-normal on T1.
#                            BG    CSF   GM    WM    DGM   OED   ENH   NEC   CAP
_CONTRAST: dict[str, tuple[float, ...]] = {
    "flair": (0.0, 0.12, 0.55, 0.45, 0.50, 0.92, 0.82, 0.72, 0.95),
    "t1": (0.0, 0.22, 0.58, 0.80, 0.68, 0.52, 0.62, 0.30, 0.70),
    "t1ce": (0.0, 0.18, 0.46, 0.60, 0.52, 0.44, 1.00, 0.26, 0.55),
    "t2": (0.0, 1.00, 0.50, 0.33, 0.42, 0.76, 0.60, 0.92, 0.60),
}
#: per-case range of the lesions' FLAIR brightness, as a factor on their contrast above (1: as bright as oedema)
_LESION_FLAIR_GAIN = (0.72, 0.95)

_MIN_SHAPE = 16
_MAX_TUMOUR_SLICE_FRACTION = 0.45


def brats_affine(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """The voxel-to-world affine the BraTS 2018 files use, for any grid.

    BraTS volumes (SRI24 space) store ``diag(-1, -1, 1)`` with the origin at ``(0, 239, 0)`` mm, i.e. LPS axis
    codes with the last array axis axial; this keeps that orientation and scales it by ``spacing``.

    Args:
        shape: the 3D array shape ``(nx, ny, nz)``.
        spacing: voxel size in mm along each array axis.

    Returns:
        A ``(4, 4)`` float64 affine.
    """
    sx, sy, sz = (float(s) for s in spacing)
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[1, 3] = (int(shape[1]) - 1) * sy
    return affine


def _smooth_field(rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float], scale_mm: float):
    """Zero-mean, unit-std gaussian random field with correlation length ``scale_mm`` (float32).

    Large scales are drawn on a grid coarse enough that the gaussian is about 1.5 coarse samples wide, then
    linearly upsampled, which keeps smooth fields cheap on a full volume.
    """
    sigma_vox = [scale_mm / float(s) for s in spacing]
    steps = [max(1, int(sv / 1.5)) for sv in sigma_vox]
    coarse_shape = [n // st + 2 for n, st in zip(shape, steps)]
    coarse = rng.standard_normal(coarse_shape, dtype=np.float32)
    coarse = ndimage.gaussian_filter(coarse, [sv / st for sv, st in zip(sigma_vox, steps)], mode="wrap")
    field = coarse
    for axis, (n, st) in enumerate(zip(shape, steps)):
        if st == 1:
            field = np.take(field, np.arange(n), axis=axis)
            continue
        pos = np.arange(n, dtype=np.float32) / st
        i0 = pos.astype(np.intp)
        w = (pos - i0).reshape([-1 if a == axis else 1 for a in range(3)])
        field = np.take(field, i0, axis=axis) * (1.0 - w) + np.take(field, i0 + 1, axis=axis) * w
    field = field - field.mean()
    std = float(field.std())
    return (field / std if std > 0 else field).astype(np.float32, copy=False)


def _rotation(rng: np.random.Generator, max_deg: Sequence[float]) -> np.ndarray:
    """Random rotation about the x, y, z axes with angles uniform in ``±max_deg``."""
    ax, ay, az = (math.radians(rng.uniform(-m, m)) for m in max_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _rotated_coords(shape, spacing, centre_mm, rot):
    """World-like mm coordinates of every voxel, centred at ``centre_mm`` and expressed in the rotated frame."""
    grids = [(np.arange(n, dtype=np.float32) * float(s) - float(c)) for n, s, c in zip(shape, spacing, centre_mm)]
    x = grids[0][:, None, None]
    y = grids[1][None, :, None]
    z = grids[2][None, None, :]
    rt = rot.T.astype(np.float32)  # world -> brain frame
    return tuple(rt[i, 0] * x + rt[i, 1] * y + rt[i, 2] * z for i in range(3))


def _lesion_labels(rng, shape, spacing, coords, semi_axes, brain_core, n_brain_slices, s_ip):
    """Draw 1-2 irregular glioma-like blobs; returns the internal class (0, _OED, _ENH, _NEC) per voxel.

    Each blob is three nested irregular shells (necrotic core, enhancing rim, oedema) around one centre, clipped
    to ``brain_core`` (the eroded brain) so the tumour never touches the background. Candidates that cover more
    than ``_MAX_TUMOUR_SLICE_FRACTION`` of the brain's axial slices or lose a label are redrawn smaller.
    """
    mean_axis = float(np.mean(semi_axes))
    min_axis = float(np.min(semi_axes))
    n_blobs = 1 if rng.uniform() < 0.65 else 2
    shrink = 1.0
    fallback = None
    for attempt in range(24):
        if attempt % 3 == 2:
            shrink *= 0.85
        # whole-tumour radius: a fraction of the brain size so the tumour covers a minority of slices, but at
        # least about one in-plane voxel per shell so all three labels show in axial slices
        r_wt = rng.uniform(0.18, 0.30) * mean_axis * shrink
        r_tc = rng.uniform(0.55, 0.75) * r_wt
        r_nc = max(rng.uniform(0.55, 0.75) * r_tc, 0.8 * s_ip)
        r_tc = max(r_tc, r_nc + 1.0 * s_ip)
        r_wt = max(r_wt, r_tc + 1.2 * s_ip)
        # centre: off the midline, in the central part of the brain height, deep enough for most of the tumour
        # to fit (what still sticks out is clipped below)
        reach = 1.3 * r_wt
        best, centre = None, None
        for _ in range(30):
            cu, cv, cw = rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), rng.uniform(-0.3, 0.4)
            slack = 0.92 - math.sqrt(cu * cu + cv * cv + cw * cw) - reach / min_axis
            slack = min(slack, (abs(cu) * semi_axes[0] - reach - 2.0 * s_ip) / semi_axes[0])
            if best is None or slack > best:
                best, centre = slack, np.array([cu, cv, cw]) * semi_axes
            if slack > 0:
                break
        centres = [centre]
        radii = [(r_nc, r_tc, r_wt)]
        if n_blobs == 2:  # a smaller satellite next to the main tumour
            k = rng.uniform(0.45, 0.7)
            ang = rng.uniform(0, 2 * math.pi)
            offset = (r_wt * (1.0 + k) * 0.75) * np.array([math.cos(ang), math.sin(ang), rng.uniform(-0.3, 0.3)])
            centres.append(centre + offset)
            rn2 = max(r_nc * k, 0.8 * s_ip)
            rt2 = max(r_tc * k, rn2 + 1.0 * s_ip)
            radii.append((rn2, rt2, max(r_wt * k, rt2 + 1.2 * s_ip)))
        rank = np.zeros(shape, dtype=np.uint8)  # 0 none, 1 oedema, 2 enhancing, 3 necrosis
        for c0, (rn, rt, rw) in zip(centres, radii):
            rot = _rotation(rng, (90, 90, 90)).T.astype(np.float32)
            elong = rng.uniform(0.85, 1.2, size=3).astype(np.float32)
            d_edge = np.clip(_smooth_field(rng, shape, spacing, 0.4 * rw), -2.0, 2.0)
            d_core = np.clip(_smooth_field(rng, shape, spacing, 0.5 * rt), -2.0, 2.0)
            p = [c - np.float32(ci) for c, ci in zip(coords, c0)]
            dist2 = sum(((rot[i, 0] * p[0] + rot[i, 1] * p[1] + rot[i, 2] * p[2]) / elong[i]) ** 2 for i in range(3))
            dist = np.sqrt(dist2)
            core = dist / (1.0 + 0.12 * d_core)
            # oedema: its own irregular outline, but at least about a voxel around the core
            blob = ((dist < rw * (1.0 + 0.25 * d_edge)) | (core < rt + s_ip)).astype(np.uint8)
            blob[core < rt] = 2
            blob[core < rn] = 3
            np.maximum(rank, blob, out=rank)
        rank[~brain_core] = 0
        z_hit = int(rank.any(axis=(0, 1)).sum())
        has_all = all(np.any(rank == r) for r in (1, 2, 3))
        if has_all and z_hit <= _MAX_TUMOUR_SLICE_FRACTION * n_brain_slices:
            return np.choose(rank, np.array([0, _OED, _ENH, _NEC], dtype=np.uint8))
        if fallback is None and rank.any() and z_hit < 0.5 * n_brain_slices:
            fallback = rank
    if fallback is None:
        raise ValueError(f"no lesion fits a phantom brain on a grid of {tuple(shape)}; use a larger shape")
    return np.choose(fallback, np.array([0, _OED, _ENH, _NEC], dtype=np.uint8))


def make_phantom_case(
    rng: np.random.Generator,
    shape: Sequence[int] = (96, 96, 64),
    spacing: Sequence[float] = (2.0, 2.0, 2.5),
    with_lesion: bool = True,
) -> dict[str, np.ndarray]:
    """One multi-modal head-like phantom volume, in memory.

    Array axes follow BraTS: axis 0 left-right, axis 1 anterior-posterior, axis 2 inferior-superior (axial
    slices are ``volume[:, :, k]``).

    Args:
        rng: the random generator; the same generator state gives the same volumes.
        shape: the 3D grid ``(nx, ny, nz)``, each at least 16.
        spacing: voxel size in mm along each axis. The anatomy is sized relative to the field of view
            (``shape * spacing``), with minimum sizes of a voxel or two so that thin structures stay visible.
        with_lesion: draw 1-2 glioma-like lesions (``seg`` labels 1, 2, 4); otherwise ``seg`` is all zero.

    Returns:
        ``{"flair", "t1", "t1ce", "t2"}``: int16 volumes, background exactly 0, brain voxels >= 1;
        ``"seg"``: uint8 BraTS labels (0 background/healthy, 1 necrosis, 2 oedema, 4 enhancing);
        ``"brain"``: bool brain mask.

    Raises:
        ValueError: a shape or spacing that cannot hold a phantom.
    """
    shape = tuple(int(n) for n in shape)
    spacing = tuple(float(s) for s in spacing)
    if len(shape) != 3 or min(shape) < _MIN_SHAPE:
        raise ValueError(f"shape must be 3 sizes >= {_MIN_SHAPE}, got {shape}")
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be 3 positive mm values, got {spacing}")
    nx, ny, nz = shape
    sx, sy, sz = spacing
    s_ip = max(sx, sy)
    half = np.array([nx * sx, ny * sy, nz * sz]) / 2.0

    # --- brain geometry: leave >= 2 empty axial slices at both ends (more on larger grids) ---
    margin = max(2, int(round(0.05 * nz)))
    offset = np.array([rng.uniform(-0.03, 0.03) * half[0], rng.uniform(-0.03, 0.03) * half[1], 0.0])
    oz = rng.uniform(-0.5, 0.5) * sz
    offset[2] = oz
    a = rng.uniform(0.58, 0.68) * half[0]
    b = rng.uniform(0.70, 0.80) * half[1]
    # the surface displacement below grows the ellipsoid by at most 7.5 %; the tilt adds little
    c_max = (half[2] - (margin + 0.5) * sz - abs(oz)) / 1.08
    c = rng.uniform(0.9, 1.0) * c_max
    semi_axes = np.array([a, b, c])
    mean_axis = float(semi_axes.mean())
    rot = _rotation(rng, (5.0, 4.0, 12.0))
    centre_mm = (np.array(shape) - 1) / 2.0 * np.array(spacing) + offset
    coords = _rotated_coords(shape, spacing, centre_mm, rot)
    xb, yb, zb = coords
    v = yb / b
    u = xb / (a * (1.0 + rng.uniform(0.0, 0.12) * v))  # egg-shaped: one end of the long axis wider
    w = zb / c
    r = np.sqrt(u * u + v * v + w * w)

    d_surf = np.clip(_smooth_field(rng, shape, spacing, 0.22 * mean_axis), -2.5, 2.5)
    rs = r - 0.03 * d_surf  # normalised depth coordinate: brain where rs < 1
    brain = rs < 1.0
    brain[:, :, :margin] = False
    brain[:, :, nz - margin :] = False

    cls = np.where(brain, _WM, _BG).astype(np.uint8)

    # --- cortex: a thin outer ribbon plus grey matter lining the sulci (zero crossings of a smooth field), with
    # white-matter fingers reaching into the gyri between them; sulci widen toward the surface ---
    t_gm = max(3.0, 1.5 * s_ip) / mean_axis * (1.0 + 0.25 * np.clip(_smooth_field(rng, shape, spacing, 15.0), -2, 2))
    fold_scale = max(0.075 * mean_axis, 2.0 * s_ip)
    g = np.abs(_smooth_field(rng, shape, spacing, fold_scale))
    depth = rng.uniform(0.22, 0.28)
    shell = np.clip((rs - (1.0 - depth)) / depth, 0.0, 1.0)  # 0 at the sulcal fundi, 1 at the surface
    sulc_eps = (0.5 + 0.7 * shell) * s_ip / fold_scale  # about one voxel of CSF, wider at the surface
    gm_eps = sulc_eps + max(2.5, 1.2 * s_ip) / fold_scale
    gm = brain & ((rs > 1.0 - t_gm) | ((g < gm_eps) & (rs > 1.0 - depth - t_gm)))
    sulci = brain & (g < sulc_eps) & (rs > 1.0 - depth)

    # interhemispheric fissure: through the whole height at the front and back, above the ventricles elsewhere
    fis_half = max(0.6 * sx, 1.0)
    v_w = rng.uniform(0.05, 0.15)  # height of the ventricle centres
    fis_region = brain & ((np.abs(v) > 0.55) | (w > v_w + 0.25))
    gm |= fis_region & (np.abs(xb) < fis_half + max(3.0, 1.5 * sx))
    fissure = fis_region & (np.abs(xb) < fis_half)
    cls[gm] = _GM

    # --- deep grey matter (thalami and basal ganglia) ---
    for side in (-1.0, 1.0):
        for cu, cv, rad in ((0.17, -0.12, 0.14), (0.30, 0.15, 0.12)):
            cu_ = side * cu * rng.uniform(0.9, 1.1)
            du, dv, dw = (u - cu_) / rad, (v - cv) / (1.5 * rad), (w - (v_w - 0.2)) / (1.4 * rad)
            cls[brain & (du * du + dv * dv + dw * dw < 1.0)] = _DGM

    # --- lateral ventricles: curved, slightly diverging blobs either side of the midline ---
    d_vent = np.clip(_smooth_field(rng, shape, spacing, 0.1 * mean_axis), -2.5, 2.5)
    ventricles = np.zeros(shape, dtype=bool)
    v0 = rng.uniform(-0.08, 0.02)
    for side in (-1.0, 1.0):
        ru = max(rng.uniform(0.055, 0.08), 1.2 * sx / a)
        rv = rng.uniform(0.33, 0.42)
        rw = max(rng.uniform(0.09, 0.13), 1.5 * sz / c)
        u0 = rng.uniform(0.08, 0.12)
        uc = side * (u0 + 0.12 * np.maximum(v0 - v, 0.0))  # occipital horns diverge
        wc = v_w - 0.9 * (v - v0) ** 2  # horns curve downward
        e = ((u - uc) / ru) ** 2 + ((v - v0) / rv) ** 2 + ((w - wc) / rw) ** 2
        ventricles |= e < 1.0 + 0.35 * d_vent
    csf = brain & (sulci | fissure | ventricles)
    # periventricular caps and bands: a rim of about 4 mm around the frontal and occipital horns (|v - v0| > 0.12)
    rim = max(1, int(round(4.0 / s_ip)))
    caps = ndimage.binary_dilation(ventricles, iterations=rim) & ~ventricles & brain & ~csf & (np.abs(v - v0) > 0.12)
    cls[caps] = _CAP
    cls[csf] = _CSF

    # --- lesions ---
    seg = np.zeros(shape, dtype=np.uint8)
    if with_lesion:
        brain_core = ndimage.binary_erosion(brain & ~fissure, iterations=2)
        n_brain_slices = int(brain.any(axis=(0, 1)).sum())
        lesion = _lesion_labels(rng, shape, spacing, coords, semi_axes, brain_core, n_brain_slices, s_ip)
        inside = lesion > 0
        cls[inside] = lesion[inside]
        seg[lesion == _OED] = BRATS_LABELS["oedema"]
        seg[lesion == _ENH] = BRATS_LABELS["enhancing"]
        seg[lesion == _NEC] = BRATS_LABELS["necrosis"]

    # --- intensities: anatomy-bound texture shared by all modalities, bias field and noise per modality ---
    fine = _smooth_field(rng, shape, spacing, 1.0 * s_ip)
    texture = 1.0 + 0.035 * fine + 0.045 * _smooth_field(rng, shape, spacing, 0.12 * mean_axis)
    lesion_tex = 1.0 + 0.09 * _smooth_field(rng, shape, spacing, 2.0 * s_ip) * (cls >= _OED)
    texture = (texture * lesion_tex).astype(np.float32)
    pv_sigma = [0.6 * min(spacing) / s for s in spacing]  # partial volume of ~0.6 of the finest voxel
    out: dict[str, np.ndarray] = {}
    lesion_gain = rng.uniform(*_LESION_FLAIR_GAIN)
    for mod in MODALITIES:
        lut = np.asarray(_CONTRAST[mod], dtype=np.float32)
        if mod == "flair":
            lut[[_OED, _ENH, _NEC]] *= lesion_gain
        img = ndimage.gaussian_filter(lut[cls], pv_sigma, mode="constant")
        bias = 1.0 + 0.06 * _smooth_field(rng, shape, spacing, 0.7 * mean_axis)
        img *= texture * bias
        sigma = 0.015
        n1 = rng.standard_normal(shape, dtype=np.float32)
        n2 = rng.standard_normal(shape, dtype=np.float32)
        img = np.sqrt((img + sigma * n1) ** 2 + (sigma * n2) ** 2)  # Rician magnitude noise
        peak = float(img[brain].max())
        scale = math.exp(rng.uniform(math.log(300.0), math.log(3000.0)))  # raw scanner scale, like BraTS
        vol = np.rint(img * (scale / peak))
        vol = np.where(brain, np.clip(vol, 1, 32767), 0).astype(np.int16)
        out[mod] = vol
    out["seg"] = seg
    out["brain"] = brain
    return out


def _lesion_flags(cases: int, lesion_fraction: float) -> list[bool]:
    """Which cases get a lesion: ``floor(cases * f)`` of them, spread evenly.

    Case ``i`` has a lesion when ``floor((i + 1) f) > floor(i f)``, so the flags of the first cases do not depend
    on ``cases``, and case 0 is healthy whenever ``f < 1``. With ``0 < f < 1`` and at least 2 cases, the last case
    gets a lesion when the rule gives none, so there is always one healthy and one lesion case.
    """
    f = float(lesion_fraction)
    flags = [math.floor((i + 1) * f + 1e-9) > math.floor(i * f + 1e-9) for i in range(cases)]
    if cases >= 2 and 0.0 < f < 1.0 and not any(flags):
        flags[-1] = True
    return flags


def _save_atomic(array: np.ndarray, affine: np.ndarray, path: str) -> None:
    """Write a NIfTI file under a temporary name in the same folder, then rename it into place."""
    img = nib.Nifti1Image(array, affine)
    img.header.set_data_dtype(array.dtype)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    atomic_write(path, lambda tmp: nib.save(img, tmp), suffix=".nii.gz")


def make_demo_dataset(
    out_dir: str | os.PathLike,
    cases: int = 4,
    seed: int = 0,
    shape: Sequence[int] = (96, 96, 64),
    spacing: Sequence[float] = (2.0, 2.0, 2.5),
    lesion_fraction: float = 0.75,
    modalities: Sequence[str] = MODALITIES,
    overwrite: bool = False,
) -> list[dict]:
    """Write a BraTS-style folder of synthetic phantom cases: ``<out_dir>/<case>/<case>_{modality,seg}.nii.gz``.

    Case ids are ``Demo_000``, ``Demo_001``, ...; case ``i`` is drawn from child ``i`` of
    ``np.random.SeedSequence(seed)``, so a given seed always gives the same voxels and the first cases do not
    change when ``cases`` grows. Images are int16 (background 0), ``seg`` is stored as int16 like BraTS 2018, and
    every file carries the BraTS-like affine of :func:`brats_affine`. Nothing else is written to ``out_dir``.

    Args:
        out_dir: the dataset root; created when missing.
        cases: number of cases.
        seed: base seed.
        shape: grid of every volume ``(nx, ny, nz)``, the last axis axial; each size at least 16.
        spacing: voxel size in mm.
        lesion_fraction: fraction of cases with lesions: ``floor(cases * lesion_fraction)`` cases spread evenly
            (``Demo_000`` is healthy unless the fraction is 1); with ``0 < lesion_fraction < 1`` and ``cases >= 2``
            at least one healthy and one lesion case.
        modalities: which of ``("flair", "t1", "t1ce", "t2")`` to write.
        overwrite: replace existing case folders' files; otherwise an existing case folder is an error.

    Returns:
        One dict per case: ``{"case": id, <modality>: absolute path, ..., "seg": absolute path,
        "has_lesion": bool}``.

    Raises:
        InputError: ``out_dir`` is not a folder, or a case folder exists and ``overwrite`` is false (checked for
            all cases before anything is written).
        ValueError: bad ``cases``, ``shape``, ``spacing``, ``lesion_fraction`` or ``modalities``.
    """
    if isinstance(cases, bool) or int(cases) != cases or cases < 1:
        raise ValueError(f"cases must be a positive integer, got {cases!r}")
    cases = int(cases)
    if not 0.0 <= float(lesion_fraction) <= 1.0:
        raise ValueError(f"lesion_fraction must be in [0, 1], got {lesion_fraction!r}")
    if isinstance(modalities, str):
        modalities = (modalities,)
    modalities = tuple(modalities)
    unknown = [m for m in modalities if m not in MODALITIES]
    if not modalities or unknown or len(set(modalities)) != len(modalities):
        raise ValueError(f"modalities must be distinct names from {MODALITIES}, got {modalities!r}")
    shape = tuple(int(n) for n in shape)
    spacing = tuple(float(s) for s in spacing)
    if len(shape) != 3 or min(shape) < _MIN_SHAPE:
        raise ValueError(f"shape must be 3 sizes >= {_MIN_SHAPE}, got {shape}")
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be 3 positive mm values, got {spacing}")

    root = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(root) and not os.path.isdir(root):
        raise InputError(out_dir, "exists and is not a folder; give a folder for the demo dataset")
    ids = [f"Demo_{i:03d}" for i in range(cases)]
    existing = [cid for cid in ids if os.path.lexists(os.path.join(root, cid))]
    not_dirs = [cid for cid in existing if not os.path.isdir(os.path.join(root, cid))]
    if not_dirs:
        raise InputError(out_dir, f"{', '.join(not_dirs)} exist(s) but is not a folder; use another output folder")
    if existing and not overwrite:
        raise InputError(
            out_dir, f"case folder(s) {', '.join(existing)} already exist; pass overwrite=True to replace them"
        )

    affine = brats_affine(shape, spacing)
    flags = _lesion_flags(cases, lesion_fraction)
    children = np.random.SeedSequence(seed).spawn(cases)
    records: list[dict] = []
    for cid, flag, child in zip(ids, flags, children):
        volumes = make_phantom_case(np.random.default_rng(child), shape, spacing, with_lesion=flag)
        case_dir = os.path.join(root, cid)
        os.makedirs(case_dir, exist_ok=True)
        record: dict = {"case": cid}
        for key in (*modalities, "seg"):
            path = os.path.join(case_dir, f"{cid}_{key}.nii.gz")
            data = volumes[key].astype(np.int16) if key == "seg" else volumes[key]
            _save_atomic(data, affine, path)
            record[key] = path
        # an overwritten folder must not keep modalities of an earlier run that this run did not write
        for stale in set(MODALITIES) - set(modalities):
            stale_path = os.path.join(case_dir, f"{cid}_{stale}.nii.gz")
            if os.path.isfile(stale_path):
                os.unlink(stale_path)
        record["has_lesion"] = bool(volumes["seg"].any())
        records.append(record)
    return records
