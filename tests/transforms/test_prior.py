# SPDX-License-Identifier: Apache-2.0
"""The hyperintensity prior against weights worked out by hand on a small image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_adiff.transforms import HyperintensityPrior, HyperintensityPriord

# FLAIR (channel 0) of a 1 x 4 x 2 "volume": brain values 0, 1, 2, 3, 4 (median 2), one background voxel; channel 1
# (another modality) must be ignored
FLAIR = torch.tensor([[[0.0, 1.0], [2.0, 3.0], [4.0, -1.0], [5.0, 6.0]]])[..., None]  # (1, 4, 2, 1)
BRAIN = torch.tensor([[[1, 1], [1, 1], [1, 0], [0, 0]]])[..., None]
IMAGE = torch.cat([FLAIR, 100 - FLAIR])
MAP = torch.ones((1, 4, 2, 1))


def test_weight_by_hand():
    # brain values 0..4: median 2, 0.75-quantile 3 (linear interpolation); weight clip((I - 2) / 1, 0, 1)
    w = HyperintensityPrior("weight", high_quantile=0.75)(MAP, IMAGE, BRAIN)[0, ..., 0]
    expected = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])  # zero outside the brain
    assert torch.allclose(w, expected)
    # the 0.875-quantile is 3.5: the weight of I = 3 is (3 - 2) / 1.5
    w = HyperintensityPrior("weight", high_quantile=0.875)(MAP * 2, IMAGE, BRAIN)[0, ..., 0]
    assert float(w[1, 1]) == pytest.approx(2 * 1 / 1.5) and float(w[2, 0]) == pytest.approx(2.0)


def test_gate_by_hand_and_types_kept():
    out = HyperintensityPrior("gate")(MAP.numpy() * 3, IMAGE.numpy(), BRAIN.numpy())
    assert isinstance(out, np.ndarray)
    assert np.array_equal(out[0, ..., 0], 3 * np.array([[0, 0], [0, 1], [1, 0], [0, 0]]))


def test_dictionary_version_changes_only_the_map():
    d = {"pred": MAP.clone(), "image": IMAGE.clone(), "brain": BRAIN.clone()}
    out = HyperintensityPriord(keys="pred", mode="gate")(d)
    assert torch.equal(out["image"], IMAGE) and torch.equal(out["brain"], BRAIN)
    assert float(out["pred"].sum()) == 2.0
    with pytest.raises(KeyError, match="image"):
        HyperintensityPriord()({"pred": MAP, "brain": BRAIN})


def test_bad_arguments_and_an_empty_brain():
    with pytest.raises(ValueError, match="mode"):
        HyperintensityPrior("darker")
    with pytest.raises(ValueError, match="high_quantile"):
        HyperintensityPrior(high_quantile=0.4)
    assert float(HyperintensityPrior()(MAP, IMAGE, torch.zeros_like(BRAIN)).abs().sum()) == 0.0
