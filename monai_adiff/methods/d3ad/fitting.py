# SPDX-License-Identifier: Apache-2.0
"""D3AD's fitted state: the latent scale after the autoencoder, and the healthy feature bank with its bins after the
denoiser (fitted into the saved model by :class:`FeatureBankHandler`, or refitted in place by
:func:`refit_feature_bank`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from monai.engines import default_prepare_batch

from monai_adiff.engines.checkpoint import load_network_weights, read_checkpoint
from monai_adiff.methods.d3ad.dynamic import fit_bin_edges, knn_mean_distance
from monai_adiff.methods.d3ad.network import D3ADModel
from monai_adiff.utils import atomic_write, dist_rank_world

__all__ = [
    "fit_latent_scale",
    "fit_feature_bank",
    "sync_fitted_parts",
    "FeatureBankHandler",
    "refit_feature_bank",
    "save_with_bank",
]

logger = logging.getLogger(__name__)


@torch.no_grad()
def fit_latent_scale(model: D3ADModel, data_loader: Iterable, device: torch.device | str = "cpu") -> float:
    """Set ``model.latent_scale`` to 1 / the std of the unscaled posterior means over ``data_loader`` (latent
    diffusion's scale factor, so the denoiser sees unit-variance latents); returns it. Under ``torch.distributed``
    the ranks' shards are pooled."""
    model.to(device).eval()
    total, sq, count = 0.0, 0.0, 0
    for batch in data_loader:
        images, _ = default_prepare_batch(batch, device)
        z, _ = model.autoencoder.encode(images)
        total += float(z.double().sum())
        sq += float(z.double().square().sum())
        count += z.numel()
    if dist_rank_world()[1] > 1:  # every rank: the same scale
        sums = torch.tensor([total, sq, float(count)], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(sums)
        total, sq, count = float(sums[0]), float(sums[1]), int(sums[2])
    if count == 0:
        raise ValueError("no slices to fit the latent scale on")
    std = max((sq / count - (total / count) ** 2) ** 0.5, 1e-8)
    model.latent_scale.fill_(1.0 / std)
    logger.info("latent scale 1/std = %.4f", 1.0 / std)
    return 1.0 / std


@torch.no_grad()
def fit_feature_bank(
    model: D3ADModel, data_loader: Iterable, device: torch.device | str = "cpu", k: int = 20, num_bins: int = 10
) -> torch.Tensor:
    """Fill ``model.bank`` with the dynamic-conditioning features of the healthy slices of ``data_loader`` and
    ``model.bin_edges`` with ``num_bins`` equal-width bins of their mean distances to their ``k`` nearest other
    bank rows (self-matches excluded); returns those distances."""
    model.to(device).eval()
    feats = [model.knn_features(default_prepare_batch(b, device)[0]).cpu() for b in data_loader]
    if not feats:
        raise ValueError("no slices to fit the feature bank on")
    bank = torch.cat(feats)
    if bank.shape[0] < 2:
        raise ValueError(f"the feature bank needs at least 2 healthy slices, got {bank.shape[0]}")
    dist = knn_mean_distance(bank, bank, k=k, exclude_self=True)
    if float(dist.max() - dist.min()) <= 1e-9 * max(1.0, float(dist.abs().max())):
        raise ValueError(
            "the feature extractor gives (nearly) the same features for every healthy slice, so the noise level "
            "cannot depend on the slice: train the feature stage (feature_epochs) or load working extractor weights"
        )
    model.bank = bank.to(model.latent_scale.device)
    model.bin_edges = fit_bin_edges(dist, num_bins).to(model.latent_scale.device)
    logger.info(
        "feature bank: %d slices x %d features; mean %d-NN distance %.4g..%.4g",
        *bank.shape,
        min(k, bank.shape[0] - 1),
        float(dist.min()),
        float(dist.max()),
    )
    return dist


@torch.no_grad()
def sync_fitted_parts(source: D3ADModel, target: D3ADModel) -> None:
    """Copy the autoencoder, the feature extractor and the fitted buffers of ``source`` into ``target`` (the EMA
    copy of the denoiser's trainer, made before the earlier stages trained them)."""
    target.autoencoder.load_state_dict(source.autoencoder.state_dict())
    target.feature_extractor.load_state_dict(source.feature_extractor.state_dict())
    target.latent_scale.copy_(source.latent_scale)
    if source.fitted:
        target.bank = source.bank.clone()
        target.bin_edges = source.bin_edges.clone()


class FeatureBankHandler:
    """Fit the feature bank and its bins (:func:`fit_feature_bank`) into ``model`` when the trainer completes.

    Attach it before the final-model saver (the bundles list it among the train handlers), so ``model.pt`` holds the
    bank; the feature extractor is trained before the denoiser, so the bank could be fitted earlier, but fitting it
    last lets a user swap in their own extractor weights before the last run.

    Args:
        model: the model that is saved (the EMA copy).
        data_loader: healthy training slices.
        device: where to compute the features.
        k, num_bins: see :func:`fit_feature_bank`.
    """

    def __init__(
        self,
        model: D3ADModel,
        data_loader: Iterable,
        device: torch.device | str = "cpu",
        k: int = 20,
        num_bins: int = 10,
    ) -> None:
        self.model, self.data_loader, self.device = model, data_loader, device
        self.k, self.num_bins = int(k), int(num_bins)

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine) -> None:
        was = self.model.training
        fit_feature_bank(self.model, self.data_loader, self.device, self.k, self.num_bins)
        self.model.train(was)


def refit_feature_bank(
    model: D3ADModel,
    checkpoint: str,
    data_loader: Iterable,
    device: torch.device | str = "cpu",
    k: int = 20,
    num_bins: int = 10,
    extractor_weights: str | None = None,
    recalibrate_bn: bool = False,
) -> str:
    """Refit the bank of a trained ``model.pt`` in place (atomically), e.g. after loading other feature-extractor
    weights (``extractor_weights``: a state dict of the extractor, or ``{"model": ...}``; with ``feature_layout``
    "torchvision" a torchvision ResNet checkpoint) or, with ``recalibrate_bn``, after re-estimating the extractor's
    BatchNorm statistics on the loader's whole slices (what training does since D3AD 0.6.0: this brings an older
    model up to it); the checkpoint's record is kept. Returns the checkpoint path."""
    load_network_weights(model, checkpoint)
    if extractor_weights:
        from monai_adiff.methods.d3ad.pretrained import load_pretrained_parts

        load_pretrained_parts(model, feature_weights=extractor_weights)
    if recalibrate_bn:
        from monai_adiff.methods.d3ad.domain import recalibrate_batchnorm

        recalibrate_batchnorm(model.feature_extractor, data_loader, device)
    return save_with_bank(model, checkpoint, data_loader, device, k, num_bins)


def save_with_bank(
    model: D3ADModel,
    checkpoint: str,
    data_loader: Iterable,
    device: torch.device | str = "cpu",
    k: int = 20,
    num_bins: int = 10,
) -> str:
    """Fit ``model``'s bank and write its weights into ``checkpoint`` (atomically, the record kept; under
    ``torch.distributed`` rank 0 writes and the others wait). Returns the checkpoint path."""
    fit_feature_bank(model, data_loader, device, k, num_bins)
    rank, world = dist_rank_world()
    if rank == 0:
        saved = read_checkpoint(checkpoint)
        saved = dict(saved) if isinstance(saved, dict) and "model" in saved else {}
        saved["model"] = {k_: v.detach().cpu() for k_, v in model.state_dict().items()}
        atomic_write(checkpoint, lambda tmp: torch.save(saved, tmp), suffix=".pt")
        logger.info("feature bank refitted into %s", checkpoint)
    if world > 1:
        torch.distributed.barrier()
    return checkpoint
