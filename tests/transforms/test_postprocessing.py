# SPDX-License-Identifier: Apache-2.0
"""Anomaly-map post-processing against independent oracles: scipy.ndimage (dilation, median filter, brute-force
component sizes from ``label``), numpy.quantile and hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from parameterized import parameterized
from scipy import ndimage

from monai_adiff.transforms.postprocessing import (
    AnomalyScore,
    AnomalyScored,
    AnomalyThreshold,
    AnomalyThresholdd,
    Dilate,
    Dilated,
    KeepLargestComponents,
    KeepLargestComponentsd,
    MedianFilter,
    MedianFilterd,
    RemoveSmallComponents,
    RemoveSmallComponentsd,
    median_filter_mirror,
    otsu_threshold,
    volume_score,
)

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _rand_mask(shape, density, seed):
    return np.random.default_rng(seed).random(shape) < density


def _per_part(arr: np.ndarray, slice_axis: int | None, fn) -> np.ndarray:
    """Oracle driver: apply ``fn`` to each channel (and each slice along ``slice_axis``) of a channel-first array."""
    out = np.zeros(arr.shape, dtype=arr.dtype)
    for c in range(arr.shape[0]):
        if slice_axis is None or arr.ndim == 3:
            out[c] = fn(arr[c])
            continue
        ax = slice_axis % (arr.ndim - 1)
        for s in range(arr.shape[ax + 1]):
            idx = [slice(None)] * (arr.ndim - 1)
            idx[ax] = s
            out[(c, *idx)] = fn(arr[(c, *idx)])
    return out


# ---------------------------------------------------------------- threshold


def test_threshold_hand_example():
    pred = torch.zeros(2, 2, 2, 2)
    pred[0] = torch.tensor([[[0.2, 0.5], [0.51, 0.0]], [[0.9, 0.3], [0.5, 1.0]]])
    pred[1] = 1.0 - pred[0]
    out = AnomalyThreshold(0.5)(pred)
    assert out.shape == (1, 2, 2, 2) and out.dtype == torch.float32
    # strictly greater: 0.5 itself is not anomalous
    assert out[0].tolist() == [[[0, 0], [1, 0]], [[1, 0], [0, 1]]]
    assert AnomalyThreshold(0.3, channel=1)(pred)[0].tolist() == [[[1, 1], [1, 1]], [[0, 1], [1, 0]]]
    # 2D slice and numpy in -> numpy out
    out2d = AnomalyThreshold(0.5)(pred[..., 1].numpy())
    assert isinstance(out2d, np.ndarray) and out2d.shape == (1, 2, 2)
    np.testing.assert_array_equal(out2d[0], [[0, 0], [0, 1]])
    assert AnomalyThreshold(0.5)(pred.double()).dtype == torch.float64


def _otsu_brute_force(v: np.ndarray) -> float:
    """The cut between sorted unique values that maximises w0 * w1 * (mu0 - mu1)^2 (Otsu 1979, by enumeration)."""
    best, cut = -1.0, None
    for c in np.unique(v)[:-1]:
        lo, hi = v[v <= c], v[v > c]
        between = lo.size * hi.size * (lo.mean() - hi.mean()) ** 2
        if between > best:
            best, cut = between, c
    return float(cut)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_otsu_matches_brute_force_on_integer_values(seed):
    # integers 0..K with K + 1 bins put each value in its own bin, so the histogram cut is the exact cut
    rng = np.random.default_rng(seed)
    k = 60
    v = np.concatenate([rng.integers(0, 25, 400), rng.integers(30, k + 1, 80 + 40 * seed), [0, k]]).astype(np.float32)
    thr = otsu_threshold(torch.from_numpy(v), bins=k + 1)
    cut = _otsu_brute_force(v)
    np.testing.assert_array_equal(v > thr, v > cut)


def test_otsu_edge_cases_and_no_wraparound():
    assert otsu_threshold(torch.zeros(0)) == float("inf")
    assert otsu_threshold(torch.full((10,), 0.3)) == float("inf")  # constant: no cut, empty mask
    assert otsu_threshold(torch.tensor([float("nan"), 1.0, 1.0])) == float("inf")
    # errors above 1 stay above the cut (the public code's uint8(|err| * 255) wraps 1.2 to 50)
    v = torch.tensor([0.01, 0.02, 0.0, 0.03, 1.2, 1.3, 1.25])
    assert ((v > otsu_threshold(v)) == (v > 1.0)).all()


def test_otsu_threshold_transform_uses_the_brain_only():
    pred = torch.zeros(1, 6, 6, 2)
    pred[0, 1:5, 1:5] = 0.1
    pred[0, 2:4, 2:4] = 0.9  # the lesion
    pred[0, 0, 0] = 5.0  # an outlier outside the brain
    brain = torch.zeros(1, 6, 6, 2)
    brain[0, 1:5, 1:5] = 1
    out = AnomalyThresholdd(threshold="otsu")({"pred": pred, "brain": brain})["pred_mask"]
    # the cut comes from the brain voxels (0.1 vs 0.9); it applies everywhere (the bundles mask to the brain later)
    assert (out * brain).sum() == 8 and out[0, 2:4, 2:4].all() and out.sum() == 8 + 2
    # without the brain the outlier dominates: only it is above Otsu's cut
    assert AnomalyThreshold("otsu")(pred)[0].sum() == 2
    with pytest.raises(ValueError, match="otsu"):
        AnomalyThreshold("median")


# ---------------------------------------------------------------- dilation


@parameterized.expand(
    [
        ("slice_k3", 3, -1, (2, 12, 11, 5)),
        ("slice_k5", 5, -1, (1, 12, 11, 5)),
        ("slice_axis0", 3, 0, (1, 6, 11, 9)),
        ("3d_k3", 3, None, (2, 10, 11, 7)),
        ("2d_image", 3, -1, (2, 13, 9)),
        ("2d_image_nd", 5, None, (1, 13, 9)),
    ]
)
def test_dilate_vs_scipy(_, k, slice_axis, shape):
    mask = _rand_mask(shape, 0.04, seed=k + len(shape))
    mask[(0,) + (0,) * (len(shape) - 1)] = True  # a corner voxel: zero padding outside the image
    out = Dilate(k, slice_axis)(torch.as_tensor(mask, dtype=torch.float32))
    ref = _per_part(mask, slice_axis, lambda a: ndimage.binary_dilation(a, structure=np.ones((k,) * a.ndim, bool)))
    assert out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy(), ref.astype(np.float32))


def test_dilate_keeps_dtype_and_empty():
    empty = torch.zeros(1, 8, 8, 3, dtype=torch.bool)
    out = Dilate()(empty)
    assert out.dtype == torch.bool and not out.any()
    np.testing.assert_array_equal(Dilate(1)(np.eye(4)[None]), np.eye(4)[None])
    with pytest.raises(ValueError):
        Dilate(4)


# ---------------------------------------------------------------- median filter


@parameterized.expand(
    [
        ("slice_5x5", 5, -1, (2, 17, 19, 6)),
        ("slice_3x3", 3, -1, (1, 9, 8, 4)),
        ("slice_7x7", 7, -1, (1, 11, 12, 2)),
        ("slice_axis0", 5, 0, (1, 4, 13, 10)),
        ("3d_3x3x3", 3, None, (2, 11, 10, 9)),
        ("2d_image", 5, -1, (3, 16, 15)),
        ("tiny_dims", 5, -1, (1, 3, 2, 2)),  # pad wider than the image: mirror folds repeatedly, as in scipy
    ]
)
def test_median_vs_scipy_mirror(_, k, slice_axis, shape):
    x = np.random.default_rng(k * 10 + len(shape)).random(shape).astype(np.float32)
    out = MedianFilter(k, slice_axis)(torch.as_tensor(x))
    ref = _per_part(x, slice_axis, lambda a: ndimage.median_filter(a, size=k, mode="mirror"))
    assert out.shape == x.shape and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-6, rtol=0)


def test_median_is_mirror_not_replicate():
    # the oracle above would not catch "nearest" padding unless the borders differ: make sure they do here
    x = np.random.default_rng(3).random((1, 12, 12, 2))
    ours = MedianFilter(5)(x)
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float64
    nearest = _per_part(x, -1, lambda a: ndimage.median_filter(a, size=5, mode="nearest"))
    assert not np.allclose(ours, nearest)


def test_median_ties_ints_and_chunks():
    x = np.random.default_rng(4).integers(0, 4, size=(2, 9, 10, 7))
    ref = ndimage.median_filter(x, size=(1, 3, 3, 3), mode="mirror")
    np.testing.assert_array_equal(MedianFilter(3, slice_axis=None)(x), ref)
    xt = torch.as_tensor(x, dtype=torch.float64)
    # chunking along the first spatial dim (one row per chunk) changes nothing
    np.testing.assert_array_equal(median_filter_mirror(xt, 3, chunk_elements=1).numpy(), ref)


# ---------------------------------------------------------------- connected components


def _component_sizes(part: np.ndarray, connectivity):
    conn = part.ndim if connectivity is None else connectivity
    lab, n = ndimage.label(part, structure=ndimage.generate_binary_structure(part.ndim, conn))
    return lab, {i: int((lab == i).sum()) for i in range(1, n + 1)}


def _oracle_largest(num, connectivity):
    def fn(part):
        lab, sizes = _component_sizes(part, connectivity)
        keep = sorted(sizes, key=lambda i: (-sizes[i], i))[:num]  # ties: the label met first
        return np.isin(lab, keep) & (lab > 0)

    return fn


def _oracle_small(max_size, connectivity):
    def fn(part):
        lab, sizes = _component_sizes(part, connectivity)
        return np.isin(lab, [i for i, s in sizes.items() if s > max_size])

    return fn


COMPONENT_CASES = [
    (f"n{num}_ax{ax}_c{conn}", num, ax, conn) for num in (1, 2) for ax in (-1, 0, None) for conn in (None, 1)
]


@parameterized.expand(COMPONENT_CASES)
def test_keep_largest_vs_label_oracle(_, num, slice_axis, connectivity):
    mask = _rand_mask((2, 14, 13, 6), 0.35, seed=num)
    mask[0, ..., 2] = False  # an empty slice stays empty
    out = KeepLargestComponents(num, slice_axis, connectivity)(torch.as_tensor(mask, dtype=torch.float32))
    ref = _per_part(mask, slice_axis, _oracle_largest(num, connectivity))
    np.testing.assert_array_equal(out.numpy(), ref.astype(np.float32))
    assert not out[0, ..., 2].any()


@parameterized.expand(COMPONENT_CASES)
def test_remove_small_vs_label_oracle(_, max_size, slice_axis, connectivity):
    max_size = 3 * max_size  # 3 and 6 voxels
    mask = _rand_mask((2, 14, 13, 6), 0.3, seed=10 + max_size)
    out = RemoveSmallComponents(max_size, slice_axis, connectivity)(mask)
    ref = _per_part(mask, slice_axis, _oracle_small(max_size, connectivity))
    assert out.dtype == bool
    np.testing.assert_array_equal(out, ref)


def test_components_hand_examples():
    # two voxels touching only at a corner in 3D: one component at full connectivity, two at connectivity 1
    m = torch.zeros(1, 4, 4, 4)
    m[0, 1, 1, 1] = m[0, 2, 2, 2] = 1
    assert RemoveSmallComponents(1)(m).sum() == 2
    assert RemoveSmallComponents(1, connectivity=1)(m).sum() == 0
    assert RemoveSmallComponents(1, connectivity=2)(m).sum() == 0  # edges are not enough either
    # per slice those voxels lie in different slices: two single-voxel components
    assert RemoveSmallComponents(1, slice_axis=-1)(m).sum() == 0
    # "<= max_size" is removed: 40 voxels go, 41 stay (AnoFPDM)
    v = torch.zeros(1, 10, 10, 10)
    v[0, 0, :8, :5] = 1  # 40
    v[0, 5, :, :4] = 1  # 40 ...
    v[0, 5, 0, 4] = 1  # ... + 1 = 41
    out = RemoveSmallComponents(40)(v)
    assert out[0, 0].sum() == 0 and out[0, 5].sum() == 41
    # equal sizes: the component met first in C order wins; empty input stays empty
    t = torch.zeros(1, 5, 5)
    t[0, 0, :2] = t[0, 4, 3:] = 1
    assert KeepLargestComponents()(t)[0].nonzero().tolist() == [[0, 0], [0, 1]]
    assert not KeepLargestComponents()(torch.zeros(1, 5, 5, 3)).any()
    with pytest.raises(ValueError):
        KeepLargestComponents(connectivity=3)(t)  # 2D per slice: connectivity is 1 or 2
    with pytest.raises(ValueError):
        RemoveSmallComponents(connectivity=4)(m)


# ---------------------------------------------------------------- scores


def test_score_hand_example():
    pred = torch.zeros(2, 2, 2, 3)
    pred[0, ..., 0] = torch.tensor([[0.1, 0.2], [0.3, 0.4]])
    pred[0, ..., 1] = torch.tensor([[0.8, 0.2], [0.6, 0.0]])
    pred[0, ..., 2] = 5.0  # no brain in this slice
    pred[1] = 7.0
    brain = torch.ones(1, 2, 2, 3)
    brain[0, 1, 1, 1] = 0
    brain[0, ..., 2] = 0
    torch.testing.assert_close(AnomalyScore("max")(pred, brain), torch.tensor([0.4, 0.8, 0.0]))
    torch.testing.assert_close(AnomalyScore("mean")(pred, brain), torch.tensor([0.25, 1.6 / 3, 0.0]))
    # linear interpolation: median of {0.1, 0.2, 0.3, 0.4} = 0.25, of {0.2, 0.6, 0.8} = 0.6
    torch.testing.assert_close(AnomalyScore("quantile", q=0.5)(pred, brain), torch.tensor([0.25, 0.6, 0.0]))
    torch.testing.assert_close(AnomalyScore("quantile", q=0.75)(pred, brain), torch.tensor([0.325, 0.7, 0.0]))
    torch.testing.assert_close(AnomalyScore("max", channel=1)(pred, brain), torch.tensor([7.0, 7.0, 0.0]))
    # no brain mask: every pixel counts
    torch.testing.assert_close(AnomalyScore("max")(pred), torch.tensor([0.4, 0.8, 5.0]))
    # 2D slice -> 0-dim; slices along the first axis
    s2d = AnomalyScore("mean")(pred[..., 1], brain[..., 1])
    assert s2d.ndim == 0 and float(s2d) == pytest.approx(1.6 / 3)
    torch.testing.assert_close(AnomalyScore("max", slice_axis=0)(pred, brain), torch.tensor([0.8, 0.6]))
    assert float(volume_score(AnomalyScore("max")(pred, brain))) == pytest.approx(0.8)


@parameterized.expand([("q99", 0.99), ("q90", 0.9), ("q0", 0.0), ("q1", 1.0)])
def test_score_quantile_vs_numpy(_, q):
    rng = np.random.default_rng(int(q * 100))
    amap = rng.random((1, 12, 10, 5))
    brain = rng.random((1, 12, 10, 5)) < 0.6
    brain[..., 3] = False
    out = AnomalyScore("quantile", q=q)(torch.as_tensor(amap, dtype=torch.float32), brain)
    ref = [np.quantile(amap[0, ..., s][brain[0, ..., s]], q) if brain[0, ..., s].any() else 0.0 for s in range(5)]
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-6)
    assert out[3] == 0


def test_score_edge_cases():
    assert float(AnomalyScore()(torch.rand(1, 4, 4, 3), torch.zeros(1, 4, 4, 3)).abs().sum()) == 0
    assert float(volume_score(torch.zeros(0))) == 0.0 and volume_score(torch.tensor(0.3)).ndim == 0
    with pytest.raises(ValueError):
        AnomalyScore("median")
    with pytest.raises(ValueError):
        AnomalyScore(q=1.5)
    with pytest.raises(ValueError):
        AnomalyScore()(torch.rand(1, 4, 4, 3), torch.ones(1, 4, 4, 2))


# ---------------------------------------------------------------- meta, devices, dictionaries


def _meta_tensor(x):
    affine = torch.diag(torch.tensor([-1.0, -1.0, 2.0, 1.0]))
    return MetaTensor(x, affine=affine, meta={"filename_or_obj": "case_flair.nii.gz"})


@parameterized.expand(
    [
        ("threshold", AnomalyThreshold(0.5)),
        ("dilate", Dilate()),
        ("largest", KeepLargestComponents()),
        ("median", MedianFilter()),
        ("small", RemoveSmallComponents(2)),
    ]
)
def test_meta_preserved(_, transform):
    src = _meta_tensor((torch.rand(1, 8, 8, 4) > 0.6).float())
    out = transform(src)
    assert isinstance(out, MetaTensor) and out.shape == src.shape
    assert out.meta["filename_or_obj"] == "case_flair.nii.gz"
    torch.testing.assert_close(out.affine, src.affine)


def test_dict_versions_write_the_right_keys():
    pred = torch.zeros(2, 12, 12, 4)
    pred[0, 2:6, 2:6, 1:3] = 0.9  # a 4 x 4 blob in two slices
    pred[0, 9, 9, 1] = 0.8  # one stray pixel
    pred[1] = 0.5
    brain = torch.zeros(1, 12, 12, 4)
    brain[..., :3] = 1
    d = {"pred": _meta_tensor(pred), "brain": brain}
    d = AnomalyThresholdd(threshold=0.5)(d)
    assert isinstance(d["pred_mask"], MetaTensor) and d["pred_mask"].meta["filename_or_obj"] == "case_flair.nii.gz"
    assert d["pred_mask"].shape == (1, 12, 12, 4) and int(d["pred_mask"].sum()) == 33
    d = KeepLargestComponentsd()(d)
    assert int(d["pred_mask"].sum()) == 32
    d = Dilated()(d)
    assert int(d["pred_mask"].sum()) == 2 * 36
    d = RemoveSmallComponentsd(max_size=100)(d)
    assert int(d["pred_mask"].sum()) == 0 and isinstance(d["pred_mask"], MetaTensor)
    d = MedianFilterd()(d)
    assert d["pred"].shape == pred.shape  # the 4 x 4 blob survives a 5 x 5 median only in its centre
    d = AnomalyScored(reduction="max")(d)
    torch.testing.assert_close(d["pred_score"], torch.tensor([0.0, 0.9, 0.9, 0.0]))
    assert not isinstance(d["pred_score"], MetaTensor) and float(d["volume_score"]) == pytest.approx(0.9)
    with pytest.raises(KeyError, match="brain"):
        AnomalyScored()({"pred": pred})
    no_brain = AnomalyScored(brain_key=None, volume_key=None, output_key="s", reduction="mean")({"pred": pred})
    assert set(no_brain) == {"pred", "s"} and no_brain["s"].shape == (4,)
    assert MedianFilterd(keys="missing", allow_missing_keys=True)({"pred": pred})["pred"] is pred
    with pytest.raises(TypeError):
        AnomalyThresholdd("pred", 0.5)  # the threshold must be named


@CUDA
def test_cuda_matches_cpu():
    x = torch.rand(2, 16, 16, 5)
    mask = (x[:1] > 0.6).float()
    for t, inp in [
        (AnomalyThreshold(0.5), x),
        (Dilate(), mask),
        (KeepLargestComponents(2), mask),
        (MedianFilter(), x),
        (RemoveSmallComponents(3), mask),
        (MedianFilter(3, None), x),
    ]:
        out = t(inp.cuda())
        assert out.device.type == "cuda"
        torch.testing.assert_close(out.cpu(), t(inp))
    torch.testing.assert_close(AnomalyScore()(x.cuda(), mask.cuda()).cpu(), AnomalyScore()(x, mask))


@pytest.mark.parametrize("iterations", [0, 1, 2])
def test_brain_erosion_mask_matches_scipy(iterations):
    from monai_adiff.transforms import BrainErosionMask, BrainErosionMaskd

    rng = np.random.default_rng(iterations)
    brain = np.zeros((1, 12, 10, 3), bool)
    brain[0, 2:10, 1:9] = True
    brain[0, 0:4, 0:3, 1] = True  # touches the image border: outside counts as background
    brain[0, 5, 4, 2] = False  # a hole
    amap = rng.random((2, 12, 10, 3)).astype(np.float32)
    out = BrainErosionMask(iterations, slice_axis=-1)(torch.as_tensor(amap), torch.as_tensor(brain))
    keep = np.stack(
        [
            (
                ndimage.binary_erosion(brain[0, ..., s], np.ones((3, 3)), iterations=iterations, border_value=0)
                if iterations
                else brain[0, ..., s]
            )
            for s in range(3)
        ],
        axis=-1,
    )
    np.testing.assert_array_equal(out.numpy(), amap * keep[None])
    d = BrainErosionMaskd("pred", iterations=iterations)({"pred": MetaTensor(amap), "brain": brain})
    np.testing.assert_array_equal(np.asarray(d["pred"]), amap * keep[None])
    assert d["brain"] is brain  # the evaluated brain mask is untouched
    with pytest.raises(KeyError, match="brain"):
        BrainErosionMaskd("pred")({"pred": amap})
    with pytest.raises(ValueError, match="iterations"):
        BrainErosionMask(-1)


def test_otsu_per_slice_matches_brute_force_slice_by_slice():
    # three axial slices (last axis), each with its own distribution of integers 0..255 inside the brain; with 256
    # bins over [0, 255] each integer has its own bin, so each slice's cut is the exact one
    rng = np.random.default_rng(7)
    amap = np.zeros((1, 12, 12, 3), np.float32)
    brain = np.zeros((1, 12, 12, 3), np.float32)
    brain[0, 1:11, 1:11] = 1
    # (background below, lesion from, lesion below): slice 0's lesion is dimmer than slice 1's background
    for k, (bg, les_lo, les_hi) in enumerate([(20, 40, 70), (150, 200, 256), (30, 70, 100)]):
        sl = rng.integers(0, bg, (10, 10)).astype(np.float32)
        sl[:3, :3] = rng.integers(les_lo, les_hi, (3, 3))
        sl[0, 0], sl[9, 9] = 0, 255
        amap[0, 1:11, 1:11, k] = sl
    amap[0, 0, 0, :] = 999.0  # outside the brain: must not move any cut
    out = AnomalyThreshold("otsu", slice_axis=-1)(torch.from_numpy(amap), torch.from_numpy(brain))
    from skimage.filters import threshold_otsu

    for k in range(3):
        inside = amap[0, 1:11, 1:11, k]
        expected = inside > _otsu_brute_force(inside.ravel())
        np.testing.assert_array_equal(out[0, 1:11, 1:11, k].numpy() > 0, expected)
        # and scikit-image's Otsu of the slice as a uint8 image (one histogram bin per grey level)
        np.testing.assert_array_equal(expected, inside > threshold_otsu(inside.astype(np.uint8)))
        assert out[0, 0, 0, k] == 1  # outside the brain the map is still cut (the bundles mask it afterwards)
    # one cut for the whole volume differs: the slices' distributions differ
    whole = AnomalyThreshold("otsu")(torch.from_numpy(amap), torch.from_numpy(brain))
    assert not torch.equal(whole, out)
    # a slice without brain pixels gets an empty mask
    brain[0, :, :, 1] = 0
    empty = AnomalyThreshold("otsu", slice_axis=-1)(torch.from_numpy(amap), torch.from_numpy(brain))
    assert empty[0, :, :, 1].sum() == 0
