# SPDX-License-Identifier: Apache-2.0
"""Diffusion maths MONAI's schedulers lack (per-sample timesteps, caller-supplied noise, one-step predictions)."""

from .ddpm import ddim_invert_step, ddpm_reverse_step, extract, posterior_mean, predict_eps, predict_x0, scheduler_clip

__all__ = [
    "ddim_invert_step",
    "ddpm_reverse_step",
    "extract",
    "posterior_mean",
    "predict_eps",
    "predict_x0",
    "scheduler_clip",
]
