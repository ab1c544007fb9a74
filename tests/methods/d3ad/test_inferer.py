# SPDX-License-Identifier: Apache-2.0
"""The D3AD inferer on a tiny model: per-slice dynamic levels from the table, static levels, map normalisation from
a calibration file, maps zero outside the brain, and clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from monai.networks.schedulers import DDPMScheduler

from monai_adiff.methods.d3ad import D3ADInferer, fit_feature_bank, fit_latent_scale, timestep_table
from tests.methods.d3ad.conftest import brain_slices


@pytest.fixture
def scheduler():
    return DDPMScheduler(1000, schedule="linear_beta", beta_start=0.0015, beta_end=0.0195)


@pytest.fixture
def fitted(model):
    x = brain_slices(8)
    loader = [{"image": x[i : i + 4]} for i in range(0, 8, 4)]
    fit_latent_scale(model, loader)
    fit_feature_bank(model, loader, k=3)
    return model


def test_dynamic_levels_come_from_the_table(fitted, scheduler):
    x = torch.cat([brain_slices(4, seed=5), brain_slices(2, seed=6) * 0.2 + 0.5])  # the last two: unusual
    out = D3ADInferer(scheduler, blur_sigma=0, k=3).infer(x, fitted)
    t_hat = out.values["t_hat"]
    assert set(t_hat.flatten().tolist()) <= set(timestep_table(80))
    assert out.anomaly_map.shape == (6, 1, 32, 32)


def test_static_level_and_brain_only_maps(fitted, scheduler):
    x = brain_slices(3, seed=2)
    x[0] = -1.0  # no brain: not scored
    out = D3ADInferer(scheduler, dynamic=False, static_t=40, blur_sigma=1.0).infer(x, fitted)
    t_hat = out.values["t_hat"]
    assert t_hat.flatten().tolist() == [0.0, 40.0, 40.0]
    brain = x > -1 + 1e-3
    assert (out.anomaly_map[~brain] == 0).all() and out.anomaly_map[brain].abs().sum() > 0
    assert float(out.pred_score[0]) == 0.0 and float(out.pred_score[1]) > 0


def test_calibration_file_sets_the_normalisation(fitted, scheduler, tmp_path):
    x = brain_slices(2, seed=3)
    raw = D3ADInferer(scheduler, blur_sigma=0, k=3, latent_weight=1.0).infer(x, fitted).anomaly_map
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"latent_range": [0.5, 2.5], "feature_range": [0.0, 1.0]}), encoding="utf-8")
    scaled = D3ADInferer(scheduler, blur_sigma=0, k=3, latent_weight=1.0, calibration_file=str(cal)).infer(x, fitted)
    brain = x > -1 + 1e-3
    torch.testing.assert_close(scaled.anomaly_map[brain], (raw[brain] - 0.5) / 2.0)


def test_unfitted_bank_is_a_clear_error(model, scheduler):
    with pytest.raises(ValueError, match="feature bank is not fitted"):
        D3ADInferer(scheduler).infer(brain_slices(2), model)
    D3ADInferer(scheduler, dynamic=False).infer(brain_slices(2), model)  # a static level needs no bank


def test_rejects_bad_arguments(scheduler):
    with pytest.raises(ValueError, match="latent_weight"):
        D3ADInferer(scheduler, latent_weight=1.5)
    with pytest.raises(ValueError, match="t_max"):
        D3ADInferer(scheduler, t_max=1000)


def test_a_perfect_reconstruction_scores_zero(fitted, scheduler, monkeypatch):
    """With a denoiser whose noise estimate is consistent with the input latent, z0_hat = z0: the latent term, the
    image term and the feature term against the decoded input vanish. (The paper's feature term compares the slice
    with the decoded reconstruction, so it keeps the autoencoder's own error.)"""
    x = brain_slices(3, seed=4)
    with torch.no_grad():
        z0 = fitted.encode(x)
    abar = scheduler.alphas_cumprod

    def oracle(z, timesteps, context=None, class_labels=None):
        a = abar[timesteps].view(-1, 1, 1, 1)
        rows = [int(i) for i in oracle.rows]
        return (z - a.sqrt() * z0[rows]) / (1 - a).sqrt()

    oracle.rows = torch.arange(3)
    monkeypatch.setattr(fitted, "forward", oracle)
    inferer = D3ADInferer(scheduler, dynamic=False, static_t=40, blur_sigma=0, image_weight=0.5, positive_residual=True)
    with torch.no_grad():
        terms, _ = inferer.terms(x, fitted, None, all_terms=True)
        inferer.feature_reference = "decoded"
        decoded, _ = inferer.terms(x, fitted, None, all_terms=True)
    for name in ("latent", "image"):
        assert terms[name].abs().max() < 1e-4, name
    assert decoded["feature"].abs().max() < 1e-4 and terms["feature"].abs().max() > 1e-3
