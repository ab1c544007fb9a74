# SPDX-License-Identifier: Apache-2.0
"""Conditioning gap: per-slice MSEs against draws re-made by hand, summaries against hand-computed values, and the
training handler's learning curve (CSV rows, resume, metrics)."""

from __future__ import annotations

import csv

import pytest
import torch
from ignite.engine import Engine
from monai.networks.schedulers import DDPMScheduler

from monai_adiff.methods.anofpdm import ConditioningGapHandler, conditioning_gap, summarize_gap


class LabelShift(torch.nn.Module):
    """eps = c * [label == 0]: only the healthy label changes the prediction."""

    def __init__(self, c: float = 0.5):
        super().__init__()
        self.c = torch.nn.Parameter(torch.tensor(c))

    def forward(self, x, timesteps, class_labels):
        return self.c * (class_labels == 0).float().reshape(-1, 1, 1, 1) * torch.ones_like(x)


def test_gap_matches_hand_draws():
    x = torch.rand(4, 2, 8, 8)
    y = torch.tensor([0, 1, 0, 1])
    gap = conditioning_gap(LabelShift(0.5), DDPMScheduler(1000), x, y, torch.Generator().manual_seed(3), null_label=2)
    # the same draws: a generator on the data's device seeded from the CPU one, then t, then the noise
    g = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=torch.Generator().manual_seed(3))))
    torch.randint(0, 1000, (4,), generator=g)
    noise = torch.randn(x.shape, generator=g)
    zero = noise.square().flatten(1).mean(1)
    shifted = (0.5 - noise).square().flatten(1).mean(1)
    healthy = y == 0
    torch.testing.assert_close(gap["true"], torch.where(healthy, shifted, zero))
    torch.testing.assert_close(gap["swapped"], torch.where(healthy, zero, shifted))
    torch.testing.assert_close(gap["null"], zero)


def test_several_draws_average_stratified_draws():
    x = torch.rand(3, 1, 4, 4)
    y = torch.tensor([0, 1, 0])
    sched = DDPMScheduler(1000)
    gap = conditioning_gap(LabelShift(0.3), sched, x, y, torch.Generator().manual_seed(5), null_label=2, draws=4)
    g = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=torch.Generator().manual_seed(5))))
    true = torch.zeros(3)
    for k in range(4):
        t = torch.randint(250 * k, 250 * (k + 1), (3,), generator=g)  # draw k from the k-th quarter of the steps
        assert bool(((t >= 250 * k) & (t < 250 * (k + 1))).all())
        noise = torch.randn(x.shape, generator=g)
        true += torch.where(y == 0, (0.3 - noise).square().flatten(1).mean(1), noise.square().flatten(1).mean(1)) / 4
    torch.testing.assert_close(gap["true"], true)
    with pytest.raises(ValueError, match="draws"):
        conditioning_gap(LabelShift(), sched, x, y, torch.Generator(), draws=0)


def test_summary_by_hand():
    gap = {"true": torch.tensor([1.0, 2.0, 3.0, 4.0]), "swapped": torch.tensor([2.0, 1.0, 4.0, 4.0])}
    gap["null"] = torch.tensor([2.0, 4.0, 2.0, 5.0])
    s = summarize_gap(gap)
    assert s["slices"] == 4
    assert s["noise_mse_true"] == 2.5 and s["noise_mse_swapped"] == 2.75 and s["noise_mse_null"] == 3.25
    assert s["true_below_null_fraction"] == 0.75  # 1<2, 2<4, 3>2, 4<5
    assert s["true_below_swapped_fraction"] == 0.5  # 1<2, 3<4
    assert s["relative_gap_null"] == pytest.approx((0.5 + 0.5 - 0.5 + 0.2) / 4)


def test_handler_learning_curve_and_resume(tmp_path):
    torch.manual_seed(0)
    data = [{"image": torch.rand(3, 1, 8, 8), "slice_label": torch.tensor([0, 1, 1])} for _ in range(2)]
    net = LabelShift(0.0)
    out = tmp_path / "logs" / "gap.csv"
    out.parent.mkdir()
    handler = ConditioningGapHandler(net, DDPMScheduler(1000), data, interval=2, output_file=str(out), max_slices=5)

    def step(engine, batch):
        with torch.no_grad():
            net.c.add_(0.1)  # the "training" changes the label effect

    trainer = Engine(step)
    handler.attach(trainer)
    net.train()
    trainer.run(range(1), max_epochs=4)
    assert net.training  # measured in eval mode, mode restored
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [int(r["epoch"]) for r in rows] == [0, 2, 4]
    assert [int(r["slices"]) for r in rows] == [5, 5, 5]
    # epoch 0: no label effect (c = 0); the same t and noise each time, so later rows differ only through c
    assert float(rows[0]["noise_mse_true"]) == float(rows[0]["noise_mse_null"])
    assert float(rows[2]["noise_mse_true"]) != float(rows[1]["noise_mse_true"])
    assert trainer.state.metrics["cond_gap_noise_mse_null"] == pytest.approx(float(rows[2]["noise_mse_null"]), 1e-5)
    # a resumed run (from epoch 2) replaces the rows from its epoch on and does not re-measure its start
    resumed = Engine(step)
    handler.attach(resumed)
    resumed.state.epoch, resumed.state.max_epochs = 2, 6
    resumed.state.iteration = 2
    resumed.run(range(1), max_epochs=6)
    assert [int(r["epoch"]) for r in csv.DictReader(out.open(encoding="utf-8"))] == [0, 2, 4, 6]


def test_handler_needs_slices():
    with pytest.raises(ValueError, match="needs validation slices"):
        ConditioningGapHandler(LabelShift(), DDPMScheduler(1000), []).measure()
    with pytest.raises(ValueError, match="interval"):
        ConditioningGapHandler(LabelShift(), DDPMScheduler(1000), [], interval=0)


class LateLabelShift(LabelShift):
    """The healthy label shifts the prediction only at t >= 300: a network conditioned where it was not trained."""

    def forward(self, x, timesteps, class_labels):
        late = (timesteps >= 300).float().reshape(-1, 1, 1, 1)
        return late * super().forward(x, timesteps, class_labels)


def test_handler_draws_below_its_max_timestep():
    data = [{"image": torch.rand(4, 1, 8, 8), "slice_label": torch.tensor([0, 0, 1, 0])}]
    sched = DDPMScheduler(1000)
    below = ConditioningGapHandler(LateLabelShift(0.5), sched, data, max_timestep=300, draws=3).measure()
    assert below["noise_mse_true"] == below["noise_mse_swapped"] == below["noise_mse_null"]  # no t >= 300 drawn
    full = ConditioningGapHandler(LateLabelShift(0.5), sched, data, draws=3).measure()
    assert full["noise_mse_true"] != full["noise_mse_null"]  # draws 2 and 3 of 3 lie in t >= 333
