# SPDX-License-Identifier: Apache-2.0
"""AnoFPDM against its equations (7, 10, 12, 18-21), eq. 4 (DDIM encoding) and Algorithm 1, with a stub noise
predictor whose output is known in closed form: eps(x_t, t, y) = c_y * x_t."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.networks.schedulers import DDPMScheduler
from parameterized import parameterized

from monai_adiff.methods.anofpdm import (
    FPDMInferer,
    FPDMSweep,
    cosine_similarity,
    fpdm_quantile,
    fpdm_step_grid,
    fpdm_sweep,
    relative_excess,
)
from monai_adiff.metrics import auroc
from monai_adiff.output import AnomalyOutput, channel_names
from monai_adiff.transforms import median_filter_mirror

T = 1000
ABAR = np.cumprod(1 - np.linspace(1e-4, 0.02, T))
C = {0: 0.3, 1: -0.1, 2: 0.1}  # c_y per class label: healthy, unhealthy, null


class Stub(torch.nn.Module):
    """eps(x_t, t, y) = c_y * x_t, with a bump on an 'anomaly' patch for the healthy label so M_t has a shape."""

    def __init__(self, bump: float = 0.0):
        super().__init__()
        self.bump = bump
        self.calls = []

    def forward(self, x, timesteps, class_labels):
        self.calls.append((x.clone(), timesteps.clone(), class_labels.clone()))
        c = torch.tensor([C[int(y)] for y in class_labels], dtype=x.dtype).reshape(-1, 1, 1, 1)
        out = c * x
        if self.bump:
            # healthy-guided prediction pulls a patch: a step-dependent push that peaks mid-grid
            w = torch.exp(-(((timesteps.double() - 40.0) / 15.0) ** 2)).to(x.dtype).reshape(-1, 1, 1, 1)
            out = out + self.bump * w * (class_labels == 0).to(x.dtype).reshape(-1, 1, 1, 1) * (x > 0.3)
        return out


def _x(n=3, c=2, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=g, dtype=torch.float64) * 1.6 - 0.8


@parameterized.expand(
    [
        (0.5, 1.0, 0.90, 0.98, 0.94),  # the example: index 50 of reverse(linspace(0.90, 0.98, 101))
        (0.0, 1.0, 0.90, 0.98, 0.98),
        (1.0, 1.0, 0.90, 0.98, 0.90),
        (3.0, 1.0, 0.90, 0.98, 0.90),  # clamped
        (-1.0, 1.0, 0.90, 0.98, 0.98),
        (0.123, 1.0, 0.90, 0.98, 0.98 - 0.0008 * 12),  # round(0.123, 2) * 100 = 12
        (0.0456, 0.1, 0.90, 0.98, 0.98 - 0.0008 * 46),  # ratio 0.456 -> 46
        (0.25, 1.0, 0.80, 1.00, 0.95),
    ]
)
def test_algorithm_1(m_te, m_max, a, b, expected):
    assert fpdm_quantile(m_te, m_max, a, b) == pytest.approx(expected, abs=1e-12)


def test_algorithm_1_bad_args():
    with pytest.raises(ValueError):
        fpdm_quantile(0.1, 0.0)
    with pytest.raises(ValueError):
        fpdm_quantile(0.1, 1.0, a=0.99, b=0.9)


def test_step_grid():
    assert fpdm_step_grid(600)[:3] == [0, 1, 2] and len(fpdm_step_grid(600)) == 600
    assert fpdm_step_grid(600, stride=5) == list(range(0, 600, 5))
    with pytest.raises(ValueError):
        fpdm_step_grid(0)


def _reference(x0, xts, steps, w, ch, unguided="null", brain=None, residual="squared"):
    """Equations 7, 10, 12, 19, 20, 21 and 18 in float64 from the recorded x_t (curves over ``brain`` pixels); with
    ``residual="positive"`` the map aggregates ``max(x0 - x0_h, 0)`` instead of eq. 19."""
    x0 = x0.double().numpy()
    wts = np.ones((len(x0), x0[0, 0].size)) if brain is None else brain.reshape(len(x0), -1).astype(float)
    wts = wts / wts.sum(1, keepdims=True)
    mse_h, mse_u, div, sams = [], [], [], []
    for xt, t in zip(xts, steps):
        xt = xt.double().numpy()
        a = ABAR[t]
        eps_h, eps_n = C[0] * xt, C[2] * xt
        x0_h = (xt - np.sqrt(1 - a) * ((1 + w) * eps_h - w * eps_n)) / np.sqrt(a)  # eq. 7
        x0_n = (xt - np.sqrt(1 - a) * eps_n) / np.sqrt(a)  # eq. 10
        x0_u = x0_n if unguided == "null" else (xt - np.sqrt(1 - a) * eps_h) / np.sqrt(a)
        sam = ((x0_h - x0)[:, ch] ** 2).mean(1)  # eq. 19, scoring channels averaged
        sams.append(sam if residual == "squared" else np.clip(x0 - x0_h, 0, None)[:, ch].mean(1))
        mse_h.append((sam.reshape(len(x0), -1) * wts).sum(1))
        mse_u.append((((x0_u - x0)[:, ch] ** 2).mean(1).reshape(len(x0), -1) * wts).sum(1))
        div.append((((x0_h - x0_u)[:, ch] ** 2).mean(1).reshape(len(x0), -1) * wts).sum(1))  # eq. 12
    mse_h, mse_u, div = np.stack(mse_h, 1), np.stack(mse_u, 1), np.stack(div, 1)
    t_e = div.argmax(1)  # eq. 21
    amap = np.stack([np.mean([sams[k][i] for k in range(t_e[i] + 1)], 0) for i in range(len(x0))])  # eq. 20
    cos = (mse_h * mse_u).sum(1) / (np.linalg.norm(mse_h, axis=1) * np.linalg.norm(mse_u, axis=1))  # eq. 18
    return mse_h, mse_u, div, t_e, amap, cos


@pytest.mark.parametrize("unguided, residual", [("null", "squared"), ("healthy", "squared"), ("null", "positive")])
def test_ddpm_sweep_matches_equations(sched_noclip, unguided, residual):
    x0 = _x().float()
    net = Stub()
    steps = [0, 50, 100, 300, 600]
    res = fpdm_sweep(
        net,
        sched_noclip,
        x0,
        steps,
        guidance=2.0,
        mode="ddpm",
        unguided=unguided,
        channels=[1],
        generator=torch.Generator().manual_seed(0),
        residual=residual,
    )
    # one network call per step on the doubled batch: healthy then null labels, the step's timestep
    assert len(net.calls) == len(steps)
    for (x, t, y), step in zip(net.calls, steps):
        assert x.shape[0] == 6 and t.tolist() == [step] * 6 and y.tolist() == [0, 0, 0, 2, 2, 2]
        assert torch.equal(x[:3], x[3:])
    xts = [c[0][:3] for c in net.calls]
    # DDPM encoding: each x_t is q(x_t | x_0) with fresh Gaussian noise (eq. 2)
    implied = [(xt.double() - np.sqrt(ABAR[t]) * x0.double()) / np.sqrt(1 - ABAR[t]) for xt, t in zip(xts, steps)]
    assert all(0.7 < float(e.std()) < 1.3 for e in implied[1:])
    mse_h, mse_u, div, t_e, amap, cos = _reference(x0, xts, steps, 2.0, [1], unguided, residual=residual)
    np.testing.assert_allclose(res.mse_guided[0].numpy(), mse_h, rtol=2e-4, atol=1e-7)
    np.testing.assert_allclose(res.mse_unguided.numpy(), mse_u, rtol=2e-4, atol=1e-7)
    np.testing.assert_allclose(res.divergence[0].numpy(), div, rtol=2e-4, atol=1e-8)
    assert res.t_end[0].tolist() == t_e.tolist()
    np.testing.assert_allclose(res.m_end[0].numpy(), div.max(1), rtol=2e-4)
    np.testing.assert_allclose(res.amap.numpy(), amap, rtol=2e-4, atol=1e-7)
    np.testing.assert_allclose(res.cosine()[0].numpy(), cos, rtol=1e-5)


def test_brain_means(sched_noclip):
    x0 = _x().float()
    brain = torch.zeros(3, 1, 8, 8, dtype=torch.bool)
    brain[0, :, 2:6, 2:6] = True
    brain[1, :, :, :3] = True
    brain[2] = True
    net = Stub()
    steps = [0, 20, 40, 60, 100]
    res = fpdm_sweep(
        net,
        sched_noclip,
        x0,
        steps,
        2.0,
        mode="ddpm",
        channels=[0, 1],
        generator=torch.Generator().manual_seed(0),
        brain=brain,
    )
    xts = [c[0][:3] for c in net.calls]
    mse_h, mse_u, div, t_e, amap, cos = _reference(x0, xts, steps, 2.0, [0, 1], brain=brain.numpy())
    np.testing.assert_allclose(res.mse_guided[0].numpy(), mse_h, rtol=2e-4, atol=1e-7)
    np.testing.assert_allclose(res.mse_unguided.numpy(), mse_u, rtol=2e-4, atol=1e-7)
    np.testing.assert_allclose(res.divergence[0].numpy(), div, rtol=2e-4, atol=1e-8)
    np.testing.assert_allclose(res.cosine()[0].numpy(), cos, rtol=1e-5)
    assert res.t_end[0].tolist() == t_e.tolist()


class BackgroundStub(torch.nn.Module):
    """The healthy label changes the prediction only on background pixels (-1): nothing a detector should see."""

    def forward(self, x, timesteps, class_labels):
        healthy = (class_labels == 0).to(x.dtype).reshape(-1, 1, 1, 1)
        return 0.1 * x + 0.5 * healthy * (self.background[: x.shape[0] // 2].repeat(2, 1, 1, 1))


def test_background_changes_do_not_count_with_brain_means(sched_noclip):
    x0 = _x().float()
    brain = torch.zeros(3, 1, 8, 8, dtype=torch.bool)
    brain[:, :, 2:6, 2:6] = True
    x0 = torch.where(brain, x0, torch.full_like(x0, -1.0))
    net = BackgroundStub()
    net.background = (~brain).float()
    kw = dict(mode="ddpm", channels=[0, 1], generator=torch.Generator().manual_seed(0))
    whole = fpdm_sweep(net, sched_noclip, x0, [0, 50, 100], 2.0, **kw)
    assert float(whole.divergence.max()) > 0 and float(whole.cosine().min()) < 1 - 1e-6  # the code's means see it
    kw["generator"] = torch.Generator().manual_seed(0)
    inside = fpdm_sweep(net, sched_noclip, x0, [0, 50, 100], 2.0, brain=brain, **kw)
    assert float(inside.divergence.abs().max()) < 1e-12
    torch.testing.assert_close(inside.cosine(), torch.ones(1, 3))


def test_ddim_sweep_follows_eq_4(sched_noclip):
    x0 = _x().float()
    net = Stub()
    steps = [0, 10, 30, 60]
    fpdm_sweep(net, sched_noclip, x0, steps, guidance=1.0, mode="ddim", generator=torch.Generator().manual_seed(1))
    xts = [c[0][:3].double() for c in net.calls]
    for k in range(len(steps) - 1):
        a, a_next = ABAR[steps[k]], ABAR[steps[k + 1]]
        eps_n = C[2] * xts[k]  # the null-label prediction drives the inversion
        x0_tilde = (xts[k] - np.sqrt(1 - a) * eps_n) / np.sqrt(a)
        expected = np.sqrt(a_next) * x0_tilde + np.sqrt(1 - a_next) * (xts[k] - np.sqrt(a) * x0_tilde) / np.sqrt(1 - a)
        torch.testing.assert_close(xts[k + 1], expected, rtol=1e-4, atol=1e-5)


def test_ddim_clip_and_guidance_grid_reuses_one_sweep(sched):
    x0 = _x().float()

    def kw():  # the same encoding noise for both sweeps: x_{t_0} is drawn from q(x_t | x_0)
        return dict(mode="ddim", channels=[0, 1], generator=torch.Generator().manual_seed(4))

    both = fpdm_sweep(Stub(bump=0.5), sched, x0, list(range(0, 80, 4)), guidance=[1.0, 3.0], **kw())
    one = fpdm_sweep(Stub(bump=0.5), sched, x0, list(range(0, 80, 4)), guidance=3.0, **kw())
    torch.testing.assert_close(both.divergence[1], one.divergence[0])
    torch.testing.assert_close(both.mse_guided[1], one.mse_guided[0])
    assert torch.equal(both.t_end[1], one.t_end[0])
    assert both.amap is not None and one.amap is not None


def test_early_stop_keeps_the_swept_prefix(sched):
    x0 = _x(n=4).float()
    steps = list(range(0, 120, 4))
    full = fpdm_sweep(
        Stub(bump=0.8), sched, x0, steps, guidance=2.0, mode="ddim", generator=torch.Generator().manual_seed(2)
    )
    early = fpdm_sweep(
        Stub(bump=0.8),
        sched,
        x0,
        steps,
        guidance=2.0,
        mode="ddim",
        patience=3,
        generator=torch.Generator().manual_seed(2),
    )
    assert not early.visited.all()
    for i in range(4):
        k = int(early.visited[i].sum())
        assert early.visited[i, :k].all() and not early.visited[i, k:].any()
        assert k == min(len(steps), int(early.t_end[0, i]) + 4)  # swept up to the peak + patience
        torch.testing.assert_close(early.divergence[0, i, :k], full.divergence[0, i, :k])
    assert torch.equal(early.t_end, full.t_end)  # the peak is found before stopping
    torch.testing.assert_close(early.amap, full.amap)


def test_cosine_similarity_masked():
    a = torch.tensor([[1.0, 2.0, 100.0], [1.0, 0.0, 0.0]])
    b = torch.tensor([[2.0, 4.0, -50.0], [0.0, 1.0, 0.0]])
    m = torch.tensor([[True, True, False], [True, True, True]])
    torch.testing.assert_close(cosine_similarity(a, b, m), torch.tensor([1.0, 0.0]))


def test_relative_excess_by_hand():
    g = torch.tensor([[2.0, 3.0, 100.0], [1.0, 1.0, 1.0], [0.0, 5.0, 0.0]])
    u = torch.tensor([[1.0, 2.0, 7.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    m = torch.tensor([[True, True, False], [True, True, True], [True, True, True]])
    # (2 - 1 + 3 - 2) / (1 + 2) over the first two steps; equal curves; no unguided error: 0
    torch.testing.assert_close(relative_excess(g, u, m), torch.tensor([2.0 / 3.0, 0.0, 0.0]))


def _curves(u: torch.Tensor, r: torch.Tensor) -> FPDMSweep:
    """A sweep whose guided error curves are ``u_t * (1 + r_t)`` (rows of ``r``): one w, every step visited."""
    n, t = r.shape
    g = u * (1 + r)
    return FPDMSweep(
        timesteps=torch.arange(t),
        guidance=torch.tensor([2.0]),
        mse_guided=g[None],
        mse_unguided=u.expand(n, t),
        divergence=torch.zeros(1, n, t),
        visited=torch.ones(n, t, dtype=torch.bool),
        t_end=torch.zeros(1, n, dtype=torch.long),
        m_end=torch.zeros(1, n),
        amap=None,
    )


def test_cosine_is_blind_to_a_scaled_guided_curve():
    """Why ``1 - cos`` inverted on the CPU recipe's model: its unhealthy slices' guided error curve is the unguided
    one scaled up (relative excess r_t about +0.1 at every step), its healthy slices' fluctuates around it (r_t of
    a few % of either sign). The cosine cannot see a scale: to second order ``1 - cos`` is half the
    ``u_t^2``-weighted variance over t of r_t, so it ranks the healthy slices first; the relative excess is the
    weighted mean of r_t and ranks the unhealthy ones first."""
    u = torch.tensor([0.0001, 0.014, 0.035, 0.079, 0.146, 0.294])  # the recipe's mean unguided MSE at t = 0..500
    healthy = torch.tensor([[-0.02, 0.04, 0.06, -0.03, 0.07, -0.04], [0.01, -0.05, 0.03, 0.02, -0.06, 0.03]])
    unhealthy = torch.tensor([[0.12] * 6, [0.10, 0.14, 0.11, 0.09, 0.13, 0.10]])
    r = torch.cat([healthy, unhealthy]).double()
    res = _curves(u.double(), r)
    y = torch.tensor([0, 0, 1, 1])
    cos_score, excess = res.slice_score("cosine")[0], res.slice_score("excess")[0]
    assert auroc(cos_score, y) == 0.0 and auroc(excess, y) == 1.0
    # closed forms: the excess is the u-weighted mean of r_t; 1 - cos is half the u^2-weighted variance of r_t
    torch.testing.assert_close(excess, (r * u).sum(1) / u.sum())
    w = u**2 / (u**2).sum()
    mean = (r * w).sum(1, keepdim=True)
    var = ((r - mean) ** 2 * w).sum(1)
    torch.testing.assert_close(cos_score, var / (2 * (1 + mean[:, 0]) ** 2), rtol=0.05, atol=1e-6)
    assert float(cos_score[2]) == pytest.approx(0.0, abs=1e-12)  # a uniformly scaled curve: cos = 1
    with pytest.raises(ValueError, match="slice score"):
        res.slice_score("area")


def test_inferer_mask_threshold_and_decision(sched):
    x = _x(n=4, c=4, size=12).float()
    x[3] = -1.0  # a non-brain slice
    net = Stub(bump=0.6)
    inf = FPDMInferer(
        sched, num_steps=100, stride=10, channels=(0, 3), m_max=0.05, score_threshold=1e-4, median_kernel=5, seed=0
    )
    packed = inf(x, net)
    assert packed.shape == (4, 3, 12, 12)
    assert channel_names(packed) == ["anomaly_map", "pred_mask", "ungated_mask"]
    out = AnomalyOutput.from_image(packed)
    assert set(out.values) == {"t_e", "m_te"} and out.pred_score.shape == out.pred_label.shape == (4,)
    res = inf.sweep(x[:3], Stub(bump=0.6), inf.generator())
    cos = res.cosine()[0]
    amap = res.amap
    q = torch.tensor([fpdm_quantile(float(m), 0.05) for m in res.m_end[0]])
    thr = torch.stack([torch.quantile(amap[i].flatten(), q[i]) for i in range(3)])
    filtered = median_filter_mirror(amap, 5)
    mask = (filtered >= thr[:, None, None]) & (1 - cos >= 1e-4)[:, None, None]
    brain = (x[:3] > -1 + 1e-3).any(1)
    torch.testing.assert_close(out.anomaly_map[:3, 0], filtered * brain)
    torch.testing.assert_close(out.pred_mask[:3, 0], (mask & brain).float())
    # the ungated mask is Algorithm 1's mask before the healthy/unhealthy decision
    torch.testing.assert_close(out.maps["ungated_mask"][:3, 0], ((filtered >= thr[:, None, None]) & brain).float())
    torch.testing.assert_close(out.pred_label[:3], (1 - cos >= 1e-4).float())
    torch.testing.assert_close(out.pred_score[:3], 1 - cos)
    torch.testing.assert_close(out.values["m_te"][:3], res.m_end[0])
    assert out.values["t_e"][:3].tolist() == [10.0 * k for k in res.t_end[0].tolist()]
    assert float(packed[3].abs().sum()) == 0.0 and float(out.pred_score[3]) == 0.0  # no brain, not scored
    # a slice classified healthy gets an empty mask whatever its map
    strict = FPDMInferer(
        sched, num_steps=100, stride=10, channels=(0, 3), m_max=0.05, score_threshold=3.0, median_kernel=None, seed=0
    )
    gated = strict.infer(x, Stub(bump=0.6))
    assert float(gated.pred_mask.sum()) == 0.0
    # ... while the ungated mask keeps Algorithm 1's pixels (no median filter here: H >= Q* on H itself)
    ungated = (amap >= thr[:, None, None]) & brain
    assert bool(ungated.any())
    torch.testing.assert_close(gated.maps["ungated_mask"][:3, 0], ungated.float())


def test_inferer_reads_calibration(sched, tmp_path):
    p = tmp_path / "cal.json"
    p.write_text('{"slice_score": "excess", "guidance": 3.5, "score_threshold": 0.07, "m_max": 0.2}', encoding="utf-8")
    inf = FPDMInferer(sched, num_steps=10, calibration_file=str(p))
    assert (inf.slice_score, inf.guidance, inf.score_threshold, inf.m_max) == ("excess", 3.5, 0.07, 0.2)
    # a file from before 0.8.0 holds the cosine threshold c: the cosine test with 1 - cos >= 1 - c
    p.write_text('{"guidance": 3.5, "cos_threshold": 0.97, "m_max": 0.2}', encoding="utf-8")
    old = FPDMInferer(sched, num_steps=10, slice_score="excess", calibration_file=str(p))
    assert (old.slice_score, old.score_threshold) == ("cosine", pytest.approx(0.03))
    p.write_text('{"guidance": 3.5, "m_max": 0.2}', encoding="utf-8")
    with pytest.raises(ValueError, match="not an AnoFPDM calibration file"):
        FPDMInferer(sched, num_steps=10, calibration_file=str(p))
    with pytest.raises(ValueError, match="slice_score"):
        FPDMInferer(sched, num_steps=10, slice_score="area")
    with pytest.raises(ValueError, match="map_residual"):
        FPDMInferer(sched, num_steps=10, map_residual="absolute")
    missing = FPDMInferer(sched, num_steps=10, guidance=2.0, calibration_file=str(tmp_path / "none.json"))
    assert missing.guidance == 2.0
    with pytest.raises(ValueError):
        FPDMInferer(sched, num_steps=1001)


class ArtefactNet(torch.nn.Module):
    """The healthy label pulls lesion-bright pixels a little (the signal) and pushes the background (an artefact of
    a weakly trained network; the background is -1 after AnoFPDM's per-slice scaling)."""

    def forward(self, x, timesteps, class_labels):
        healthy = (class_labels == 0).to(x.dtype).reshape(-1, 1, 1, 1)
        return 0.1 * x + healthy * (0.01 * (x > 0.6).to(x.dtype) + 0.05 * (x < -0.9).to(x.dtype))


def test_small_healthy_slices_do_not_outscore_tumour_slices():
    """The inverted image-level AUROC of the CPU model (0.08 on test slices): healthy slices at the top and bottom
    of the brain are mostly background, so a background artefact dominates their whole-slice error curves and
    their ``1 - cos``; tumour slices are large. Means over brain pixels rank by the lesion signal."""
    g = torch.Generator().manual_seed(0)
    xs, ys = [], []
    for i in range(12):
        label = i % 2
        r = 4 if label == 0 else 12  # small healthy slices, large tumour slices
        img = torch.full((2, 16, 16), -1.0)
        img[:, 2 : 2 + r, 2 : 2 + r] = torch.rand(2, r, r, generator=g) * 0.6 - 0.4
        if label:
            img[:, 5:8, 5:8] = 0.9
        xs.append(img)
        ys.append(label)
    x, y = torch.stack(xs), torch.tensor(ys)
    scores = {}
    for brain_means in (False, True):
        inferer = FPDMInferer(DDPMScheduler(1000), num_steps=600, stride=50, channels=(0, 1), brain_means=brain_means)
        res = inferer.sweep(x, ArtefactNet(), inferer.generator(), guidance=2.0, keep_map=False)
        scores[brain_means] = auroc(1 - res.cosine()[0], y)
    assert scores[False] < 0.1  # the public code's whole-slice means: inverted
    assert scores[True] == 1.0
