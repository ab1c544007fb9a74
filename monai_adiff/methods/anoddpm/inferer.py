# SPDX-License-Identifier: Apache-2.0
"""Iterative partial-diffusion reconstruction: AnoDDPM (Wyatt et al., CVPR-W 2022)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.networks.schedulers import Scheduler

from monai_adiff.diffusion import ddpm_reverse_step
from monai_adiff.inferers import AnomalyInferer, check_ensemble, ensemble_error
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
        num_inference_steps: network passes of the reverse process; ``None`` = lambda (the paper's one step per
            timestep). Fewer take strided steps over an even grid from lambda - 1 to 0 (the respaced DDPM of
            Nichol & Dhariwal 2021, :func:`~monai_adiff.diffusion.ddpm_reverse_step` with ``prev_t``): about
            lambda / num_inference_steps times faster.
        num_samples: reconstructions per slice, each from its own noise (1: the paper), run batched (DTU-Net's
            averaging of n samples): ``slice_batch_size // num_samples`` slices times ``num_samples`` draws per
            network call.
        aggregate: ``"map"`` (mean of their maps) or ``"reconstruction"`` (map of their mean; not in the paper), see
            :func:`~monai_adiff.inferers.ensemble_error`.
        positive_residual: score only ``max(x - x_hat, 0)^2`` (Baur et al. 2021, for hyperintense FLAIR lesions;
            not in the paper: off by default).
        slice_batch_size, autocast_dtype, brain_tol, seed, progress, network_batch_size: see
            :class:`AnomalyInferer`.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        noise_level: int = 250,
        noise: NoiseSpec | str = "simplex",
        num_inference_steps: int | None = None,
        num_samples: int = 1,
        aggregate: str = "map",
        positive_residual: bool = False,
        slice_batch_size: int = 64,
        autocast_dtype: str | None = None,
        brain_tol: float = 1e-3,
        seed: int | None = 0,
        progress: bool = False,
        network_batch_size: int | None = None,
    ) -> None:
        super().__init__(noise, slice_batch_size, autocast_dtype, brain_tol, seed, progress, network_batch_size)
        if not 1 <= noise_level <= scheduler.num_train_timesteps:
            raise ValueError(f"noise_level must lie in [1, {scheduler.num_train_timesteps}], got {noise_level}")
        self.scheduler = scheduler
        self.noise_level = int(noise_level)
        if num_inference_steps is not None and not 1 <= num_inference_steps <= noise_level:
            raise ValueError(
                f"num_inference_steps must lie in [1, noise_level={noise_level}], got {num_inference_steps}"
            )
        self.num_inference_steps = None if num_inference_steps is None else int(num_inference_steps)
        self.num_samples = check_ensemble(num_samples, aggregate)
        self.aggregate = aggregate
        self.positive_residual = bool(positive_residual)

    def step_grid(self) -> list[tuple[int, int]]:
        """The reverse steps ``(t, prev_t)`` from lambda - 1 down to x0 (``prev_t = -1``)."""
        t0 = self.noise_level - 1
        n = self.noise_level if self.num_inference_steps is None else self.num_inference_steps
        grid = sorted({int(round(t0 - i * t0 / max(n - 1, 1))) for i in range(n)}, reverse=True) if n > 1 else [t0]
        return list(zip(grid, grid[1:] + [-1]))

    def reconstruct(
        self, x: torch.Tensor, network: Callable[..., torch.Tensor], generator: torch.Generator | None
    ) -> torch.Tensor:
        """The reconstruction ``x_hat`` of slices ``x`` (N, C, H, W) after lambda reverse steps."""
        n = x.shape[0]
        t0 = self.noise_level - 1
        tt = torch.full((n,), t0, device=x.device, dtype=torch.long)
        x_t = self.scheduler.add_noise(x, self.noise_like(x, tt, generator), tt)
        steps = self.step_grid()
        if self.progress:
            from tqdm import tqdm

            steps = tqdm(steps, desc="reverse steps", leave=False)
        for t, prev in steps:
            tt = torch.full((n,), t, device=x.device, dtype=torch.long)
            out = self.network_call(network, x_t, timesteps=tt)
            noise = self.noise_like(x, tt, generator) if prev >= 0 else None
            x_t, _ = ddpm_reverse_step(self.scheduler, x_t, out, t, noise, prev_t=prev)
        return x_t

    def score_slices(
        self, x: torch.Tensor, network: Callable[..., torch.Tensor], generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        # the draws run batched (each sample its own noise), at most slice_batch_size samples per network call, so
        # that slice_batch_size keeps bounding the memory of one call whatever num_samples is
        k = self.num_samples
        group = max(1, self.slice_batch_size // k)
        parts = []
        for xg in x.split(group):
            rec = self.reconstruct(xg.repeat(k, 1, 1, 1) if k > 1 else xg, network, generator)
            parts.append(rec.view(k, *xg.shape))
        recons = [list(torch.cat(parts, dim=1).unbind(0))]
        return {ANOMALY_MAP: ensemble_error(x, recons, self.aggregate, self.positive_residual)[0]}
