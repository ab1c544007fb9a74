# SPDX-License-Identifier: Apache-2.0
"""Single-step sampling (SSS): Damudi & Kini, "Single-Step Sampling Approach for Unsupervised Anomaly Detection of
Brain MRI Using Denoising Diffusion Models", Int J Biomed Imaging 2024 (Algorithm 1 and section 4)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.networks.schedulers import Scheduler

from monai_adiff.diffusion import predict_x0
from monai_adiff.inferers.base import AnomalyInferer

__all__ = ["SingleStepInferer"]


class SingleStepInferer(AnomalyInferer):
    """Partial diffusion to t, then one network pass: ``x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``.

    The map is ``(x0 - x0_hat)^2`` averaged over channels (the paper's E_sq). With several timesteps (the paper's
    "common regions": t in {250, 300, 350, 400}) channel 0 is the mean of the per-t maps and channel 1 the fraction
    of timesteps whose map exceeds ``threshold`` (the vote); threshold channel 1 at the vote level in
    post-processing (``AnomalyThresholdd(channel=1, threshold=0.5)``). The paper's mask is ``map > 0.3``, then a
    3 x 3 dilation and the largest component (post-processing transforms).

    Args:
        scheduler: the DDPM scheduler the network was trained with.
        timesteps: noise level(s) t (paper: 250-400, best 300; MONAI's 0-based index).
        noise_type: ``"simplex"`` (paper), ``"tsimplex"`` or ``"gaussian"``; must match training.
        octaves, persistence, frequency: simplex noise parameters (paper: 6, 0.8, 64).
        threshold: per-t threshold for the vote channel (paper: 0.3); unused with one timestep.
        clip: clamp range of the x0 prediction (images live in [-1, 1]); ``None`` for no clamp.
        slice_batch_size, autocast_dtype, brain_tol, seed, progress: see :class:`AnomalyInferer`.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        timesteps: int | Sequence[int] = 300,
        noise_type: str = "simplex",
        octaves: int = 6,
        persistence: float = 0.8,
        frequency: float = 64.0,
        threshold: float = 0.3,
        clip: Sequence[float] | None = (-1.0, 1.0),
        slice_batch_size: int = 64,
        autocast_dtype: str | None = None,
        brain_tol: float = 1e-3,
        seed: int | None = 0,
        progress: bool = False,
    ) -> None:
        super().__init__(slice_batch_size, autocast_dtype, brain_tol, seed, progress)
        self.scheduler = scheduler
        self.timesteps = [int(timesteps)] if isinstance(timesteps, int) else [int(t) for t in timesteps]
        if not self.timesteps:
            raise ValueError("give at least one timestep")
        n = scheduler.num_train_timesteps
        if any(not 0 <= t < n for t in self.timesteps):
            raise ValueError(f"timesteps must lie in [0, {n}), got {self.timesteps}")
        self.noise_type = noise_type
        self.noise_kwargs = {"octaves": octaves, "persistence": persistence, "frequency": frequency}
        self.threshold = threshold
        self.clip = None if clip is None else (float(clip[0]), float(clip[1]))
        self.out_channels = 1 if len(self.timesteps) == 1 else 2

    def reconstruct(
        self, x: torch.Tensor, network: Callable[..., torch.Tensor], t: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        """The single-step reconstruction ``x0_hat`` of slices ``x`` (N, C, H, W) from noise level ``t``."""
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        x_t = self.scheduler.add_noise(x, self.noise_like(x, tt, generator), tt)
        eps = self.network_call(network, x_t, timesteps=tt)
        return predict_x0(self.scheduler, x_t, eps, tt, self.clip)

    def score_slices(
        self, x: torch.Tensor, network: Callable[..., torch.Tensor], generator: torch.Generator | None
    ) -> torch.Tensor:
        maps = torch.stack(
            [((x - self.reconstruct(x, network, t, generator)) ** 2).mean(dim=1) for t in self.timesteps]
        )  # (T, N, H, W)
        if len(self.timesteps) == 1:
            return maps[0][:, None]
        votes = (maps > self.threshold).float().mean(dim=0)
        return torch.stack([maps.mean(dim=0), votes], dim=1)
