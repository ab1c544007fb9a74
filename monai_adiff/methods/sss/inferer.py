# SPDX-License-Identifier: Apache-2.0
"""Single-step sampling (SSS): Damudi & Kini, "Single-Step Sampling Approach for Unsupervised Anomaly Detection of
Brain MRI Using Denoising Diffusion Models", Int J Biomed Imaging 2024 (Algorithm 1 and section 4)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.networks.schedulers import Scheduler

from monai_adiff.diffusion import predict_x0
from monai_adiff.inferers import AnomalyInferer, check_ensemble, ensemble_error
from monai_adiff.noise import NoiseSpec
from monai_adiff.output import ANOMALY_MAP, PRED_MASK

__all__ = ["SingleStepInferer"]


class SingleStepInferer(AnomalyInferer):
    """Partial diffusion to t, then one network pass: ``x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``.

    The map is ``(x0 - x0_hat)^2`` averaged over channels (the paper's E_sq); the paper's mask is ``map > 0.3``
    (the bundle's ``threshold``), then a 3 x 3 dilation and the largest component (post-processing transforms).
    With several timesteps (the paper's "common regions": t in {250, 300, 350, 400}) the map is the mean of the
    per-t maps, the ``vote`` map the fraction of timesteps whose map exceeds ``threshold``, and the method makes its
    own mask ``vote > vote_threshold`` (the pixels detected most often).

    The x0 prediction follows the scheduler (``prediction_type``, ``clip_sample``: the bundles clamp to [-1, 1]).

    Args:
        scheduler: the DDPM scheduler the network was trained with.
        timesteps: noise level(s) t (paper: 250-400, best 300; MONAI's 0-based index).
        noise: the training noise (paper: simplex, 6 octaves, persistence 0.8, frequency 64).
        threshold: per-t map threshold of the vote (paper: 0.3); unused with one timestep.
        vote_threshold: the common-regions mask is ``vote > vote_threshold``; unused with one timestep. ``None``:
            no vote, several timesteps only give the aggregated map (thresholded by the bundle like one timestep's).
        num_samples: noise draws per timestep (1: the paper).
        aggregate: ``"map"``, the mean of the per-reconstruction maps (the paper's common regions), or
            ``"reconstruction"``, the map of the mean reconstruction (less noise-draw variance; not in the paper);
            see :func:`~monai_adiff.inferers.ensemble_error`. The vote counts per-timestep maps aggregated the same way.
        positive_residual: score only where the input is brighter than its reconstruction,
            ``max(x0 - x0_hat, 0)^2`` (Baur et al. 2021, for hyperintense FLAIR lesions; not in the paper: off by
            default).
        slice_batch_size, autocast_dtype, brain_tol, seed, progress, network_batch_size: see
            :class:`AnomalyInferer`.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        timesteps: int | Sequence[int] = 300,
        noise: NoiseSpec | str = "simplex",
        threshold: float = 0.3,
        vote_threshold: float | None = 0.5,
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
        self.scheduler = scheduler
        self.timesteps = [int(timesteps)] if isinstance(timesteps, int) else [int(t) for t in timesteps]
        if not self.timesteps:
            raise ValueError("give at least one timestep")
        n = scheduler.num_train_timesteps
        if any(not 0 <= t < n for t in self.timesteps):
            raise ValueError(f"timesteps must lie in [0, {n}), got {self.timesteps}")
        self.threshold = float(threshold)
        self.vote_threshold = None if vote_threshold is None else float(vote_threshold)
        self.num_samples = check_ensemble(num_samples, aggregate)
        self.aggregate = aggregate
        self.positive_residual = bool(positive_residual)
        self.map_names = () if len(self.timesteps) == 1 or self.vote_threshold is None else (PRED_MASK, "vote")

    def reconstruct(
        self, x: torch.Tensor, network: Callable[..., torch.Tensor], t: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        """The single-step reconstruction ``x0_hat`` of slices ``x`` (N, C, H, W) from noise level ``t``."""
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        x_t = self.scheduler.add_noise(x, self.noise_like(x, tt, generator), tt)
        return predict_x0(self.scheduler, x_t, self.network_call(network, x_t, timesteps=tt), tt)

    def score_slices(
        self, x: torch.Tensor, network: Callable[..., torch.Tensor], generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        recons = [[self.reconstruct(x, network, t, generator) for _ in range(self.num_samples)] for t in self.timesteps]
        amap, per_t = ensemble_error(x, recons, self.aggregate, self.positive_residual)
        if len(self.timesteps) == 1 or self.vote_threshold is None:
            return {ANOMALY_MAP: amap}
        votes = (torch.stack(per_t) > self.threshold).float().mean(dim=0)
        return {ANOMALY_MAP: amap, "vote": votes, PRED_MASK: (votes > self.vote_threshold).float()}
