# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from parameterized import parameterized

from monai_adiff.data import InputError
from monai_adiff.transforms import ScaleByPercentile, ScaleByPercentiled, ScaleToSymmetricRange, ScaleToSymmetricRanged


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
