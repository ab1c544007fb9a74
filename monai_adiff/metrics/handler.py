# SPDX-License-Identifier: Apache-2.0
"""An Ignite handler that evaluates anomaly outputs volume by volume and writes the report.

MONAI's metric handlers reduce one tensor metric per iteration; the protocol here needs brain masks, slice setups,
several methods side by side (the method and the FLAIR-intensity baseline on the same volumes) and a JSON/CSV report,
so the handler feeds :class:`~monai_adiff.metrics.AnomalyEvaluation` and writes through
:func:`~monai_adiff.metrics.write_report`.

Under ``torch.distributed`` (the bundles' ``multi_gpu_evaluate.json``) each rank scores its own cases; at the end
rank 0 gathers every rank's volumes and evaluates them all in the one-process order, so the report equals a single
process's. MONAI's metric handlers gather equal-shaped tensors; volumes differ in size, so they travel as objects.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_adiff.metrics.evaluation import SETUPS, AnomalyEvaluation
from monai_adiff.metrics.report import format_table, write_report
from monai_adiff.utils import atomic_write, dist_rank_world

__all__ = ["AnomalyMetricsHandler", "engine_items"]

logger = logging.getLogger(__name__)


def _slices_first(x: torch.Tensor) -> torch.Tensor:
    """(C, H, W, S) -> (S, H, W) of channel 0; (C, H, W) -> (1, H, W)."""
    x = torch.as_tensor(x).as_subclass(torch.Tensor).detach().cpu()
    x = x[0]
    return x.permute(2, 0, 1) if x.ndim == 3 else x[None]


def _interleave(per_rank: Sequence[Sequence[Any]]) -> list[Any]:
    """Items dealt round-robin to ranks (``DistributedSampler(shuffle=False)``: case ``i`` to rank ``i % world``),
    back in dealing order."""
    longest = max((len(r) for r in per_rank), default=0)
    return [r[i] for i in range(longest) for r in per_rank if i < len(r)]


def engine_items(engine: Engine) -> list[dict]:
    """The current iteration's items, each the input dict merged with its post-processed output.

    Raises:
        ValueError: the evaluator does not decollate (its output is one dict for the whole batch).
    """
    # ignite types State.batch / State.output as int | None; they hold the (decollated) data
    batch: Any = engine.state.batch
    output: Any = engine.state.output
    if isinstance(output, dict):  # not decollated: one item per batch element
        raise ValueError("anomaly handlers need a decollating evaluator (decollate=True, the default)")
    batch = batch if isinstance(batch, list) else [{}] * len(output)
    return [{**b, **o} for b, o in zip(batch, output)]


class AnomalyMetricsHandler:
    """Collect every evaluated volume and write ``<name>.json``/``.csv`` when the evaluator completes.

    Args:
        output_dir: where the report goes.
        method: name of the evaluated method in the report (e.g. ``"sss"``).
        map_key, mask_key, score_key, label_pred_key: keys of the method's map (channel 0), mask, per-slice scores
            and per-slice predicted labels in the post-processed output (missing keys are skipped).
        baselines: reference maps evaluated beside the method on the same volumes, ``{name: data key}``; channel 0 of
            the key is the map (e.g. ``{"flair_baseline": "flair_intensity"}`` with
            ``volume_preprocessing(baseline_key="flair_intensity")``: the FLAIR-intensity baseline).
        baseline_thresholds: label-free thresholds of the baselines, ``{name: threshold}`` (from the healthy-quantile
            file, :func:`~monai_adiff.metrics.read_threshold`): each baseline is then scored with the mask ``map >
            threshold`` too (Dice, IoU, ...), by the same rule as the method; ``None``: baselines have maps only.
        label_key, brain_key, case_key: keys of the data dict.
        brain_slices_key: per-slice brain-slice flags (from ``BrainSliceSelectiond``); when present, only those
            slices are evaluated (the "mixed" setup is all brain slices by the same rule as training).
        setups: setups to report.
        name: report file stem.
        print_table: print the table when done.
        curve_points: when > 0, every setup's result holds its precision-recall curve thinned to about this many
            points (``pr_curve``, JSON report only): what ``monai-adiff benchmark`` plots.
        snapshot_slices: when > 0, ``<name>_snapshots.npz`` keeps, per case, the slices with the largest tumour area
            (up to this many): the display image (``snapshot_image_key``, else image channel 0), the target and
            every method's and baseline's map and mask on them, in the evaluated space. Slices are chosen from the
            target alone, so every bundle evaluated on the same cases keeps the same slices.
        snapshot_image_key: data key of the display image (default the FLAIR-intensity baseline's key).
        save_maps: also write ``<name>_maps.npz``: per case (``<case>/<array>``) the target, the evaluated brain
            pixels, the method's map and every baseline's map, slices first, in the evaluated space: what a map
            ensemble of two bundles is scored from (:mod:`monai_adiff.ensemble`).
    """

    def __init__(
        self,
        output_dir: str,
        method: str = "method",
        map_key: str = "pred",
        mask_key: str | None = "pred_mask",
        score_key: str | None = "pred_score",
        label_pred_key: str | None = "pred_label",
        baselines: Mapping[str, str] | None = None,
        baseline_thresholds: Mapping[str, float] | None = None,
        label_key: str = "label",
        brain_key: str = "brain",
        case_key: str = "case",
        brain_slices_key: str = "brain_slices",
        setups: Sequence[str] = SETUPS,
        name: str = "metrics",
        print_table: bool = True,
        curve_points: int = 0,
        snapshot_slices: int = 0,
        snapshot_image_key: str = "flair_intensity",
        save_maps: bool = False,
    ) -> None:
        self.output_dir = output_dir
        self.method = method
        self.map_key, self.mask_key, self.score_key, self.label_pred_key = map_key, mask_key, score_key, label_pred_key
        self.baselines = dict(baselines or {})
        self.baseline_thresholds = {k: float(v) for k, v in (baseline_thresholds or {}).items()}
        self.label_key, self.brain_key, self.case_key = label_key, brain_key, case_key
        self.brain_slices_key = brain_slices_key
        self.setups = tuple(setups)
        self.name = name
        self.print_table = print_table
        self.curve_points = int(curve_points)
        self.snapshot_slices = int(snapshot_slices)
        self.snapshot_image_key = snapshot_image_key
        self.save_maps = bool(save_maps)
        self.results: dict | None = None
        self.paths: dict | None = None
        self._reset()

    def _reset(self) -> None:
        self.evaluations = {
            n: AnomalyEvaluation(self.setups, curve_points=self.curve_points) for n in (self.method, *self.baselines)
        }
        self.snapshots: dict[str, np.ndarray] = {}
        self.maps: dict[str, np.ndarray] = {}
        #: per volume, its ``add_volume`` calls ``(evaluation name, args, kwargs)``: kept under torch.distributed only
        self.volumes: list[list[tuple[str, tuple, dict]]] = []
        self.seconds: list[float] = []
        self.slices: list[int] = []
        self._t0 = 0.0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda e: self._reset())
        engine.add_event_handler(Events.ITERATION_STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self._t0 = time.perf_counter()

    def _iteration(self, engine: Engine) -> None:
        self.seconds.append(time.perf_counter() - self._t0)
        for i, d in enumerate(engine_items(engine)):
            case = d.get(self.case_key) or f"case_{engine.state.iteration:04d}_{i}"
            if self.label_key not in d:
                raise KeyError(f"case {case}: no '{self.label_key}' to evaluate against")
            target = _slices_first(d[self.label_key]) > 0
            brain = _slices_first(d[self.brain_key]) > 0
            if self.brain_slices_key in d:  # evaluate the brain slices the method trains on (slice selection rule)
                keep = torch.as_tensor(d[self.brain_slices_key]).as_subclass(torch.Tensor).bool().cpu().flatten()
                brain = brain & keep[:, None, None]
            self.slices.append(int(brain.flatten(1).any(1).sum()))

            def opt(key, per_slice=False, d=d):
                if not key or key not in d or d[key] is None:
                    return None
                v = torch.as_tensor(d[key]).as_subclass(torch.Tensor).detach().cpu()
                return v.flatten() if per_slice else _slices_first(v)

            method_map, method_mask = opt(self.map_key), opt(self.mask_key)
            if dist_rank_world()[1] > 1:
                self.volumes.append([])
            self._add(
                self.method,
                case,
                method_map,
                method_mask,
                target,
                brain,
                slice_scores=opt(self.score_key, True),
                slice_labels_pred=opt(self.label_pred_key, True),
            )
            outputs = {self.method: (method_map, method_mask)}
            for name, key in self.baselines.items():
                if key not in d:
                    raise KeyError(
                        f"case {case}: baseline '{name}' needs '{key}' in the data (baseline_key of the "
                        "volume preprocessing)"
                    )
                amap = _slices_first(d[key]) * brain  # the baseline, like every map, counts inside the brain
                thr = self.baseline_thresholds.get(name)
                amask = None if thr is None else amap > thr
                self._add(name, case, amap, amask, target, brain)
                outputs[name] = (amap, amask)
            if self.save_maps:
                arrays = {"target": target, "brain": brain, **{n: m for n, (m, _) in outputs.items() if m is not None}}
                self.maps.update({f"{case}/{k}": v.numpy() for k, v in arrays.items()})
            if self.snapshot_slices > 0:
                image = opt(self.snapshot_image_key) if self.snapshot_image_key in d else opt("image")
                self._snapshot(case, image, target & brain, outputs)

    def _add(self, name: str, *args: Any, **kwargs: Any) -> None:
        """``add_volume`` of evaluation ``name`` (checks the volume here, on the rank that scored it), recorded for
        rank 0 under torch.distributed."""
        self.evaluations[name].add_volume(*args, **kwargs)
        if self.volumes:
            self.volumes[-1].append((name, args, kwargs))

    def _gather(self) -> bool:
        """Under torch.distributed: every rank's volumes, timings and snapshots to rank 0, which re-evaluates them
        all in the order one process would have seen them. Returns whether this rank writes the report."""
        import torch.distributed as dist

        rank, world = dist_rank_world()
        if world == 1:
            return True
        mine = (self.volumes, self.seconds, self.slices, self.snapshots, self.maps)
        gathered: list[Any] | None = [None] * world if rank == 0 else None
        dist.gather_object(mine, gathered, dst=0)
        if gathered is None:
            return False
        self.evaluations = {n: AnomalyEvaluation(self.setups, curve_points=self.curve_points) for n in self.evaluations}
        for calls in _interleave([g[0] for g in gathered]):
            for name, args, kwargs in calls:
                self.evaluations[name].add_volume(*args, **kwargs)
        self.seconds = [t for g in gathered for t in g[1]]
        self.slices = [n for g in gathered for n in g[2]]
        self.snapshots = {k: v for g in gathered for k, v in g[3].items()}
        self.maps = {k: v for g in gathered for k, v in g[4].items()}
        return True

    def _snapshot(
        self,
        case: str,
        image: torch.Tensor | None,
        target: torch.Tensor,
        outputs: Mapping[str, tuple[torch.Tensor | None, torch.Tensor | None]],
    ) -> None:
        """Keep the ``snapshot_slices`` slices of ``case`` with the largest tumour area (none without tumour)."""
        area = target.flatten(1).sum(1)
        order = torch.argsort(area, descending=True, stable=True)[: self.snapshot_slices]
        keep = torch.sort(order[area[order] > 0]).values
        if keep.numel() == 0:
            return
        arrays = {"slices": keep, "label": target[keep]}
        if image is not None:
            arrays["image"] = image[keep]
        for name, (amap, amask) in outputs.items():
            if amap is not None:
                arrays[f"{name}/map"] = amap[keep]
            if amask is not None:
                arrays[f"{name}/mask"] = amask[keep] > 0
        for key, value in arrays.items():
            self.snapshots[f"{case}/{key}"] = value.float().numpy() if value.is_floating_point() else value.numpy()

    def _completed(self, engine: Engine) -> None:
        if not self._gather():
            return
        results = {n: ev.compute() for n, ev in self.evaluations.items()}
        n = len(self.seconds)
        results[self.method]["timing"] = {
            "seconds_per_volume": sum(self.seconds) / n if n else None,
            "seconds_per_brain_slice": sum(self.seconds) / max(1, sum(self.slices)) if n else None,
            "volumes": n,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
            "note": "wall time per evaluator iteration: preprocessing excluded, inference and post-processing included",
        }
        self.results = results
        self.paths = write_report(results, self.output_dir, self.name)
        if self.snapshot_slices > 0:
            path = os.path.join(self.output_dir, f"{self.name}_snapshots.npz")
            arrays: dict[str, Any] = self.snapshots
            self.paths["snapshots"] = atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays), ".npz")
        if self.save_maps:
            path = os.path.join(self.output_dir, f"{self.name}_maps.npz")
            maps: dict[str, Any] = self.maps
            self.paths["maps"] = atomic_write(path, lambda tmp: np.savez(tmp, **maps), ".npz")
        engine.state.anomaly_results = results  # type: ignore[attr-defined]  # ignite's State takes any attribute
        table = format_table(results, setups=self.setups)
        if self.print_table:
            print(table)
            print(f"report: {self.paths['json']}")
        logger.info("anomaly metrics written to %s", self.paths)
