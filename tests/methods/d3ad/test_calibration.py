# SPDX-License-Identifier: Apache-2.0
"""D3AD calibration: the terms' healthy ranges, and w chosen from a grid by the image-level AUROC of the slice
score on labelled validation slices (hand-built terms whose separation depends on w: the oracle)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from monai.networks.schedulers import DDPMScheduler

from monai_adiff.methods.d3ad import D3ADInferer, calibrate_d3ad
from tests.methods.d3ad.conftest import brain_slices

LABELS = [0, 1, 0, 1, 0, 1]


@pytest.fixture
def inferer():
    scheduler = DDPMScheduler(1000, schedule="linear_beta", beta_start=0.0015, beta_end=0.0195)
    return D3ADInferer(scheduler, dynamic=False, blur_sigma=0, image_weight=1.0, guidance=4.0, slice_batch_size=4)


def _datasets(labels=LABELS):
    x = brain_slices(len(labels), seed=1)
    labelled = [{"image": x[i], "slice_label": torch.tensor(lab)} for i, lab in enumerate(labels)]
    healthy = [d for d in labelled if int(d["slice_label"]) == 0]
    return healthy, labelled


def _fake_terms(model, good_w):
    """Terms whose image term is 3 on the label-1 slices and 1 on the others when w == good_w, the reverse for any
    other w; a slice is recognised by its brain's pixel count (the fake gets no label)."""
    x_all = brain_slices(len(LABELS), seed=1)
    area_to_label = {int((x_all[i] > -1 + 1e-3).sum()): lab for i, lab in enumerate(LABELS)}
    calls = []

    def terms(self, x, network, generator, all_terms=False):
        calls.append(self.guidance)
        n = x.shape[0]
        lab = torch.tensor([area_to_label[int((x[i] > -1 + 1e-3).sum())] for i in range(n)], dtype=torch.float32)
        hot = lab if self.guidance == good_w else 1 - lab
        image = torch.ones(n, *x.shape[-2:]) * (1 + 2 * hot)[:, None, None]
        zeros = torch.zeros_like(image)
        return {"latent": zeros, "feature": zeros, "image": image}, torch.full((n,), 40)

    return terms, calls


def test_w_is_chosen_by_the_slice_auroc(inferer, model, tmp_path, monkeypatch):
    terms, calls = _fake_terms(model, good_w=2.0)
    monkeypatch.setattr(D3ADInferer, "terms", terms)
    healthy, labelled = _datasets()
    out_file = tmp_path / "cal.json"
    out = calibrate_d3ad(
        model, inferer, healthy, str(out_file), guidance_grid=[0, 2, 4, 8], labelled_dataset=labelled, device="cpu"
    )
    # at w = 2 every tumour slice scores 3 and every healthy one 1: AUROC 1; elsewhere the reverse: AUROC 0
    assert out["guidance"] == 2.0
    assert out["guidance_auroc"] == {"0.0": 0.0, "2.0": 1.0, "4.0": 0.0, "8.0": 0.0}
    assert inferer.guidance == 2.0
    # the ranges are those of w = 2 on the healthy slices: image term 1 everywhere
    assert out["image_range"] == [1.0, 1.0]
    assert json.loads(out_file.read_text(encoding="utf-8"))["guidance"] == 2.0
    assert set(calls) == {0.0, 2.0, 4.0, 8.0}
    # inference applies the calibrated w, whatever the config says
    scheduler = inferer.scheduler
    assert D3ADInferer(scheduler, guidance=4.0, calibration_file=str(out_file)).guidance == 2.0


def test_ties_keep_the_first_w_of_the_grid(inferer, model, tmp_path, monkeypatch):
    terms, _ = _fake_terms(model, good_w=None)  # every w ranks the slices the same (wrong) way
    monkeypatch.setattr(D3ADInferer, "terms", terms)
    healthy, labelled = _datasets()
    out = calibrate_d3ad(
        model, inferer, healthy, str(tmp_path / "c.json"), guidance_grid=[8, 0], labelled_dataset=labelled
    )
    assert out["guidance"] == 8.0


def test_one_class_keeps_the_configured_w(inferer, model, tmp_path, monkeypatch, caplog):
    terms, _ = _fake_terms(model, good_w=2.0)
    monkeypatch.setattr(D3ADInferer, "terms", terms)
    healthy, labelled = _datasets()
    only_healthy = [{**d, "slice_label": torch.tensor(0)} for d in labelled]
    with caplog.at_level(logging.WARNING):
        out = calibrate_d3ad(
            model, inferer, healthy, str(tmp_path / "c.json"), guidance_grid=[0, 2], labelled_dataset=only_healthy
        )
    assert "guidance" not in out and inferer.guidance == 4.0
    assert "only one image-level class" in caplog.text


def test_ranges_without_a_grid_are_the_healthy_min_and_quantile(inferer, model, tmp_path):
    """Real terms (no grid): each range is the minimum and the 0.99 quantile over the healthy slices' brain pixels,
    recomputed here from the inferer's own terms with numpy."""
    healthy, _ = _datasets()
    out = calibrate_d3ad(model, inferer, healthy, str(tmp_path / "c.json"), guidance_grid=[4.0])
    x = torch.stack([d["image"] for d in healthy])
    with torch.no_grad():
        terms, _ = inferer.terms(x, model, inferer.generator(), all_terms=True)
    brain = (x > -1 + 1e-3)[:, 0]
    for name in ("latent", "feature", "image"):
        v = terms[name][brain].numpy()
        np.testing.assert_allclose(out[f"{name}_range"], [v.min(), np.quantile(v, 0.99)], rtol=1e-5)
    assert "guidance" not in out and out["slices"] == 3
