# SPDX-License-Identifier: Apache-2.0
"""DDPM step maths against closed forms computed here in float64 numpy from the linear schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.networks.schedulers import DDPMScheduler

from monai_adiff.diffusion import ddpm_reverse_step, extract, posterior_mean, predict_eps, predict_x0

T = 1000
BETAS = np.linspace(1e-4, 0.02, T)  # Ho et al. linear schedule
ALPHAS = 1 - BETAS
ABAR = np.cumprod(ALPHAS)
ABAR_PREV = np.concatenate([[1.0], ABAR[:-1]])


def _sched(**kwargs):
    return DDPMScheduler(num_train_timesteps=T, schedule="linear_beta", beta_start=1e-4, beta_end=0.02, **kwargs)


@pytest.fixture(scope="module")
def sched():
    return _sched(clip_sample=False)


def _rand(*shape, seed=0):
    return torch.as_tensor(np.random.default_rng(seed).normal(size=shape), dtype=torch.float32)


def test_extract_shapes():
    v = torch.arange(10.0)
    like = torch.zeros(3, 2, 4, 4)
    assert extract(v, 4, like).shape == (3, 1, 1, 1) and float(extract(v, 4, like)[2]) == 4.0
    assert extract(v, torch.tensor([1, 2, 3]), like).flatten().tolist() == [1.0, 2.0, 3.0]


def test_add_noise_is_q_sample(sched):
    # the forward process we rely on is MONAI's own add_noise: check it against eq. 4 with non-Gaussian noise
    x0, noise = _rand(2, 1, 4, 4), _rand(2, 1, 4, 4, seed=1) * 0.5
    t = torch.tensor([10, 700])
    xt = sched.add_noise(x0, noise, t)
    for b, tb in enumerate(t.tolist()):
        ref = np.sqrt(ABAR[tb]) * x0[b].numpy() + np.sqrt(1 - ABAR[tb]) * noise[b].numpy()
        np.testing.assert_allclose(xt[b].numpy(), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("t", [0, 1, 250, 999])
def test_predict_x0_roundtrip(sched, t):
    x0, eps = _rand(3, 2, 5, 5), _rand(3, 2, 5, 5, seed=2)
    xt = torch.as_tensor(np.sqrt(ABAR[t]) * x0.numpy() + np.sqrt(1 - ABAR[t]) * eps.numpy(), dtype=torch.float32)
    np.testing.assert_allclose(predict_x0(sched, xt, eps, t).numpy(), x0.numpy(), atol=2e-3 if t > 900 else 1e-4)
    np.testing.assert_allclose(predict_eps(sched, xt, x0, t).numpy(), eps.numpy(), atol=1e-3)
    assert float(predict_x0(_sched(), xt, eps * 50, t).abs().max()) <= 1.0  # MONAI's default clip_sample=True


@pytest.mark.parametrize("t", [3, 400])
def test_predict_x0_of_every_prediction_type(t):
    # the network may predict eps, x0 itself or v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022)
    x0, eps = _rand(2, 1, 4, 4) * 0.5, _rand(2, 1, 4, 4, seed=7)
    xt = np.sqrt(ABAR[t]) * x0.numpy() + np.sqrt(1 - ABAR[t]) * eps.numpy()
    v = np.sqrt(ABAR[t]) * eps.numpy() - np.sqrt(1 - ABAR[t]) * x0.numpy()
    xt_t = torch.as_tensor(xt, dtype=torch.float32)
    for kind, out in (("epsilon", eps), ("sample", x0), ("v_prediction", torch.as_tensor(v, dtype=torch.float32))):
        got = predict_x0(_sched(clip_sample=False, prediction_type=kind), xt_t, out, t)
        np.testing.assert_allclose(got.numpy(), x0.numpy(), atol=1e-4)


def test_posterior_mean_closed_form(sched):
    x0, xt = _rand(2, 1, 3, 3), _rand(2, 1, 3, 3, seed=3)
    t = torch.tensor([1, 400])
    mu = posterior_mean(sched, x0, xt, t)
    for b, tb in enumerate(t.tolist()):
        c0 = np.sqrt(ABAR_PREV[tb]) * BETAS[tb] / (1 - ABAR[tb])
        ct = np.sqrt(ALPHAS[tb]) * (1 - ABAR_PREV[tb]) / (1 - ABAR[tb])
        np.testing.assert_allclose(mu[b].numpy(), c0 * x0[b].numpy() + ct * xt[b].numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variance", ["fixed_large", "fixed_small"])
def test_reverse_step_closed_form(variance):
    # variance type and clipping come from the scheduler the network was trained with
    xt, eps, noise = _rand(2, 1, 4, 4), _rand(2, 1, 4, 4, seed=4) * 0.3, _rand(2, 1, 4, 4, seed=5)
    t = torch.tensor([249, 0])
    sched = _sched(variance_type=variance, clip_sample=True)
    x_prev, x0_hat = ddpm_reverse_step(sched, xt, eps, t, noise)
    for b, tb in enumerate(t.tolist()):
        x0 = np.clip((xt[b].numpy() - np.sqrt(1 - ABAR[tb]) * eps[b].numpy()) / np.sqrt(ABAR[tb]), -1, 1)
        mu = (np.sqrt(ABAR_PREV[tb]) * BETAS[tb] * x0 + np.sqrt(ALPHAS[tb]) * (1 - ABAR_PREV[tb]) * xt[b].numpy()) / (
            1 - ABAR[tb]
        )
        var = BETAS[tb] if variance == "fixed_large" else BETAS[tb] * (1 - ABAR_PREV[tb]) / (1 - ABAR[tb])
        ref = mu + (np.sqrt(var) * noise[b].numpy() if tb > 0 else 0.0)  # no noise at t = 0
        np.testing.assert_allclose(x0_hat[b].numpy(), x0, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(x_prev[b].numpy(), ref, rtol=1e-4, atol=1e-5)


def test_reverse_step_matches_monai_without_noise():
    # at t == 0 MONAI's step adds no noise, so both are the posterior mean; MONAI computes 1 - abar_0 in float32
    # (1.00017e-4 instead of 1e-4), hence the 2e-4 relative tolerance
    xt, eps = _rand(1, 1, 4, 4), _rand(1, 1, 4, 4, seed=6)
    sched = _sched()
    ours, x0 = ddpm_reverse_step(sched, xt, eps, 0, torch.zeros_like(xt))
    ref, ref_x0 = sched.step(eps, 0, xt)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=2e-4)
    torch.testing.assert_close(x0, ref_x0, atol=1e-4, rtol=2e-4)
    with pytest.raises(ValueError, match="variance_type"):
        ddpm_reverse_step(_sched(variance_type="learned"), xt, eps, 3, None)


@pytest.mark.parametrize("variance", ["fixed_large", "fixed_small"])
def test_strided_step_closed_form(variance):
    """A jump t -> s is the DDPM step of the respaced schedule: beta' = 1 - abar_t / abar_s (Nichol & Dhariwal)."""
    sched = _sched(clip_sample=False, variance_type=variance)
    xt, eps, z = _rand(2, 1, 3, 3, seed=3), _rand(2, 1, 3, 3, seed=4), _rand(2, 1, 3, 3, seed=5)
    t, s = 600, 450
    x_prev, x0 = ddpm_reverse_step(sched, xt, eps, t, z, prev_t=s)
    a_t, a_s = ABAR[t], ABAR[s]
    beta = 1 - a_t / a_s
    x0_ref = (xt.numpy() - np.sqrt(1 - a_t) * eps.numpy()) / np.sqrt(a_t)
    mean = np.sqrt(a_s) * beta / (1 - a_t) * x0_ref + np.sqrt(1 - beta) * (1 - a_s) / (1 - a_t) * xt.numpy()
    var = beta if variance == "fixed_large" else beta * (1 - a_s) / (1 - a_t)
    np.testing.assert_allclose(x0.numpy(), x0_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(x_prev.numpy(), mean + np.sqrt(var) * z.numpy(), rtol=1e-4, atol=1e-5)


def test_strided_step_defaults_and_last_jump(sched):
    xt, eps, z = _rand(2, 1, 3, 3, seed=6), _rand(2, 1, 3, 3, seed=7), _rand(2, 1, 3, 3, seed=8)
    a, _ = ddpm_reverse_step(sched, xt, eps, 300, z)
    b, _ = ddpm_reverse_step(sched, xt, eps, 300, z, prev_t=299)
    torch.testing.assert_close(a, b)
    # the jump to x0 (prev_t = -1) adds no noise and lands on the x0 prediction
    last, x0 = ddpm_reverse_step(sched, xt, eps, 40, z, prev_t=-1)
    torch.testing.assert_close(last, x0, rtol=1e-4, atol=1e-5)
