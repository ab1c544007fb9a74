# SPDX-License-Identifier: Apache-2.0
"""The interchangeable parts of DTU-Net (Kumar et al., WACV 2024, section 3.3 and Table 3).

Each part has the paper's variant and the plain ViT one, so the paper's backbone ablation is a config switch:
patch embedding PE / SPE, attention MHA / DMHA, feed-forward MLP / HFF, output refinement conv / RConv. MONAI has a
ViT (``monai.networks.blocks.SABlock``, ``PatchEmbeddingBlock``), but none of these variants, nor a ViT that keeps
extra tokens (time, label) beside the patch grid; they are written here.

Token layout everywhere: ``(B, E + L, D)`` with ``E`` extra tokens first (``[label,] time``) and ``L`` patch tokens
of a square ``g x g`` grid in raster order. Token 0 is the one DMHA and HFF write into (the label token when there
is one, otherwise the time token).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Affine",
    "PatchEmbed",
    "SlidingPatchEmbed",
    "Attention",
    "DynamicAttention",
    "Mlp",
    "HybridFeedForward",
    "Refine",
    "ResidualRefine",
    "TransformerBlock",
]


class Affine(nn.Module):
    """``Diag(nu) x + phi`` over channels (eq. 5), ``nu`` = 1 and ``phi`` = 0 at initialisation.

    Args:
        channels: number of channels.
        channel_dim: the channel axis of the input (1 for images, -1 for tokens).
    """

    def __init__(self, channels: int, channel_dim: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.channel_dim = channel_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.ndim
        shape[self.channel_dim] = -1
        return x * self.weight.view(shape) + self.bias.view(shape)


class PatchEmbed(nn.Module):
    """PE: one convolution with kernel = stride = ``patch_size`` (ViT's linear patch embedding).

    Args:
        in_channels: image channels.
        embed_dim: token width D.
        patch_size: patch side p.
    """

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class SlidingPatchEmbed(nn.Module):
    """SPE (eq. 5): affine, then ``log2(p)`` stride-2 3 x 3 convolutions with BatchNorm whose widths double up to D
    (p = 16: D/8, D/4, D/2, D), GELU between them but not after the last, then an affine over the tokens.

    Args:
        in_channels: image channels.
        embed_dim: token width D (divisible by ``p / 2``).
        patch_size: patch side p, a power of two >= 2.
    """

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        k = int(round(math.log2(patch_size)))
        if patch_size < 2 or 2**k != patch_size:
            raise ValueError(f"SPE needs a power-of-two patch size >= 2, got {patch_size}")
        if embed_dim % 2 ** (k - 1):
            raise ValueError(f"SPE needs embed_dim divisible by {2 ** (k - 1)} for patch size {patch_size}")
        widths = [embed_dim // 2 ** (k - 1 - i) for i in range(k)]
        layers: list[nn.Module] = [Affine(in_channels)]
        prev = in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(prev, w, 3, stride=2, padding=1), nn.BatchNorm2d(w)]
            if i < k - 1:
                layers.append(nn.GELU())
            prev = w
        self.convs = nn.Sequential(*layers)
        self.post = Affine(embed_dim, channel_dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.convs(x).flatten(2).transpose(1, 2))


class Attention(nn.Module):
    """MHA: multi-head self-attention over all tokens (``torch``'s scaled-dot-product kernel).

    Args:
        dim: token width D.
        num_heads: heads h (D divisible by h).
        qkv_bias: bias of the query/key/value projection.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention of ``x`` (B, N, D) followed by the output projection."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(x)


class DynamicAttention(Attention):
    """DMHA (Fig. 4b, after DHVT's head tokens): one extra token per head joins the attention.

    Per head, its D/h channels are averaged over all tokens, projected to D, normalised per D/h chunk (LayerNorm),
    passed through GELU and given a learnt head position embedding; attention runs over the N tokens plus these h
    head tokens (query/key/value without bias); after the output projection the mean of the head tokens' outputs is
    added to token 0 and the head tokens are dropped.

    Args:
        dim: token width D.
        num_heads: heads h.
        qkv_bias: bias of the query/key/value projection (the paper's: none).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False) -> None:
        super().__init__(dim, num_heads, qkv_bias)
        self.head_dim = dim // num_heads
        self.head_proj = nn.Linear(self.head_dim, dim)
        self.head_norm = nn.LayerNorm(self.head_dim)
        self.head_pos = nn.Parameter(torch.zeros(1, num_heads, dim))
        nn.init.trunc_normal_(self.head_pos, std=0.02)

    def head_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The h head tokens (B, h, D) of ``x`` (B, N, D)."""
        b, _, d = x.shape
        h = self.num_heads
        pooled = x.reshape(b, -1, h, self.head_dim).mean(dim=1)  # (B, h, D/h): each head's channels, token mean
        tokens = self.head_proj(pooled)  # (B, h, D)
        tokens = self.head_norm(tokens.reshape(b, h, h, self.head_dim)).reshape(b, h, d)
        return F.gelu(tokens) + self.head_pos

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        out = self.attend(torch.cat([x, self.head_tokens(x)], dim=1))
        tokens, heads = out[:, :n], out[:, n:]
        return torch.cat([tokens[:, :1] + heads.mean(dim=1, keepdim=True), tokens[:, 1:]], dim=1)


class Mlp(nn.Module):
    """MLP: Linear(D -> rD), GELU, Linear(rD -> D) on every token.

    Args:
        dim: token width D.
        hidden_dim: rD.
        num_extra_tokens: unused (the same signature as :class:`HybridFeedForward`).
    """

    def __init__(self, dim: int, hidden_dim: int, num_extra_tokens: int = 1) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class HybridFeedForward(nn.Module):
    """HFF (Fig. 5): a depthwise-convolution feed-forward on the patch grid whose pooled output rescales token 0.

    The extra tokens are split off; the patches go on their g x g grid through conv1x1 (D -> rD), BN, GELU;
    depthwise 3 x 3, BN, GELU plus a shortcut; conv1x1 (rD -> D), BN. Squeeze-excitation of the output (global mean
    -> Linear D/4 -> GELU -> Linear D, no sigmoid) multiplies token 0; further extra tokens pass unchanged.

    Args:
        dim: token width D.
        hidden_dim: rD.
        num_extra_tokens: extra tokens before the patches (1: time; 2: label, time).
    """

    def __init__(self, dim: int, hidden_dim: int, num_extra_tokens: int = 1) -> None:
        super().__init__()
        self.num_extra_tokens = int(num_extra_tokens)
        self.expand = nn.Sequential(nn.Conv2d(dim, hidden_dim, 1), nn.BatchNorm2d(hidden_dim), nn.GELU())
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1, groups=hidden_dim), nn.BatchNorm2d(hidden_dim), nn.GELU()
        )
        self.reduce = nn.Sequential(nn.Conv2d(hidden_dim, dim, 1), nn.BatchNorm2d(dim))
        self.excite = nn.Sequential(nn.Linear(dim, dim // 4), nn.GELU(), nn.Linear(dim // 4, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.num_extra_tokens
        extra, patches = x[:, :e], x[:, e:]
        b, n, d = patches.shape
        g = math.isqrt(n)
        if g * g != n:
            raise ValueError(f"HFF needs a square patch grid, got {n} patch tokens")
        grid = self.expand(patches.transpose(1, 2).reshape(b, d, g, g))
        grid = self.reduce(grid + self.depthwise(grid))
        weight = self.excite(grid.mean(dim=(2, 3)))  # (B, D)
        out = grid.flatten(2).transpose(1, 2)
        return torch.cat([extra[:, :1] * weight[:, None], extra[:, 1:], out], dim=1)


class Refine(nn.Module):
    """Conv: one 3 x 3 convolution on the unpatchified output (the paper's artefact filter).

    Args:
        channels: image channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ResidualRefine(nn.Module):
    """RConv: conv 3 x 3, BN, GELU, conv 3 x 3 (Table 3's extra refinement layer).

    Args:
        channels: image channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class TransformerBlock(nn.Module):
    """A pre-LayerNorm transformer block; a decoder block first fuses its long skip, Linear(2D -> D) on
    ``cat[x, skip]`` (U-ViT).

    Args:
        dim: token width D.
        num_heads: attention heads.
        mlp_ratio: feed-forward width ratio r.
        attention: ``"mha"`` or ``"dmha"``.
        feed_forward: ``"mlp"`` or ``"hff"``.
        num_extra_tokens: extra tokens before the patches.
        skip: whether the block takes a long skip (decoder blocks).
        qkv_bias: bias of the query/key/value projection.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        attention: str = "dmha",
        feed_forward: str = "mlp",
        num_extra_tokens: int = 1,
        skip: bool = False,
        qkv_bias: bool = False,
    ) -> None:
        super().__init__()
        attn_cls = {"mha": Attention, "dmha": DynamicAttention}
        ff_cls = {"mlp": Mlp, "hff": HybridFeedForward}
        if attention not in attn_cls:
            raise ValueError(f"attention must be one of {sorted(attn_cls)}, got {attention!r}")
        if feed_forward not in ff_cls:
            raise ValueError(f"feed_forward must be one of {sorted(ff_cls)}, got {feed_forward!r}")
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attn_cls[attention](dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = ff_cls[feed_forward](dim, int(dim * mlp_ratio), num_extra_tokens=num_extra_tokens)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            if skip is None:
                raise ValueError("a decoder block needs its skip tokens")
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        x = x + self.attn(self.norm1(x))
        return x + self.ff(self.norm2(x))
