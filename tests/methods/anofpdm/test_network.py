# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch
from monai.networks.nets import DiffusionModelUNet

from monai_adiff.methods.anofpdm import CFGDiffusionModelUNet

KW = dict(
    spatial_dims=2,
    in_channels=4,
    out_channels=4,
    channels=(8, 16, 16),
    attention_levels=(False, False, True),
    num_head_channels=(0, 0, 8),
    num_res_blocks=1,
    norm_num_groups=8,
    num_class_embeds=3,
)


def test_same_state_dict_and_eval_output():
    ours = CFGDiffusionModelUNet(dropout=0.1, **KW)
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # MONAI zero-initialises conv2: perturb so dropout matters
    plain = DiffusionModelUNet(**KW)
    plain.load_state_dict(ours.state_dict())
    x, t, y = torch.rand(2, 4, 16, 16), torch.tensor([3, 700]), torch.tensor([0, 2])
    ours.eval()
    plain.eval()
    torch.testing.assert_close(ours(x, t, class_labels=y), plain(x, t, class_labels=y))
    ours.train()
    assert not torch.allclose(ours(x, t, class_labels=y), ours(x, t, class_labels=y))


def test_no_dropout_and_bad_value():
    net = CFGDiffusionModelUNet(**KW)
    net.train()
    x, t, y = torch.rand(1, 4, 16, 16), torch.tensor([3]), torch.tensor([1])
    torch.testing.assert_close(net(x, t, class_labels=y), net(x, t, class_labels=y))
    with pytest.raises(ValueError):
        CFGDiffusionModelUNet(dropout=1.0, **KW)


def _perturbed(net: torch.nn.Module) -> torch.nn.Module:
    """MONAI zero-initialises output projections; random weights everywhere make every path visible."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return net.eval()


def _changes_with_label(net: torch.nn.Module) -> bool:
    x, t = torch.rand(2, 4, 16, 16, generator=torch.Generator().manual_seed(1)), torch.tensor([50, 500])
    with torch.no_grad():
        out = [net(x, t, class_labels=torch.full((2,), y)) for y in (0, 1, 2)]
    return all((a - b).abs().max() > 1e-4 for i, a in enumerate(out) for b in out[i + 1 :])


class _LabelBlind(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, t, class_labels=None):
        return self.net(x, t, class_labels=torch.full_like(class_labels, 2))


@pytest.mark.parametrize("mode", ["time", "time+attention"])
def test_prediction_changes_with_the_label(mode):
    net = _perturbed(CFGDiffusionModelUNet(class_conditioning=mode, **KW))
    assert _changes_with_label(net)
    assert not _changes_with_label(_LabelBlind(net))  # the check can fail


def test_attention_path_carries_the_class_and_null_is_zero():
    net = _perturbed(CFGDiffusionModelUNet(class_conditioning="time+attention", **KW))
    x, t, n = torch.rand(2, 4, 16, 16), torch.tensor([10, 300]), torch.full((2,), 2)
    d = 4 * KW["channels"][0]
    with torch.no_grad():
        # null label: zero class embedding, zero context (not a learnt row)
        assert torch.equal(net.class_embedding(n), torch.zeros(2, d))
        zero_ctx = DiffusionModelUNet.forward(net, x, t, context=torch.zeros(2, d, d), class_labels=n)
        torch.testing.assert_close(net(x, t, class_labels=n), zero_ctx)
        # the class reaches the output through the attention alone (time embedding kept at the null's)
        e = net.class_embedding(torch.tensor([1, 1]))
        ctx = torch.einsum("ni,nj->nij", e, e)
        assert (DiffusionModelUNet.forward(net, x, t, context=ctx, class_labels=n) - zero_ctx).abs().max() > 1e-4
    # and the class table is trained through it
    net.train()
    net(x, t, class_labels=torch.tensor([0, 1])).square().mean().backward()
    assert net.class_embedding.table.weight.grad.abs().sum() > 0


def test_conditioning_arguments_checked():
    with pytest.raises(ValueError, match="class_conditioning"):
        CFGDiffusionModelUNet(class_conditioning="attention", **KW)
    with pytest.raises(ValueError, match="num_class_embeds"):
        CFGDiffusionModelUNet(class_conditioning="time+attention", **{**KW, "num_class_embeds": None})
    net = CFGDiffusionModelUNet(class_conditioning="time+attention", **KW)
    with pytest.raises(ValueError, match="class labels"):
        net(torch.rand(1, 4, 16, 16), torch.tensor([1]), class_labels=torch.tensor([3]))


def test_scale_shift_block_follows_the_formula():
    from monai.networks.nets.diffusion_model_unet import DiffusionUNetResnetBlock

    from monai_adiff.methods.anofpdm import ScaleShiftResnetBlock

    torch.manual_seed(0)
    block = _perturbed(DiffusionUNetResnetBlock(2, in_channels=8, temb_channels=12, out_channels=16, norm_num_groups=4))
    plain_out = block(x := torch.randn(2, 8, 6, 6), emb := torch.randn(2, 12))
    ScaleShiftResnetBlock.convert(block)
    assert block.time_emb_proj.out_features == 32
    with torch.no_grad():
        block.time_emb_proj.weight.normal_()
        out = block(x, emb)
        # by hand: norm2(conv1(silu(norm1(x)))) * (1 + scale) + shift, then silu, conv2, plus the 1x1 skip
        ss = torch.nn.functional.linear(
            torch.nn.functional.silu(emb), block.time_emb_proj.weight, block.time_emb_proj.bias
        )
        scale, shift = ss[:, :16, None, None], ss[:, 16:, None, None]
        h = block.conv1(
            torch.nn.functional.silu(torch.nn.functional.group_norm(x, 4, block.norm1.weight, block.norm1.bias, 1e-6))
        )
        h = torch.nn.functional.group_norm(h, 4, block.norm2.weight, block.norm2.bias, 1e-6) * (1 + scale) + shift
        expected = block.skip_connection(x) + block.conv2(torch.nn.functional.silu(h))
        torch.testing.assert_close(out, expected)
        # zero scale and shift: MONAI's block with a zero time projection
        block.time_emb_proj.weight.zero_(), block.time_emb_proj.bias.zero_()
        ref = DiffusionUNetResnetBlock(2, in_channels=8, temb_channels=12, out_channels=16, norm_num_groups=4)
        ref.load_state_dict(
            {k: v for k, v in block.state_dict().items() if not k.startswith("time_emb_proj")}, strict=False
        )
        ref.time_emb_proj.weight.data.zero_(), ref.time_emb_proj.bias.data.zero_()
        torch.testing.assert_close(block(x, emb), ref(x, emb))
        assert not torch.allclose(plain_out, out)


@pytest.mark.parametrize("mode", ["time", "time+attention"])
def test_scale_shift_network_carries_the_label(mode):
    from monai.networks.nets.diffusion_model_unet import DiffusionUNetResnetBlock

    from monai_adiff.methods.anofpdm import ScaleShiftResnetBlock

    net = _perturbed(CFGDiffusionModelUNet(class_conditioning=mode, scale_shift_norm=True, dropout=0.1, **KW))
    blocks = [m for m in net.modules() if isinstance(m, DiffusionUNetResnetBlock)]
    assert blocks and all(isinstance(m, ScaleShiftResnetBlock) for m in blocks)
    assert _changes_with_label(net)
    assert not _changes_with_label(_LabelBlind(net))
    # the state dict round-trips into a fresh network of the same arguments
    fresh = CFGDiffusionModelUNet(class_conditioning=mode, scale_shift_norm=True, dropout=0.1, **KW).eval()
    fresh.load_state_dict(net.state_dict())
    x, t, y = torch.rand(2, 4, 16, 16), torch.tensor([3, 700]), torch.tensor([0, 1])
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, t, class_labels=y), net(x, t, class_labels=y))
