# SPDX-License-Identifier: Apache-2.0
"""The denoising autoencoder's parts against closed-form expectations: coarse noise statistics and smoothness, the
training pairs, the brain-only loss computed by hand, and the residual map of known networks."""

from __future__ import annotations

import pytest
import torch

from monai_adiff.methods.dae import BrainMSELoss, CoarseNoise, CoarseNoisePrepareBatch, DenoisingInferer, coarse_noise


def _neighbour_correlation(field: torch.Tensor) -> float:
    a, b = field[..., :, :-1].flatten(), field[..., :, 1:].flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def test_full_resolution_noise_is_white_with_the_given_std():
    # a grid as fine as the slice: no interpolation, iid N(0, std^2) values (rolled, which keeps them iid)
    n = coarse_noise((16, 2, 32, 32), resolution=32, std=0.4, generator=torch.Generator().manual_seed(0))
    assert n.shape == (16, 2, 32, 32)
    assert abs(float(n.mean())) < 0.01 and float(n.std()) == pytest.approx(0.4, rel=0.02)
    assert abs(_neighbour_correlation(n)) < 0.03


def test_coarse_noise_is_smooth_and_shifted():
    g = torch.Generator().manual_seed(1)
    n = coarse_noise((32, 1, 64, 64), resolution=8, std=1.0, generator=g)
    # bilinear upsampling by 8: neighbouring pixels nearly equal; values never exceed the grid's (convex mixes)
    assert _neighbour_correlation(n) > 0.95
    # the random roll: the position of the largest value differs between slices
    peaks = {int(torch.argmax(n[i, 0])) for i in range(n.shape[0])}
    assert len(peaks) > n.shape[0] // 2


def test_coarse_noise_is_reproducible_and_checks_its_arguments():
    a = CoarseNoise(16, 0.4)((2, 1, 32, 32), generator=torch.Generator().manual_seed(3))
    b = CoarseNoise(16, 0.4)((2, 1, 32, 32), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and CoarseNoise(16, 0.4).to_dict() == {"resolution": 16, "std": 0.4}
    with pytest.raises(ValueError, match="resolution"):
        coarse_noise((1, 1, 8, 8), resolution=16)
    with pytest.raises(ValueError, match="B, C, H, W"):
        coarse_noise((1, 8, 8))
    with pytest.raises(ValueError):
        CoarseNoise(resolution=0)


def test_training_pairs_add_noise_inside_the_brain_only():
    x = torch.full((4, 2, 32, 32), -1.0)
    x[:, :, 8:24, 8:24] = 0.25  # the brain: a square; the background stays exactly -1
    noisy, target, args, kwargs = CoarseNoisePrepareBatch({"resolution": 8, "std": 0.4})({"image": x.clone()})
    assert torch.equal(target, x) and args == () and kwargs == {}
    assert torch.equal(noisy[:, :, :8], x[:, :, :8]) and torch.equal(noisy[..., 24:], x[..., 24:])
    inside = noisy[:, :, 8:24, 8:24] - 0.25
    assert float(inside.abs().mean()) > 0.05


def test_brain_mse_by_hand():
    target = torch.tensor([[[[-1.0, 0.5], [0.0, -1.0]]]])  # two brain pixels
    pred = torch.tensor([[[[0.0, 1.5], [-2.0, 3.0]]]])
    # brain errors 1^2 and 2^2; background errors ignored; divided by all 4 elements
    assert float(BrainMSELoss()(pred, target)) == pytest.approx((1.0 + 4.0) / 4)


def test_map_is_the_absolute_residual_of_the_restoration():
    x = torch.full((2, 2, 16, 16), -1.0)
    x[:, 0, 4:12, 4:12] = 0.5
    x[:, 1, 4:12, 4:12] = -0.5
    brain = (x > -1 + 1e-3).any(1)
    identity = DenoisingInferer().infer(x, lambda t: t)
    assert float(identity.anomaly_map.abs().max()) == 0.0
    out = DenoisingInferer().infer(x, lambda t: torch.zeros_like(t)).anomaly_map[:, 0]
    # |0.5 - 0| and |-0.5 - 0| averaged over the channels inside the brain; zero outside
    assert torch.allclose(out[brain], torch.full_like(out[brain], 0.5)) and float(out[~brain].abs().max()) == 0.0
    pos = DenoisingInferer(positive_residual=True).infer(x, lambda t: torch.zeros_like(t)).anomaly_map[:, 0]
    # only the channel brighter than its restoration counts: (0.5 + 0) / 2
    assert torch.allclose(pos[brain], torch.full_like(pos[brain], 0.25))
