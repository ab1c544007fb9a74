# SPDX-License-Identifier: Apache-2.0
"""Label-free calibration: threshold search against brute force, the guidance rule, and an end-to-end run."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from monai.networks.schedulers import DDPMScheduler

from monai_adiff.engines import load_network_weights
from monai_adiff.methods.anofpdm import (
    GAP_FIELDS,
    FPDMInferer,
    FPDMSweep,
    best_accuracy_threshold,
    calibrate_fpdm,
    select_guidance,
)
from monai_adiff.metrics import auroc


def _brute(scores, labels):
    best = -1.0
    for thr in sorted(set(scores.tolist())) + [max(scores.tolist()) + 1]:
        acc = float(np.mean((scores >= thr) == (labels == 1)))
        best = max(best, acc)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_best_threshold_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 40
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.normal(0.05 * labels, 0.03), 3)  # ties on purpose
    thr, acc = best_accuracy_threshold(torch.as_tensor(scores), torch.as_tensor(labels))
    assert acc == pytest.approx(_brute(scores, labels))
    assert float(np.mean((scores >= thr) == (labels == 1))) == pytest.approx(acc)


def test_best_threshold_by_hand():
    # unhealthy slices have the higher score (1 - cos of 0.90, 0.95, ...): a perfect cut between 0.04 and 0.01
    scores = torch.tensor([0.10, 0.05, 0.04, 0.01, 0.005], dtype=torch.float64)
    thr, acc = best_accuracy_threshold(scores, torch.tensor([1, 1, 1, 0, 0]))
    assert acc == 1.0 and thr == pytest.approx(0.025)
    thr, acc = best_accuracy_threshold(torch.tensor([0.1, 0.1]), torch.tensor([0, 0]))
    assert acc == 1.0 and thr > 0.1  # all healthy: predict none unhealthy
    thr, acc = best_accuracy_threshold(torch.tensor([0.1, 0.1]), torch.tensor([1, 1]))
    assert acc == 1.0 and thr <= float(torch.tensor(0.1))  # all unhealthy: predict all
    with pytest.raises(ValueError):
        best_accuracy_threshold(torch.tensor([]), torch.tensor([]))


def test_select_guidance_largest_within_tolerance():
    accs = {0.5: 0.80, 1.0: 0.90, 2.0: 0.895, 3.0: 0.88, 5.0: 0.70}
    assert select_guidance(accs) == 2.0  # 0.895 >= 0.99 * 0.90, 0.88 is not
    assert select_guidance(accs, tolerance=0.97) == 3.0
    assert select_guidance({1.0: 0.5}) == 1.0
    with pytest.raises(ValueError):
        select_guidance({})


class Net(torch.nn.Module):
    """Healthy-label predictions react to bright pixels, the null label does not: unhealthy slices diverge."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x, timesteps, class_labels):
        healthy = (class_labels == 0).to(x.dtype).reshape(-1, 1, 1, 1)
        return 0.1 * x + healthy * self.scale * (x > 0.5).to(x.dtype)


class NoCondNet(torch.nn.Module):
    """Ignores the class label: guided and unguided predictions coincide for every slice."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.1))

    def forward(self, x, timesteps, class_labels):
        return self.w * x


def _lesion_items(n: int, seed: int) -> list[dict]:
    """``n`` 2-channel 12 x 12 slices in [-0.8, 0]; every second one has a bright 4 x 4 "lesion" and label 1."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        img = torch.rand(2, 12, 12, generator=g) * 0.8 - 0.8
        if i % 2:
            img[:, 3:7, 3:7] = 0.9
        items.append({"image": img, "slice_label": torch.tensor(i % 2)})
    return items


def test_calibrate_end_to_end(tmp_path, caplog, capsys):
    items = _lesion_items(12, seed=0)
    net = Net()
    ckpt = tmp_path / "model.pt"
    torch.save({"model": {"scale": torch.tensor(0.7)}}, ckpt)
    inferer = FPDMInferer(DDPMScheduler(1000), num_steps=60, stride=10, channels=(0, 1), slice_batch_size=5)
    out = tmp_path / "cal" / "calibration.json"
    result = calibrate_fpdm(net, inferer, items, str(out), guidance_grid=(0.5, 2.0, 8.0), checkpoint=str(ckpt))
    assert float(net.scale.detach()) == pytest.approx(0.7)  # weights loaded, weights_only
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved == json.loads(json.dumps(result))
    assert [(r["slice_score"], r["guidance"]) for r in saved["grid"]] == [
        (k, w) for k in ("cosine", "excess") for w in (0.5, 2.0, 8.0)
    ]
    assert saved["n_slices"] == 12 and saved["n_unhealthy"] == 6
    assert saved["accuracy"] == 1.0  # the lesion slices diverge, the others do not
    assert saved["majority_accuracy"] == 0.5 and saved["auroc"] == 1.0
    # the label changes Net's prediction (the healthy label adds a term), so the MSEs differ
    cond = saved["conditioning"]
    assert set(cond) == set(GAP_FIELDS) - {"epoch"} | {"max_timestep", "draws"}
    assert cond["max_timestep"] == 1000 and cond["draws"] == 16
    assert "conditioning gap (t < 1000, 16 draws per slice)" in capsys.readouterr().out
    assert cond["noise_mse_true"] != cond["noise_mse_swapped"] and cond["noise_mse_swapped"] != cond["noise_mse_null"]
    assert saved["guidance"] == 8.0  # every w separates perfectly: the largest one
    assert saved["slice_score"] == "cosine"  # both scores separate perfectly: the paper's wins the tie
    chosen = next(r for r in saved["grid"] if r["guidance"] == 8.0 and r["slice_score"] == "cosine")
    assert saved["score_threshold"] == chosen["score_threshold"]
    assert saved["m_max"] == chosen["m_max"] > 0
    # a network whose class conditioning does nothing cannot separate the classes: calibration says so
    with caplog.at_level(logging.WARNING, logger="monai_adiff.engines.calibration"):
        flat = calibrate_fpdm(NoCondNet(), inferer, items, str(tmp_path / "flat.json"), guidance_grid=(1.0,))
    assert flat["majority_accuracy"] == 0.5 and flat["accuracy"] < 0.79  # 0.5 + 2 standard errors of 12 slices
    assert "no slice-score threshold separates" in caplog.text
    # the label changes nothing: equal MSEs, the true label never better
    c = flat["conditioning"]
    assert c["noise_mse_true"] == c["noise_mse_swapped"] == c["noise_mse_null"]
    assert c["true_below_null_fraction"] == c["true_below_swapped_fraction"] == c["relative_gap_null"] == 0.0
    # a single-class validation set cannot calibrate a classifier
    with pytest.raises(ValueError, match="healthy and unhealthy"):
        calibrate_fpdm(net, inferer, [dict(it, slice_label=torch.tensor(0)) for it in items], str(out))


def test_load_network_weights_bare_state_dict(tmp_path):
    net = Net()
    torch.save({"scale": torch.tensor(2.0)}, tmp_path / "w.pt")
    load_network_weights(net, str(tmp_path / "w.pt"))
    assert float(net.scale.detach()) == 2.0


class DarkNet(Net):
    """Healthy-label predictions react to dark pixels only: the healthy slices diverge, the score is inverted."""

    def forward(self, x, timesteps, class_labels):
        healthy = (class_labels == 0).to(x.dtype).reshape(-1, 1, 1, 1)
        return 0.1 * x + healthy * self.scale * (x < -0.7).to(x.dtype)


def test_calibration_flags_an_inverted_score(tmp_path, caplog):
    """1 - cos ranking healthy slices first is named (with its brain-area correlation), not silently used."""
    g = torch.Generator().manual_seed(1)
    items = []
    for i in range(12):
        label = i % 2
        img = torch.full((2, 12, 12), -1.0)
        r = 4 if label == 0 else 10  # small healthy brains, large unhealthy ones (as at the brain's top and bottom)
        img[:, :r, :r] = torch.rand(2, r, r, generator=g) * 0.8 - 0.6
        if label:
            img[:, 3:7, 3:7] = 0.9
        items.append({"image": img, "slice_label": torch.tensor(label)})
    inferer = FPDMInferer(DDPMScheduler(1000), num_steps=60, stride=10, channels=(0, 1), slice_batch_size=6)
    with caplog.at_level(logging.WARNING):
        res = calibrate_fpdm(
            DarkNet(), inferer, items, str(tmp_path / "c.json"), guidance_grid=(1.0,), slice_scores=("cosine",)
        )
    assert res["auroc"] < 0.5 and "ranks healthy validation slices above unhealthy ones" in caplog.text
    assert res["brain_area_auroc"] == 1.0  # every unhealthy slice has the larger brain
    assert res["grid"][0]["area_spearman"] < 0  # the inverted score falls with brain area


class BumpNet(Net):
    """The healthy label pushes bright pixels with a strength that peaks at t = 60: with the x0 clamp, a large w
    saturates (and so peaks) earlier than a small one."""

    def forward(self, x, timesteps, class_labels):
        healthy = (class_labels == 0).to(x.dtype).reshape(-1, 1, 1, 1)
        bump = torch.exp(-(((timesteps.to(x.dtype) - 60.0) / 20.0) ** 2)).reshape(-1, 1, 1, 1)
        return 0.1 * x + 3.0 * healthy * bump * (x > 0.3).to(x.dtype)


def test_calibration_with_early_stop_sweeps_each_guidance_on_its_own(tmp_path):
    """With ``patience`` a slice stops after *its w's* divergence peak (as at inference), so one sweep cannot serve
    every w: each w's numbers must equal those of an inference-like sweep at that w alone."""
    items = _lesion_items(8, seed=2)
    inferer = FPDMInferer(DDPMScheduler(1000), num_steps=200, stride=10, channels=(0, 1), slice_batch_size=8)
    inferer.patience = 2
    res = calibrate_fpdm(BumpNet(), inferer, items, str(tmp_path / "c.json"), guidance_grid=(0.5, 8.0))
    x = torch.stack([it["image"] for it in items])
    y = torch.tensor([it["slice_label"] for it in items])
    for row in res["grid"]:
        alone = inferer.sweep(x, BumpNet().eval(), inferer.generator(), guidance=row["guidance"], keep_map=False)
        assert row["m_max"] == pytest.approx(float(alone.m_end.max()))
        score = alone.slice_score(row["slice_score"])[0]
        assert row["auroc"] == pytest.approx(auroc(score, y))
        assert row["score_threshold"] == pytest.approx(best_accuracy_threshold(score, y)[0], abs=1e-9)


class ScaledCurvesInferer(FPDMInferer):
    """Sweeps that return error curves like the CPU recipe's model: on a slice with a bright lesion the guided curve
    is the unguided one scaled up by 12 %, on the others it wobbles by +-5 % around it (w makes no difference)."""

    def sweep(self, x, network, generator, guidance=None, keep_map=True):
        ws = torch.as_tensor(guidance if isinstance(guidance, (list, tuple)) else [guidance], dtype=torch.float32)
        u = torch.tensor([0.0001, 0.014, 0.035, 0.079, 0.146, 0.294]).expand(len(x), 6)
        lesion = (x[:, 0] > 0.85).flatten(1).any(1)
        wobble = 0.05 * torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0]) * (1 + torch.arange(len(x)) % 3)[:, None]
        r = torch.where(lesion[:, None], torch.full_like(u, 0.12), wobble)
        g = (u * (1 + r))[None].expand(len(ws), -1, -1)
        return FPDMSweep(
            timesteps=torch.arange(0, 600, 100),
            guidance=ws,
            mse_guided=g,
            mse_unguided=u,
            divergence=g - u,
            visited=torch.ones(len(x), 6, dtype=torch.bool),
            t_end=torch.full((len(ws), len(x)), 5),
            m_end=(g - u)[:, :, -1],
            amap=None,
        )


def test_calibration_picks_the_score_that_is_not_inverted(tmp_path, caplog):
    """The CPU recipe's failure: ``1 - cos`` ranks healthy slices first (AUROC 0 here); calibration keeps the
    relative excess instead (AUROC 1), and inference then calls the lesion slices unhealthy."""
    items = _lesion_items(12, seed=0)
    inferer = ScaledCurvesInferer(DDPMScheduler(1000), num_steps=60, stride=10, channels=(0, 1), slice_batch_size=5)
    with caplog.at_level(logging.WARNING):
        res = calibrate_fpdm(Net(), inferer, items, str(tmp_path / "c.json"), guidance_grid=(1.0, 2.0))
    rows = {(r["slice_score"], r["guidance"]): r for r in res["grid"]}
    assert rows[("cosine", 2.0)]["auroc"] == 0.0 and rows[("excess", 2.0)]["auroc"] == 1.0
    assert res["slice_score"] == "excess" and res["auroc"] == 1.0 and res["accuracy"] == 1.0
    assert "ranks healthy validation slices above" not in caplog.text
    # the same data with the paper's score alone: calibration warns instead
    with caplog.at_level(logging.WARNING):
        calibrate_fpdm(
            Net(), inferer, items, str(tmp_path / "cos.json"), guidance_grid=(2.0,), slice_scores=("cosine",)
        )
    assert "ranks healthy validation slices above" in caplog.text
    # inference with the calibration file labels exactly the lesion slices unhealthy
    inferer.load_calibration(str(tmp_path / "c.json"))
    x = torch.stack([it["image"] for it in items])
    score = inferer.sweep(x, Net(), None, guidance=inferer.guidance).slice_score(inferer.slice_score)[0]
    assert ((score >= inferer.score_threshold).long() == torch.tensor([i % 2 for i in range(12)])).all()
