# SPDX-License-Identifier: Apache-2.0
"""DDPM maths that MONAI's schedulers do not expose per sample.

``DDPMScheduler.step`` takes one scalar timestep for the whole batch and always draws *Gaussian* noise from its own
generator; AnoDDPM's reverse process needs fresh *simplex* noise at every step (and DTU-Net Tsimplex), and AnoFPDM
and single-step sampling need the one-step x0 prediction on its own. These functions reuse the scheduler's tensors
(``betas``, ``alphas``, ``alphas_cumprod``) so a bundle's schedule is defined once, in its ``DDPMScheduler``; the
forward process q(x_t | x0) is the scheduler's own ``add_noise`` (which accepts any noise).
"""

from __future__ import annotations

import weakref

import torch
from monai.networks.schedulers import Scheduler

__all__ = [
    "schedule_tables",
    "extract",
    "ddim_invert_step",
    "predict_x0",
    "predict_eps",
    "posterior_mean",
    "ddpm_reverse_step",
]


_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def schedule_tables(scheduler: Scheduler, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """float64 ``betas``, ``alphas``, ``abar`` and ``abar_prev`` of a scheduler on ``device``, cached.

    MONAI keeps the schedule in float32, whose cumulative product loses ~5e-4 relative precision in ``1 - abar`` near
    t = 1; the step coefficients are computed from float64 tables instead (then cast to the data's dtype). The cache
    keeps one copy per device so sampling loops never copy the schedule between host and device.
    """
    device = torch.device(device) if device is not None else scheduler.betas.device
    per_sched = _TABLES.get(scheduler)
    if per_sched is None or per_sched["_src"] is not scheduler.betas:
        betas = scheduler.betas.detach().double().cpu()
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, 0)
        base = {"betas": betas, "alphas": alphas, "abar": abar, "abar_prev": torch.cat([abar.new_ones(1), abar[:-1]])}
        per_sched = {"_src": scheduler.betas, "cpu": base}
        _TABLES[scheduler] = per_sched
    key = str(device)
    if key not in per_sched:
        per_sched[key] = {k: v.to(device) for k, v in per_sched["cpu"].items()}
    return per_sched[key]


def extract(values: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    """``values[t]`` shaped to broadcast against ``like`` (B, C, *spatial), on its device and in its dtype."""
    t = torch.as_tensor(t, dtype=torch.long, device=values.device)
    out = values[t].to(device=like.device, dtype=like.dtype if like.is_floating_point() else None)
    if out.ndim == 0:
        out = out.expand(like.shape[0])
    return out.reshape(-1, *([1] * (like.ndim - 1)))


def scheduler_clip(scheduler: Scheduler) -> tuple[float, float] | None:
    """The clamp range of x0 predictions a scheduler asks for (``clip_sample`` and its bounds), or ``None``."""
    if not getattr(scheduler, "clip_sample", False):
        return None
    lo, hi = getattr(scheduler, "clip_sample_values", (-1.0, 1.0))
    return float(lo), float(hi)


def _prediction_type(scheduler: Scheduler) -> str:
    kind = str(getattr(scheduler, "prediction_type", "epsilon"))
    if kind not in ("epsilon", "sample", "v_prediction"):
        raise ValueError(f"unknown prediction_type {kind!r} of {type(scheduler).__name__}")
    return kind


def predict_x0(
    scheduler: Scheduler, x_t: torch.Tensor, model_output: torch.Tensor, t: torch.Tensor | int
) -> torch.Tensor:
    """One-step estimate of the clean image from the network's output at ``(x_t, t)``.

    The scheduler says what the network predicts (``prediction_type``): the noise (``x0 = (x_t - sqrt(1 - abar_t)
    eps) / sqrt(abar_t)``, single-step sampling's whole reconstruction, Damudi & Kini 2024, Algorithm 1), the clean
    image itself, or ``v`` (``x0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v``); and whether to clamp the estimate
    (``clip_sample``, AnoDDPM clamps to [-1, 1]).
    """
    tab = schedule_tables(scheduler, x_t.device)
    kind = _prediction_type(scheduler)
    if kind == "epsilon":
        x0 = (x_t - extract((1.0 - tab["abar"]).sqrt(), t, x_t) * model_output) / extract(tab["abar"].sqrt(), t, x_t)
    elif kind == "sample":
        x0 = model_output
    else:
        x0 = extract(tab["abar"].sqrt(), t, x_t) * x_t - extract((1.0 - tab["abar"]).sqrt(), t, x_t) * model_output
    clip = scheduler_clip(scheduler)
    return x0 if clip is None else x0.clamp(*clip)


def predict_eps(scheduler: Scheduler, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
    """The noise implied by ``x_t`` and a clean estimate ``x0`` (inverse of the epsilon case of :func:`predict_x0`)."""
    tab = schedule_tables(scheduler, x_t.device)
    return (x_t - extract(tab["abar"].sqrt(), t, x_t) * x0) / extract((1.0 - tab["abar"]).sqrt(), t, x_t)


def _step_tables(
    scheduler: Scheduler, t: torch.Tensor | int, prev_t: torch.Tensor | int | None, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``abar_t``, ``abar_s`` and the jump's ``beta = 1 - abar_t / abar_s`` for a step t -> s, shaped like ``like``.

    ``s = t - 1`` by default; a strided step (``prev_t`` < t - 1, ``-1`` for the last jump to x0) is the one-step
    DDPM of the respaced schedule (Nichol & Dhariwal 2021, section 4): the same formulas with ``beta_t`` replaced by
    ``1 - abar_t / abar_s``.
    """
    tab = schedule_tables(scheduler, like.device)
    shape = (-1, *([1] * (like.ndim - 1)))

    def pick(values: torch.Tensor, idx: torch.Tensor | int) -> torch.Tensor:  # float64, unlike extract
        out = values[torch.as_tensor(idx, dtype=torch.long, device=values.device)]
        return (out.expand(like.shape[0]) if out.ndim == 0 else out).reshape(shape)

    abar_t = pick(tab["abar"], t)
    # abar_prev[k] is abar_{k-1} (1 at k = 0), so abar_s = abar_prev[s + 1] covers s = -1 (x0) without a new table
    abar_s = pick(tab["abar_prev"], t if prev_t is None else torch.as_tensor(prev_t) + 1)
    return abar_t, abar_s, 1.0 - abar_t / abar_s


def posterior_mean(
    scheduler: Scheduler,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor | int,
    prev_t: torch.Tensor | int | None = None,
) -> torch.Tensor:
    """Mean of q(x_s | x_t, x0), s = ``prev_t`` (default t - 1; Ho et al. 2020, eq. 7; strided: respaced schedule)."""
    abar_t, abar_s, beta = _step_tables(scheduler, t, prev_t, x_t)
    coef_x0 = abar_s.sqrt() * beta / (1.0 - abar_t)
    coef_xt = (1.0 - beta).sqrt() * (1.0 - abar_s) / (1.0 - abar_t)
    return coef_x0.to(x_t.dtype) * x0 + coef_xt.to(x_t.dtype) * x_t


def ddpm_reverse_step(
    scheduler: Scheduler,
    x_t: torch.Tensor,
    model_output: torch.Tensor,
    t: torch.Tensor | int,
    noise: torch.Tensor | None,
    prev_t: torch.Tensor | int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral DDPM step ``x_t -> x_{t-1}`` (or a strided ``x_t -> x_{prev_t}``) with caller-supplied noise.

    ``x_{t-1} = mu(x0_hat, x_t) + sigma_t * noise`` where ``x0_hat`` is the one-step prediction (:func:`predict_x0`:
    the scheduler's ``prediction_type`` and ``clip_sample``), ``mu`` the posterior mean and ``sigma_t^2`` the
    scheduler's ``variance_type``: ``beta_t`` (``"fixed_large"``, AnoDDPM) or the posterior variance
    ``beta_t (1 - abar_{t-1}) / (1 - abar_t)`` (``"fixed_small"``, MONAI's default). No noise is added where
    ``t == 0``. A strided step (``prev_t``) uses the respaced schedule's ``beta = 1 - abar_t / abar_prev_t``
    (Nichol & Dhariwal 2021): fewer network passes for the same noise level.

    Args:
        scheduler: the MONAI ``DDPMScheduler`` the network was trained with.
        x_t: current sample (B, C, *spatial).
        model_output: the network's prediction at (x_t, t).
        t: timestep(s), scalar or (B,).
        noise: the noise to inject (simplex, Tsimplex or Gaussian), shaped like ``x_t``; ``None`` for none.
        prev_t: the step's target timestep(s) (default ``t - 1``; ``-1`` jumps to x0 and adds no noise).

    Returns:
        ``(x_prev, x0_hat)``.

    Raises:
        ValueError: a learnt variance type (the network would have to output it).
    """
    variance = str(getattr(scheduler, "variance_type", "fixed_small"))
    if variance not in ("fixed_large", "fixed_small"):
        raise ValueError(f"the reverse step supports variance_type 'fixed_large' or 'fixed_small', got {variance!r}")
    x0 = predict_x0(scheduler, x_t, model_output, t)
    mean = posterior_mean(scheduler, x0, x_t, t, prev_t)
    if noise is None:
        return mean, x0
    abar_t, abar_s, beta = _step_tables(scheduler, t, prev_t, x_t)
    var = beta if variance == "fixed_large" else beta * (1.0 - abar_s) / (1.0 - abar_t)
    sigma = var.sqrt().to(x_t.dtype)
    s = torch.as_tensor(t if prev_t is None else torch.as_tensor(prev_t) + 1, dtype=torch.long).to(x_t.device)
    s_b = s.expand(x_t.shape[0]) if s.ndim == 0 else s
    mask = (s_b > 0).to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))  # no noise on the last step, into x0
    return mean + mask * sigma * noise, x0


def ddim_invert_step(
    scheduler: Scheduler,
    x_t: torch.Tensor,
    model_output: torch.Tensor,
    t: torch.Tensor | int,
    t_next: torch.Tensor | int,
) -> torch.Tensor:
    """Deterministic DDIM encoding ``x_t -> x_{t_next}`` (t_next > t; eta = 0; AnoFPDM eq. 4).

    ``x_{t_next} = sqrt(abar_{t_next}) x0 + sqrt(1 - abar_{t_next}) eps_hat`` with ``x0`` the one-step prediction at
    t (:func:`predict_x0`, clamped when the scheduler clips) and ``eps_hat = (x_t - sqrt(abar_t) x0) /
    sqrt(1 - abar_t)`` the noise it implies. MONAI's
    ``DDIMScheduler.reversed_step`` needs a ``DDIMScheduler`` and its ``set_timesteps`` grid; this works on any
    scheduler's training schedule with any (strided) pair of steps.
    """
    x0 = predict_x0(scheduler, x_t, model_output, t)
    exact = scheduler_clip(scheduler) is None and _prediction_type(scheduler) == "epsilon"
    eps_hat = model_output if exact else predict_eps(scheduler, x_t, x0, t)
    tab = schedule_tables(scheduler, x_t.device)
    return extract(tab["abar"].sqrt(), t_next, x_t) * x0 + extract((1.0 - tab["abar"]).sqrt(), t_next, x_t) * eps_hat
