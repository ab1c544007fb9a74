# SPDX-License-Identifier: Apache-2.0
"""D3AD's training stages beside the latent denoiser (which the bundle's ordinary trainer trains).

``python -m monai.bundle run training`` runs them in order, each resumable from its own checkpoint folder: the
autoencoder (L1 + KL), the feature extractor's self-supervised pretext, the latent scale, the denoiser on latents,
and at the end the healthy feature bank and its bins (:mod:`~monai_adiff.methods.d3ad.fitting`). Each stage is
MONAI's ``SupervisedTrainer`` with our checkpoint handlers; what is ours is only what MONAI lacks: a KL-regularised
autoencoder loss for a trainer and image -> image and image -> latent prepare-batches.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any, cast

import torch
from monai.engines import SupervisedTrainer, default_prepare_batch
from monai.handlers import LrScheduleHandler, StatsHandler
from torch import nn

from monai_adiff.engines.checkpoint import CheckpointLoader, CheckpointSaver, latest_checkpoint
from monai_adiff.engines.handlers import ProgressBarHandler
from monai_adiff.engines.prepare_batch import NoiseDiffusionPrepareBatch
from monai_adiff.methods.d3ad.network import D3ADModel
from monai_adiff.utils import dist_rank_world

__all__ = [
    "AutoencoderKLLoss",
    "ImagePrepareBatch",
    "MaskedImagePrepareBatch",
    "LatentDiffusionPrepareBatch",
    "train_stage",
]

logger = logging.getLogger(__name__)


class AutoencoderKLLoss(nn.Module):
    """``L1(recon, x) + kl_weight * KL``, for ``AutoencoderKL``'s ``(recon, z_mu, z_sigma)`` output.

    KL of the diagonal Gaussian posterior to N(0, I), summed over latent elements and averaged over the batch (as in
    MONAI's latent diffusion tutorials); MONAI has no loss object taking the autoencoder's output tuple.
    """

    def __init__(self, kl_weight: float = 1e-6) -> None:
        super().__init__()
        self.kl_weight = float(kl_weight)

    def forward(self, output: tuple[torch.Tensor, torch.Tensor, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        recon, mu, sigma = output
        kl = 0.5 * (mu.square() + sigma.square() - torch.log(sigma.square().clamp_min(1e-12)) - 1)
        return (recon - target).abs().mean() + self.kl_weight * kl.flatten(1).sum(1).mean()


class ImagePrepareBatch:
    """``(image, image)``: the input is its own target (autoencoders)."""

    def __call__(self, batchdata: Any, device=None, non_blocking: bool = False, **kwargs: Any):
        images, _ = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        return images, images


class MaskedImagePrepareBatch:
    """``(masked image, image)``: square patches of the slice are set to the background value (-1) with probability
    ``mask_ratio`` (the feature extractor's masked-autoencoding pretext).

    Args:
        patch_size: side of the masked squares in pixels.
        mask_ratio: fraction of squares masked.
    """

    def __init__(self, patch_size: int = 8, mask_ratio: float = 0.5) -> None:
        self.patch_size = int(patch_size)
        self.mask_ratio = float(mask_ratio)

    def __call__(self, batchdata: Any, device=None, non_blocking: bool = False, **kwargs: Any):
        images, _ = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        n, _, h, w = images.shape
        p = self.patch_size
        keep = torch.rand(n, 1, -(-h // p), -(-w // p), device=images.device) >= self.mask_ratio
        keep = keep.repeat_interleave(p, 2).repeat_interleave(p, 3)[..., :h, :w]
        return torch.where(keep, images, torch.full_like(images, -1.0)), images


class LatentDiffusionPrepareBatch(NoiseDiffusionPrepareBatch):
    """:class:`~monai_adiff.engines.NoiseDiffusionPrepareBatch` on the model's scaled latents instead of images.

    The frozen autoencoder encodes each batch (a posterior sample, as latent diffusion trains), so MONAI's
    ``DiffusionInferer`` and ``SupervisedTrainer`` train the latent denoiser unchanged; MONAI's
    ``LatentDiffusionInferer`` would need latent-shaped noise from the prepare-batch, which draws image-shaped noise.

    Args:
        model: the :class:`D3ADModel` (its autoencoder and ``latent_scale``).
        num_train_timesteps: the scheduler's steps.
        sample: encode a posterior sample (True) or the mean.
    """

    def __init__(self, model: D3ADModel, num_train_timesteps: int, sample: bool = True) -> None:
        super().__init__(num_train_timesteps, noise="gaussian")
        self.model = model
        self.sample = bool(sample)

    def __call__(self, batchdata: Any, device=None, non_blocking: bool = False, **kwargs: Any):
        images, _ = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        with torch.no_grad():
            z = self.model.encode_sample(images) if self.sample else self.model.encode(images)
        return super().__call__({"image": z.detach()}, device, non_blocking, **kwargs)


def train_stage(
    network: nn.Module,
    loss_function: nn.Module,
    prepare_batch: Any,
    data_loader: Iterable,
    max_epochs: int,
    learning_rate: float,
    ckpt_dir: str,
    device: torch.device | str = "cpu",
    name: str = "stage",
    weight_decay: float = 0.0,
    cosine_lr: bool = False,
) -> nn.Module:
    """Train ``network`` with MONAI's ``SupervisedTrainer`` and AdamW, resuming from the newest
    ``checkpoint_epoch=<n>.pt`` in ``ckpt_dir`` (one periodic checkpoint is kept); a finished stage returns at once.

    Under ``torch.distributed`` (the bundle's ``multi_gpu_train.json``) the network is wrapped in
    ``DistributedDataParallel``, the loader's ``DistributedSampler`` is re-seeded every epoch and only rank 0 logs
    and writes checkpoints.

    Args:
        cosine_lr: decay the learning rate along a cosine from ``learning_rate`` to 0 over ``max_epochs`` (MONAI's
            ``LrScheduleHandler`` stepping PyTorch's ``CosineAnnealingLR`` once per epoch; its state is checkpointed,
            so a resumed stage continues the schedule). A constant rate ends wherever the last noisy steps left the
            weights; the decay lets the last epochs settle them.

    Returns:
        the trained network.
    """
    if max_epochs <= 0:
        return network
    device = torch.device(device)
    network.to(device)
    rank, world = dist_rank_world()
    distributed, rank0 = world > 1, rank == 0
    model = network
    if distributed:
        ids = [device] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(network, device_ids=ids, find_unused_parameters=True)
    optimizer = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=weight_decay)
    handlers: list[Any] = []
    if rank0:
        handlers = [
            StatsHandler(tag_name=f"{name}_loss", output_transform=lambda out: out["loss"]),
            ProgressBarHandler(output_transform=lambda out: {"loss": out["loss"]}, desc=name),
        ]
    state: dict[str, Any] = {"model": network, "optimizer": optimizer}
    if cosine_lr:
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(max_epochs))
        handlers.append(LrScheduleHandler(cast(Any, schedule), print_lr=False, epoch_level=True))
        state["lr_scheduler"] = schedule
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=int(max_epochs),
        train_data_loader=data_loader,
        network=model,
        optimizer=optimizer,
        loss_function=loss_function,
        prepare_batch=prepare_batch,
        decollate=False,
        train_handlers=handlers,
    )
    set_epoch = getattr(getattr(data_loader, "sampler", None), "set_epoch", None)
    if callable(set_epoch):
        from ignite.engine import Events

        trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: set_epoch(e.state.epoch))
    state["trainer"] = trainer
    resume = latest_checkpoint(ckpt_dir)
    if resume is not None:
        CheckpointLoader(load_path=resume, load_dict=state, map_location=cast(Any, device))(trainer)
        if trainer.state.epoch >= max_epochs:
            logger.info("%s: finished (%s)", name, resume)
            return network
    if rank0:
        os.makedirs(ckpt_dir, exist_ok=True)
        CheckpointSaver(ckpt_dir, state, save_interval=1, epoch_level=True, n_saved=1).attach(trainer)
    trainer.run()
    return network
