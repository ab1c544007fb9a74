# SPDX-License-Identifier: Apache-2.0
"""Inferers against the papers' algorithm boxes with stub networks whose outputs are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.networks.schedulers import DDPMScheduler

from monai_adiff.methods.anoddpm import IterativeReconstructionInferer
from monai_adiff.methods.sss import SingleStepInferer
from monai_adiff.noise import make_noise
from monai_adiff.output import AnomalyOutput, channel_names

T = 1000
ABAR = np.cumprod(1 - np.linspace(1e-4, 0.02, T))
BETAS = np.linspace(1e-4, 0.02, T)


@pytest.fixture(scope="module")
def sched_anoddpm():
    # AnoDDPM's reverse process: fixed-large variance (beta_t), x0 clamped
    return DDPMScheduler(T, schedule="linear_beta", beta_start=1e-4, beta_end=0.02, variance_type="fixed_large")


class Recorder(torch.nn.Module):
    """A stub noise predictor: returns ``scale * x_t`` and records every call."""

    def __init__(self, scale: float = 0.0):
        super().__init__()
        self.scale = scale
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x, timesteps):
        self.calls.append((x.clone(), timesteps.clone()))
        return self.scale * x


def _slices(n=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=g) * 1.6 - 0.8
    x[:, :, :2] = -1.0  # some background rows
    return x


def test_sss_matches_algorithm_1(sched_noclip):
    # Algorithm 1: x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar); E_sq = (x0 - x0_hat)^2. With eps = 0.5 x_t:
    x = _slices()
    net = Recorder(scale=0.5)
    out = SingleStepInferer(sched_noclip, timesteps=300, seed=1)(x, net)
    assert channel_names(out) == ["anomaly_map"]
    ((x_t, t),) = net.calls
    assert t.tolist() == [300] * 3
    a = ABAR[300]
    x0_hat = (x_t.double() - np.sqrt(1 - a) * 0.5 * x_t.double()) / np.sqrt(a)
    ref = ((x.double() - x0_hat) ** 2) * (x > -1 + 1e-3)  # zero outside the brain
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-4)
    # x_t itself is q(x_t | x0) with simplex noise: the implied noise is a simplex field (std ~0.5, not Gaussian 1)
    implied = (x_t.double() - np.sqrt(a) * x.double()) / np.sqrt(1 - a)
    assert 0.2 < float(implied.std()) < 0.8


def test_sss_clip_and_reproducible(sched):
    x = _slices()
    net = Recorder(scale=-3.0)
    a = SingleStepInferer(sched, timesteps=250, seed=5)(x, net)
    ((x_t, _),) = net.calls
    x0_hat = ((x_t.double() + np.sqrt(1 - ABAR[250]) * 3.0 * x_t.double()) / np.sqrt(ABAR[250])).clamp(-1, 1)
    torch.testing.assert_close(a.double(), ((x.double() - x0_hat) ** 2) * (x > -1 + 1e-3), atol=2e-5, rtol=1e-4)
    b = SingleStepInferer(sched, timesteps=250, seed=5)(x, Recorder(scale=-3.0))
    assert torch.equal(a, b)  # same seed, same map
    c = SingleStepInferer(sched, timesteps=250, seed=6)(x, Recorder(scale=-3.0))
    assert not torch.equal(a, c)


def test_sss_common_regions_vote(sched_noclip):
    x = _slices()
    net = Recorder(scale=0.0)
    inferer = SingleStepInferer(sched_noclip, timesteps=(250, 300, 350, 400), threshold=0.05, seed=0)
    out = inferer(x, net)
    assert out.shape == (3, 3, 16, 16) and len(net.calls) == 4
    assert channel_names(out) == ["anomaly_map", "pred_mask", "vote"]
    res = AnomalyOutput.from_image(out)
    brain = (x > -1 + 1e-3).double()
    maps = torch.stack([((x.double() - xt.double() / np.sqrt(ABAR[int(t[0])])) ** 2) * brain for xt, t in net.calls])
    torch.testing.assert_close(res.anomaly_map.double(), maps.mean(0), atol=2e-5, rtol=1e-4)
    votes = (maps > 0.05).double().mean(0)
    torch.testing.assert_close(res.maps["vote"].double(), votes)
    assert set(torch.unique(res.maps["vote"]).tolist()) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    # the method's own mask: pixels detected at more than half of the timesteps (3 or 4 of 4)
    torch.testing.assert_close(res.pred_mask.double(), (votes > 0.5).double())


def test_volume_slicewise_batches_and_skips_background(sched):
    x2d = _slices(n=5, size=12)
    x2d[1] = -1.0  # a slice with no brain at all
    vol = x2d.permute(1, 2, 3, 0)[None]  # (1, 1, H, W, S=5)
    meta = MetaTensor(vol, affine=torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0])))
    net = Recorder(scale=0.3)
    out = SingleStepInferer(sched, timesteps=300, slice_batch_size=2, seed=0)(meta, net)
    assert isinstance(out, MetaTensor) and out.shape == (1, 1, 12, 12, 5)
    assert torch.equal(out.affine, meta.affine)
    assert [c[0].shape[0] for c in net.calls] == [2, 2]  # 4 brain slices in batches of 2; slice 1 skipped
    assert float(out[..., 1].abs().sum()) == 0.0
    # each slice's map equals the 2D formula for the x_t it was given
    xts = torch.cat([c[0] for c in net.calls])
    a = ABAR[300]
    x0_hat = (xts.double() - np.sqrt(1 - a) * 0.3 * xts.double()) / np.sqrt(a)
    ref = ((x2d[[0, 2, 3, 4]].double() - x0_hat.clamp(-1, 1)) ** 2) * (x2d[[0, 2, 3, 4]] > -1 + 1e-3)
    torch.testing.assert_close(out[0, 0].permute(2, 0, 1)[[0, 2, 3, 4]].double(), ref[:, 0], atol=2e-5, rtol=1e-4)


def test_anoddpm_matches_reference_loop(sched_anoddpm):
    """AnoDDPM detection written out here in float64: x_{lambda-1} ~ q(. | x0) with simplex noise, then lambda steps of
    the ancestral update with fixed-large variance, clamped x0 and fresh simplex noise (none at t = 0)."""
    lam, x = 4, _slices(n=2, size=16)
    net = Recorder(scale=0.2)
    out = IterativeReconstructionInferer(sched_anoddpm, noise_level=lam, seed=3)(x, net)
    g = torch.Generator().manual_seed(3)
    tt = torch.full((2,), lam - 1)
    xt = (
        torch.as_tensor(np.sqrt(ABAR[lam - 1]) * x.double().numpy())
        + np.sqrt(1 - ABAR[lam - 1]) * make_noise("simplex", x.shape, tt, generator=g).double()
    )
    abar_prev = np.concatenate([[1.0], ABAR[:-1]])
    for t in range(lam - 1, -1, -1):
        eps = 0.2 * xt
        x0 = ((xt - np.sqrt(1 - ABAR[t]) * eps) / np.sqrt(ABAR[t])).clamp(-1, 1)
        mean = (np.sqrt(abar_prev[t]) * BETAS[t] * x0 + np.sqrt(1 - BETAS[t]) * (1 - abar_prev[t]) * xt) / (1 - ABAR[t])
        if t > 0:
            mean = mean + np.sqrt(BETAS[t]) * make_noise("simplex", x.shape, torch.full((2,), t), generator=g).double()
        xt = mean
    ref = ((x.double() - xt) ** 2) * (x > -1 + 1e-3)
    torch.testing.assert_close(out.double(), ref, atol=1e-4, rtol=1e-3)
    assert [int(c[1][0]) for c in net.calls] == [3, 2, 1, 0]


def test_predict_packages_output(sched):
    x2d = _slices(n=4, size=12)
    vol = x2d.permute(1, 2, 3, 0)[None]
    res = SingleStepInferer(sched, timesteps=300, seed=0).predict(vol, Recorder(0.0), threshold=0.05)
    assert isinstance(res, AnomalyOutput)
    assert res.anomaly_map.shape == (1, 1, 12, 12, 4) and res.pred_mask.shape == (1, 1, 12, 12, 4)
    assert torch.equal(res.pred_mask, (res.anomaly_map > 0.05).float())
    assert res.pred_score.shape == (1, 4) and torch.equal(res.volume_score, res.pred_score.amax(1))
    assert res.pred_label is None and res.maps == {} and res.values == {}
    brain = (vol > -1 + 1e-3)[0, 0]
    for k in range(4):
        ref = torch.quantile(res.anomaly_map[0, 0, ..., k][brain[..., k]], 0.99)
        assert float(res.pred_score[0, k]) == pytest.approx(float(ref), rel=1e-5)


def test_bad_arguments(sched):
    with pytest.raises(ValueError):
        SingleStepInferer(sched, timesteps=1000)
    with pytest.raises(ValueError):
        SingleStepInferer(sched, timesteps=[])
    with pytest.raises(ValueError):
        IterativeReconstructionInferer(sched, noise_level=0)
    with pytest.raises(ValueError):
        SingleStepInferer(sched)(torch.zeros(2, 2, 2), Recorder())


def test_positive_residual_keeps_only_brighter_pixels(sched_noclip):
    # eps = 0: x0_hat = x_t / sqrt(abar); the positive map is max(x - x0_hat, 0)^2, the plain map (x - x0_hat)^2
    x = _slices()
    plain = SingleStepInferer(sched_noclip, timesteps=300, seed=2)(x, Recorder(0.0))
    net = Recorder(0.0)
    pos = SingleStepInferer(sched_noclip, timesteps=300, seed=2, positive_residual=True)(x, net)
    ((x_t, _),) = net.calls
    r = x.double() - x_t.double() / np.sqrt(ABAR[300])
    brain = (x > -1 + 1e-3).double()
    torch.testing.assert_close(pos.double(), r.clamp_min(0) ** 2 * brain, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(plain.double(), r**2 * brain, atol=2e-5, rtol=1e-4)
    assert bool((r < 0).any()) and float(pos.sum()) < float(plain.sum())


def test_anoddpm_strided_steps(sched_anoddpm):
    """num_inference_steps = 3 from lambda = 10: network calls at t = 9, 4 (rounded 4.5), 0, and the respaced update
    (beta' = 1 - abar_t / abar_s) written out here; the last step jumps to x0 without noise."""
    lam, x = 10, _slices(n=2, size=16)
    net = Recorder(scale=0.2)
    out = IterativeReconstructionInferer(sched_anoddpm, noise_level=lam, num_inference_steps=3, seed=3)(x, net)
    assert [int(c[1][0]) for c in net.calls] == [9, 4, 0]
    g = torch.Generator().manual_seed(3)
    xt = (
        torch.as_tensor(np.sqrt(ABAR[9]) * x.double().numpy())
        + np.sqrt(1 - ABAR[9]) * make_noise("simplex", x.shape, torch.full((2,), 9), generator=g).double()
    )
    for t, s in ((9, 4), (4, 0), (0, -1)):
        a_s = 1.0 if s < 0 else ABAR[s]
        beta = 1 - ABAR[t] / a_s
        x0 = ((xt - np.sqrt(1 - ABAR[t]) * 0.2 * xt) / np.sqrt(ABAR[t])).clamp(-1, 1)
        xt = (np.sqrt(a_s) * beta * x0 + np.sqrt(1 - beta) * (1 - a_s) * xt) / (1 - ABAR[t])
        if s >= 0:
            xt = xt + np.sqrt(beta) * make_noise("simplex", x.shape, torch.full((2,), t), generator=g).double()
    torch.testing.assert_close(out.double(), ((x.double() - xt) ** 2) * (x > -1 + 1e-3), atol=1e-4, rtol=1e-3)
    with pytest.raises(ValueError, match="num_inference_steps"):
        IterativeReconstructionInferer(sched_anoddpm, noise_level=10, num_inference_steps=11)


@pytest.mark.parametrize("aggregate", ["map", "reconstruction"])
def test_sss_samples_and_aggregation(sched_noclip, aggregate):
    """Two timesteps x two draws; eps = 0 so each reconstruction is x_t / sqrt(abar_t), recomputed here."""
    x = _slices()
    net = Recorder(0.0)
    inf = SingleStepInferer(sched_noclip, timesteps=(200, 300), num_samples=2, aggregate=aggregate, threshold=0.05)
    res = AnomalyOutput.from_image(inf(x, net))
    assert [int(c[1][0]) for c in net.calls] == [200, 200, 300, 300]
    rec = [c[0].double() / np.sqrt(ABAR[int(c[1][0])]) for c in net.calls]
    brain = (x > -1 + 1e-3).double()
    xd = x.double()
    if aggregate == "map":
        per_t = [((xd - rec[0]) ** 2 + (xd - rec[1]) ** 2) / 2, ((xd - rec[2]) ** 2 + (xd - rec[3]) ** 2) / 2]
        ref = (per_t[0] + per_t[1]) / 2
    else:
        per_t = [(xd - (rec[0] + rec[1]) / 2) ** 2, (xd - (rec[2] + rec[3]) / 2) ** 2]
        ref = (xd - sum(rec) / 4) ** 2
    torch.testing.assert_close(res.anomaly_map.double(), ref * brain, atol=2e-5, rtol=1e-4)
    votes = ((per_t[0] > 0.05).double() + (per_t[1] > 0.05).double()) / 2 * brain
    torch.testing.assert_close(res.maps["vote"].double(), votes)
    with pytest.raises(ValueError, match="aggregate"):
        SingleStepInferer(sched_noclip, aggregate="median")
    with pytest.raises(ValueError, match="num_samples"):
        SingleStepInferer(sched_noclip, num_samples=0)


def test_anoddpm_samples_average_reconstructions(sched_anoddpm):
    x = _slices(n=2)
    one = IterativeReconstructionInferer(sched_anoddpm, noise_level=3, seed=4)
    two = IterativeReconstructionInferer(
        sched_anoddpm, noise_level=3, seed=4, num_samples=2, aggregate="reconstruction"
    )
    g = one.generator()
    r1, r2 = one.reconstruct(x.repeat(2, 1, 1, 1), Recorder(0.2), g).chunk(2)
    assert not torch.allclose(r1, r2)  # each draw its own noise
    ref = ((x.double() - (r1.double() + r2.double()) / 2) ** 2) * (x > -1 + 1e-3)
    net = Recorder(0.2)
    torch.testing.assert_close(two(x, net).double(), ref, atol=1e-4, rtol=1e-3)
    assert (
        len(net.calls) == 3 and net.calls[0][0].shape[0] == 2 * x.shape[0]
    )  # the draws share each reverse step's network call (lambda = 3 steps)


def test_sss_without_vote_gives_only_the_map(sched_noclip):
    x = _slices()
    out = SingleStepInferer(sched_noclip, timesteps=(250, 300), vote_threshold=None)(x, Recorder(0.0))
    assert channel_names(out) == ["anomaly_map"]


def test_anoddpm_sample_batches_stay_within_slice_batch_size(sched_anoddpm):
    x = _slices(n=5)
    net = Recorder(0.2)
    inf = IterativeReconstructionInferer(sched_anoddpm, noise_level=2, num_samples=4, slice_batch_size=8)
    out = inf(x, net)
    # 8 // 4 = 2 slices x 4 draws per call: groups of 2, 2 and 1 slices, 2 reverse steps each
    assert [c[0].shape[0] for c in net.calls] == [8, 8, 8, 8, 4, 4]
    assert out.shape[0] == 5 and torch.isfinite(out).all()
