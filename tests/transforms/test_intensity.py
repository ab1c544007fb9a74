# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from parameterized import parameterized

from monai_adiff.data import InputError
from monai_adiff.transforms import (
    ScaleByPercentile,
    ScaleByPercentiled,
    ScaleToSymmetricRange,
    ScaleToSymmetricRanged,
    StandardizeBackground,
    StandardizeBackgroundd,
)


def _volume(seed=0, shape=(2, 10, 12, 6)):
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 100.0, shape).astype(np.float32)
    x[:, :2] = 0  # background
    return x


@parameterized.expand([(99.0, False), (99.0, True), (50.0, False), (97.5, True)])
def test_percentile_scaling_against_numpy(q, clip):
    x = _volume()
    out = ScaleByPercentile(percentile=q, clip=clip)(torch.as_tensor(x))
    for c in range(2):
        p = np.percentile(x[c][x[c] != 0], q)  # numpy's linear percentile of the foreground
        ref = (np.minimum(x[c], p) if clip else x[c]) / p
        np.testing.assert_allclose(out[c].numpy(), ref, rtol=1e-5, atol=1e-6)
    if clip:
        assert float(out.max()) == pytest.approx(1.0)
    else:
        assert float(out.max()) > 1.0


def test_percentile_not_channel_wise_and_numpy_in_out():
    x = _volume()
    out = ScaleByPercentile(99.0, channel_wise=False)(x)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, x / np.percentile(x[x != 0], 99.0), rtol=1e-5)


def test_percentile_keeps_meta_and_names_file_on_empty():
    x = MetaTensor(torch.zeros(1, 4, 4, 4), meta={"filename_or_obj": "/d/empty_flair.nii.gz"})
    with pytest.raises(InputError, match="empty_flair.nii.gz: has an empty foreground"):
        ScaleByPercentile()(x)
    y = MetaTensor(torch.ones(1, 4, 4, 4) * 5, meta={"filename_or_obj": "a.nii"})
    out = ScaleByPercentile()(y)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "a.nii"
    assert torch.allclose(out.as_tensor(), torch.ones(1, 4, 4, 4))


def test_percentile_dict():
    x = _volume()
    d = ScaleByPercentiled(keys="image", clip=True)({"image": torch.as_tensor(x), "other": 1})
    assert d["other"] == 1 and float(d["image"].max()) == pytest.approx(1.0)


def test_symmetric_fixed_range():
    x = torch.tensor([[[0.0, 0.25], [0.5, 1.0]]])
    out = ScaleToSymmetricRange("global", vmin=0.0, vmax=1.0)(x)
    assert torch.allclose(out, torch.tensor([[[-1.0, -0.5], [0.0, 1.0]]]))


def test_symmetric_global_minmax_per_channel():
    x = torch.stack([torch.linspace(2, 6, 24).reshape(2, 3, 4), torch.linspace(-3, 1, 24).reshape(2, 3, 4)])
    out = ScaleToSymmetricRange("global")(x)
    for c in range(2):
        ref = (x[c] - x[c].min()) / (x[c].max() - x[c].min()) * 2 - 1
        assert torch.allclose(out[c], ref, atol=1e-6)


def test_symmetric_per_slice_volume():
    # AnoFPDM: each axial slice (last axis) and channel min-maxed on its own, + eps in the range
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.normal(size=(2, 5, 6, 3)).astype(np.float32))
    eps = 1e-5
    out = ScaleToSymmetricRange("slice", eps=eps)(x)
    for c in range(2):
        for k in range(3):
            s = x[c, :, :, k]
            ref = (s - s.min()) / (s.max() - s.min() + eps) * 2 - 1
            assert torch.allclose(out[c, :, :, k], ref, atol=1e-6)


def test_symmetric_per_slice_2d_and_other_axis():
    x = torch.arange(12.0).reshape(1, 3, 4)
    out = ScaleToSymmetricRange("slice", eps=0.0)(x)  # a 2D image is one slice
    assert float(out.min()) == -1.0 and float(out.max()) == 1.0
    v = torch.rand(1, 4, 5, 6)
    out = ScaleToSymmetricRange("slice", slice_axis=0, eps=0.0)(v)
    for k in range(4):
        assert float(out[0, k].min()) == pytest.approx(-1) and float(out[0, k].max()) == pytest.approx(1)


def test_symmetric_constant_slice_is_finite():
    out = ScaleToSymmetricRange("slice")(torch.zeros(1, 4, 4, 2))
    assert torch.isfinite(out).all() and float(out.max()) == -1.0


def test_symmetric_dict_and_bad_args():
    d = ScaleToSymmetricRanged(keys=["a", "b"], vmin=0, vmax=2)({"a": torch.ones(1, 2, 2), "b": torch.zeros(1, 2, 2)})
    assert float(d["a"].mean()) == 0.0 and float(d["b"].mean()) == -1.0
    with pytest.raises(ValueError):
        ScaleToSymmetricRange("volume")
    with pytest.raises(ValueError):
        ScaleToSymmetricRange(vmin=0.0)
    with pytest.raises(ValueError):
        ScaleToSymmetricRange(vmin=1.0, vmax=1.0)


def _skull_stripped(shape=(1, 12, 12, 8), seed=0):
    """A 'brain' block in the middle (values 1..200, min near 0 as real MRI), background 0 on every border."""
    rng = np.random.default_rng(seed)
    x = np.zeros(shape, np.float32)
    x[:, 2:-2, 2:-2, 1:-1] = rng.uniform(1, 200, (shape[0], shape[1] - 4, shape[2] - 4, shape[3] - 2))
    return x


def test_standardize_background_leaves_brats_style_volumes_alone():
    x = torch.as_tensor(_skull_stripped())
    assert StandardizeBackground()(x) is x


def test_standardize_background_undoes_an_offset_exactly():
    x = np.round(_skull_stripped())  # integer intensities, as int16 scans with an offset
    out = StandardizeBackground()(torch.as_tensor((x + 1000).astype(np.int16)))
    np.testing.assert_array_equal(out.numpy(), x)


def test_standardize_background_of_a_z_scored_volume_matches_the_closed_form():
    x = _skull_stripped()
    brain = x[0] != 0
    z = np.full_like(x, -1.5)
    z[0][brain] = (x[0][brain] - x[0][brain].mean()) / x[0][brain].std()
    out = StandardizeBackground()(torch.as_tensor(z)).numpy()
    lo, hi = z[0][brain].min(), z[0][brain].max()
    shift = lo - 1e-3 * (hi - lo)  # brain values lie below the background: re-base on the brain minimum
    np.testing.assert_allclose(out[0][brain], z[0][brain] - shift, rtol=1e-6)
    assert (out[0][~brain] == 0).all() and (out[0][brain] > 0).all()
    # after percentile scaling it is the original up to the brain minimum (1 of ~200 here)
    a = ScaleByPercentile(99.0, clip=True)(torch.as_tensor(x)).numpy()
    b = ScaleByPercentile(99.0, clip=True)(torch.as_tensor(out)).numpy()
    assert np.abs(a - b).max() < 0.01


def test_standardize_background_with_a_mask_and_without_a_constant_background():
    x = _skull_stripped()
    noisy = x + np.random.default_rng(1).uniform(0, 5, x.shape).astype(np.float32) * (x == 0)
    img = MetaTensor(torch.as_tensor(noisy), meta={"filename_or_obj": "/data/head.nii.gz"})
    with pytest.raises(InputError, match=r"/data/head.nii.gz: has no constant background .*brainmask"):
        StandardizeBackground()(img)
    mask = x[0] != 0
    out = StandardizeBackground()(torch.as_tensor(noisy), torch.as_tensor(mask[None]))
    np.testing.assert_array_equal(out.numpy(), x)  # outside the mask 0, the brain (> 0) unchanged
    with pytest.raises(InputError, match="brain mask shape"):
        StandardizeBackground()(torch.as_tensor(noisy), torch.as_tensor(mask[:-1]))


def test_standardize_backgroundd_keeps_the_native_foreground():
    x = _skull_stripped()
    d = StandardizeBackgroundd(keys="image", foreground_key="fg")({"image": torch.as_tensor(x - 1.5)})
    np.testing.assert_array_equal(d["fg"].numpy(), x != 0)


def test_percentile_scaling_ignores_a_saturated_plateau():
    x = _skull_stripped()
    sat = x.copy()
    sat[0, 2:6] = np.where(sat[0, 2:6] != 0, 32767.0, 0)  # a third of the brain at the int16 maximum
    out = ScaleByPercentile(99.0, clip=True)(torch.as_tensor(sat)).numpy()
    rest = (sat[0] != 0) & (sat[0] < 32767)
    p = np.percentile(sat[0][rest], 99.0)  # the percentile of the unsaturated voxels sets the scale
    np.testing.assert_allclose(out[0][rest], np.minimum(sat[0][rest], p) / p, rtol=1e-5)
    assert (out[0][sat[0] == 32767] == 1.0).all()
