# SPDX-License-Identifier: Apache-2.0
"""The synthetic demo dataset: BraTS layout, NIfTI conventions, determinism and the phantom's anatomy.

Everything is read back from the written files with nibabel and checked against properties computed here
(masks, slice areas, label sets, a hand-built affine), never against the generator's own in-memory output.
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from monai_adiff.data.synthetic import make_demo_dataset, make_phantom_case
from monai_adiff.errors import InputError

SHAPE = (48, 48, 32)
SPACING = (2.0, 2.0, 2.5)
MODS = ("flair", "t1", "t1ce", "t2")


def _load(path):
    img = nib.load(path)
    return np.asanyarray(img.dataobj), img


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    records = make_demo_dataset(root, cases=4, seed=0, shape=SHAPE, spacing=SPACING)
    return root, records


def _volumes(record):
    return {k: _load(record[k])[0] for k in (*MODS, "seg")}


def test_layout_and_records(demo):
    root, records = demo
    assert [r["case"] for r in records] == ["Demo_000", "Demo_001", "Demo_002", "Demo_003"]
    # exactly BraTS-like: only case folders, each with exactly its five files (no temp files left behind)
    assert sorted(os.listdir(root)) == [r["case"] for r in records]
    for r in records:
        case = r["case"]
        expected = sorted(f"{case}_{k}.nii.gz" for k in (*MODS, "seg"))
        assert sorted(os.listdir(root / case)) == expected
        assert set(r) == {"case", *MODS, "seg", "has_lesion"}
        assert isinstance(r["has_lesion"], bool)
        for k in (*MODS, "seg"):
            assert isinstance(r[k], str) and os.path.isabs(r[k]) and os.path.isfile(r[k])
            assert r[k] == str(root / case / f"{case}_{k}.nii.gz")


def test_shapes_dtypes_and_intensity_scale(demo):
    _, records = demo
    for r in records:
        for k in (*MODS, "seg"):
            data, img = _load(r[k])
            assert data.shape == SHAPE
            assert img.header.get_data_dtype() == np.int16
            assert data.dtype == np.int16
        for m in MODS:
            peak = int(_load(r[m])[0].max())
            assert 250 <= peak <= 3100, (r[m], peak)  # raw scanner-like scale, a few hundred to a few thousand


def test_affine_is_brats_like(demo):
    _, records = demo
    sx, sy, sz = SPACING
    expected = np.array([[-sx, 0, 0, 0], [0, -sy, 0, (SHAPE[1] - 1) * sy], [0, 0, sz, 0], [0, 0, 0, 1]])
    for r in records:
        for k in (*MODS, "seg"):
            _, img = _load(r[k])
            np.testing.assert_allclose(img.affine, expected)
            assert not np.allclose(img.affine, np.eye(4))
            assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
            np.testing.assert_allclose(img.header.get_zooms()[:3], SPACING)
            assert int(img.header["qform_code"]) > 0 and int(img.header["sform_code"]) > 0
            np.testing.assert_allclose(img.get_qform(), expected, atol=1e-5)


def test_affine_follows_spacing(tmp_path):
    (r,) = make_demo_dataset(tmp_path, cases=1, shape=(40, 36, 24), spacing=(1.5, 1.2, 3.0), modalities=("t2",))
    _, img = _load(r["t2"])
    np.testing.assert_allclose(img.affine[:3, :3], np.diag([-1.5, -1.2, 3.0]))
    np.testing.assert_allclose(img.affine[:3, 3], [0.0, 35 * 1.2, 0.0])


def test_deterministic_for_a_seed_and_varies_across_seeds(tmp_path):
    kw = dict(cases=2, shape=SHAPE, spacing=SPACING)
    a = make_demo_dataset(tmp_path / "a", seed=3, **kw)
    b = make_demo_dataset(tmp_path / "b", seed=3, **kw)
    c = make_demo_dataset(tmp_path / "c", seed=4, **kw)
    for ra, rb, rc in zip(a, b, c):
        assert ra["has_lesion"] == rb["has_lesion"]
        for k in (*MODS, "seg"):
            np.testing.assert_array_equal(_load(ra[k])[0], _load(rb[k])[0])
            with open(ra[k], "rb") as fa, open(rb[k], "rb") as fb:
                assert fa.read() == fb.read()
        assert not np.array_equal(_load(ra["flair"])[0], _load(rc["flair"])[0])
    # the first cases do not depend on how many cases are made
    (one,) = make_demo_dataset(tmp_path / "d", seed=3, cases=1, shape=SHAPE, spacing=SPACING)
    np.testing.assert_array_equal(_load(one["t1"])[0], _load(a[0]["t1"])[0])


def test_background_zero_and_brain_positive(demo):
    _, records = demo
    for r in records:
        vols = _volumes(r)
        brain = vols["flair"] > 0
        for m in MODS:
            assert vols[m].min() >= 0
            np.testing.assert_array_equal(vols[m] > 0, brain)  # one skull-stripped mask for all modalities
        assert 0.1 < brain.mean() < 0.6
        # nothing touches the volume border; empty axial slices at both ends
        assert not brain[[0, -1]].any() and not brain[:, [0, -1]].any()
        area = brain.sum(axis=(0, 1))
        nz = np.flatnonzero(area)
        assert nz[0] >= 2 and nz[-1] <= SHAPE[2] - 3
        # the cross-section shrinks toward the poles: small end slices, largest slice in the middle half
        assert area[nz[0]] < 0.5 * area.max() and area[nz[-1]] < 0.5 * area.max()
        assert nz[0] + 0.25 * nz.size < int(np.argmax(area)) < nz[-1] - 0.25 * nz.size
        # one connected brain
        assert ndimage.label(brain)[1] == 1


def test_healthy_cases_have_empty_seg(demo):
    _, records = demo
    healthy = [r for r in records if not r["has_lesion"]]
    assert healthy
    for r in healthy:
        assert not _load(r["seg"])[0].any()


def test_lesion_labels_and_extent(demo):
    _, records = demo
    lesion = [r for r in records if r["has_lesion"]]
    assert len(lesion) == 3  # floor(4 * 0.75)
    for r in lesion:
        vols = _volumes(r)
        seg, brain = vols["seg"], vols["flair"] > 0
        assert set(np.unique(seg)) == {0, 1, 2, 4}
        wt = seg > 0
        # inside the brain and not touching the background
        assert not (ndimage.binary_dilation(wt) & ~brain).any()
        brain_slices = brain.any(axis=(0, 1))
        tumour_slices = wt.any(axis=(0, 1))
        assert tumour_slices.sum() < 0.5 * brain_slices.sum()
        # tumour-free slices among the large (AnoFPDM-style, area > half the largest) brain slices
        area = brain.sum(axis=(0, 1))
        assert np.any((area > 0.5 * area.max()) & ~tumour_slices)
        # nesting: necrosis (1) inside the enhancing rim (4), and oedema (2) on the outside
        around_core = ndimage.binary_dilation(seg == 1) & (seg != 1)
        assert (seg[around_core] == 4).mean() > 0.5
        outer = ndimage.binary_dilation(wt) & ~wt
        assert (seg[ndimage.binary_dilation(outer) & wt] == 2).mean() > 0.5


def test_lesion_contrasts(demo):
    _, records = demo
    for r in (r for r in records if r["has_lesion"]):
        vols = {k: v.astype(np.float64) for k, v in _volumes(r).items()}
        seg = vols["seg"].astype(int)
        brain = vols["flair"] > 0
        wt = seg > 0
        same_slices = wt.any(axis=(0, 1))[None, None, :]
        normal = brain & ~wt & same_slices
        flair = vols["flair"]
        assert flair[wt].mean() > 1.4 * flair[normal].mean()  # clearly hyperintense on FLAIR
        assert flair[seg == 2].mean() > 1.4 * flair[normal].mean()
        assert vols["t2"][wt].mean() > vols["t2"][normal].mean()
        assert vols["t1"][seg == 1].mean() < np.median(vols["t1"][normal])  # hypointense core on T1
        t1ce = vols["t1ce"]
        assert t1ce[seg == 4].mean() > 1.3 * t1ce[normal].mean()  # enhancing rim
        assert t1ce[seg == 4].mean() > 1.15 * t1ce[seg == 1].mean()


def test_tissue_contrasts_match_mri_ordering():
    # a healthy phantom in memory; dark CSF on FLAIR and T1 is bright on T2, so T2-bright voxels are dark there
    v = make_phantom_case(np.random.default_rng(5), SHAPE, SPACING, with_lesion=False)
    brain = v["flair"] > 0
    t2 = v["t2"].astype(float)
    csf = brain & (t2 > np.percentile(t2[brain], 95))
    rest = brain & (t2 < np.percentile(t2[brain], 50))
    for m in ("flair", "t1", "t1ce"):
        x = v[m].astype(float)
        assert x[csf].mean() < 0.6 * x[rest].mean(), m
    assert v["seg"].dtype == np.uint8 and not v["seg"].any()


def test_overwrite_refused_then_allowed(tmp_path):
    (r,) = make_demo_dataset(tmp_path, cases=1, shape=SHAPE, spacing=SPACING)
    before = {k: _load(r[k])[0].copy() for k in MODS}
    with pytest.raises(InputError) as info:
        make_demo_dataset(tmp_path, cases=1, seed=9, shape=SHAPE, spacing=SPACING)
    assert info.value.path == os.fspath(tmp_path)
    assert "Demo_000" in str(info.value) and "overwrite" in str(info.value)
    for k in MODS:
        np.testing.assert_array_equal(_load(r[k])[0], before[k])  # nothing was touched
    (r2,) = make_demo_dataset(tmp_path, cases=1, seed=9, shape=SHAPE, spacing=SPACING, overwrite=True)
    assert not np.array_equal(_load(r2["flair"])[0], before["flair"])
    # overwriting with fewer modalities leaves no stale files from the earlier run
    make_demo_dataset(tmp_path, cases=1, shape=SHAPE, spacing=SPACING, modalities=("flair",), overwrite=True)
    assert sorted(os.listdir(tmp_path / "Demo_000")) == ["Demo_000_flair.nii.gz", "Demo_000_seg.nii.gz"]


def test_output_folder_that_is_a_file(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="not a folder"):
        make_demo_dataset(target, cases=1, shape=SHAPE, spacing=SPACING)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_cases_have_one_healthy_and_one_lesion(tmp_path, seed):
    records = make_demo_dataset(tmp_path, cases=2, seed=seed, shape=SHAPE, spacing=SPACING, modalities=("flair",))
    assert sorted(r["has_lesion"] for r in records) == [False, True]
    for r in records:
        assert bool(_load(r["seg"])[0].any()) == r["has_lesion"]


@pytest.mark.parametrize("fraction, cases, n_lesion", [(0.0, 3, 0), (1.0, 3, 3), (0.5, 4, 2), (0.1, 2, 1)])
def test_lesion_fraction(tmp_path, fraction, cases, n_lesion):
    records = make_demo_dataset(
        tmp_path, cases=cases, shape=(32, 32, 24), spacing=SPACING, lesion_fraction=fraction, modalities=("flair",)
    )
    assert sum(r["has_lesion"] for r in records) == n_lesion


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cases": 0},
        {"lesion_fraction": 1.5},
        {"modalities": ("flair", "dwi")},
        {"modalities": ()},
        {"shape": (8, 48, 32)},
        {"spacing": (2.0, 0.0, 2.5)},
    ],
)
def test_bad_arguments(tmp_path, kwargs):
    args = {"cases": 1, "shape": SHAPE, "spacing": SPACING, **kwargs}
    with pytest.raises(ValueError):
        make_demo_dataset(tmp_path, **args)
    assert not os.listdir(tmp_path)
