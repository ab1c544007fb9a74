# SPDX-License-Identifier: Apache-2.0
"""D3AD's reconstruction (Tebbe & Tayyub 2024, Algorithm 1 with the DDAD correction, eqs. 8-9).

Start from the scaled, noise-free latent ``z = sqrt(abar_T_hat) z0`` ("noiseless scaling"), then deterministic DDIM
steps ``t = T_hat - skip, T_hat - 2 skip, ..., 0`` whose noise estimate is pulled towards the input:
``y = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps``, ``eps_hat = eps - sqrt(1 - abar_t) w (y - z)``,
``z0_hat = (z - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)``,
``z <- sqrt(abar_next) z0_hat + sqrt(1 - abar_next) eps_hat``, with ``abar`` after the last step 1. Every slice has
its own ``T_hat`` and stride, and all slices share each network call (per-sample timesteps). MONAI's
``DDIMScheduler.step`` has no guidance term and one timestep per batch, hence our own loop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from monai_adiff.inferers import device_generator

__all__ = ["ddad_reconstruct", "step_sequences"]


def step_sequences(t_hat: torch.Tensor, skip: torch.Tensor) -> list[list[int]]:
    """Each slice's timesteps ``reversed(range(0, T_hat, skip))`` (the first is ``T_hat - skip``)."""
    return [list(reversed(range(0, int(t), int(s)))) for t, s in zip(t_hat.tolist(), skip.tolist())]


def ddad_reconstruct(
    eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    alphas_cumprod: torch.Tensor,
    z0: torch.Tensor,
    t_hat: torch.Tensor,
    skip: torch.Tensor,
    guidance: float = 4.0,
    noise_fraction: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The reconstruction ``z0_hat`` of latents ``z0`` (N, C, h, w).

    Args:
        eps_fn: ``eps_fn(z, t)`` the noise prediction for latents ``z`` at per-sample timesteps ``t`` (N,).
        alphas_cumprod: the training schedule's ``abar`` (T,), indexed by MONAI's 0-based timestep.
        z0: clean latents.
        t_hat: (N,) each slice's noise level (``abar_T_hat`` scales the start).
        skip: (N,) each slice's stride.
        guidance: ``w`` of the DDAD correction (public code 4; paper 0 or 7-10).
        noise_fraction: ``omega`` of the paper's eq. 12: the start adds ``omega sqrt(1 - abar) eps`` (0: noiseless
            scaling, the paper's; 1: ordinary partial diffusion).
        generator: for the start's noise when ``noise_fraction > 0``.
    """
    abar = alphas_cumprod.to(z0.device, torch.float64)
    t_hat = t_hat.to(z0.device).long()
    skip = skip.to(z0.device).long()
    if (t_hat >= abar.numel()).any() or (t_hat < 1).any() or (skip < 1).any():
        raise ValueError(f"T_hat must lie in [1, {abar.numel() - 1}] and skip be >= 1, got {t_hat.tolist()}")

    def a(t: torch.Tensor) -> torch.Tensor:  # abar_t as (N, 1, 1, 1); t = -1 is the clean end (1)
        vals = torch.where(t >= 0, abar[t.clamp(min=0)], torch.ones_like(abar[:1]))
        return vals.to(z0.dtype).view(-1, *([1] * (z0.ndim - 1)))

    start = a(t_hat)
    z = start.sqrt() * z0
    if noise_fraction:
        eps0 = torch.randn(z0.shape, generator=device_generator(generator, z0.device), device=z0.device, dtype=z0.dtype)
        z = z + float(noise_fraction) * (1 - start).sqrt() * eps0
    # each slice's timesteps reversed(range(0, T_hat, skip)), as tensors: no per-step host work; a slice that has
    # finished (fewer steps than the longest) keeps its z (dynamic levels all take the same number of steps)
    first = ((t_hat - 1) // skip) * skip
    num_steps = int((first // skip).max()) + 1  # the one host sync
    for i in range(num_steps):
        t = first - i * skip
        active = (t >= 0).view(-1, *([1] * (z0.ndim - 1)))
        t = t.clamp(min=0)
        at, an = a(t), a(t - skip)
        eps = eps_fn(z, t).to(z0.dtype)
        y = at.sqrt() * z0 + (1 - at).sqrt() * eps
        eps_hat = eps - (1 - at).sqrt() * float(guidance) * (y - z)
        z0_hat = (z - (1 - at).sqrt() * eps_hat) / at.sqrt()
        z = torch.where(active, an.sqrt() * z0_hat + (1 - an).sqrt() * eps_hat, z)
    return z
