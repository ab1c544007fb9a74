# SPDX-License-Identifier: Apache-2.0
"""A model folder: one trained model with everything its inference needs, made by ``monai-adiff train``.

The folder holds::

    model.pt                 weights and their record (network, data settings, the recipe's inference settings)
    healthy_threshold.json   the label-free mask threshold (the method's and the FLAIR baseline's), fitted on the
                             validation patients' tumour-free slices
    calibration.json         the bundle's label-free calibration, where it has one (AnoFPDM, D3AD)
    summary.json             what made it: bundle, version, recipe, data, split, each stage's minutes (a resumed
                             training: all its runs, to the last finished epoch of each) and figures, the command;
                             also the state an interrupted run resumes from
    train.log                the log of every stage
    training/                periodic checkpoints (a rerun resumes from the newest) and TensorBoard logs

Every stage is the bundle's own workflow run through :func:`~monai_adiff.bundle.run_bundle` (training, then
``calibrate`` where the bundle has it, then ``healthy_threshold``), so anything done here can be repeated with
``python -m monai.bundle run``. The fitting steps get no recipe overrides: they read the recipe from ``model.pt``,
exactly as inference will.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_adiff.bundle.precheck import check_training_data, training_cases
from monai_adiff.bundle.recipes import recipe_overrides
from monai_adiff.bundle.runner import bundle_workflows, find_bundle, resolved_value, run_bundle
from monai_adiff.errors import InputError
from monai_adiff.utils import atomic_write_text

__all__ = [
    "MODEL",
    "SUMMARY",
    "LOG",
    "WORK",
    "train_model",
    "read_summary",
    "is_model_folder",
    "fitting_steps",
    "evaluator_progress",
]

logger = logging.getLogger("monai_adiff.train")

MODEL, SUMMARY, LOG, WORK = "model.pt", "summary.json", "train.log", "training"


def is_model_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder made by :func:`train_model` (it has a ``summary.json``)."""
    return (Path(path) / SUMMARY).is_file()


def read_summary(path: str | os.PathLike) -> dict[str, Any]:
    """The ``summary.json`` of a model folder.

    Raises:
        InputError: not a model folder, or an unreadable summary.
    """
    file = Path(path) / SUMMARY
    if not file.is_file():
        raise InputError(os.fspath(path), f"is not a model folder (no {SUMMARY}; make one with monai-adiff train)")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(str(file), f"cannot be read ({e})") from e


def fitting_steps(bundle: str | os.PathLike) -> list[str]:
    """The label-free fitting workflows of a bundle after training, in order."""
    workflows = bundle_workflows(bundle)
    return [w for w in ("calibrate", "healthy_threshold") if w in workflows]


def evaluator_progress(wf: Any, desc: str = "volumes") -> None:
    """A progress bar on the evaluator of workflows that run it (training configs have their own bar)."""
    from monai_adiff.engines import ProgressBarHandler

    run = wf.parser.config.get("run", [])
    # only where the run uses the evaluator: building it builds its post-processing (e.g. reads a threshold file)
    if any("@evaluator" in str(step) for step in (run if isinstance(run, list) else [run])):
        ProgressBarHandler(desc=desc).attach(wf.parser.get_parsed_content("evaluator"))


def _prepare_out(out: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """The summary to resume from (empty for a new folder), after checking ``out`` can take this run.

    Raises:
        InputError: ``out`` is a file, cannot be written, holds other files, or holds a model of another run.
    """
    if out.exists() and not out.is_dir():
        raise InputError(str(out), "exists and is not a folder")
    summary: dict[str, Any] = {}
    if out.is_dir() and any(out.iterdir()):
        if not is_model_folder(out):
            raise InputError(
                str(out), "holds files that are not a monai-adiff model folder; choose a new or empty --out"
            )
        summary = read_summary(out)
        before = summary.get("config") or {}
        diff = sorted(k for k in set(before) | set(config) if before.get(k) != config.get(k))
        if diff:
            shown = "; ".join(f"{k}: {json.dumps(before.get(k))} there, {json.dumps(config.get(k))} now" for k in diff)
            raise InputError(
                str(out), f"holds a model trained with another configuration ({shown}); choose a new --out"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-check-{os.getpid()}"
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as e:
        raise InputError(str(out), f"cannot be written ({e.strerror or e})") from e
    return summary


#: MONAI's loggers that print to the console themselves (not through the root logger): the workflow's set-up lines
#: and the per-iteration losses, which go to ``train.log`` only (the console shows a progress bar instead)
MONAI_LOGGERS = ("monai.bundle.workflows", "monai.handlers.StatsHandler")


class _Log:
    """``train.log`` for the duration of a run: every stage's log lines; the console keeps its own level."""

    def __init__(self, path: Path) -> None:
        self.handler = logging.FileHandler(path)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        self.handler.setLevel(logging.INFO)
        self.levels: dict[logging.Handler, int] = {}

    def __enter__(self) -> _Log:
        root = logging.getLogger()
        self.level = root.level
        quiet = max(self.level, logging.WARNING) if self.level else logging.WARNING
        consoles = [h for h in root.handlers if isinstance(h, logging.StreamHandler)]
        for name in MONAI_LOGGERS:  # MONAI adds no console handler to a logger that exists already
            monai_logger = logging.getLogger(name)
            monai_logger.addHandler(self.handler)
            consoles += [h for h in monai_logger.handlers if type(h) is logging.StreamHandler]
        for h in consoles:  # what reached the console before still does, nothing more
            self.levels[h] = h.level
            h.setLevel(max(h.level, quiet) if self.level > logging.INFO or not self.level else h.level)
        root.addHandler(self.handler)
        root.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: Any) -> None:
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self.level)
        for name in MONAI_LOGGERS:
            logging.getLogger(name).removeHandler(self.handler)
        for h, level in self.levels.items():
            h.setLevel(level)
        self.handler.close()


def _validation_figures(wf: Any) -> dict[str, Any]:
    """The last validation metrics of a training workflow (``{}`` when it has no validation)."""
    try:
        evaluator = wf.parser.get_parsed_content("validate#evaluator")
    except Exception:  # a bundle without a validator
        return {}
    metrics = {k: float(v) for k, v in (evaluator.state.metrics or {}).items() if isinstance(v, (int, float))}
    best = getattr(evaluator.state, "best_metric", None)
    if metrics and isinstance(best, (int, float)) and best not in (-1, float("inf"), float("-inf")):
        metrics["best"] = float(best)
        metrics["best_epoch"] = int(getattr(evaluator.state, "best_metric_epoch", -1))
    return metrics


def _scalars(path: Path, keep: Sequence[str] | None = None) -> dict[str, Any]:
    """The top-level numbers and strings of a fitted JSON file (``keep``: only those keys)."""
    if not path.is_file():
        return {}
    content = json.loads(path.read_text(encoding="utf-8"))
    return {
        k: v
        for k, v in content.items()
        if isinstance(v, (int, float, str)) and not isinstance(v, bool) and (keep is None or k in keep)
    }


def _parameters(path: Path) -> int | None:
    from monai_adiff.engines import read_checkpoint

    ckpt = read_checkpoint(path)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping):
        return None
    return int(sum(v.numel() for k, v in state.items() if hasattr(v, "numel") and "num_batches" not in k))


def train_model(
    bundle: str,
    data: str | os.PathLike,
    out: str | os.PathLike,
    recipe: str = "cpu",
    split_seed: int | None = None,
    val_fraction: float | None = None,
    test_fraction: float | None = None,
    overrides: Mapping[str, Any] | None = None,
    quick: bool = False,
    command: str | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train ``bundle`` on ``data`` into the model folder ``out`` and fit its label-free steps; resumable.

    Args:
        bundle: bundle name or folder.
        data: a BraTS-style folder (split by patient with the recipe's fractions and ``split_seed``) or a datalist
            JSON (its own training/validation/test sections).
        out: the model folder (new, empty, or one this configuration started: it resumes).
        recipe: ``cpu`` (the bundle's ``cpu_args.json``), ``paper`` (the paper-size defaults) or ``protocol``
            (its ``paper_protocol.json``: the paper's protocol where the defaults differ).
        split_seed, val_fraction, test_fraction: the patient split (default: the recipe's).
        overrides: further config overrides (``--set``), applied to every stage.
        quick: tiny network and 2 epochs: checks the pipeline, its numbers mean nothing.
        command: the command line recorded in the summary.
        say: where progress lines go.

    Returns:
        the summary (also ``out/summary.json``).

    Raises:
        InputError: bad data or ``out`` (before any training).
    """
    src = find_bundle(bundle)
    name = src.name
    out_dir = Path(out).resolve()
    data_path = os.path.abspath(os.fspath(data))
    user = dict(overrides or {})
    data_ov: dict[str, Any] = (
        {"datalist": data_path, "dataset_dir": None} if os.path.isfile(data_path) else {"dataset_dir": data_path}
    )
    for key, value in (("split_seed", split_seed), ("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if value is not None:
            data_ov[key] = value
    train_ov = {**recipe_overrides(name, recipe, quick), **user, **data_ov}
    split = {k: resolved_value(src, "training", k, train_ov) for k in ("val_fraction", "test_fraction", "split_seed")}
    config = {"bundle": name, "data": data_path, "recipe": "quick" if quick else recipe, **split, "set": user}
    summary = _prepare_out(out_dir, config)  # before the (slow) data checks: a wrong --out fails at once
    stages: dict[str, Any] = summary.setdefault("stages", {})
    if "training" not in stages:
        modalities = resolved_value(src, "training", "modalities", train_ov)
        selection = resolved_value(src, "training", "train_selection", train_ov)
        say(f"checking the data in {data_path} ...")
        sections = training_cases(data_path, modalities, {**split, "seed": split["split_seed"]})
        counts = check_training_data(
            sections,
            modalities,
            selection,
            "calibrate" in bundle_workflows(src),
            bool(resolved_value(src, "training", "unlabelled_as_healthy", train_ov)),
        )
        summary["cases"] = {k: [str(it.get("case")) for it in v] for k, v in sections.items()}
        summary["slices"] = counts
        t, v = counts["training"], counts["validation"]
        say(
            f"{t['cases']} training case(s) ({t['healthy']} tumour-free brain slices), {v['cases']} validation "
            f"case(s), {len(sections.get('test') or [])} test case(s)"
        )
        if t["unlabelled"]:
            say(f"note: {t['unlabelled']} training brain slices without labels are taken as tumour-free, as asked")
    from monai_adiff.engines.checkpoint import bundle_identity

    summary.update(
        {
            "bundle": name,
            "version": bundle_identity(src)[2],
            "config": config,
            "command": command
            or f"monai-adiff train {name} {shlex.quote(data_path)} --out {shlex.quote(str(out_dir))}",
        }
    )
    model = out_dir / MODEL
    work = out_dir / WORK
    train_run = {**train_ov, "ckpt_dir": str(work), "output_dir": str(work), "train#model_saver#save_dir": str(out_dir)}
    fit_run = {**user, **data_ov, "ckpt_path": str(model), "output_dir": str(work)}
    steps = [("training", "training", train_run)] + [(s, s, fit_run) for s in fitting_steps(src)]

    def save() -> None:
        atomic_write_text(out_dir / SUMMARY, json.dumps(summary, indent=1) + "\n")

    save()
    with _Log(out_dir / LOG):
        for i, (stage, run_id, ov) in enumerate(steps, start=1):
            if stage in stages:
                say(f"({i}/{len(steps)}) {stage}: done before ({stages[stage]['minutes']:.1f} min), skipped")
                continue
            say(f"({i}/{len(steps)}) {stage} ...")
            logger.info("%s: %s = run_bundle(%r, %r, %s)", name, stage, name, run_id, json.dumps(ov, default=str))
            # minutes of interrupted earlier runs of this stage (a resumed training counts them all)
            partial = summary.setdefault("partial_minutes", {})
            before = float(partial.get(stage, 0.0))
            t0 = time.perf_counter()

            def minutes(before: float = before, t0: float = t0) -> float:
                # 4 digits (6 ms): a seconds-long training still records a time above 0
                return round(before + (time.perf_counter() - t0) / 60, 4)

            def track(wf: Any, stage: str = stage, minutes: Any = minutes, partial: dict = partial) -> None:
                from ignite.engine import Events

                def tick(_: Any) -> None:
                    partial[stage] = minutes()
                    save()

                if wf.parser.get("train#trainer") is not None:  # D3AD's earlier stages run their own loops
                    wf.parser.get_parsed_content("train#trainer").add_event_handler(Events.EPOCH_COMPLETED, tick)

            wf = run_bundle(
                src, run_id, ov, logging_file=False, before_run=track if stage == "training" else evaluator_progress
            )
            record: dict[str, Any] = {"minutes": minutes()}
            partial.pop(stage, None)
            if stage == "training":
                record["validation"] = _validation_figures(wf)
                record["parameters"] = _parameters(model)
            elif stage == "calibrate":
                record["figures"] = _scalars(out_dir / "calibration.json")
            else:
                record["figures"] = _scalars(out_dir / "healthy_threshold.json", ("threshold", "q", "n_slices"))
            stages[stage] = record
            save()
            say(f"({i}/{len(steps)}) {stage}: done in {record['minutes']:.1f} min")
    from monai_adiff.fitted import checkpoint_fingerprint

    summary.pop("partial_minutes", None)
    summary["model"] = {"file": MODEL, "sha256": checkpoint_fingerprint(model)}
    summary["infer"] = f"monai-adiff infer {shlex.quote(str(out_dir))} VOLUME_OR_CASE_FOLDER ... --out PREDICTIONS"
    save()
    return summary
