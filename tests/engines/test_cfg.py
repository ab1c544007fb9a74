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


def test_conditional_inferer_without_condition_is_monai_call():
    sched = DDPMScheduler(1000)
    net = Recorder()
    x, noise, t = torch.rand(2, 1, 4, 4), torch.randn(2, 1, 4, 4), torch.tensor([3, 700])
    ConditionalDiffusionInferer(sched)(x, net, noise, t)
    assert net.seen[2] is None


def test_label_dropout_without_labels_is_plain():
    batch = {"image": torch.zeros(4, 1, 2, 2)}
    images, target, args, kw = ClassDropoutPrepareBatch(1000, label_key=None)(batch)
    assert "condition" not in kw and torch.equal(target, kw["noise"])


class Affine(torch.nn.Module):
    """eps(x, t, c) = (c + 1) * x + t: guidance is linear in it, so every combination has a closed form."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x, timesteps, class_labels=None):
        self.calls += 1
        c = torch.zeros(x.shape[0]) if class_labels is None else class_labels.float()
        return (c + 1).view(-1, 1, 1, 1) * x + timesteps.float().view(-1, 1, 1, 1)


def test_classifier_free_guidance_closed_form():
    from monai_adiff.inferers import ClassifierFreeGuidance

    x, t = torch.randn(3, 1, 2, 2), torch.tensor([5, 6, 7])
    net = Affine()
    tt = t.float().view(-1, 1, 1, 1)
    # label 0 (eps = x + t), null 2 (eps = 3x + t): eps_null + s (eps_0 - eps_null) = (3 - 2s) x + t
    for s in (0.0, 1.0, 2.5):
        torch.testing.assert_close(ClassifierFreeGuidance(net, 0, 2, s)(x, t), (3 - 2 * s) * x + tt)
    net.calls = 0
    ClassifierFreeGuidance(net, 0, 2, 1.0)(x, t)
    assert net.calls == 1  # s = 1: the conditional pass alone
    torch.testing.assert_close(ClassifierFreeGuidance(net, None)(x, t), x + tt)  # pass-through, no labels
    # a scalar timestep is broadcast to the batch
    torch.testing.assert_close(ClassifierFreeGuidance(net, 1, 2, 2.0)(x, torch.tensor(4)), (3 + 2 * (2 - 3)) * x + 4)
