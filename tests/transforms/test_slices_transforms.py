# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_adiff.transforms import (
    BrainMask,
    BrainMaskd,
    BrainSliceSelection,
    BrainSliceSelectiond,
    SliceLabel,
    SliceLabeld,
    slice_areas,
)


def _volume():
    # 2 channels, 4x4 in-plane, 5 slices; brain areas per slice (any channel) = 0, 1, 16, 8, 2
    x = torch.zeros(2, 4, 4, 5)
    x[0, 0, 0, 1] = 1.0
    x[1, :, :, 2] = 3.0
    x[0, :2, :, 3] = 2.0
    x[1, 3, :2, 4] = 1.0
    return x


def test_slice_areas_and_mask():
    x = _volume()
    m = BrainMask()(x)
    assert m.shape == (1, 4, 4, 5) and m.dtype == torch.bool
    assert slice_areas(m).tolist() == [0, 1, 16, 8, 2]
    # along the first axis: row 0 = 1 (k=1) + 4 (k=2) + 4 (k=3); row 1 = 4 + 4; row 2 = 4; row 3 = 4 + 2 (k=4)
    assert slice_areas(m, slice_axis=0).tolist() == [9, 8, 4, 6]
    assert int(slice_areas(m[..., 2])) == 16  # a 2D image is one slice
    assert slice_areas(BrainMask(threshold=1.5)(x)).tolist() == [0, 0, 16, 8, 0]


@pytest.mark.parametrize(
    "fraction,expected",
    [
        (0.0, [False, True, True, True, True]),
        (0.1, [False, False, True, True, True]),
        (0.5, [False, False, True, False, False]),
    ],
)
def test_brain_slice_selection(fraction, expected):
    # kept when area > fraction * 16
    assert BrainSliceSelection(min_fraction=fraction)(_volume()).tolist() == expected


def test_brain_slice_selection_bad_fraction():
    with pytest.raises(ValueError):
        BrainSliceSelection(min_fraction=1.0)


def test_slice_label():
    seg = torch.zeros(1, 4, 4, 5)
    seg[0, 1, 1, 1] = 2
    seg[0, 2, 3, 3] = 4
    assert SliceLabel()(seg).tolist() == [0, 1, 0, 1, 0]
    assert int(SliceLabel()(seg[..., 1])) == 1 and int(SliceLabel()(seg[..., 0])) == 0


def test_dict_versions():
    x = _volume()
    seg = torch.zeros(1, 4, 4, 5)
    seg[0, 0, 0, 2] = 1
    d = BrainMaskd(keys="image")({"image": x, "label": seg})
    d = BrainSliceSelectiond(keys="image", min_fraction=0.1)(d)
    d = SliceLabeld(keys="label")(d)
    assert d["brain"].shape == (1, 4, 4, 5)
    assert d["brain_slices"].tolist() == [False, False, True, True, True]
    assert d["brain_area"].tolist() == [0, 1, 16, 8, 2]
    assert d["slice_label"].tolist() == [0, 0, 1, 0, 0] and d["tumour_area"].tolist() == [0, 0, 1, 0, 0]


def test_intensity_rule_is_a_contiguous_range():
    # the public AnoFPDM code: channels / their 99th foreground percentile (numpy's), channel mean summed per slice,
    # every slice from the first to the last sum > 0.5
    x = torch.zeros(2, 4, 4, 7)
    x[0, 0, 0, 1] = 1.0  # one dim voxel: sum below 0.5
    x[:, 1, 1, 2] = torch.tensor([3.0, 5.0])
    x[0, :2, :2, 4] = torch.tensor([[2.0, 3.0], [4.0, 3.0]])  # slice 3 is empty but inside the range
    x[1, 0, 0, 5] = 1.0
    a = x.numpy()
    scaled = np.stack([c / np.percentile(c[c != 0], 99) for c in a])
    sums = scaled.mean(0).sum((0, 1))
    above = np.nonzero(sums > 0.5)[0]
    expected = [above[0] <= k <= above[-1] for k in range(7)]
    assert expected == [False, False, True, True, True, False, False]  # the hand-checked reading of this volume
    got = BrainSliceSelection(rule="intensity")(x)
    assert got.tolist() == expected
    # the area rule drops the empty slice and keeps the dim ones
    assert BrainSliceSelection(min_fraction=0.0)(x).tolist() == [False, True, True, False, True, True, False]
    d = BrainSliceSelectiond(keys="image", rule="intensity")({"image": x})
    assert d["brain_slices"].tolist() == expected
    with pytest.raises(ValueError, match="rule"):
        BrainSliceSelection(rule="sum")
