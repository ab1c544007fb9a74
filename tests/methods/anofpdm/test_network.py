# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch
from monai.networks.nets import DiffusionModelUNet

from monai_adiff.methods.anofpdm import DropoutDiffusionModelUNet

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
    ours = DropoutDiffusionModelUNet(dropout=0.1, **KW)
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
    net = DropoutDiffusionModelUNet(**KW)
    net.train()
    x, t, y = torch.rand(1, 4, 16, 16), torch.tensor([3]), torch.tensor([1])
    torch.testing.assert_close(net(x, t, class_labels=y), net(x, t, class_labels=y))
    with pytest.raises(ValueError):
        DropoutDiffusionModelUNet(dropout=1.0, **KW)
