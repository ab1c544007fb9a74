# SPDX-License-Identifier: Apache-2.0
"""Classifier-free guidance training pieces: label dropout and the class-label inferer."""

from __future__ import annotations

import torch
from monai.networks.schedulers import DDPMScheduler

from monai_adiff.engines import ClassDropoutPrepareBatch
from monai_adiff.inferers import ConditionalDiffusionInferer


def test_label_dropout_rate_and_contract():
    torch.manual_seed(0)
    labels = torch.randint(0, 2, (4000,))
    batch = {"image": torch.zeros(4000, 1, 2, 2), "slice_label": labels}
    images, target, args, kw = ClassDropoutPrepareBatch(1000, drop_prob=0.1, null_label=2)(batch)
    cond = kw["condition"]
    dropped = cond == 2
    assert 0.08 < float(dropped.float().mean()) < 0.12
    assert torch.equal(cond[~dropped], labels[~dropped])  # kept labels are untouched
    assert torch.equal(target, kw["noise"]) and args == () and kw["timesteps"].max() < 1000
    assert 0.9 < float(kw["noise"].std()) < 1.1  # Gaussian noise by default (AnoFPDM)
    _, _, _, kw0 = ClassDropoutPrepareBatch(1000, drop_prob=0.0)(batch)
    assert torch.equal(kw0["condition"], labels)


class Recorder(torch.nn.Module):
    def forward(self, x, timesteps, class_labels=None, context=None):
        self.seen = (x, timesteps, class_labels, context)
        return x * 0


def test_conditional_inferer_passes_class_labels():
    sched = DDPMScheduler(1000)
    net = Recorder()
    x, noise = torch.rand(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    t = torch.tensor([1, 500, 999])
    ConditionalDiffusionInferer(sched)(x, net, noise, t, condition=torch.tensor([0, 2, 1]))
    x_t, tt, labels, context = net.seen
    assert labels.tolist() == [0, 2, 1] and context is None and torch.equal(tt, t)
    torch.testing.assert_close(x_t, sched.add_noise(x, noise, t))
