"""``monai-adiff benchmark``: every method on the same held-out patients, in one table, with pictures.

For each bundle: train a model folder with a recipe (:func:`~monai_adiff.bundle.train_model`: training, then the
label-free calibration and healthy-quantile threshold, exactly what ``monai-adiff train`` does), or take a given model
folder or checkpoint, then run the bundle's ``evaluate`` workflow on the test patients, which scores the
FLAIR-intensity baseline beside it on the same slices. Evaluation gets no recipe overrides: it reads the recipe from
the checkpoint, as ``monai-adiff infer`` does, so the table measures what a user of the model gets. Every step is the
bundle's own workflow run through :func:`~monai_adiff.bundle.run_bundle`, with the overrides written to the log, so
any row can be reproduced with ``python -m monai.bundle run``. All bundles get the same patient split
(``dataset_dir``, fractions and seed set explicitly), and the table checks that their FLAIR baselines agree.

Resumable: a model folder resumes its unfinished stages; the evaluation is recorded in ``<out>/<bundle>/state.json``
and skipped by a rerun with the same configuration (also after the output folder was moved or copied: paths inside
it are recorded relative to it). A rerun with another configuration into the same folder is refused rather than
mixed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_adiff.benchmark.ensemble_run import EnsembleRun
from monai_adiff.benchmark.figures import (
    figure_paths,
    method_snapshots,
    plot_dice_boxes,
    plot_overlay_grid,
    plot_pr_curves,
    read_snapshots,
)
from monai_adiff.benchmark.results import FLAIR, method_rows, same_baseline, write_results
from monai_adiff.benchmark.store import make_record, write_record
from monai_adiff.bundle import find_bundle, run_bundle
from monai_adiff.bundle.model_folder import (
    MODEL,
    evaluator_progress,
    fitting_steps,
    is_model_folder,
    read_summary,
    train_model,
)
from monai_adiff.bundle.recipes import RECIPE_FILES
from monai_adiff.ensemble import ensemble_name, parse_ensemble
from monai_adiff.errors import InputError
from monai_adiff.utils import atomic_write_text

__all__ = ["run_benchmark", "DEFAULT_BUNDLES"]

logger = logging.getLogger("monai_adiff.benchmark")

#: every method, in the order of the table
DEFAULT_BUNDLES = ("sss", "anoddpm", "dtunet", "d3ad", "anofpdm", "dae")
#: points of each precision-recall curve kept for the plot
CURVE_POINTS = 200
#: slices per patient kept for the overlay grid (the largest-tumour ones)
SNAPSHOT_SLICES = 1


def _read_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(
            str(path), f"benchmark state cannot be read ({e}); remove it to start this bundle again"
        ) from e


def _count_parameters(wf: Any) -> int | None:
    try:
        network = wf.parser.get_parsed_content("network")
    except Exception:  # a workflow without a network id: the column stays empty
        return None
    return int(sum(p.numel() for p in network.parameters()))


class _BundleRun:
    """One bundle's model folder and its evaluation (recorded in ``state.json``)."""

    def __init__(
        self,
        bundle: str,
        work: Path,
        recipe: str,
        quick: bool,
        user: Mapping[str, Any],
        data: str,
        split: Mapping[str, Any],
        checkpoint: str | None,
        say: Callable[[str], None],
    ) -> None:
        self.bundle, self.work, self.say = bundle, work, say
        self.recipe, self.quick, self.user, self.data, self.split = recipe, quick, dict(user), data, dict(split)
        self.checkpoint = checkpoint
        # a given model folder is evaluated as it is; a given checkpoint is copied into the work folder, so its
        # label-free fitting never writes beside the user's file
        self.model_dir = Path(checkpoint) if checkpoint and is_model_folder(checkpoint) else work / "model"
        self.state_path = work / "state.json"
        self.state = _read_state(self.state_path)
        config = {"recipe": recipe, "quick": quick, "set": self.user, "checkpoint": checkpoint, **self.split}
        if self.state.get("config") not in (None, config):
            raise InputError(
                str(work), f"holds a {bundle} benchmark run with another configuration; choose a new --out folder"
            )
        self.state["config"] = config
        self.state.setdefault("steps", {})

    def _save(self) -> None:
        atomic_write_text(self.state_path, json.dumps(self.state, indent=1) + "\n")

    def _data_overrides(self) -> dict[str, Any]:
        if os.path.isfile(self.data):  # a fold's datalist: its own sections
            return {"datalist": self.data, "dataset_dir": None}
        return {"dataset_dir": self.data, "datalist": None, **self.split}

    def _model(self) -> None:
        """Train (or adopt) the model folder."""
        if self.checkpoint is None:
            train_model(
                self.bundle,
                self.data,
                self.model_dir,
                recipe=self.recipe,
                quick=self.quick,
                overrides=self.user,
                command=None,
                say=lambda m: self.say(f"{self.bundle}: {m}"),
                **self.split,
            )
            return
        if is_model_folder(self.checkpoint):
            return
        if not Path(self.checkpoint).is_file():
            raise InputError(self.checkpoint, "checkpoint not found")
        self.model_dir.mkdir(parents=True, exist_ok=True)
        if not (self.model_dir / MODEL).is_file():
            shutil.copyfile(self.checkpoint, self.model_dir / MODEL)
        fit = {**self.user, **self._data_overrides(), "ckpt_path": str(self.model_dir / MODEL)}
        for step in fitting_steps(self.bundle):
            self.step(step, step, fit)

    def step(self, name: str, run_id: str, overrides: Mapping[str, Any], after: Callable | None = None) -> None:
        if name in self.state["steps"]:
            self.say(
                f"{self.bundle}: {name} done before ({self.state['steps'][name]['seconds'] / 60:.1f} min), skipped"
            )
            return
        logger.info("%s: %s = run_bundle(%r, %r, %s)", self.bundle, name, self.bundle, run_id, json.dumps(overrides))
        self.say(f"{self.bundle}: {name} ...")
        t0 = time.perf_counter()
        wf = run_bundle(self.bundle, run_id, overrides, before_run=evaluator_progress)
        record: dict[str, Any] = {"seconds": time.perf_counter() - t0}
        if after is not None:
            record.update(after(wf))
        self.state["steps"][name] = record
        self._save()
        self.say(f"{self.bundle}: {name} done in {record['seconds'] / 60:.1f} min")

    def run(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self._save()  # the configuration first: an interrupted run is resumed only with the same one
        self._model()
        evaluate = {
            **self.user,
            **self._data_overrides(),
            "ckpt_path": str(self.model_dir / MODEL),
            "output_dir": str(self.work / "eval"),
            "metrics_name": "metrics",
            "metrics_handler#curve_points": CURVE_POINTS,
            "metrics_handler#snapshot_slices": SNAPSHOT_SLICES,
            "metrics_handler#save_maps": True,  # what an ensemble of bundles is scored from
        }
        self.step("evaluate", "evaluate", evaluate, after=lambda wf: {"parameters": _count_parameters(wf)})

    def metrics(self) -> dict[str, Any]:
        return json.loads((self.work / "eval" / "metrics.json").read_text(encoding="utf-8"))

    def snapshots(self) -> dict[str, dict]:
        return read_snapshots(str(self.work / "eval" / "metrics_snapshots.npz"))

    def summary(self) -> dict[str, Any]:
        return read_summary(self.model_dir) if is_model_folder(self.model_dir) else {}

    def _source_summary(self) -> dict[str, Any]:
        """The summary of the model folder a given checkpoint was taken from (a cross-validation's fold model)."""
        if self.checkpoint is None or is_model_folder(self.checkpoint):
            return self.summary()
        source = Path(self.checkpoint).parent
        return read_summary(source) if is_model_folder(source) else {}

    def extra(self) -> dict[str, Any]:
        train = (self._source_summary().get("stages") or {}).get("training") or {}
        return {
            "training_minutes": train.get("minutes"),
            "parameters": self.state["steps"]["evaluate"].get("parameters"),
        }

    def _runs_current_recipe(self, trained: Mapping[str, Any]) -> bool:
        """Whether this run of a checkpoint trained by an earlier version of this bundle is the current CPU recipe:
        the recorded network, data and noise are the recipe's, and its inference settings, with this run's
        overrides, are the current recipe's (an id the older record lacks runs at the inference config's default)."""
        from monai_adiff.bundle.runner import resolved_values
        from monai_adiff.engines.recipe import SPLIT_IDS
        from monai_adiff.fitted import settings_dict

        if self.recipe != "cpu" or (trained.get("recipe") or {}).get("recipe_name") != "cpu":
            return False
        args = json.loads((find_bundle(self.bundle) / "configs" / RECIPE_FILES["cpu"]).read_text(encoding="utf-8"))
        current = resolved_values(self.bundle, "training", ["checkpoint_config", "recipe_config"], args)
        config, recipe = settings_dict(current["checkpoint_config"]), settings_dict(current["recipe_config"])
        ran = {**settings_dict(trained.get("recipe")), **settings_dict(self.user)}
        # ids the older record lacks run at the inference config's default
        ran.update(resolved_values(self.bundle, "inference", [k for k in recipe if k not in ran], {"ckpt_path": None}))
        recorded = settings_dict(trained.get("config"))
        return all(recorded.get(k) == v for k, v in config.items()) and all(
            settings_dict({k: ran[k]})[k] == v for k, v in recipe.items() if k not in SPLIT_IDS
        )

    def record(self, rows: Sequence[Mapping[str, Any]], info: Mapping[str, Any]) -> dict[str, Any]:
        """The result record of this bundle (:mod:`monai_adiff.benchmark.store`)."""
        from monai_adiff import __version__
        from monai_adiff.engines.checkpoint import bundle_identity, checkpoint_info, read_checkpoint

        summary = self.summary()
        baseline = method_rows(FLAIR, self.metrics()[FLAIR], self.bundle)
        seed = info["data"]["split_seed"]
        recipe = "--quick" if info["recipe"] == "quick" else f"--recipe {info['recipe']}"
        folds = f" --folds {info['folds']}" if info.get("folds") else ""
        given = f" --checkpoints {self.bundle}=MODELS" if self.checkpoint else ""
        sets = "".join(f" --set '{self.bundle}:{k}={json.dumps(v)}'" for k, v in self.user.items())
        command = (
            f"monai-adiff benchmark DATA --bundles {self.bundle} {recipe}{folds} --split-seed {seed}{given}{sets}"
            " --out OUT"
        )
        # a given checkpoint keeps the version it was trained with, whatever the bundle's version is now; one another
        # bundle trained (SSS's for AnoDDPM: one CPU training serves both) is this bundle's current version
        _, name, current = bundle_identity(find_bundle(self.bundle))
        trained = checkpoint_info(read_checkpoint(self.model_dir / MODEL)) if self.checkpoint else None
        version = summary.get("version") or (trained or {}).get("version")
        earlier: dict[str, Any] = {}
        if trained and trained.get("name") and trained["name"] != name:
            earlier, version = {"trained_by": trained.get("bundle")}, None
        elif trained and version and version != current and self._runs_current_recipe(trained):
            # an inference-only recipe change measured on models an earlier version trained the same way
            earlier, version = {"trained_version": version}, None
        return make_record(
            self.bundle,
            rows,
            baseline,
            {
                "dataset": info["dataset"],
                **({"split": info["split"]} if info.get("split") else {}),
                **({"overrides": dict(self.user)} if self.user else {}),
                **earlier,
                "version": version or current,
                "package_version": __version__,
                "recipe": info["recipe"],
                "split_seed": seed,
                "val_fraction": info["data"]["val_fraction"],
                "test_fraction": info["data"]["test_fraction"],
                "test_patients": info["test_patients"],
                "validation_patients": (self._source_summary().get("cases") or {}).get("validation"),
                "command": command,
            },
        )


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
    dataset: str | None = None,
    store: str | os.PathLike | None = None,
    folds: int | None = None,
    only_folds: Sequence[int] | None = None,
    ensembles: Sequence[str] | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Benchmark ``bundles`` on the BraTS-style folder ``data``; write the table and pictures into ``out``.

    Args:
        data: BraTS-style folder (``<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz``).
        out: output folder: ``results.{md,csv,json}``, ``pr_curves.png``, ``dice_per_patient.png``,
            ``overlays.png``, ``benchmark.log`` and one work folder per bundle (checkpoints, logs, reports).
        bundles: bundle names, in table order (a comma-separated string is accepted).
        recipe: ``cpu`` (each bundle's CPU recipe), ``paper`` (the paper-size defaults) or ``protocol`` (each
            bundle's ``paper_protocol.json``).
        checkpoints: ``{bundle: model.pt}`` to evaluate instead of training (its record rebuilds the network); with
            ``folds``, ``{bundle: folder}`` of an earlier cross-validation with the same folds, whose fold models are
            evaluated (:func:`~monai_adiff.benchmark.crossval.fold_models`).
        quick: tiny networks and 2 epochs, for a check of the whole pipeline (e.g. on the demo phantoms).
        split_seed, val_fraction, test_fraction: the patient split every bundle gets (the validation patients'
            tumour-free slices set the label-free thresholds and calibrations).
        overrides: further ``{bundle: {config_id: value}}`` overrides, applied to every step of that bundle.
        dataset: the data set's name in the result records (default: the data folder's name).
        store: a results store to write the records into too (they are always written to ``out/records``).
        folds: patient-level cross-validation with this many folds (:mod:`monai_adiff.benchmark.crossval`): one
            model per bundle and fold (``out/fold<k>/<bundle>``), a table per fold (``out/fold<k>/``, records named
            ``cv<K>-s<seed>-f<k>``) and ``out/cv_results.{md,json}`` and ``patient_scatter.png`` over every patient;
            ``test_fraction`` is then ``1 / folds``.
        only_folds: with ``folds``, run these folds only (1-based): folds can run apart, on other machines or days,
            and their records meet in the store; the cross-validation report covers the folds whose records are in
            ``out/records``.
        ensembles: map ensembles of benchmarked bundles, each ``a+b`` (:mod:`monai_adiff.ensemble`): scored on the
            members' saved maps after they ran, recorded as a method of its own (``a+b@<version>+<version>``).
        say: where progress lines go.

    Returns:
        ``{"rows": [...], "paths": {...}}`` (with folds: ``{"folds": [...], "paths": {...}}``).
    """
    names = _parse_bundles(bundles)
    try:
        members = {ensemble_name(m): m for m in (parse_ensemble(e, names) for e in ensembles or ())}
    except ValueError as err:
        raise InputError(None, str(err)) from None
    checkpoints = dict(checkpoints or {})
    unknown = sorted(set(checkpoints) - set(names))
    if unknown:
        raise InputError(None, f"--checkpoints names bundles that are not benchmarked: {unknown}")
    if store and any(overrides.values() if overrides else ()):
        # the store holds what each bundle's own recipe gives; a variant's records stay in OUT/records
        raise InputError(str(store), "--store takes no --set variants: their records stay in OUT/records")
    if only_folds:
        if not folds:
            raise InputError(None, "--fold needs --folds")
        bad = sorted({int(k) for k in only_folds} - set(range(1, folds + 1)))
        if bad:
            raise InputError(None, f"--fold {bad[0]}: folds are numbered 1 to {folds}")
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
        name = dataset or os.path.basename(data_dir.rstrip(os.sep))
        stores = [out_dir / "records", *([Path(store)] if store else [])]
        split = {k: v for k, v in data_overrides.items() if k not in ("dataset_dir", "datalist")}
        kind = "quick" if quick else recipe

        def run_all(
            work: Path, data_path: str, label: str | None, given: Mapping[str, str], tag: str = ""
        ) -> dict[str, Any]:
            runs: list[Any] = []
            for b in names:
                user = dict((overrides or {}).get(b, {}))
                runs.append(_BundleRun(b, work / b, recipe, quick, user, data_path, split, given.get(b), say_and_log))
            for i, r in enumerate(runs, start=1):
                say_and_log(f"{tag}({i}/{len(runs)}) {r.bundle}, recipe {kind}")
                r.run()
            by_name = {r.bundle: r for r in runs}
            for ens, parts in members.items():
                e = EnsembleRun([by_name[p] for p in parts], work / ens, CURVE_POINTS)
                say_and_log(f"{tag}ensemble {ens}")
                e.run()
                runs.append(e)
            return _report(
                runs,
                work,
                recipe=kind,
                data_overrides=data_overrides,
                say=say_and_log,
                dataset=name,
                stores=stores,
                split_label=label,
                folds=folds,
            )

        if not folds:
            return run_all(out_dir, data_dir, None, checkpoints)
        from monai_adiff.benchmark.crossval import fold_models, fold_name, write_fold_datalists
        from monai_adiff.benchmark.crossval_report import write_cv_report
        from monai_adiff.benchmark.store import read_records

        lists = write_fold_datalists(data_dir, out_dir, folds, val_fraction, split_seed)
        # with folds, a given "checkpoint" is an earlier cross-validation's folder: its fold models are evaluated
        # (and their label-free steps fitted again) with this run's overrides, without training
        per_fold = {b: fold_models(path, b, lists) for b, path in checkpoints.items()}
        results = []
        for k, path in enumerate(lists):
            if only_folds and k + 1 not in {int(f) for f in only_folds}:
                continue
            label = fold_name(folds, split_seed, k)
            given = {b: models[k] for b, models in per_fold.items()}
            results.append(run_all(out_dir / f"fold{k}", str(path), label, given, tag=f"fold {k + 1}/{folds} "))
        fold_records = [
            {r["bundle"]: r for r in read_records(out_dir / "records") if r["split"] == fold_name(folds, split_seed, k)}
            for k in range(folds)
        ]
        paths = write_cv_report(out_dir, fold_records, [*names, *members])
        say_and_log(f"cross-validation: {paths['cv_md']}")
        return {"folds": results, "paths": paths}
    finally:
        logger.removeHandler(log_handler)
        log_handler.close()


def _report(
    runs: Sequence[Any],  # _BundleRun and EnsembleRun
    out_dir: Path,
    recipe: str,
    data_overrides: Mapping[str, Any],
    say: Callable[[str], None],
    dataset: str,
    stores: Sequence[Path],
    split_label: str | None = None,
    folds: int | None = None,
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    own_rows: dict[str, list[dict[str, Any]]] = {}
    snapshots: dict[str, dict] = {}
    baselines: list[tuple[str, dict]] = []
    raw_snapshots: dict[str, dict] = {}
    test_cases: dict[str, list[str]] = {}
    for r in runs:
        metrics = r.metrics()
        timing = metrics[r.bundle].get("timing") or {}
        own_rows[r.bundle] = method_rows(r.bundle, metrics[r.bundle], r.bundle, {**r.extra(), **_seconds(timing)})
        rows += own_rows[r.bundle]
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
    where = (
        f"fold {split_label}"
        if split_label
        else f"split seed {data_overrides['split_seed']}, validation fraction {data_overrides['val_fraction']}, "
        f"test fraction {data_overrides['test_fraction']}"
    )
    notes.append(
        f"Recipe `{recipe}`; {len(first)} test patients ({', '.join(first)}); {where}. Dice, IoU, precision and "
        "recall: label-free masks pooled over the setup's brain pixels; per patient: mean ± sd over the test "
        "patients; best Dice*: the label-chosen threshold's Dice, a ceiling only; 3D Dice: per volume, mean ± sd; "
        "PRO: area under the per-region-overlap curve up to a false-positive rate of 0.3 (MVTec AD), normalised; "
        "image AUROC: slice scores against slice labels over all brain slices; s / volume: inference and "
        "post-processing, preprocessing excluded."
    )
    info = {
        "recipe": recipe,
        "data": data_overrides,
        "test_patients": first,
        "bundles": {r.bundle: r.state["config"] for r in runs},
    }
    paths.update(write_results(str(out_dir), rows, info, "\n\n".join(notes)))
    records = {"dataset": dataset, "split": split_label, "folds": folds, **info}
    paths["records"] = [
        str(write_record(store, r.record(own_rows[r.bundle], records))) for r in runs for store in stores
    ]
    say(f"results: {paths['md']}")
    return {"rows": rows, "paths": paths}


def _seconds(timing: Mapping[str, Any]) -> dict[str, Any]:
    return {"seconds_per_volume": timing.get("seconds_per_volume")}
