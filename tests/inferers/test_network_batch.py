# SPDX-License-Identifier: Apache-2.0
"""``AnomalyInferer.network_call`` runs a slice batch through the network in parts of ``network_batch_size``: per-slice
arguments split with the slices, the rest passed whole, the result the whole-batch result (a closed-form network)."""

from __future__ import annotations

import pytest
import torch

from monai_adiff.inferers.base import CPU_NETWORK_BATCH
from monai_adiff.methods.dae import DenoisingInferer


def test_parts_split_per_slice_arguments_and_concatenate():
    seen = []

    def network(x, timesteps, class_labels=None, scale=None):
        seen.append((x.shape[0], timesteps.shape[0], class_labels.shape[0], scale.shape))
        return x * timesteps[:, None, None, None] + class_labels[:, None, None, None] * scale

    x = torch.randn(10, 2, 4, 4)
    t, labels, scale = torch.arange(10.0), torch.arange(10) % 3, torch.tensor(2.0)
    inferer = DenoisingInferer(network_batch_size=4)
    out = inferer.network_call(network, x, t, class_labels=labels, scale=scale)
    expected = x * t[:, None, None, None] + labels[:, None, None, None] * 2.0
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert seen == [(4, 4, 4, ()), (4, 4, 4, ()), (2, 2, 2, ())]


def test_default_on_cpu_and_whole_batch_when_large_enough():
    calls = []

    def network(x):
        calls.append(x.shape[0])
        return x

    DenoisingInferer().network_call(network, torch.zeros(CPU_NETWORK_BATCH + 1, 1, 2, 2))
    assert calls == [CPU_NETWORK_BATCH, 1]
    calls.clear()
    DenoisingInferer(network_batch_size=100).network_call(network, torch.zeros(50, 1, 2, 2))
    assert calls == [50]
    with pytest.raises(ValueError, match="network_batch_size"):
        DenoisingInferer(network_batch_size=0)
