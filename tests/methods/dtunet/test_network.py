# SPDX-License-Identifier: Apache-2.0
"""DTU-Net: every switch combination trains at tiny sizes; DMHA and HFF against slow references written from the
paper's description (Fig. 4b, Fig. 5); token bookkeeping with and without the label token."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from monai.inferers import DiffusionInferer
from monai.networks.schedulers import DDPMScheduler
from torch import nn

from monai_adiff.methods.dtunet import (
    CODE_SIZE,
    PAPER_SIZE,
    DTUNet,
    DynamicAttention,
    HybridFeedForward,
    SlidingPatchEmbed,
)

TINY = {"img_size": 16, "patch_size": 4, "embed_dim": 16, "depth": 2, "num_heads": 2}
SWITCHES = list(itertools.product(["pe", "spe"], ["mha", "dmha"], ["mlp", "hff"], ["conv", "rconv"], [None, 3]))


@pytest.mark.parametrize("patch_embed,attention,feed_forward,refine,classes", SWITCHES)
def test_every_switch_combination_trains(patch_embed, attention, feed_forward, refine, classes):
    torch.manual_seed(0)
    net = DTUNet(
        **TINY,
        patch_embed=patch_embed,
        attention=attention,
        feed_forward=feed_forward,
        refine=refine,
        num_class_embeds=classes,
    )
    net.train()
    x = torch.randn(1, 1, 16, 16, requires_grad=True)  # batch 1: BatchNorm (SPE, HFF, RConv) must still work
    labels = None if classes is None else torch.tensor([2])
    out = net(x, torch.tensor([7]), class_labels=labels)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in net.named_parameters():
        # the last block's squeeze-excitation only rescales token 0, which the head drops
        if name.startswith(f"out_blocks.{TINY['depth'] // 2 - 1}.ff.excite"):
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    n_extra = 1 + (classes is not None)
    assert net.num_extra_tokens == n_extra and net.pos_embed.shape == (1, n_extra + 16, 16)


def test_label_token_is_token_zero_and_conditions_the_output():
    torch.manual_seed(0)
    net = DTUNet(**TINY, num_class_embeds=3).eval()
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([3, 900])
    tokens = net.tokens(x, t, torch.tensor([0, 1]))
    assert tokens.shape == (2, 2 + 16, 16)
    # token 0 is the label embedding (+ its position), token 1 the time token
    torch.testing.assert_close(tokens[:, 0], net.label_embed.weight[[0, 1]] + net.pos_embed[0, 0])
    healthy, null = net(x, t, class_labels=torch.tensor([0, 0])), net(x, t, class_labels=torch.tensor([2, 2]))
    assert not torch.allclose(healthy, null)
    with pytest.raises(ValueError, match="class_labels"):
        net(x, t)
    plain = DTUNet(**TINY).eval()
    assert plain.tokens(x, t, None).shape == (2, 1 + 16, 16)
    with pytest.raises(ValueError, match="label token"):
        plain(x, t, class_labels=torch.tensor([0, 1]))


def test_time_token_depends_on_the_timestep_and_a_scalar_broadcasts():
    torch.manual_seed(0)
    net = DTUNet(**TINY).eval()
    x = torch.randn(2, 1, 16, 16)
    a, b = net(x, torch.tensor([5, 5])), net(x, torch.tensor([5, 600]))
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1])
    torch.testing.assert_close(net(x, torch.tensor(5)), a)


def test_unpatchify_inverts_patchify_channels_innermost():
    net = DTUNet(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2, out_channels=3, in_channels=3)
    img = torch.randn(2, 3, 16, 16)
    patches = rearrange(img, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=4, p2=4)
    torch.testing.assert_close(net.unpatchify(patches), img)


def test_sliding_patch_embedding_widths():
    spe = SlidingPatchEmbed(1, 64, 16)
    convs = [m for m in spe.convs if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32, 64] and all(c.stride == (2, 2) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in spe.convs) == 4
    assert sum(isinstance(m, nn.GELU) for m in spe.convs) == 3 and not isinstance(spe.convs[-1], nn.GELU)
    assert spe(torch.randn(1, 1, 64, 64)).shape == (1, 16, 64)
    with pytest.raises(ValueError):
        SlidingPatchEmbed(1, 64, 6)


def _dmha_reference(m: DynamicAttention, x: torch.Tensor) -> torch.Tensor:
    """DMHA written out from the paper, one sample and one head at a time, softmax by hand."""
    b, n, d = x.shape
    h, dh = m.num_heads, d // m.num_heads
    out = torch.empty_like(x)
    for i in range(b):
        heads = []
        for j in range(h):
            pooled = x[i, :, j * dh : (j + 1) * dh].mean(0)  # the head's channels averaged over the tokens
            tok = m.head_proj.weight @ pooled + m.head_proj.bias  # (D,)
            chunks = tok.reshape(h, dh)
            mu, var = chunks.mean(1, keepdim=True), chunks.var(1, unbiased=False, keepdim=True)
            chunks = (chunks - mu) / torch.sqrt(var + m.head_norm.eps) * m.head_norm.weight + m.head_norm.bias
            tok = F.gelu(chunks.reshape(d)) + m.head_pos[0, j]
            heads.append(tok)
        z = torch.cat([x[i], torch.stack(heads)], 0)  # (n + h, D)
        qkv = z @ m.qkv.weight.T  # no bias
        q, k, v = qkv[:, :d], qkv[:, d : 2 * d], qkv[:, 2 * d :]
        att = torch.zeros(n + h, d)
        for j in range(h):
            s = slice(j * dh, (j + 1) * dh)
            w = torch.softmax(q[:, s] @ k[:, s].T / math.sqrt(dh), dim=-1)
            att[:, s] = w @ v[:, s]
        y = att @ m.proj.weight.T + m.proj.bias
        res = y[:n].clone()
        res[0] = res[0] + y[n:].mean(0)
        out[i] = res
    return out


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_dmha_matches_a_slow_reference(heads):
    torch.manual_seed(heads)
    m = DynamicAttention(16, heads)
    for p in m.parameters():  # move off the initial values (LayerNorm 1/0, zero biases)
        nn.init.normal_(p, std=0.3)
    x = torch.randn(3, 1 + 9, 16)
    torch.testing.assert_close(m(x), _dmha_reference(m, x), atol=1e-5, rtol=1e-4)
    assert m.qkv.bias is None


def test_hff_matches_a_slow_reference():
    torch.manual_seed(0)
    m = HybridFeedForward(8, 32, num_extra_tokens=2).eval()
    for p in m.parameters():
        nn.init.normal_(p, std=0.3)
    for bn in (m.expand[1], m.depthwise[1], m.reduce[1]):
        bn.running_mean.normal_(std=0.1)
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 2 + 9, 8)

    def bn(layer, z):
        return (z - layer.running_mean[:, None, None]) / torch.sqrt(layer.running_var[:, None, None] + layer.eps) * (
            layer.weight[:, None, None]
        ) + layer.bias[:, None, None]

    for i in range(2):
        grid = x[i, 2:].T.reshape(8, 3, 3)
        conv1 = m.expand[0]
        a = torch.einsum("oc,chw->ohw", conv1.weight[:, :, 0, 0], grid) + conv1.bias[:, None, None]
        a = F.gelu(bn(m.expand[1], a))
        dw = F.conv2d(a[None], m.depthwise[0].weight, m.depthwise[0].bias, padding=1, groups=32)[0]
        a = a + F.gelu(bn(m.depthwise[1], dw))
        conv2 = m.reduce[0]
        y = bn(m.reduce[1], torch.einsum("oc,chw->ohw", conv2.weight[:, :, 0, 0], a) + conv2.bias[:, None, None])
        e = m.excite
        w = e[2].weight @ F.gelu(e[0].weight @ y.mean((1, 2)) + e[0].bias) + e[2].bias  # no sigmoid
        out = m(x[i : i + 1])[0]
        torch.testing.assert_close(out[0], x[i, 0] * w, atol=1e-5, rtol=1e-4)  # token 0 rescaled
        torch.testing.assert_close(out[1], x[i, 1])  # other extra tokens pass unchanged
        torch.testing.assert_close(out[2:], y.reshape(8, 9).T, atol=1e-5, rtol=1e-4)


def test_runs_under_monai_diffusion_inferer():
    torch.manual_seed(0)
    net = DTUNet(**TINY)
    sched = DDPMScheduler(1000, schedule="cosine")
    x, noise = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    out = DiffusionInferer(sched)(x, net, noise, torch.tensor([10, 700]))
    assert out.shape == x.shape


def test_paper_and_code_sizes_build():
    # parameter counts printed in the bundle README
    assert round(sum(p.numel() for p in DTUNet(**PAPER_SIZE).parameters()) / 1e6, 1) == 14.9
    assert round(sum(p.numel() for p in DTUNet(**CODE_SIZE).parameters()) / 1e6, 1) == 105.3


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"img_size": 18}, "multiple"),
        ({"depth": 3}, "even"),
        ({"attention": "msa"}, "attention"),
        ({"feed_forward": "ffn"}, "feed_forward"),
        ({"patch_embed": "x"}, "patch_embed"),
        ({"refine": "x"}, "refine"),
        ({"num_heads": 3}, "divisible"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DTUNet(**{**TINY, **kwargs})


def test_wrong_image_size_is_refused():
    with pytest.raises(ValueError, match="16 px"):
        DTUNet(**TINY)(torch.randn(1, 1, 32, 32), torch.tensor([1]))
