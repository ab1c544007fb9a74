# SPDX-License-Identifier: Apache-2.0
"""``monai-adiff benchmark``: every method on the same held-out patients, in one table, with pictures.

For each bundle: train it with a recipe (or take a given checkpoint), run its label-free calibration and its
healthy-quantile threshold where the recipe has them, then its ``evaluate`` workflow on the test patients, which
scores the FLAIR-intensity baseline beside it on the same slices. Every step is the bundle's own workflow run through
:func:`~monai_adiff.bundle.run_bundle`, with the overrides written to the log, so any row can be reproduced with
``python -m monai.bundle run``. All bundles get the same patient split (``dataset_dir``, fractions and seed set
explicitly), and the table checks that their FLAIR baselines agree.

Resumable: each finished step is recorded in ``<out>/<bundle>/state.json`` and skipped by a rerun with the same
configuration (also after the output folder was moved or copied: paths inside it are recorded relative to it); an
interrupted training resumes from its last checkpoint (the bundles' ``resume``; its training minutes are then those
of the run that finished it). A rerun with another configuration into the same folder is refused rather than
mixed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_adiff.benchmark.figures import (
    figure_paths,
    method_snapshots,
    plot_dice_boxes,
    plot_overlay_grid,
    plot_pr_curves,
    read_snapshots,
)
from monai_adiff.benchmark.results import FLAIR, method_rows, same_baseline, write_results
from monai_adiff.bundle import bundle_workflows, find_bundle, quick_overrides, run_bundle
from monai_adiff.errors import InputError
from monai_adiff.utils import atomic_write_text

__all__ = ["run_benchmark", "bundle_overrides", "RECIPES", "QUICK_EPOCHS", "DEFAULT_BUNDLES"]

logger = logging.getLogger("monai_adiff.benchmark")

#: ``cpu``: each bundle's ``configs/cpu_args.json``; ``paper``: the bundle's defaults (the paper's sizes)
RECIPES = ("cpu", "paper")
#: training epochs of ``--quick`` (tiny networks: the run checks the pipeline, its numbers mean nothing)
QUICK_EPOCHS = 2
#: every method, in the order of the table
DEFAULT_BUNDLES = ("sss", "anoddpm", "dtunet", "d3ad", "anofpdm")
#: points of each precision-recall curve kept for the plot
CURVE_POINTS = 200
#: slices per patient kept for the overlay grid (the largest-tumour ones)
SNAPSHOT_SLICES = 1


def bundle_overrides(bundle: str, recipe: str, quick: bool = False) -> dict[str, Any]:
    """The recipe's overrides of ``bundle``: its ``cpu_args.json``, nothing (paper), or the tiny ``--quick`` set.

    ``--quick`` keeps the CPU recipe's label-free threshold rule (a healthy-quantile file) where it has one.
    """
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    args_file = find_bundle(bundle) / "configs" / "cpu_args.json"
    cpu = json.loads(args_file.read_text()) if args_file.is_file() else None
    if recipe == "cpu" and not quick:
        if cpu is None:
            raise InputError(str(args_file), f"bundle {bundle} has no CPU recipe")
        return cpu
    if not quick:
        return {}
    out = {**quick_overrides(bundle), "max_epochs": QUICK_EPOCHS, "val_interval": QUICK_EPOCHS}
    if cpu and "threshold_file" in cpu:
        out["threshold_file"] = cpu["threshold_file"]
    return out


def _read_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(
            str(path), f"benchmark state cannot be read ({e}); remove it to start this bundle again"
        ) from e


def _progress(wf: Any) -> None:
    """A progress bar on the evaluator of workflows that run it (training configs have their own bar)."""
    from monai_adiff.engines import ProgressBarHandler

    run = wf.parser.config.get("run", [])
    # only where the run uses the evaluator: building it builds its post-processing (e.g. reads a threshold file)
    if any("@evaluator" in str(step) for step in (run if isinstance(run, list) else [run])):
        ProgressBarHandler(desc="volumes").attach(wf.parser.get_parsed_content("evaluator"))


def _count_parameters(wf: Any) -> int | None:
    try:
        network = wf.parser.get_parsed_content("network")
    except Exception:  # a workflow without a network id: the column stays empty
        return None
    return int(sum(p.numel() for p in network.parameters()))


class _BundleRun:
    """The steps of one bundle, each run once and recorded in its ``state.json``."""

    def __init__(
        self,
        bundle: str,
        work: Path,
        recipe_overrides: Mapping[str, Any],
        data_overrides: Mapping[str, Any],
        checkpoint: str | None,
        say: Callable[[str], None],
    ) -> None:
        self.bundle, self.work, self.say = bundle, work, say
        self.workflows = bundle_workflows(bundle)
        models = work / "models"
        self.train_overrides = {
            **recipe_overrides,
            **data_overrides,
            "ckpt_dir": str(models),
            "output_dir": str(work / "logs"),
        }
        infer = dict(recipe_overrides)
        if checkpoint:  # the checkpoint's record rebuilds its network; the recipe's inference options stay
            from monai_adiff.engines import checkpoint_info, read_checkpoint, recorded_overrides

            infer.update(recorded_overrides(checkpoint_info(read_checkpoint(checkpoint))))
        infer.update(data_overrides)
        infer["ckpt_path"] = str(Path(checkpoint).resolve()) if checkpoint else str(models / "model.pt")
        # label-free thresholds and calibrations go into the work folder, never beside a given checkpoint
        if "threshold_file" in recipe_overrides:
            infer["threshold_file"] = str(models / "healthy_threshold.json")
        if "calibrate" in self.workflows:
            infer["calibration_file"] = str(models / "calibration.json")
        self.infer_overrides = infer
        self.checkpoint = checkpoint
        self.state_path = work / "state.json"
        self.state = _read_state(self.state_path)
        config = {"train": self.train_overrides, "infer": self.infer_overrides, "checkpoint": checkpoint}
        absolute = json.loads(json.dumps(config, default=str))
        # paths inside the work folder are recorded relative to it, so a moved or copied folder still resumes
        config = json.loads(json.dumps(absolute).replace(json.dumps(str(work))[1:-1], "{work}"))
        if self.state.get("config") not in (None, config, absolute):
            raise InputError(
                str(work), f"holds a {bundle} benchmark run with another configuration; choose a new --out folder"
            )
        self.state["config"] = config
        self.state.setdefault("steps", {})

    def _save(self) -> None:
        atomic_write_text(self.state_path, json.dumps(self.state, indent=1) + "\n")

    def step(self, name: str, run_id: str, overrides: Mapping[str, Any], after: Callable | None = None) -> None:
        if name in self.state["steps"]:
            self.say(
                f"{self.bundle}: {name} done before ({self.state['steps'][name]['seconds'] / 60:.1f} min), skipped"
            )
            return
        logger.info("%s: %s = run_bundle(%r, %r, %s)", self.bundle, name, self.bundle, run_id, json.dumps(overrides))
        self.say(f"{self.bundle}: {name} ...")
        t0 = time.perf_counter()
        wf = run_bundle(self.bundle, run_id, overrides, before_run=None if run_id == "training" else _progress)
        record: dict[str, Any] = {"seconds": time.perf_counter() - t0}
        if after is not None:
            record.update(after(wf))
        self.state["steps"][name] = record
        self._save()
        self.say(f"{self.bundle}: {name} done in {record['seconds'] / 60:.1f} min")

    def run(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self._save()  # the configuration first: an interrupted run is resumed only with the same one
        if self.checkpoint is None:
            self.step("training", "training", self.train_overrides)
        elif not Path(self.checkpoint).is_file():
            raise InputError(self.checkpoint, "checkpoint not found")
        if "calibrate" in self.workflows:
            self.step("calibrate", "calibrate", self.infer_overrides)
        if "threshold_file" in self.infer_overrides:
            self.step("healthy_threshold", "healthy_threshold", self.infer_overrides)
        evaluate = {
            **self.infer_overrides,
            "output_dir": str(self.work / "eval"),
            "metrics_name": "metrics",
            "metrics_handler#curve_points": CURVE_POINTS,
            "metrics_handler#snapshot_slices": SNAPSHOT_SLICES,
        }
        self.step("evaluate", "evaluate", evaluate, after=lambda wf: {"parameters": _count_parameters(wf)})

    def metrics(self) -> dict[str, Any]:
        return json.loads((self.work / "eval" / "metrics.json").read_text())

    def snapshots(self) -> dict[str, dict]:
        return read_snapshots(str(self.work / "eval" / "metrics_snapshots.npz"))

    def extra(self) -> dict[str, Any]:
        steps = self.state["steps"]
        train = steps.get("training")
        return {
            "training_minutes": None if train is None else train["seconds"] / 60,
            "parameters": steps["evaluate"].get("parameters"),
        }


def _parse_bundles(bundles: Sequence[str] | str) -> list[str]:
    names = [b.strip() for b in (bundles.split(",") if isinstance(bundles, str) else bundles) if b.strip()]
    if not names:
        raise InputError(None, "no bundle to benchmark")
    for b in names:
        find_bundle(b)  # one line naming the unknown bundle
    return list(dict.fromkeys(names))


def run_benchmark(
    data: str | os.PathLike,
    out: str | os.PathLike,
    bundles: Sequence[str] | str = DEFAULT_BUNDLES,
    recipe: str = "cpu",
    checkpoints: Mapping[str, str] | None = None,
    quick: bool = False,
    split_seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.25,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Benchmark ``bundles`` on the BraTS-style folder ``data``; write the table and pictures into ``out``.

    Args:
        data: BraTS-style folder (``<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz``).
        out: output folder: ``results.{md,csv,json}``, ``pr_curves.png``, ``dice_per_patient.png``,
            ``overlays.png``, ``benchmark.log`` and one work folder per bundle (checkpoints, logs, reports).
        bundles: bundle names, in table order (a comma-separated string is accepted).
        recipe: ``cpu`` (each bundle's CPU recipe) or ``paper`` (the paper-size defaults).
        checkpoints: ``{bundle: model.pt}`` to evaluate instead of training (its record rebuilds the network).
        quick: tiny networks and 2 epochs, for a check of the whole pipeline (e.g. on the demo phantoms).
        split_seed, val_fraction, test_fraction: the patient split every bundle gets (the validation patients'
            tumour-free slices set the label-free thresholds and calibrations).
        overrides: further ``{bundle: {config_id: value}}`` overrides, applied to every step of that bundle.
        say: where progress lines go.

    Returns:
        ``{"rows": [...], "paths": {...}}``.
    """
    names = _parse_bundles(bundles)
    checkpoints = dict(checkpoints or {})
    unknown = sorted(set(checkpoints) - set(names))
    if unknown:
        raise InputError(None, f"--checkpoints names bundles that are not benchmarked: {unknown}")
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = str(Path(data).resolve())
    if not os.path.isdir(data_dir):
        raise InputError(data_dir, "data folder not found")
    data_overrides = {
        "dataset_dir": data_dir,
        "datalist": None,
        "split_seed": int(split_seed),
        "val_fraction": float(val_fraction),
        "test_fraction": float(test_fraction),
    }
    log_handler = logging.FileHandler(out_dir / "benchmark.log")
    log_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(log_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the bundles' logging config prints the root logger; ``say`` prints here

    def say_and_log(msg: str) -> None:
        logger.info(msg)
        say(f"[benchmark] {msg}")

    try:
        runs = []
        for b in names:
            recipe_ov = {**bundle_overrides(b, recipe, quick), **dict((overrides or {}).get(b, {}))}
            runs.append(_BundleRun(b, out_dir / b, recipe_ov, data_overrides, checkpoints.get(b), say_and_log))
        for i, r in enumerate(runs, start=1):
            say_and_log(f"({i}/{len(runs)}) {r.bundle}, recipe {'quick' if quick else recipe}")
            r.run()
        return _report(
            runs, out_dir, recipe="quick" if quick else recipe, data_overrides=data_overrides, say=say_and_log
        )
    finally:
        logger.removeHandler(log_handler)
        log_handler.close()


def _report(
    runs: Sequence[_BundleRun],
    out_dir: Path,
    recipe: str,
    data_overrides: Mapping[str, Any],
    say: Callable[[str], None],
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    snapshots: dict[str, dict] = {}
    baselines: list[tuple[str, dict]] = []
    raw_snapshots: dict[str, dict] = {}
    test_cases: dict[str, list[str]] = {}
    for r in runs:
        metrics = r.metrics()
        timing = metrics[r.bundle].get("timing") or {}
        rows += method_rows(r.bundle, metrics[r.bundle], r.bundle, {**r.extra(), **_seconds(timing)})
        raw_snapshots[r.bundle] = r.snapshots()
        snapshots[r.bundle] = method_snapshots(raw_snapshots[r.bundle], r.bundle)
        test_cases[r.bundle] = sorted((metrics[r.bundle].get("per_case") or {}).keys())
        if FLAIR in metrics:
            baselines.append((r.bundle, metrics[FLAIR]))
    if len({tuple(v) for v in test_cases.values()}) > 1:
        raise InputError(None, f"the bundles evaluated different test patients: {test_cases}")
    notes = []
    if baselines:
        # every bundle scores the baseline on its own slices and brain mask: bundles that agree share one row
        groups: list[list[tuple[str, dict]]] = []
        for b in baselines:
            group = next((g for g in groups if same_baseline(g[0][1], b[1])), None)
            if group is None:
                groups.append([b])
            else:
                group.append(b)
        for k, group in enumerate(groups):
            with_mask = [b for b in group if (b[1].get("unhealthy") or {}).get("dice_pooled") is not None]
            ref = (with_mask or group)[0]
            names = [b[0] for b in group]
            label = "FLAIR" if k == 0 else f"FLAIR ({', '.join(names)} pixels)"
            rows += method_rows(label, ref[1], ref[0])
            if k == 0:
                snapshots["FLAIR"] = method_snapshots(raw_snapshots[ref[0]], FLAIR)
            if len(groups) > 1:
                notes.append(f"`{label}`: the baseline on the slices and brain pixels of {', '.join(names)}.")
    figs = figure_paths(str(out_dir))
    paths: dict[str, Any] = {
        "pr_curves": plot_pr_curves(rows, figs["pr_curves"]),
        "dice_per_patient": plot_dice_boxes(rows, figs["dice_per_patient"]),
        "overlays": plot_overlay_grid(snapshots, figs["overlays"]),
    }
    first = next(iter(test_cases.values()), [])
    notes.append(
        f"Recipe `{recipe}`; {len(first)} test patients ({', '.join(first)}); split seed "
        f"{data_overrides['split_seed']}, validation fraction {data_overrides['val_fraction']}, test fraction "
        f"{data_overrides['test_fraction']}. Dice, IoU, precision and recall: label-free masks pooled over the "
        "setup's brain pixels; per patient: mean ± sd over the test patients; best Dice*: the label-chosen "
        "threshold's Dice, a ceiling only; 3D Dice: per volume, mean ± sd; image AUROC: slice scores against "
        "slice labels over all brain slices; s / volume: inference and post-processing, preprocessing excluded."
    )
    info = {
        "recipe": recipe,
        "data": data_overrides,
        "test_patients": first,
        "bundles": {r.bundle: r.state["config"] for r in runs},
    }
    paths.update(write_results(str(out_dir), rows, info, "\n\n".join(notes)))
    say(f"results: {paths['md']}")
    return {"rows": rows, "paths": paths}


def _seconds(timing: Mapping[str, Any]) -> dict[str, Any]:
    return {"seconds_per_volume": timing.get("seconds_per_volume")}
