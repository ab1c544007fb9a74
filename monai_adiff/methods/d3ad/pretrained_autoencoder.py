# SPDX-License-Identifier: Apache-2.0
"""The Stable Diffusion (latent diffusion, "kl-f8") autoencoder layout on MONAI's ``AutoencoderKL``, and a converter
from the diffusers state dict, so the paper's pretrained VAE (``sd-vae-ft-mse``) loads.

MONAI's ``AutoencoderKL`` differs from the latent-diffusion one in three places that change the function, not only
the names: no SiLU between the last GroupNorm and the output convolution (encoder and decoder), the same number of
residual blocks per level in the decoder as in the encoder (latent diffusion: one more), and two separate 1x1
convolutions from a ``latent_channels`` map to the mean and log-variance (latent diffusion: the encoder emits
``2 * latent_channels`` moments and one 1x1 convolution mixes them). :class:`LDMAutoencoderKL` rebuilds those parts
from MONAI's own ``Encoder``/``Decoder`` blocks; everything else (blocks, attention, padding, upsampling) is MONAI's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from monai.networks.blocks import Convolution, SpatialAttentionBlock, Upsample
from monai.networks.nets import AutoencoderKL
from monai.networks.nets.autoencoderkl import AEKLDownsample, AEKLResBlock, Decoder, Encoder
from torch import nn

__all__ = ["LDMAutoencoderKL", "load_diffusers_autoencoder"]


class LDMAutoencoderKL(AutoencoderKL):
    """MONAI's ``AutoencoderKL`` in the latent-diffusion layout (Stable Diffusion's kl-f8 with its defaults).

    Grey slices go in and out: with ``image_channels`` 3 (the pretrained RGB VAE) a slice's channels are averaged and
    replicated to RGB before encoding, and the decoded RGB is averaged back to ``in_channels`` copies.

    Args:
        spatial_dims: 2.
        in_channels: channels of the slices (and of the output).
        image_channels: channels the network itself takes (3 for Stable Diffusion's VAE).
        channels: widths per level (kl-f8: 128, 256, 512, 512).
        latent_channels: latent channels (kl-f8: 4).
        num_res_blocks: encoder residual blocks per level (kl-f8: 2; the decoder has one more).
        norm_num_groups: GroupNorm groups (32).
        norm_eps: GroupNorm epsilon (1e-6).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        image_channels: int = 3,
        channels: Sequence[int] = (128, 256, 512, 512),
        latent_channels: int = 4,
        num_res_blocks: int = 2,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
    ) -> None:
        levels = len(channels)
        common = dict(
            spatial_dims=spatial_dims,
            channels=tuple(channels),
            norm_num_groups=norm_num_groups,
            norm_eps=norm_eps,
            attention_levels=(False,) * levels,
            with_nonlocal_attn=True,
        )
        super().__init__(
            spatial_dims=spatial_dims,
            in_channels=image_channels,
            out_channels=image_channels,
            channels=tuple(channels),
            latent_channels=latent_channels,
            num_res_blocks=num_res_blocks,
            attention_levels=(False,) * levels,
            norm_num_groups=norm_num_groups,
            norm_eps=norm_eps,
        )
        self.in_channels, self.image_channels = int(in_channels), int(image_channels)
        self.encoder = Encoder(
            in_channels=image_channels,
            out_channels=2 * latent_channels,
            num_res_blocks=(num_res_blocks,) * levels,
            **common,  # type: ignore[arg-type]
        )
        self.decoder = Decoder(
            in_channels=latent_channels,
            out_channels=image_channels,
            num_res_blocks=(num_res_blocks + 1,) * levels,
            **common,  # type: ignore[arg-type]
        )
        for part in (self.encoder, self.decoder):  # latent diffusion: norm -> SiLU -> output convolution
            part.blocks.insert(len(part.blocks) - 1, nn.SiLU())
        self.quant_conv_mu = _moments_conv(spatial_dims, latent_channels)
        self.quant_conv_log_sigma = _moments_conv(spatial_dims, latent_channels)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.image_channels != self.in_channels:
            x = x.mean(dim=1, keepdim=True).expand(-1, self.image_channels, *x.shape[2:])
        return super().encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = super().decode(z)
        if self.image_channels != self.in_channels:
            out = out.mean(dim=1, keepdim=True).expand(-1, self.in_channels, *out.shape[2:]).contiguous()
        return out


def _moments_conv(spatial_dims: int, latent_channels: int) -> Convolution:
    """1x1 convolution from the encoder's ``2 * latent_channels`` moments to the mean or the log-variance."""
    return Convolution(
        spatial_dims, 2 * latent_channels, latent_channels, strides=1, kernel_size=1, padding=0, conv_only=True
    )


def _units(model_part: nn.Module) -> list[tuple[str, str]]:
    """(kind, prefix) of a MONAI encoder/decoder's blocks in order (activations skipped)."""
    kinds: list[tuple[str, str]] = []
    blocks: nn.ModuleList = model_part.blocks  # type: ignore[assignment]
    for i, block in enumerate(blocks):
        if isinstance(block, AEKLResBlock):
            kinds.append(("res", f"blocks.{i}"))
        elif isinstance(block, SpatialAttentionBlock):
            kinds.append(("attn", f"blocks.{i}"))
        elif isinstance(block, AEKLDownsample):
            kinds.append(("down", f"blocks.{i}.conv"))
        elif isinstance(block, Upsample):
            kinds.append(("up", f"blocks.{i}.postconv"))
        elif isinstance(block, nn.GroupNorm):
            kinds.append(("norm", f"blocks.{i}"))
        elif isinstance(block, Convolution):
            kinds.append(("conv", f"blocks.{i}"))
    return kinds


def _diffusers_units(state: Mapping[str, torch.Tensor], part: str) -> list[tuple[str, str]]:
    """(kind, prefix) of a diffusers ``Encoder``/``Decoder`` in forward order, read from the state dict's keys."""

    def count(pattern: str) -> int:
        found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
        return max(found) + 1 if found else 0

    mid = [("res", f"{part}.mid_block.resnets.0"), ("attn", f"{part}.mid_block.attentions.0")]
    mid.append(("res", f"{part}.mid_block.resnets.1"))
    units = [("conv", f"{part}.conv_in")]
    name, sampler, kind = (
        ("down_blocks", "downsamplers", "down") if part == "encoder" else ("up_blocks", "upsamplers", "up")
    )
    levels = []
    for i in range(count(rf"{part}\.{name}\.(\d+)\.")):
        level = [
            ("res", f"{part}.{name}.{i}.resnets.{j}") for j in range(count(rf"{part}\.{name}\.{i}\.resnets\.(\d+)\."))
        ]
        if f"{part}.{name}.{i}.{sampler}.0.conv.weight" in state:
            level.append((kind, f"{part}.{name}.{i}.{sampler}.0.conv"))
        levels += level
    units += levels + mid if part == "encoder" else mid + levels
    return units + [("norm", f"{part}.conv_norm_out"), ("conv", f"{part}.conv_out")]


_RES = {
    "norm1": "norm1",
    "conv1": "conv1.conv",
    "norm2": "norm2",
    "conv2": "conv2.conv",
    "conv_shortcut": "nin_shortcut.conv",
}
_ATTN = {
    "group_norm": "norm",
    "to_q": "attn.to_q",
    "to_k": "attn.to_k",
    "to_v": "attn.to_v",
    "to_out.0": "attn.out_proj",
}


def _convert(state: Mapping[str, torch.Tensor], model: LDMAutoencoderKL, source: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for part in ("encoder", "decoder"):
        theirs, ours = _diffusers_units(state, part), _units(getattr(model, part))
        if [k for k, _ in theirs] != [k for k, _ in ours]:
            raise ValueError(f"{source}: the {part}'s blocks do not match LDMAutoencoderKL's (another size or layout)")
        for (kind, src), (_, dst) in zip(theirs, ours):
            names = {"res": _RES, "attn": _ATTN, "norm": {"": ""}}.get(kind, {"": "conv"})  # convolutions: .conv
            for s, d in names.items():
                for p in ("weight", "bias"):
                    key = f"{src}.{s}.{p}" if s else f"{src}.{p}"
                    if key in state:
                        out[f"{part}.{dst}.{d}.{p}" if d else f"{part}.{dst}.{p}"] = state[key]
    moments, latent = state["quant_conv.weight"], model.latent_channels
    out["quant_conv_mu.conv.weight"], out["quant_conv_log_sigma.conv.weight"] = moments[:latent], moments[latent:]
    bias = state["quant_conv.bias"]
    out["quant_conv_mu.conv.bias"], out["quant_conv_log_sigma.conv.bias"] = bias[:latent], bias[latent:]
    out["post_quant_conv.conv.weight"] = state["post_quant_conv.weight"]
    out["post_quant_conv.conv.bias"] = state["post_quant_conv.bias"]
    return out


def load_diffusers_autoencoder(
    model: LDMAutoencoderKL, state_dict: Mapping[str, torch.Tensor], source: str = "state dict"
) -> None:
    """Load a diffusers ``AutoencoderKL`` state dict (e.g. ``sd-vae-ft-mse``'s ``diffusion_pytorch_model``) into
    ``model``, every parameter by name and shape. Raises ``ValueError`` naming ``source`` on any mismatch."""
    if not isinstance(model, LDMAutoencoderKL):
        raise ValueError(
            f"{source}: a diffusers autoencoder needs network_def#ae_layout 'ldm' (got {type(model).__name__})"
        )
    if "quant_conv.weight" not in state_dict or "encoder.conv_in.weight" not in state_dict:
        raise ValueError(f"{source}: not a diffusers AutoencoderKL state dict (no encoder.conv_in / quant_conv)")
    converted = _convert(state_dict, model, source)
    own = model.state_dict()
    missing = sorted(set(own) - set(converted))
    if missing:
        raise ValueError(f"{source}: no weights for {missing[:3]} (another layout)")
    for key, value in converted.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(f"{source}: {key} has shape {tuple(value.shape)}, the autoencoder {tuple(own[key].shape)}")
    model.load_state_dict(converted)
