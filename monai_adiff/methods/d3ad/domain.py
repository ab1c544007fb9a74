# SPDX-License-Identifier: Apache-2.0
"""The feature extractor's adaptation to brain slices: the paper's domain-adaptation fine-tuning (eq. 11) and
BatchNorm statistics re-estimated on unmasked slices.

Eq. 11 (Tebbe & Tayyub 2024, sec. 4.3): ``L_DA(x0, x0_hat) = sum_j GAP(1 - cos(phi_j(x0), phi_j(x0_hat)))``, the
cosine taken over channels at each pixel of block ``j`` and averaged over the map (global average pooling); ``x0_hat``
is the trained model's reconstruction of ``x0``. MONAI has neither this loss nor a prepare-batch making
reconstructions, so both are here; the stage itself is MONAI's ``SupervisedTrainer`` (:func:`train_stage`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.engines import default_prepare_batch
from torch import nn

from monai_adiff.engines.checkpoint import load_network_weights
from monai_adiff.methods.d3ad.fitting import save_with_bank
from monai_adiff.methods.d3ad.network import D3ADModel
from monai_adiff.methods.d3ad.reconstruction import ddad_reconstruct
from monai_adiff.methods.d3ad.training import train_stage

__all__ = [
    "DomainAdaptationLoss",
    "FeaturePairNet",
    "ReconstructionPairPrepareBatch",
    "adapt_features",
    "recalibrate_batchnorm",
]

logger = logging.getLogger(__name__)


class DomainAdaptationLoss(nn.Module):
    """Eq. 11 on the blocks of a stacked ``[x0; x0_hat]`` batch (first half inputs, second half reconstructions),
    averaged over the batch.

    Args:
        layers: the ResNet blocks summed over (0 the stem, 1-4 the residual layers; the public code: 1, 2, 3).
    """

    def __init__(self, layers: Sequence[int] = (1, 2, 3)) -> None:
        super().__init__()
        self.layers = tuple(int(j) for j in layers)

    def forward(self, features: Sequence[torch.Tensor], target: Any = None) -> torch.Tensor:
        loss = torch.zeros((), device=features[0].device)
        for j in self.layers:
            a, b = features[j].float().chunk(2)
            loss = loss + (1 - F.cosine_similarity(a, b, dim=1)).mean(dim=(1, 2)).mean()
        return loss


class FeaturePairNet(nn.Module):
    """The extractor applied to a stacked ``[x0; x0_hat]`` batch (one call, so BatchNorm sees both halves)."""

    def __init__(self, feature_extractor: nn.Module) -> None:
        super().__init__()
        self.feature_extractor = feature_extractor

    def forward(self, pairs: torch.Tensor) -> list[torch.Tensor]:
        return list(self.feature_extractor(pairs))


class ReconstructionPairPrepareBatch:
    """``([x0; x0_hat], x0)``: healthy slices and the model's reconstructions of them (no gradient), for
    :class:`DomainAdaptationLoss`.

    The reconstruction is inference's (noiseless scaling, the DDAD-corrected DDIM of
    :func:`~monai_adiff.methods.d3ad.ddad_reconstruct`) at one fixed level for every slice: the feature bank that
    chooses levels per slice is fitted after the adaptation (its features change with it).

    Args:
        model: the trained :class:`D3ADModel` (autoencoder and denoiser are used frozen, in eval mode).
        alphas_cumprod: the scheduler's ``abar``.
        timestep: the level (inference's ``t_max``).
        num_steps: DDIM steps (inference's).
        guidance: ``w`` of the DDAD correction (inference's).
    """

    def __init__(
        self,
        model: D3ADModel,
        alphas_cumprod: torch.Tensor,
        timestep: int = 80,
        num_steps: int = 10,
        guidance: float = 4.0,
    ) -> None:
        self.model = model
        self.alphas_cumprod = alphas_cumprod
        self.timestep, self.num_steps, self.guidance = int(timestep), int(num_steps), float(guidance)

    def __call__(self, batchdata: Any, device=None, non_blocking: bool = False, **kwargs: Any):
        images, _ = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        parts: tuple[nn.Module, ...] = (self.model.autoencoder, self.model.denoiser)
        was = [p.training for p in parts]
        for p in parts:
            p.eval()
        with torch.no_grad():
            z0 = self.model.encode(images)
            n = images.shape[0]
            t_hat = torch.full((n,), self.timestep, dtype=torch.long, device=images.device)
            skip = torch.full_like(t_hat, max(self.timestep // self.num_steps, 1))
            z_hat = ddad_reconstruct(
                lambda z, t: self.model(z, timesteps=t), self.alphas_cumprod, z0, t_hat, skip, self.guidance
            )
            recon = self.model.decode(z_hat)
        for p, w in zip(parts, was):
            p.train(w)
        return torch.cat([images, recon.detach()]), images


def _images(data_loader: Iterable, device: torch.device | str):
    """The loader's images, a one-slice batch joined to its neighbour (BatchNorm in training mode needs more than
    one value per channel, and a small slice's deepest block is 1 x 1)."""
    held = None
    for batch in data_loader:
        images, _ = default_prepare_batch(batch, torch.device(device))
        if held is None or images.shape[0] < 2:
            held = images if held is None else torch.cat([held, images])
            continue
        yield held
        held = images
    if held is not None and held.shape[0] > 1:
        yield held


def recalibrate_batchnorm(module: nn.Module, data_loader: Iterable, device: torch.device | str = "cpu") -> None:
    """Re-estimate ``module``'s BatchNorm running statistics on the loader's slices: PyTorch's
    ``torch.optim.swa_utils.update_bn`` (one pass in training mode, cumulative averages, no gradient, the weights
    unchanged; the mode and momenta restored).

    The extractor's self-supervised pretext trains on masked slices, so the statistics it leaves describe masked
    inputs, while the feature bank and the map see whole slices.
    """
    module.to(device)
    torch.optim.swa_utils.update_bn(_images(data_loader, device), module)
    logger.info("feature extractor: BatchNorm statistics re-estimated on unmasked slices")


def adapt_features(
    model: D3ADModel,
    checkpoint: str,
    data_loader: Iterable,
    bank_loader: Iterable,
    alphas_cumprod: torch.Tensor,
    device: torch.device | str = "cpu",
    max_epochs: int = 0,
    learning_rate: float = 1e-4,
    ckpt_dir: str = "domain",
    timestep: int = 80,
    num_steps: int = 10,
    guidance: float = 4.0,
    layers: Sequence[int] = (1, 2, 3),
    k: int = 20,
    num_bins: int = 10,
) -> str:
    """The paper's domain adaptation of a trained ``model.pt`` (``checkpoint``): fine-tune its feature extractor for
    ``max_epochs`` epochs with eq. 11 on reconstructions of the healthy training slices (resumable from
    ``ckpt_dir``), then refit the feature bank with the adapted features and write both into the checkpoint. With
    ``max_epochs`` 0 nothing happens. Returns the checkpoint path."""
    if int(max_epochs) <= 0:
        return checkpoint
    load_network_weights(model, checkpoint)
    model.to(device)
    prepare = ReconstructionPairPrepareBatch(model, alphas_cumprod, timestep, num_steps, guidance)
    train_stage(
        network=FeaturePairNet(model.feature_extractor),
        loss_function=DomainAdaptationLoss(layers),
        prepare_batch=prepare,
        data_loader=data_loader,
        max_epochs=int(max_epochs),
        learning_rate=learning_rate,
        ckpt_dir=ckpt_dir,
        device=device,
        name="domain",
    )
    return save_with_bank(model, checkpoint, bank_loader, device, k, num_bins)
