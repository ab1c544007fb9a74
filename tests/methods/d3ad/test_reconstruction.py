# SPDX-License-Identifier: Apache-2.0
"""Algorithm 1 with the DDAD correction against closed forms and a scalar re-derivation of the issue's equations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.networks.schedulers import DDPMScheduler

from monai_adiff.methods.d3ad import ddad_reconstruct, step_sequences


@pytest.fixture(scope="module")
def abar():
    s = DDPMScheduler(1000, schedule="linear_beta", beta_start=0.0015, beta_end=0.0195)
    # D3AD's betas: linear 0.0015 -> 0.0195 (not "scaled_linear")
    np.testing.assert_allclose(s.betas.numpy(), np.linspace(0.0015, 0.0195, 1000), rtol=1e-6)
    return s.alphas_cumprod.double()


def _scalar_reference(eps_fn, abar, z0, t_hat, skip, w):
    """The issue's loop for one slice, element by element in float64 Python."""
    a = [float(v) for v in abar]
    z = [math.sqrt(a[t_hat]) * v for v in z0]
    for t in reversed(range(0, t_hat, skip)):
        at = a[t]
        an = a[t - skip] if t - skip >= 0 else 1.0
        eps = eps_fn(z, t)
        y = [math.sqrt(at) * z0i + math.sqrt(1 - at) * e for z0i, e in zip(z0, eps)]
        eps_hat = [e - math.sqrt(1 - at) * w * (yi - zi) for e, yi, zi in zip(eps, y, z)]
        z0_hat = [(zi - math.sqrt(1 - at) * eh) / math.sqrt(at) for zi, eh in zip(z, eps_hat)]
        z = [math.sqrt(an) * x0 + math.sqrt(1 - an) * eh for x0, eh in zip(z0_hat, eps_hat)]
    return z


def _toy_denoiser(z, t):  # a denoiser that depends on the latent and the timestep
    return torch.tanh(z) * (0.5 + t.view(-1, 1, 1, 1).to(z.dtype) / 100.0)


def test_steps_start_one_stride_below_t_hat():
    assert step_sequences(torch.tensor([80, 20, 25]), torch.tensor([8, 2, 10])) == [
        [72, 64, 56, 48, 40, 32, 24, 16, 8, 0],
        [18, 16, 14, 12, 10, 8, 6, 4, 2, 0],
        [20, 10, 0],
    ]


def test_matches_a_scalar_rederivation(abar):
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(1, 2, 2, 2, generator=g, dtype=torch.float64)
    out = ddad_reconstruct(_toy_denoiser, abar, z0, torch.tensor([60]), torch.tensor([6]), guidance=4.0)

    def eps_list(z, t):
        return [math.tanh(v) * (0.5 + t / 100.0) for v in z]

    ref = _scalar_reference(eps_list, abar, z0.flatten().tolist(), 60, 6, 4.0)
    np.testing.assert_allclose(out.flatten().numpy(), ref, rtol=1e-10)


def test_zero_noise_prediction_without_guidance_is_closed_form(abar):
    """eps = 0, w = 0: every step multiplies by sqrt(abar_next / abar_t), so the result is
    sqrt(abar_T_hat / abar_(T_hat - skip)) z0 (the start scales by abar_T_hat, the first step reads T_hat - skip)."""
    z0 = torch.randn(3, 4, 4, 4, dtype=torch.float64)
    t_hat, skip = torch.tensor([80, 40, 20]), torch.tensor([8, 4, 2])
    out = ddad_reconstruct(lambda z, t: torch.zeros_like(z), abar, z0, t_hat, skip, guidance=0.0)
    factor = (abar[t_hat] / abar[t_hat - skip]).sqrt().view(-1, 1, 1, 1)
    torch.testing.assert_close(out, factor * z0)


@pytest.mark.parametrize("w", [0.0, 4.0, 9.0])
def test_an_oracle_denoiser_returns_the_input(abar, w):
    """A denoiser whose noise estimate is consistent with z0 (z = sqrt(a) z0 + sqrt(1 - a) eps) makes y = z, so the
    correction vanishes and every x0 estimate is z0: the reconstruction is exact for any w."""
    z0 = torch.randn(2, 4, 4, 4, dtype=torch.float64)

    def oracle(z, t):
        a = abar[t].view(-1, 1, 1, 1)
        idx = oracle.rows
        return (z - a.sqrt() * z0[idx]) / (1 - a).sqrt()

    oracle.rows = torch.arange(2)
    out = ddad_reconstruct(oracle, abar, z0, torch.tensor([50, 50]), torch.tensor([5, 5]), guidance=w)
    torch.testing.assert_close(out, z0)


def test_per_slice_levels_in_one_batch_equal_slices_run_alone(abar):
    g = torch.Generator().manual_seed(1)
    z0 = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    t_hat, skip = torch.tensor([20, 80, 50, 25]), torch.tensor([2, 8, 5, 10])  # 10, 10, 10 and 3 steps
    together = ddad_reconstruct(_toy_denoiser, abar, z0, t_hat, skip, guidance=4.0)
    for i in range(4):
        alone = ddad_reconstruct(_toy_denoiser, abar, z0[i : i + 1], t_hat[i : i + 1], skip[i : i + 1], guidance=4.0)
        torch.testing.assert_close(together[i : i + 1], alone)


def test_noiseless_start_is_deterministic_and_noise_fraction_adds_noise(abar):
    z0 = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    t_hat, skip = torch.tensor([40, 40]), torch.tensor([4, 4])
    a = ddad_reconstruct(_toy_denoiser, abar, z0, t_hat, skip, generator=torch.Generator().manual_seed(0))
    b = ddad_reconstruct(_toy_denoiser, abar, z0, t_hat, skip, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    c = ddad_reconstruct(
        _toy_denoiser, abar, z0, t_hat, skip, noise_fraction=1.0, generator=torch.Generator().manual_seed(1)
    )
    assert (c - a).abs().max() > 1e-3


def test_rejects_levels_outside_the_schedule(abar):
    with pytest.raises(ValueError, match="T_hat"):
        ddad_reconstruct(_toy_denoiser, abar, torch.zeros(1, 1, 2, 2), torch.tensor([1000]), torch.tensor([10]))
