# SPDX-License-Identifier: Apache-2.0
"""DTU-Net: the Dynamic Transformer UNet noise predictor (Kumar et al., WACV 2024, section 3.3, Fig. 4).

A U-ViT (Bao et al. 2023) whose tokens are ``[label,] time, patches``: d/2 encoder blocks, one middle block and
d/2 decoder blocks joined by long skips, a LayerNorm + linear head that unpatchifies to the image, and a 3 x 3
refinement convolution. MONAI's ``DiffusionModelUNet`` is convolutional and its ``ViT`` has no time token, long
skips nor the paper's variants, hence this module; it is called like ``DiffusionModelUNet``
(``network(x, timesteps, class_labels=...)``), so MONAI's ``DiffusionInferer`` and this package's trainers and
inferers run it unchanged.
"""

from __future__ import annotations

import torch
from monai.networks.nets.diffusion_model_unet import get_timestep_embedding
from torch import nn

from .blocks import PatchEmbed, Refine, ResidualRefine, SlidingPatchEmbed, TransformerBlock

__all__ = ["DTUNet", "PAPER_SIZE", "CODE_SIZE"]

#: the paper's network (section 4): 224 px, patch 16, D 384, depth 6, 6 heads, MLP ratio 4
PAPER_SIZE = {"img_size": 224, "patch_size": 16, "embed_dim": 384, "depth": 6, "num_heads": 6}
#: the public code's network: 256 px, patch 16, D 768, depth 12, 12 heads
CODE_SIZE = {"img_size": 256, "patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12}


class DTUNet(nn.Module):
    """DTU-Net predicting the noise of a diffusion step.

    Args:
        spatial_dims: 2 (slices); kept for the MONAI network signature.
        in_channels: image channels.
        out_channels: predicted channels (the noise: ``in_channels``).
        img_size: square image side (a multiple of ``patch_size``); sets the position embedding.
        patch_size: patch side p.
        embed_dim: token width D.
        depth: encoder + decoder blocks (even: d/2 each, plus one middle block).
        num_heads: attention heads (D divisible by them).
        mlp_ratio: feed-forward width ratio.
        patch_embed: ``"pe"`` (convolution, kernel = stride = p) or ``"spe"`` (sliding window, eq. 5).
        attention: ``"dmha"`` (dynamic, with head tokens) or ``"mha"``.
        feed_forward: ``"mlp"`` or ``"hff"`` (hybrid, depthwise convolution + squeeze-excitation of token 0).
        refine: ``"conv"`` (3 x 3) or ``"rconv"`` (conv-BN-GELU-conv) after unpatchifying.
        num_class_embeds: classes of the label token including the null class (weakly supervised variant:
            3 = healthy, unhealthy, null); ``None``: no label token.
        qkv_bias: bias of the query/key/value projections (the paper's: none).

    Raises:
        ValueError: an unknown variant, an odd depth, or sizes that do not divide.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 384,
        depth: int = 6,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        patch_embed: str = "pe",
        attention: str = "dmha",
        feed_forward: str = "mlp",
        refine: str = "conv",
        num_class_embeds: int | None = None,
        qkv_bias: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"DTUNet is 2D, got spatial_dims={spatial_dims}")
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        if depth < 2 or depth % 2:
            raise ValueError(f"depth must be even and >= 2 (d/2 encoder and d/2 decoder blocks), got {depth}")
        embeds = {"pe": PatchEmbed, "spe": SlidingPatchEmbed}
        refines = {"conv": Refine, "rconv": ResidualRefine}
        if patch_embed not in embeds:
            raise ValueError(f"patch_embed must be one of {sorted(embeds)}, got {patch_embed!r}")
        if refine not in refines:
            raise ValueError(f"refine must be one of {sorted(refines)}, got {refine!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.img_size, self.patch_size, self.embed_dim = img_size, patch_size, embed_dim
        self.grid = img_size // patch_size
        self.num_class_embeds = num_class_embeds
        self.num_extra_tokens = 1 + (num_class_embeds is not None)

        self.patch_embed = embeds[patch_embed](in_channels, embed_dim, patch_size)
        self.time_embed = nn.Sequential(
            nn.Linear(embed_dim, 4 * embed_dim), nn.SiLU(), nn.Linear(4 * embed_dim, embed_dim)
        )
        self.label_embed = nn.Embedding(num_class_embeds, embed_dim) if num_class_embeds is not None else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_extra_tokens + self.grid**2, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

        def block(skip: bool) -> TransformerBlock:
            return TransformerBlock(
                embed_dim, num_heads, mlp_ratio, attention, feed_forward, self.num_extra_tokens, skip, qkv_bias
            )

        self.in_blocks = nn.ModuleList([block(False) for _ in range(depth // 2)])
        self.mid_block = block(False)
        self.out_blocks = nn.ModuleList([block(True) for _ in range(depth // 2)])
        self.norm = nn.LayerNorm(embed_dim)
        self.decoder_pred = nn.Linear(embed_dim, patch_size**2 * out_channels)
        self.refine = refines[refine](out_channels)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # ViT/U-ViT initialisation: truncated-normal linear weights, zero biases, unit LayerNorm
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def tokens(self, x: torch.Tensor, timesteps: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        """The input tokens ``[label,] time, patches`` (B, E + L, D) with the position embedding added."""
        b = x.shape[0]
        t = torch.as_tensor(timesteps, device=x.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(b)
        time = self.time_embed(get_timestep_embedding(t, self.embed_dim).to(x.dtype))[:, None]
        parts = [time, self.patch_embed(x)]
        if self.label_embed is not None:
            if class_labels is None:
                raise ValueError("this DTUNet has a label token: pass class_labels (the null class for none)")
            parts.insert(0, self.label_embed(class_labels.long().reshape(-1))[:, None])
        elif class_labels is not None:
            raise ValueError("class_labels given to a DTUNet without a label token (num_class_embeds=None)")
        return torch.cat(parts, dim=1) + self.pos_embed

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, L, p * p * C) patch predictions, channels innermost, -> (B, C, H, W)."""
        b, g, p, c = patches.shape[0], self.grid, self.patch_size, self.out_channels
        return patches.reshape(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, g * p, g * p)

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the noise of ``x`` (B, C, H, W) at ``timesteps`` (B,), given ``class_labels`` (B,) when the
        network has a label token. ``context`` (cross-attention conditioning) is not supported."""
        if context is not None:
            raise ValueError("DTUNet has no cross-attention conditioning (context)")
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"DTUNet was built for {self.img_size} px images, got {tuple(x.shape[-2:])}")
        h = self.tokens(x, timesteps, class_labels)
        skips = []
        for blk in self.in_blocks:
            h = blk(h)
            skips.append(h)
        h = self.mid_block(h)
        for blk in self.out_blocks:
            h = blk(h, skips.pop())
        patches = self.decoder_pred(self.norm(h))[:, self.num_extra_tokens :]
        return self.refine(self.unpatchify(patches))
