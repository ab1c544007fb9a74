# SPDX-License-Identifier: Apache-2.0
"""DTU-Net + Tsimplex (Kumar et al., WACV 2024) on brain MRI: see ``README.md`` beside this file.

``blocks``: the switchable parts (PE/SPE, MHA/DMHA, MLP/HFF, conv/RConv); ``network``: the DTU-Net noise predictor.
Detection is AnoDDPM's partial diffusion with Tsimplex noise under a cosine schedule (the bundle's configs).
"""

from .blocks import (
    Affine,
    Attention,
    DynamicAttention,
    HybridFeedForward,
    Mlp,
    PatchEmbed,
    Refine,
    ResidualRefine,
    SlidingPatchEmbed,
    TransformerBlock,
)
from .network import CODE_SIZE, PAPER_SIZE, DTUNet

__all__ = [
    "Affine",
    "Attention",
    "CODE_SIZE",
    "DTUNet",
    "DynamicAttention",
    "HybridFeedForward",
    "Mlp",
    "PAPER_SIZE",
    "PatchEmbed",
    "Refine",
    "ResidualRefine",
    "SlidingPatchEmbed",
    "TransformerBlock",
]
