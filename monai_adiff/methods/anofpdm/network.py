# SPDX-License-Identifier: Apache-2.0
"""MONAI's ``DiffusionModelUNet`` with the two things the public AnoFPDM code's UNet has and MONAI's lacks.

- Dropout in the residual blocks (AnoFPDM: 0.1), right before the second convolution of every block. Added with
  forward pre-hooks on those convolutions, so the state dict is exactly MONAI's.
- The code's class-conditioning path (``class_conditioning="time+attention"``): a class embedding (table -> MLP)
  that is added to the time embedding *and* fed to every attention level; the null label's embedding is fixed at
  zero (not learnt), so "no label" means "no class signal". MONAI's ``num_class_embeds`` only adds a learnt table row
  to the time embedding, the null class included ("time").
- The code's scale-shift normalisation (``scale_shift_norm``): the embedding scales and shifts every residual
  block's second normalisation, ``norm(h) * (1 + scale) + shift``; MONAI's block only adds it before that
  normalisation, where the group norm removes its per-group mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets import DiffusionModelUNet
from monai.networks.nets.diffusion_model_unet import DiffusionUNetResnetBlock
from torch import nn

__all__ = ["CFGDiffusionModelUNet", "NullableClassEmbedding", "ScaleShiftResnetBlock", "CLASS_CONDITIONING"]

CLASS_CONDITIONING = ("time", "time+attention")


class NullableClassEmbedding(nn.Module):
    """Class embedding ``MLP(table[y])`` with a fixed zero vector for the null label (the public AnoFPDM code).

    Args:
        num_classes: real classes (labels ``0 .. num_classes - 1``).
        in_dim: width of the table (the UNet's first channel count).
        out_dim: width of the output (the time embedding's).
        null_label: the label that maps to zeros (classifier-free guidance's "no label").
    """

    def __init__(self, num_classes: int, in_dim: int, out_dim: int, null_label: int) -> None:
        super().__init__()
        if null_label < num_classes:
            raise ValueError(f"null_label {null_label} must not be one of the {num_classes} real classes")
        self.num_classes = int(num_classes)
        self.null_label = int(null_label)
        self.table = nn.Embedding(num_classes, in_dim)
        self.mlp = nn.Sequential(nn.Linear(in_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.long()
        null = labels == self.null_label
        # checked on the CPU only: on a GPU the check would be a host round trip at every sampling step (a bad label
        # still fails there, in the table lookup)
        if labels.device.type == "cpu" and bool(((labels < 0) | ((labels >= self.num_classes) & ~null)).any()):
            raise ValueError(f"class labels must be in 0..{self.num_classes - 1} or {self.null_label} (null)")
        emb = self.mlp(self.table(labels.masked_fill(null, 0)))
        return emb.masked_fill(null[:, None], 0.0)


class ScaleShiftResnetBlock(DiffusionUNetResnetBlock):
    """MONAI's residual block with the embedding as scale and shift of the second normalisation (guided-diffusion's
    ``use_scale_shift_norm``): ``time_emb_proj`` gives ``2 * out_channels``, ``h = norm2(h) * (1 + scale) + shift``.
    MONAI's block has no such option; :meth:`convert` turns a built block into this one (same other weights).
    """

    @classmethod
    def convert(cls, block: DiffusionUNetResnetBlock) -> ScaleShiftResnetBlock:
        """Make ``block`` a scale-shift block in place (a new, doubled ``time_emb_proj``) and return it."""
        block.__class__ = cls
        block.time_emb_proj = nn.Linear(block.emb_channels, 2 * block.out_channels)
        return block  # type: ignore[return-value]

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.nonlinearity(self.norm1(x))
        if self.upsample is not None:
            x, h = self.upsample(x), self.upsample(h)
        elif self.downsample is not None:
            x, h = self.downsample(x), self.downsample(h)
        h = self.conv1(h)
        scale, shift = self.time_emb_proj(self.nonlinearity(emb)).chunk(2, dim=1)
        expand = (...,) + (None,) * (h.ndim - 2)
        h = self.norm2(h) * (1 + scale[expand]) + shift[expand]
        h = self.conv2(self.nonlinearity(h))
        return self.skip_connection(x) + h


class CFGDiffusionModelUNet(DiffusionModelUNet):
    """``DiffusionModelUNet`` (same arguments) for classifier-free guidance, plus ``dropout`` and
    ``class_conditioning``.

    Args:
        dropout: drop probability before ``conv2`` of every residual block, in training mode only.
        class_conditioning: ``"time"``: MONAI's learnt class table added to the time embedding (null label a learnt
            row). ``"time+attention"``: the public code's path: :class:`NullableClassEmbedding` added to the time
            embedding, and its outer product with itself (one token per embedding dimension, as the code's
            ``cemb_mm``) cross-attended by every attention level (MONAI's transformer blocks with
            ``cross_attention_dim`` = the time-embedding width); the null label (``num_class_embeds - 1``) is zero.
            The code prepends those tokens to the self-attention's keys; here they are a cross-attention of their
            own, MONAI's block.
        scale_shift_norm: every residual block takes the (time + class) embedding as scale and shift of its second
            normalisation (:class:`ScaleShiftResnetBlock`, the public code's); False: MONAI's additive embedding.
        args, kwargs: :class:`monai.networks.nets.DiffusionModelUNet`'s (``num_class_embeds`` counts the null label).
    """

    def __init__(
        self, *args, dropout: float = 0.0, class_conditioning: str = "time", scale_shift_norm: bool = False, **kwargs
    ) -> None:
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if class_conditioning not in CLASS_CONDITIONING:
            raise ValueError(f"class_conditioning must be one of {CLASS_CONDITIONING}, got {class_conditioning!r}")
        self.class_attention = class_conditioning == "time+attention"
        if self.class_attention:
            if kwargs.get("num_class_embeds") is None or int(kwargs["num_class_embeds"]) < 2:
                raise ValueError("class_conditioning='time+attention' needs num_class_embeds >= 2 (the null included)")
            if kwargs.get("with_conditioning"):
                raise ValueError("class_conditioning='time+attention' uses the cross-attention for the class")
            channels = kwargs.get("channels", (32, 64, 64, 64))
            kwargs.update(with_conditioning=True, cross_attention_dim=4 * int(channels[0]))
        super().__init__(*args, **kwargs)
        self.class_conditioning = class_conditioning
        if self.class_attention:
            n, ch = int(kwargs["num_class_embeds"]), int(self.block_out_channels[0])
            self.class_embedding = NullableClassEmbedding(n - 1, ch, 4 * ch, n - 1)  # type: ignore[assignment]
        self.scale_shift_norm = bool(scale_shift_norm)
        if self.scale_shift_norm:
            for module in list(self.modules()):
                if isinstance(module, DiffusionUNetResnetBlock):
                    ScaleShiftResnetBlock.convert(module)
        self.dropout = float(dropout)
        if self.dropout > 0:
            for module in self.modules():
                if isinstance(module, DiffusionUNetResnetBlock):
                    module.conv2.register_forward_pre_hook(self._drop)

    def _drop(self, module, inputs):
        return (F.dropout(inputs[0], self.dropout, self.training), *inputs[1:])

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        if self.class_attention:
            if class_labels is None:
                raise ValueError("class_labels should be provided (the null label for none)")
            if context is not None:
                raise ValueError("the class is the cross-attention context here: context must be None")
            # the MLP runs again inside MONAI's forward (for the time embedding): a few rows, nothing next to the UNet
            cemb = self.class_embedding(class_labels).to(x.dtype)
            context = cemb[:, :, None] * cemb[:, None, :]  # (N, D, D): D tokens, token j = cemb_j * cemb
        return super().forward(x, timesteps, context=context, class_labels=class_labels, **kwargs)
