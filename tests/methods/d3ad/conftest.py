# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch

from monai_adiff.methods.d3ad import D3ADModel

TINY = dict(
    channels=(8, 16),
    attention_levels=(False, False),
    num_res_blocks=1,
    num_head_channels=8,
    norm_num_groups=4,
    latent_channels=2,
    ae_channels=(8, 16),
    ae_num_res_blocks=1,
    ae_norm_num_groups=4,
    feature_model="resnet10",
    knn_pool=2,
)


def tiny_model(seed: int = 0) -> D3ADModel:
    torch.manual_seed(seed)
    return D3ADModel(**TINY).eval()


def brain_slices(n: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Slices in [-1, 1] with a -1 background and a textured disc of varying radius (the brain)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    out = []
    for i in range(n):
        r = size * (0.25 + 0.15 * i / max(n - 1, 1))
        disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < r**2
        tex = 0.3 * torch.rand(size, size, generator=g) - 0.2
        out.append(torch.where(disc, tex, torch.full_like(tex, -1.0)))
    return torch.stack(out)[:, None]


@pytest.fixture
def model() -> D3ADModel:
    return tiny_model()
