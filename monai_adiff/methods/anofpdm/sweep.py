# SPDX-License-Identifier: Apache-2.0
"""AnoFPDM's forward sweep: anomaly detection with the *forward* process of a classifier-free-guidance diffusion
model (Che et al., WACV-W 2025). No reconstruction: at every step t of the forward process the noised slice x_t gets
two one-step predictions of the clean slice, healthy-guided (HGP, eq. 7) and unguided (UGP, eq. 10); their divergence
M_t (eq. 12) peaks at the noise scale t_e (eq. 21) where the anomaly signal is strongest; the squared errors of the
HGPs aggregated up to t_e give the anomaly map H (eq. 20), thresholded at a per-slice quantile (Algorithm 1); the
cosine similarity of the guided and unguided error curves (eq. 18) classifies the slice as healthy (empty mask) or
not (:mod:`monai_adiff.methods.anofpdm.inferer`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from monai.networks.schedulers import Scheduler

from monai_adiff.diffusion import ddim_invert_step, predict_x0
from monai_adiff.inferers import device_generator

__all__ = [
    "FPDMSweep",
    "MAP_RESIDUALS",
    "SLICE_SCORES",
    "fpdm_sweep",
    "fpdm_step_grid",
    "cosine_similarity",
    "relative_excess",
    "rowwise_quantile",
]

#: the per-slice scores (higher: more anomalous); see :meth:`FPDMSweep.slice_score`
SLICE_SCORES = ("cosine", "excess")
#: the per-pixel residual the map aggregates; see :func:`fpdm_sweep`'s ``residual``
MAP_RESIDUALS = ("squared", "positive")


def fpdm_step_grid(num_steps: int = 600, stride: int = 1, start: int = 0) -> list[int]:
    """The forward-process timesteps visited: ``start, start + stride, ...`` below ``start + num_steps``.

    The public code visits every step t = 0..599; a stride trades resolution of ``t_e`` for speed.
    """
    if num_steps < 1 or stride < 1 or start < 0:
        raise ValueError(f"need num_steps >= 1, stride >= 1, start >= 0; got {num_steps}, {stride}, {start}")
    return list(range(start, start + num_steps, stride))


def rowwise_quantile(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``q[i]``-quantile of row ``i`` of ``x`` (N, P), linear interpolation (numpy's default); one sort, no size cap."""
    v = x.float().sort(dim=1).values
    pos = q.to(v.device).float().clamp(0, 1) * (v.shape[1] - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp_max(v.shape[1] - 1)
    frac = pos - lo.float()
    v_lo = v.gather(1, lo[:, None])[:, 0]
    return v_lo + (v.gather(1, hi[:, None])[:, 0] - v_lo) * frac


def cosine_similarity(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Row-wise cosine similarity of (N, T) curves (eq. 18), over the steps where ``mask`` is true."""
    if mask is not None:
        a, b = a * mask, b * mask
    num = (a * b).sum(-1)
    den = a.norm(dim=-1) * b.norm(dim=-1)
    return torch.where(den > 0, num / den.clamp_min(1e-30), torch.ones_like(num))


def relative_excess(guided: torch.Tensor, unguided: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Row-wise ``sum_t (guided_t - unguided_t) / sum_t unguided_t`` of (N, T) error curves, over ``mask``'s steps.

    How much larger the healthy-guided error is than the unguided one, as a fraction of the unguided error: unlike
    ``1 - cos`` it sees a guided curve that is the unguided one scaled up (``g = (1 + r) u`` gives ``r``; the cosine
    gives 0), and its sign tells an excess from a deficit. 0 where the unguided error is 0.
    """
    if mask is not None:
        guided, unguided = guided * mask, unguided * mask
    den = unguided.sum(-1)
    return torch.where(den > 0, (guided - unguided).sum(-1) / den.clamp_min(1e-30), torch.zeros_like(den))


@dataclass
class FPDMSweep:
    """What one forward sweep measured, per guidance strength ``w`` (first axis) and slice.

    Attributes:
        timesteps: (T,) the visited timesteps.
        guidance: (G,) the guidance strengths.
        mse_guided: (G, N, T) ``MSE^h_t``: mean over scoring channels and pixels of ``(x0_h - x0)^2``.
        mse_unguided: (N, T) ``MSE^0_t`` of the unguided predictions (independent of w).
        divergence: (G, N, T) ``M_t``: mean of ``(x0_h - x0_u)^2`` (eq. 12).
        visited: (N, T) bool, the steps each slice was swept (all, unless it stopped early).
        t_end: (G, N) index into ``timesteps`` of ``argmax_t M_t`` (eq. 21).
        m_end: (G, N) ``M_{t_e}``.
        amap: (N, H, W) the aggregated map ``H`` (eq. 20, of the chosen ``residual``, scoring channels averaged) for
            ``guidance[0]``, or None.
    """

    timesteps: torch.Tensor
    guidance: torch.Tensor
    mse_guided: torch.Tensor
    mse_unguided: torch.Tensor
    divergence: torch.Tensor
    visited: torch.Tensor
    t_end: torch.Tensor
    m_end: torch.Tensor
    amap: torch.Tensor | None

    def cosine(self) -> torch.Tensor:
        """(G, N) cosine similarity of the guided and unguided error curves over the visited steps (eq. 18)."""
        return torch.stack([cosine_similarity(g, self.mse_unguided, self.visited) for g in self.mse_guided])

    def excess(self) -> torch.Tensor:
        """(G, N) relative excess of the guided over the unguided error over the visited steps
        (:func:`relative_excess`)."""
        return torch.stack([relative_excess(g, self.mse_unguided, self.visited) for g in self.mse_guided])

    def slice_score(self, kind: str = "cosine") -> torch.Tensor:
        """(G, N) the slice score, higher for slices more likely unhealthy.

        ``"cosine"``: ``1 - cos`` of the guided and unguided error curves (the paper's, eq. 18): a change of the
        curves' *shape*. It is blind to a guided curve that is the unguided one scaled up: ``1 - cos`` is, to second
        order, half the ``u_t^2``-weighted variance over t of the relative excess ``r_t = g_t / u_t - 1``, not its
        mean. ``"excess"``: the mean relative excess itself (:meth:`excess`), a change of the curves' *level*.
        """
        if kind == "cosine":
            return 1.0 - self.cosine()
        if kind == "excess":
            return self.excess()
        raise ValueError(f"slice score must be one of {SLICE_SCORES}, got {kind!r}")


def fpdm_sweep(
    network: Callable[..., torch.Tensor],
    scheduler: Scheduler,
    x0: torch.Tensor,
    timesteps: Sequence[int],
    guidance: float | Sequence[float] = 2.0,
    mode: str = "ddim",
    unguided: str = "null",
    channels: Sequence[int] | None = None,
    healthy_label: int = 0,
    null_label: int = 2,
    keep_map: bool = True,
    patience: int | None = None,
    generator: torch.Generator | None = None,
    network_call: Callable[..., torch.Tensor] | None = None,
    brain: torch.Tensor | None = None,
    residual: str = "squared",
) -> FPDMSweep:
    """Run AnoFPDM's forward process over ``timesteps`` for a batch of slices.

    One network call per step, on the doubled batch ``[x_t with the healthy label, x_t with the null label]``, gives
    both noise predictions; every guidance strength in ``guidance`` reuses them (the trajectory does not depend on
    w: DDPM encodes with fresh noise, DDIM inverts with the null label), so calibrating a grid of w costs one sweep.

    Args:
        network: class-conditional noise predictor ``network(x, timesteps=..., class_labels=...)``.
        scheduler: the training scheduler (``alphas_cumprod``; ``clip_sample`` clamps the x0 predictions, as the
            public code does).
        x0: clean slices (N, C, H, W) in [-1, 1].
        timesteps: increasing forward-process steps (see :func:`fpdm_step_grid`).
        guidance: w, or several (the map is kept for the first).
        mode: ``"ddim"``: x_{t_0} by eq. 2 then deterministic DDIM inversion (eq. 4) with the null label (the paper's
            best setting); ``"ddpm"``: every x_t drawn afresh from q(x_t | x_0) (eq. 2).
        unguided: ``"null"``: the UGP uses the null label (the paper, eq. 10); ``"healthy"``: the healthy label at
            w = 0 (the public code's variant).
        channels: the scoring channels (AnoFPDM: FLAIR and T2, i.e. 0 and 3 of FLAIR, T1, T1ce, T2); all if None.
        healthy_label, null_label: class indices.
        keep_map: aggregate the map ``H`` for ``guidance[0]`` (not needed for calibration).
        patience: stop a slice this many steps after its divergence peak (early stop); None sweeps every step.
        generator: CPU generator for the encoding noise (x_{t_0} in DDIM mode, every step in DDPM mode).
        network_call: how to call the network (e.g. an inferer's autocast wrapper); default ``network(...)``.
        brain: (N, 1, H, W) bool; when given, the error curves ``MSE^h_t``, ``MSE^0_t`` and the divergence ``M_t``
            are means over each slice's brain pixels instead of the whole slice (the code's), so what the
            predictions do in the background does not count.
        residual: what the map ``H`` aggregates per step: ``"squared"``, the paper's ``S_t = (x0_h - x0)^2``
            (eq. 19); ``"positive"``, the positive part of ``x0 - x0_h``: only where the slice is brighter than its
            healthy-guided prediction (tumour and oedema are hyperintense on FLAIR and T2; the usual choice for
            residual maps of brain MRI, e.g. Baur et al. 2021), a departure from the paper. Both scoring-channel
            means; the error curves ``MSE^h_t`` stay squared errors either way.

    Returns:
        an :class:`FPDMSweep`.
    """
    if mode not in ("ddim", "ddpm"):
        raise ValueError(f"mode must be 'ddim' or 'ddpm', got {mode!r}")
    if residual not in MAP_RESIDUALS:
        raise ValueError(f"residual must be one of {MAP_RESIDUALS}, got {residual!r}")
    if unguided not in ("null", "healthy"):
        raise ValueError(f"unguided must be 'null' or 'healthy', got {unguided!r}")
    steps = [int(t) for t in timesteps]
    if not steps or any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"timesteps must be increasing and non-empty, got {steps[:5]}...")
    call = network_call or (lambda x, **kw: network(x, **kw))
    ws = torch.as_tensor([guidance] if isinstance(guidance, (int, float)) else list(guidance), dtype=torch.float32)
    n, device = x0.shape[0], x0.device
    ch = list(range(x0.shape[1])) if channels is None else [int(c) for c in channels]
    n_steps, n_w = len(steps), len(ws)

    mse_g = x0.new_zeros((n_w, n, n_steps), dtype=torch.float32)
    mse_u = x0.new_zeros((n, n_steps), dtype=torch.float32)
    div = x0.new_zeros((n_w, n, n_steps), dtype=torch.float32)
    visited = torch.zeros((n, n_steps), dtype=torch.bool, device=device)
    best = torch.full((n_w, n), -1.0, device=device)
    t_end = torch.zeros((n_w, n), dtype=torch.long, device=device)
    since = torch.zeros(n, dtype=torch.long, device=device)  # steps since the (first w's) peak
    running: torch.Tensor | None = None
    amap: torch.Tensor | None = None
    if keep_map:
        running = x0.new_zeros((n, *x0.shape[2:]), dtype=torch.float32)
        amap = torch.zeros_like(running)
    count = torch.ones(n, device=device)

    dev_gen = device_generator(generator, device)
    if brain is not None:
        weight = brain.to(device=device, dtype=torch.float32)
        weight = weight / weight.flatten(1).sum(1).clamp_min(1.0).reshape(-1, 1, 1, 1)  # mean over brain pixels
    else:
        weight = torch.full((n, 1, 1, 1), 1.0 / x0[0, 0].numel(), device=device)

    def spatial_mean(v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(m, C', H, W) -> (m,): channel mean of the (brain-)pixel mean."""
        return (v * weight[idx]).sum(dim=(2, 3)).mean(dim=1)

    def noise(shape):
        return torch.randn(shape, generator=dev_gen, device=device, dtype=x0.dtype)

    active = torch.arange(n, device=device)
    x_t = None
    for k, t in enumerate(steps):
        xa = x0[active]
        if mode == "ddpm" or k == 0:
            tt = torch.full((len(active),), t, device=device, dtype=torch.long)
            x_t = scheduler.add_noise(xa, noise(xa.shape), tt)
        assert x_t is not None  # set at the first step
        m = len(active)
        tt2 = torch.full((2 * m,), t, device=device, dtype=torch.long)
        labels = torch.cat([torch.full((m,), healthy_label), torch.full((m,), null_label)]).to(device)
        eps = call(torch.cat([x_t, x_t]), timesteps=tt2, class_labels=labels).float()
        eps_h, eps_n = eps[:m], eps[m:]
        x0_n = predict_x0(scheduler, x_t, eps_n, t)
        x0_u = x0_n if unguided == "null" else predict_x0(scheduler, x_t, eps_h, t)
        mse_u[active, k] = spatial_mean((x0_u - xa)[:, ch] ** 2, active)
        visited[active, k] = True
        for j, w in enumerate(ws.tolist()):
            x0_h = predict_x0(scheduler, x_t, (1 + w) * eps_h - w * eps_n, t)
            sam = ((x0_h - xa)[:, ch] ** 2).mean(dim=1)  # S_t (eq. 19), scoring channels averaged
            mse_g[j, active, k] = spatial_mean(sam[:, None], active)
            m_t = spatial_mean((x0_h - x0_u)[:, ch] ** 2, active)
            div[j, active, k] = m_t
            improved = m_t > best[j, active]
            best[j, active] = torch.where(improved, m_t, best[j, active])
            t_end[j, active] = torch.where(improved, torch.full_like(t_end[j, active], k), t_end[j, active])
            if j == 0:
                since[active] = torch.where(improved, torch.zeros_like(since[active]), since[active] + 1)
                if keep_map:
                    assert running is not None and amap is not None
                    running[active] += sam if residual == "squared" else (xa - x0_h)[:, ch].clamp_min(0).mean(dim=1)
                    sel = active[improved]
                    amap[sel] = running[sel]  # the running sum at the new peak: H * (steps aggregated)
                    count[sel] = float(k + 1)
        if mode == "ddim" and k + 1 < n_steps:
            x_t = ddim_invert_step(scheduler, x_t, eps_n, t, steps[k + 1])
        if patience is not None:
            keep = since[active] < patience
            if not bool(keep.all()):  # drop slices that are past their peak (one small host sync per step)
                active = active[keep]
                x_t = x_t[keep]
            if len(active) == 0:
                break
    if keep_map:
        assert amap is not None
        amap = amap / count.reshape(-1, 1, 1)  # eq. 20: mean of S_t for t <= t_e
    return FPDMSweep(
        timesteps=torch.as_tensor(steps),
        guidance=ws,
        mse_guided=mse_g,
        mse_unguided=mse_u,
        divergence=div,
        visited=visited,
        t_end=t_end,
        m_end=best.clamp_min(0),
        amap=amap,
    )
