# SPDX-License-Identifier: Apache-2.0
"""Iterative partial-diffusion reconstruction: AnoDDPM (Wyatt et al., CVPR-W 2022)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.networks.schedulers import Scheduler

from monai_adiff.diffusion import ddpm_reverse_step
from monai_adiff.inferers import AnomalyInferer
from monai_adiff.noise import NoiseSpec
from monai_adiff.output import ANOMALY_MAP

__all__ = ["IterativeReconstructionInferer"]


class IterativeReconstructionInferer(AnomalyInferer):
    """Noise to ``noise_level`` (lambda), then lambda ancestral reverse steps back to x0; map ``(x - x_hat)^2``.

    Follows AnoDDPM's detection: start at ``x_{lambda-1}`` drawn from q(x_t | x_0) with simplex noise, then for
    t = lambda-1, ..., 0 one reverse step with *fresh* noise of the training type at every step (MONAI's
    ``DDPMScheduler.step`` can only draw Gaussian noise, hence :func:`~monai_adiff.diffusion.ddpm_reverse_step`).
    The step's variance and x0 clamp are the scheduler's (``variance_type``, ``clip_sample``: AnoDDPM's bundle sets
    ``fixed_large`` and clamps to [-1, 1]). The paper's mask is ``map > 0.5`` with no other post-processing.

    Args:
        scheduler: the DDPM scheduler the network was trained with.
        noise_level: lambda, the number of reverse steps (AnoDDPM: 250).
        noise: the training noise (AnoDDPM: simplex, 6 octaves, persistence 0.8, frequency 64).
        slice_batch_size, autocast_dtype, brain_tol, seed, progress: see :class:`AnomalyInferer`.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        noise_level: int = 250,
        noise: NoiseSpec | str = "simplex",
        slice_batch_size: int = 64,
        autocast_dtype: str | None = None,
        brain_tol: float = 1e-3,
        seed: int | None = 0,
        progress: bool = False,
    ) -> None:
        super().__init__(noise, slice_batch_size, autocast_dtype, brain_tol, seed, progress)
        if not 1 <= noise_level <= scheduler.num_train_timesteps:
            raise ValueError(f"noise_level must lie in [1, {scheduler.num_train_timesteps}], got {noise_level}")
        self.scheduler = scheduler
        self.noise_level = int(noise_level)

    def reconstruct(
        self, x: torch.Tensor, network: Callable[..., torch.Tensor], generator: torch.Generator | None
    ) -> torch.Tensor:
        """The reconstruction ``x_hat`` of slices ``x`` (N, C, H, W) after lambda reverse steps."""
        n = x.shape[0]
        t0 = self.noise_level - 1
        tt = torch.full((n,), t0, device=x.device, dtype=torch.long)
        x_t = self.scheduler.add_noise(x, self.noise_like(x, tt, generator), tt)
        steps = range(t0, -1, -1)
        if self.progress:
            from tqdm import tqdm

            steps = tqdm(steps, desc="reverse steps", leave=False)
        for t in steps:
            tt = torch.full((n,), t, device=x.device, dtype=torch.long)
            out = self.network_call(network, x_t, timesteps=tt)
            noise = self.noise_like(x, tt, generator) if t > 0 else None
            x_t, _ = ddpm_reverse_step(self.scheduler, x_t, out, t, noise)
        return x_t

    def score_slices(
        self, x: torch.Tensor, network: Callable[..., torch.Tensor], generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        return {ANOMALY_MAP: ((x - self.reconstruct(x, network, generator)) ** 2).mean(dim=1)}
