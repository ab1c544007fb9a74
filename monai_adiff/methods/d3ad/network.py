# SPDX-License-Identifier: Apache-2.0
"""The D3AD model: MONAI's ``AutoencoderKL``, a latent ``DiffusionModelUNet`` and a ``ResNetFeatures`` extractor in
one module, with the fitted state inference needs (latent scale, the healthy feature bank and its bin edges).

One module means one ``model.pt`` that a bundle, MONAI Label or ``monai-adiff infer`` loads like any other method's
network. The constructor is flat: the denoiser takes the names of the other bundles' ``network_def`` (so the CPU
recipe's overrides apply unchanged), the autoencoder ``ae_*`` and the feature extractor ``feature_*`` names.
``forward`` is the denoiser's, on latents, so MONAI's ``DiffusionInferer`` trains it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet, ResNetFeatures
from torch import nn

from monai_adiff.methods.d3ad.pretrained_autoencoder import LDMAutoencoderKL
from monai_adiff.methods.d3ad.pretrained_features import TorchvisionResNetFeatures

__all__ = ["D3ADModel", "FeaturePretrainNet"]


class D3ADModel(nn.Module):
    """Autoencoder + latent denoiser + feature extractor of D3AD (Tebbe & Tayyub 2024).

    Args:
        spatial_dims: 2 (slices).
        in_channels: image channels (1: FLAIR).
        out_channels: must equal ``in_channels`` (kept for the shared config's keys).
        channels, attention_levels, num_res_blocks, num_head_channels, norm_num_groups, use_flash_attention: the
            latent ``DiffusionModelUNet``'s.
        latent_channels: channels of the latent (Stable Diffusion's VAE: 4).
        ae_channels: ``AutoencoderKL`` widths; ``len - 1`` halvings (4 levels: 8x, the paper's latent).
        ae_num_res_blocks, ae_norm_num_groups: the autoencoder's.
        ae_layout: ``"monai"``: MONAI's ``AutoencoderKL`` without attention; ``"ldm"``: Stable Diffusion's kl-f8
            layout (mid-block attention, ...), which loads its VAE weights (the paper's; see
            :mod:`~monai_adiff.methods.d3ad.pretrained_autoencoder`).
        ae_image_channels: channels the ``"ldm"`` autoencoder takes (3: the RGB VAE, grey slices replicated).
        feature_model: ResNet name (paper: ResNet-34), trained on our slices unless weights are given.
        feature_layout: ``"monai"``: MONAI's ``ResNetFeatures`` (shortcut A); ``"torchvision"``: torchvision's
            layout and ImageNet input mapping, which loads ImageNet weights (the paper's extractor; see
            :mod:`~monai_adiff.methods.d3ad.pretrained_features`).
        map_layers: ResNet blocks of the feature map term (paper: 2 and 3; 0 is the stem).
        knn_layer: block of the dynamic conditioning features (paper: 2).
        knn_pool: those features are average-pooled to ``knn_pool x knn_pool`` and flattened (paper: 16).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = (128, 256, 512),
        attention_levels: Sequence[bool] = (False, True, True),
        num_res_blocks: int | Sequence[int] = 2,
        num_head_channels: int | Sequence[int] = 64,
        norm_num_groups: int = 32,
        use_flash_attention: bool = False,
        latent_channels: int = 4,
        ae_channels: Sequence[int] = (128, 256, 512, 512),
        ae_num_res_blocks: int = 2,
        ae_norm_num_groups: int = 32,
        ae_layout: str = "monai",
        ae_image_channels: int = 3,
        feature_model: str = "resnet34",
        feature_layout: str = "monai",
        map_layers: Sequence[int] = (2, 3),
        knn_layer: int = 2,
        knn_pool: int = 16,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"D3AD works on 2D slices, got spatial_dims={spatial_dims}")
        if out_channels != in_channels:
            raise ValueError(f"out_channels ({out_channels}) must equal in_channels ({in_channels})")
        self.in_channels = int(in_channels)
        self.map_layers = tuple(int(j) for j in map_layers)
        self.knn_layer = int(knn_layer)
        self.knn_pool = int(knn_pool)
        if ae_layout not in ("monai", "ldm") or feature_layout not in ("monai", "torchvision"):
            raise ValueError(
                "ae_layout must be monai|ldm and feature_layout monai|torchvision, "
                f"got {ae_layout!r}, {feature_layout!r}"
            )
        self.ae_layout, self.feature_layout = ae_layout, feature_layout
        self.autoencoder: AutoencoderKL
        if ae_layout == "ldm":
            self.autoencoder = LDMAutoencoderKL(
                in_channels=in_channels,
                image_channels=ae_image_channels,
                channels=tuple(ae_channels),
                latent_channels=latent_channels,
                num_res_blocks=ae_num_res_blocks,
                norm_num_groups=ae_norm_num_groups,
            )
        else:
            self.autoencoder = AutoencoderKL(
                spatial_dims=2,
                in_channels=in_channels,
                out_channels=in_channels,
                channels=tuple(ae_channels),
                latent_channels=latent_channels,
                num_res_blocks=ae_num_res_blocks,
                attention_levels=(False,) * len(ae_channels),
                norm_num_groups=ae_norm_num_groups,
                with_encoder_nonlocal_attn=False,
                with_decoder_nonlocal_attn=False,
            )
        self.denoiser = DiffusionModelUNet(
            spatial_dims=2,
            in_channels=latent_channels,
            out_channels=latent_channels,
            channels=tuple(channels),
            attention_levels=tuple(attention_levels),
            num_res_blocks=num_res_blocks,
            num_head_channels=num_head_channels,
            norm_num_groups=norm_num_groups,
            use_flash_attention=use_flash_attention,
        )
        self.feature_extractor: ResNetFeatures
        if feature_layout == "torchvision":
            self.feature_extractor = TorchvisionResNetFeatures(feature_model, in_channels=in_channels)
        else:
            self.feature_extractor = ResNetFeatures(
                feature_model, pretrained=False, spatial_dims=2, in_channels=in_channels
            )
        self.register_buffer("latent_scale", torch.ones(()))
        self.register_buffer("bank", torch.zeros(0, 0))
        self.register_buffer("bin_edges", torch.zeros(0, dtype=torch.float64))

    #: buffers whose size is set by fitting (bank rows, bins): loaded at the size the checkpoint has
    fitted_buffers = ("bank", "bin_edges")
    latent_scale: torch.Tensor
    bank: torch.Tensor
    bin_edges: torch.Tensor

    # -- checkpoints: fitted buffers take the checkpoint's size ---------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self.fitted_buffers:
            key = prefix + name
            if key in state_dict:
                cur = getattr(self, name)
                setattr(self, name, torch.empty_like(state_dict[key], device=cur.device, dtype=cur.dtype))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def fitted(self) -> bool:
        """Whether the feature bank and its bins are fitted (dynamic conditioning can run)."""
        return self.bank.numel() > 0 and self.bin_edges.numel() > 1

    # -- the three parts ------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context=None, class_labels=None) -> torch.Tensor:
        """The latent denoiser's noise prediction."""
        return self.denoiser(x, timesteps=timesteps, context=context, class_labels=class_labels)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled latents of images: the posterior mean times :attr:`latent_scale` (sampling would make inference
        random)."""
        z_mu, _ = self.autoencoder.encode(x)
        return z_mu * self.latent_scale

    def encode_sample(self, x: torch.Tensor) -> torch.Tensor:
        """A scaled posterior sample (what the denoiser trains on, as in latent diffusion)."""
        z_mu, z_sigma = self.autoencoder.encode(x)
        return self.autoencoder.sampling(z_mu, z_sigma) * self.latent_scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images from scaled latents."""
        return self.autoencoder.decode(z / self.latent_scale)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The extractor's blocks (0 the stem, 1-4 the residual layers)."""
        return list(self.feature_extractor(x))

    def knn_features(self, x: torch.Tensor, feats: list[torch.Tensor] | None = None) -> torch.Tensor:
        """(N, D) dynamic-conditioning features: block :attr:`knn_layer` pooled to ``knn_pool`` squared."""
        f = (feats if feats is not None else self.features(x))[self.knn_layer]
        return F.adaptive_avg_pool2d(f.float(), self.knn_pool).flatten(1)


class FeaturePretrainNet(nn.Module):
    """The feature extractor with a light decoder, for self-supervised training on healthy slices.

    No ImageNet weights can be downloaded, and a randomly initialised ResNet gives features that carry little of the
    image; the paper's domain-adaptation loss alone (feature distance between a slice and its reconstruction)
    collapses them to constants. So the extractor first learns to restore masked slices from its map blocks only
    (a masked-autoencoding pretext): those blocks must then encode the slice. The decoder is dropped afterwards.

    Args:
        feature_extractor: the :class:`D3ADModel`'s ``feature_extractor`` (trained in place).
        layers: the blocks the decoder reads (the map blocks, deepest last).
        in_channels: image channels.
        width: decoder width.
    """

    def __init__(
        self, feature_extractor: nn.Module, layers: Sequence[int] = (2, 3), in_channels: int = 1, width: int = 64
    ) -> None:
        super().__init__()
        self.feature_extractor = feature_extractor
        self.layers = tuple(sorted(int(j) for j in layers))
        with torch.no_grad():
            was = feature_extractor.training
            feature_extractor.eval()
            probe = feature_extractor(torch.zeros(1, in_channels, 64, 64))
            feature_extractor.train(was)
        self.lateral = nn.ModuleList(nn.Conv2d(probe[j].shape[1], width, 1) for j in self.layers)
        self.fuse = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, width, 3, padding=1)
        )
        self.head = nn.Sequential(nn.GELU(), nn.Conv2d(width, in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.feature_extractor(x)
        out = None
        for lat, j in zip(reversed(self.lateral), reversed(self.layers)):  # deepest first, then add finer blocks
            f = lat(feats[j])
            out = f if out is None else f + F.interpolate(out, size=f.shape[-2:], mode="bilinear", align_corners=False)
            out = self.fuse(out)
        assert out is not None  # at least one layer
        return self.head(F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False))
