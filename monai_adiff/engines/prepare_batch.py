# SPDX-License-Identifier: Apache-2.0
"""A ``DiffusionPrepareBatch`` that trains diffusion models on simplex, Tsimplex or Gaussian noise.

MONAI's :class:`monai.engines.DiffusionPrepareBatch` draws the noise (``get_noise(images)``, Gaussian) *before* the
timesteps, so noise that depends on the timestep cannot be expressed by overriding ``get_noise`` alone. AnoDDPM
(simplex) and DTU-Net (Tsimplex) use the sample's own timestep as a noise coordinate, so here ``__call__`` draws the
timesteps first and passes them to ``get_noise``. The return contract is MONAI's:
``(images, target, (), {"noise", "timesteps"[, "condition"]})``, with the noise as target.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.engines import DiffusionPrepareBatch, default_prepare_batch

from monai_adiff.noise import NoiseSpec

__all__ = ["NoiseDiffusionPrepareBatch", "ClassDropoutPrepareBatch"]


class NoiseDiffusionPrepareBatch(DiffusionPrepareBatch):
    """Prepare-batch for ``SupervisedTrainer`` + ``DiffusionInferer`` with the noise of AnoDDPM, DTU-Net or DDPM.

    Each sample gets its own timestep (uniform in ``[0, num_train_timesteps)``) and its own noise field for that
    timestep, made on the images' device (simplex seeds come from the device's global generator, so
    ``monai.utils.set_determinism`` makes runs reproducible).

    Args:
        num_train_timesteps: number of diffusion steps of the scheduler.
        condition_name: key of a conditioning tensor in the batch, passed on as ``"condition"``.
        noise: the noise (a :class:`~monai_adiff.noise.NoiseSpec`, or a type name with the type's default
            settings): ``"simplex"`` (AnoDDPM), ``"tsimplex"`` (DTU-Net) or ``"gaussian"`` (DDPM). Give the inferer
            the same spec.
    """

    def __init__(
        self, num_train_timesteps: int, condition_name: str | None = None, noise: NoiseSpec | str = "simplex"
    ) -> None:
        super().__init__(num_train_timesteps, condition_name)
        if int(num_train_timesteps) < 1:
            raise ValueError(f"num_train_timesteps must be positive, got {num_train_timesteps}")
        self.noise = NoiseSpec.of(noise)

    def get_noise(self, images: torch.Tensor, timesteps: torch.Tensor | None = None) -> torch.Tensor:
        """Noise shaped like ``images`` on their device; the simplex types need the batch's ``timesteps``."""
        if self.noise.noise_type == "gaussian":
            return torch.randn_like(images)
        if timesteps is None:
            raise ValueError(
                f"{self.noise.noise_type} noise depends on the timesteps: call get_noise(images, timesteps)"
            )
        dtype = images.dtype if images.is_floating_point() else torch.float32
        return self.noise(images.shape, timesteps, device=images.device, dtype=dtype)

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        images, _ = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        # timesteps first: the simplex noises are functions of each sample's timestep
        timesteps = self.get_timesteps(images).to(device, non_blocking=non_blocking, **kwargs)
        noise = self.get_noise(images, timesteps).to(device, non_blocking=non_blocking, **kwargs)
        target = self.get_target(images, noise, timesteps).to(device, non_blocking=non_blocking, **kwargs)
        infer_kwargs = {"noise": noise, "timesteps": timesteps}
        if self.condition_name is not None and isinstance(batchdata, Mapping):
            infer_kwargs["condition"] = batchdata[self.condition_name].to(device, non_blocking=non_blocking, **kwargs)
        return images, target, (), infer_kwargs


class ClassDropoutPrepareBatch(NoiseDiffusionPrepareBatch):
    """Prepare-batch for classifier-free guidance training (Ho & Salimans 2021): each sample's class label is
    replaced by the null class with probability ``drop_prob``, so one network learns both the conditional and the
    unconditional noise predictor (AnoFPDM: labels 0 healthy, 1 unhealthy, 2 null; dropout 0.1).

    The (possibly dropped) labels are passed on as ``"condition"``; pair with
    :class:`~monai_adiff.inferers.ConditionalDiffusionInferer`, which hands them to the network as ``class_labels``
    (MONAI's ``DiffusionInferer`` only knows cross-attention/concat conditioning).

    Args:
        num_train_timesteps: number of diffusion steps of the scheduler.
        label_key: key of the per-sample integer class label in the batch (``slice_label`` of the slice dataset);
            ``None``: no labels, no condition (:class:`NoiseDiffusionPrepareBatch`), for a bundle whose conditioning
            is a switch (DTU-Net's weakly supervised variant).
        null_label: index of the null class (``num_class_embeds - 1``).
        drop_prob: probability of replacing a label by the null class.
        noise: as :class:`NoiseDiffusionPrepareBatch` (AnoFPDM: Gaussian).
    """

    def __init__(
        self,
        num_train_timesteps: int,
        label_key: str | None = "slice_label",
        null_label: int = 2,
        drop_prob: float = 0.1,
        noise: NoiseSpec | str = "gaussian",
    ) -> None:
        super().__init__(num_train_timesteps, label_key, noise)
        if not 0.0 <= drop_prob <= 1.0:
            raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob}")
        self.null_label = int(null_label)
        self.drop_prob = float(drop_prob)

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        images, target, args, infer_kwargs = super().__call__(batchdata, device, non_blocking, **kwargs)
        if self.condition_name is None:
            return images, target, args, infer_kwargs
        labels = torch.as_tensor(infer_kwargs["condition"]).long().reshape(-1)
        drop = torch.rand(labels.shape, device=labels.device) < self.drop_prob
        infer_kwargs["condition"] = torch.where(drop, torch.full_like(labels, self.null_label), labels)
        return images, target, args, infer_kwargs
