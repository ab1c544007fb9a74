# SPDX-License-Identifier: Apache-2.0
"""The conditioning gap: does the class-conditional network predict the noise better with a slice's own label?

AnoFPDM's guidance amplifies the difference between the healthy-conditional and the unconditional noise
predictions. If the network has not learnt its class conditioning, the two agree and the method has nothing to
amplify, whatever the guidance strength. The gap is measured with image-level labels only: per slice, the noise MSE
with the true, the swapped and the null label at the same ``t`` and noise. :class:`ConditioningGapHandler` records
it during training (a learning curve); calibration reports it for the chosen model. MONAI has no such metric: its
engines evaluate one conditioning per batch.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.networks.schedulers import Scheduler

from monai_adiff.inferers import device_generator
from monai_adiff.utils import atomic_write_text

__all__ = ["conditioning_gap", "summarize_gap", "ConditioningGapHandler", "GAP_FIELDS"]

logger = logging.getLogger(__name__)

GAP_FIELDS = (
    "epoch",
    "slices",
    "noise_mse_true",
    "noise_mse_swapped",
    "noise_mse_null",
    "true_below_null_fraction",
    "true_below_swapped_fraction",
    "relative_gap_null",
)


def conditioning_gap(
    network: Callable[..., torch.Tensor],
    scheduler: Scheduler,
    x: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    null_label: int = 2,
    network_call: Callable[..., torch.Tensor] | None = None,
    max_timestep: int | None = None,
    draws: int = 1,
) -> dict[str, torch.Tensor]:
    """Per-slice noise-prediction MSE with the true, the swapped and the null class label (same ``t``, same noise).

    With ``draws`` > 1 each slice gets that many draws, ``t`` stratified (draw ``k`` uniform in the ``k``-th of
    ``draws`` equal parts of the step range), and the MSEs are averaged: a per-slice estimate of the expectation over
    ``t`` and noise instead of one sample of it.

    Args:
        network: the class-conditional noise predictor ``network(x, timesteps=..., class_labels=...)``.
        scheduler: its training scheduler (``add_noise``, ``num_train_timesteps``).
        x: clean slices (N, C, H, W).
        labels: (N,) 0 healthy, 1 unhealthy.
        generator: CPU generator for ``t`` and the noise.
        null_label: the null class.
        network_call: how to call the network (e.g. an inferer's autocast wrapper); default ``network(...)``.
        max_timestep: draw ``t`` below this (default: every training step).
        draws: draws per slice (see above).

    Returns:
        ``{"true", "swapped", "null"}``: (N,) MSEs on the CPU.
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    call = network_call or (lambda net, xt, **kw: net(xt, **kw))
    gen = device_generator(generator, x.device)  # drawn on the data's device: no host-to-device noise copy
    t_max = int(max_timestep or scheduler.num_train_timesteps)
    y = torch.as_tensor(labels).to(x.device).long().flatten()
    out = {k: torch.zeros(x.shape[0]) for k in ("true", "swapped", "null")}
    for k in range(draws):
        lo, hi = k * t_max // draws, max((k + 1) * t_max // draws, k * t_max // draws + 1)
        t = torch.randint(lo, hi, (x.shape[0],), generator=gen, device=x.device)
        noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        x_t = scheduler.add_noise(x, noise, t)
        for name, lab in (("true", y), ("swapped", 1 - y), ("null", torch.full_like(y, null_label))):
            eps = call(network, x_t, timesteps=t, class_labels=lab).float()
            out[name] += ((eps - noise.float()) ** 2).flatten(1).mean(1).cpu() / draws
    return out


def summarize_gap(gap: dict[str, torch.Tensor]) -> dict[str, float]:
    """Means and fractions of per-slice gaps (see :data:`GAP_FIELDS`; the goal is ``true_below_null_fraction``)."""
    true, swapped, null = gap["true"].double(), gap["swapped"].double(), gap["null"].double()
    return {
        "slices": int(true.numel()),
        "noise_mse_true": float(true.mean()),
        "noise_mse_swapped": float(swapped.mean()),
        "noise_mse_null": float(null.mean()),
        "true_below_null_fraction": float((true < null).double().mean()),
        "true_below_swapped_fraction": float((true < swapped).double().mean()),
        "relative_gap_null": float(((null - true) / null.clamp_min(1e-12)).mean()),
    }


class ConditioningGapHandler:
    """Ignite handler: the conditioning gap on fixed validation slices (same ``t`` and noise every time), before
    training and every ``interval`` epochs; logged, put in ``engine.state.metrics`` (``cond_gap_*``) and written
    as a CSV learning curve (rewritten atomically; a resumed training replaces the rows from its epoch on).

    Args:
        network: the network to measure (e.g. the EMA model inference uses).
        scheduler: its scheduler.
        data_loader: validation slices with image-level labels (both classes for the swapped label to mean much).
        null_label: the null class.
        label_key: key of the slice label.
        interval: epochs between measurements.
        output_file: the CSV (None: log only).
        max_slices: measure at most this many slices (the loader's first).
        seed: seed of ``t`` and the noise.
        device: where to run (default: the network's device).
        draws: ``(t, noise)`` draws per slice, averaged (see :func:`conditioning_gap`).
        max_timestep: draw ``t`` below this: the range the network is trained on (default: every step).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        scheduler: Scheduler,
        data_loader: Iterable[dict[str, Any]],
        null_label: int = 2,
        label_key: str = "slice_label",
        interval: int = 1,
        output_file: str | None = None,
        max_slices: int | None = None,
        seed: int = 0,
        device: str | torch.device | None = None,
        draws: int = 1,
        max_timestep: int | None = None,
    ) -> None:
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.network, self.scheduler, self.data_loader = network, scheduler, data_loader
        self.null_label, self.label_key, self.interval = int(null_label), label_key, int(interval)
        self.output_file, self.max_slices, self.seed, self.device = output_file, max_slices, int(seed), device
        self.draws = int(draws)
        self.max_timestep = max_timestep

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def _started(self, engine: Engine) -> None:
        if engine.state.epoch == 0:  # not on a resumed run: its start was measured already
            self(engine)

    @torch.no_grad()
    def measure(self) -> dict[str, float]:
        """The gap summary of the current network."""
        device = torch.device(self.device) if self.device is not None else next(self.network.parameters()).device
        was_training = self.network.training
        self.network.eval()
        generator = torch.Generator().manual_seed(self.seed)
        parts: list[dict[str, torch.Tensor]] = []
        seen = 0
        try:
            for batch in self.data_loader:
                x, y = batch["image"].to(device), torch.as_tensor(batch[self.label_key]).flatten()
                if self.max_slices is not None:
                    x, y = x[: self.max_slices - seen], y[: self.max_slices - seen]
                parts.append(
                    conditioning_gap(
                        self.network,
                        self.scheduler,
                        x,
                        y,
                        generator,
                        self.null_label,
                        max_timestep=self.max_timestep,
                        draws=self.draws,
                    )
                )
                seen += len(y)
                if self.max_slices is not None and seen >= self.max_slices:
                    break
        finally:
            self.network.train(was_training)
        if not parts:
            raise ValueError("the conditioning gap needs validation slices; the loader gave none")
        return summarize_gap({k: torch.cat([p[k] for p in parts]) for k in ("true", "swapped", "null")})

    def __call__(self, engine: Engine) -> None:
        epoch = int(engine.state.epoch)
        row: dict[str, Any] = {"epoch": epoch, **self.measure()}
        for k, v in row.items():
            if k not in ("epoch", "slices"):
                engine.state.metrics[f"cond_gap_{k}"] = v
        logger.info(
            "conditioning gap, epoch %d: noise MSE true/swapped/null %.5f/%.5f/%.5f; true label better than null "
            "on %.0f%% of %d validation slices, than swapped on %.0f%%",
            epoch,
            row["noise_mse_true"],
            row["noise_mse_swapped"],
            row["noise_mse_null"],
            100 * row["true_below_null_fraction"],
            row["slices"],
            100 * row["true_below_swapped_fraction"],
        )
        if self.output_file:
            self._write(row)

    def _write(self, row: dict[str, Any]) -> None:
        rows = []
        if os.path.isfile(self.output_file):  # type: ignore[arg-type]
            with open(self.output_file, encoding="utf-8") as f:  # type: ignore[arg-type]
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < row["epoch"]]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=GAP_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        atomic_write_text(self.output_file, buf.getvalue())  # type: ignore[arg-type]
