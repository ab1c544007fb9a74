# SPDX-License-Identifier: Apache-2.0
"""The ``monai-adiff`` command line.

Sub-commands:
    demo        the whole workflow on built-in synthetic data (train a tiny SSS model, infer, evaluate)
    train       train a bundle on a BraTS-style folder or datalist into a model folder (training, label-free fitting)
    infer       score NIfTI volumes with a model folder (or a bundle and a checkpoint): anomaly-map and mask files
    make-data   write a synthetic BraTS-style demo dataset
    datalist    scan a BraTS-style folder, write a datalist JSON with its slice table, print per-case counts
    benchmark   train, calibrate and evaluate several bundles on the same held-out patients: one table, pictures
    export-bundle  a self-contained bundle for one checkpoint (what MONAI Label and the model zoo serve)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from monai_adiff.bundle.recipes import RECIPES
from monai_adiff.bundle.runner import list_bundles

__all__ = ["main", "build_parser", "EXIT_PARTIAL"]

#: exit status when some requested cases failed and the others were written (1: nothing done, 2: usage)
EXIT_PARTIAL = 3


def _cmd_make_data(args: argparse.Namespace) -> int:
    from monai_adiff.data.synthetic import make_demo_dataset

    kwargs: dict[str, Any] = {}
    if args.shape:
        kwargs["shape"] = tuple(args.shape)
    cases = make_demo_dataset(args.out, cases=args.cases, seed=args.seed, overwrite=args.overwrite, **kwargs)
    n_lesion = sum(c["has_lesion"] for c in cases)
    print(f"wrote {len(cases)} cases ({n_lesion} with lesions) to {os.path.abspath(args.out)}")
    return 0


def _format_summary(summary: dict[str, dict]) -> str:
    cols = ("slices", "brain_slices", "tumour_slices", "healthy_brain_slices", "unhealthy_brain_slices")
    heads = ("slices", "brain", "tumour", "healthy brain", "unhealthy brain")
    width = max([4] + [len(c) for c in summary])
    lines = [f"{'case':<{width}}  " + "  ".join(f"{h:>15}" for h in heads)]

    def cell(v) -> str:  # "-": unknown (a case without labels), not zero
        return f"{'-' if v is None else v:>15}"

    for case, c in summary.items():
        lines.append(f"{case:<{width}}  " + "  ".join(cell(c[k]) for k in cols))
    total = {k: sum(c[k] for c in summary.values() if c[k] is not None) for k in cols}
    lines.append(f"{'total':<{width}}  " + "  ".join(cell(total[k]) for k in cols))
    return "\n".join(lines)


def _cmd_datalist(args: argparse.Namespace) -> int:
    from monai_adiff.data import (
        build_slice_table,
        scan_brats_folder,
        split_cases,
        summarize_slice_table,
        write_datalist,
    )
    from monai_adiff.data.slices import table_to_csv
    from monai_adiff.utils import atomic_write_text

    if not args.out and not args.summary:
        print("nothing to do: give --out FILE and/or --summary", file=sys.stderr)
        return 2
    if args.out:  # checked before the (slow) scan of every file
        from monai_adiff.errors import InputError

        if os.path.isdir(args.out):
            raise InputError(os.path.abspath(args.out), "is a folder; --out names the datalist JSON file to write")
        _output_folder(os.path.dirname(os.path.abspath(args.out)))
    # the slice table reads and checks every file, so the scan itself only checks that files exist
    items, errors = scan_brats_folder(args.root, args.modalities, validate=False)
    rows, table_errors = build_slice_table(items, args.modalities, args.min_brain_fraction)
    errors += table_errors
    good_cases = {r["case"] for r in rows}
    items = [it for it in items if it["case"] in good_cases]
    for e in errors:
        print(f"error: skipped {e}", file=sys.stderr)
    if not items:
        print(f"error: no usable case in {args.root}", file=sys.stderr)
        return 1
    summary = summarize_slice_table(rows)
    unlabelled = [case for case, c in summary.items() if c["tumour_slices"] is None]
    if unlabelled and args.image_labels_only:
        print(
            f"note: {len(unlabelled)} case(s) without a segmentation ({', '.join(unlabelled)}): every slice of them is "
            "labelled tumour-free",
            file=sys.stderr,
        )
    elif unlabelled:
        print(
            f"note: {len(unlabelled)} case(s) without a segmentation, kept unlabelled ({', '.join(unlabelled)}): "
            "training never takes their slices as tumour-free unless told so (--image-labels-only marks every slice "
            "of them tumour-free; --set unlabelled_as_healthy=true at training)",
            file=sys.stderr,
        )
    if args.summary:
        print(_format_summary(summary))
    if args.out:
        if args.image_labels_only:  # weak supervision: per-slice labels instead of the segmentation
            labels: dict[str, list[int]] = {}
            for r in rows:
                labels.setdefault(r["case"], []).append(int(r["label"] or 0))
            items = [
                {**{k: v for k, v in it.items() if k != "label"}, "slice_labels": labels[it["case"]]} for it in items
            ]
        sections = split_cases(items, args.val_fraction, args.test_fraction, args.seed)
        path = write_datalist(
            args.out,
            {k: v for k, v in sections.items() if v},
            name=os.path.basename(os.path.abspath(args.root)),
            description="written by monai-adiff datalist",
            modalities=list(args.modalities),
            labels={"0": "background", "1": "anomaly"},
            min_brain_fraction=args.min_brain_fraction,
            split_seed=args.seed,
            skipped=[str(e) for e in errors],
            slice_table=rows,
        )
        csv_path = os.path.splitext(path)[0] + "_slices.csv"
        atomic_write_text(csv_path, table_to_csv(rows))
        n = {k: len(v) for k, v in sections.items()}
        print(
            f"wrote {path} ({n['training']} training, {n['validation']} validation, {n['test']} test cases; "
            f"{len(errors)} skipped) and {csv_path}"
        )
    return EXIT_PARTIAL if errors else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from monai_adiff.demo import run_demo

    run_demo(args.out, cases=args.cases, seed=args.seed, epochs=args.epochs)
    return 0


def _parse_set(pairs: Sequence[str]) -> dict:
    """``key=value`` overrides; values are parsed as JSON when they can be (numbers, lists, true/false)."""
    import json

    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _user_overrides(args: argparse.Namespace) -> dict:
    """The overrides of ``--args-file`` (a JSON object), then of ``--set``."""
    import json

    from monai_adiff.errors import InputError

    overrides: dict = {}
    if args.args_file:
        try:
            with open(args.args_file, encoding="utf-8") as f:
                overrides.update(json.load(f))
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(args.args_file, f"args file cannot be read as JSON ({e})") from e
    overrides.update(_parse_set(args.set or []))
    return overrides


def _output_folder(path: str) -> str:
    """The output folder's real path (a link resolved), created and checked writable before any work starts."""
    from monai_adiff.errors import InputError

    out = os.path.realpath(path)
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(out, "output path exists and is not a folder")
    try:
        os.makedirs(out, exist_ok=True)
        import tempfile

        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as e:
        raise InputError(out, f"output folder cannot be written ({e.strerror or e})") from e
    return out


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from monai_adiff.ensemble import ensemble_folders

    out = _output_folder(args.out)
    written = ensemble_folders(args.maps, args.models, out, weights=args.weights)
    print(f"{len(written) // 2} case(s): the ensemble's map and mask in {out}")
    return 0


def _cmd_infer(args: argparse.Namespace) -> int:
    from monai_adiff.bundle import find_bundle, is_model_folder, read_summary, resolved_value, run_bundle
    from monai_adiff.bundle.inference_run import OUTPUT_SUFFIXES, check_run_record, finished_cases, unique_case_ids
    from monai_adiff.bundle.model_folder import MODEL
    from monai_adiff.data import InputError, split_items
    from monai_adiff.data.inputs import collect_inputs, voxel_size_warnings
    from monai_adiff.engines import read_checkpoint
    from monai_adiff.fitted import checkpoint_fingerprint

    # every argument is checked before any volume is read
    if is_model_folder(args.bundle):  # infer MODEL_DIR VOLUMES: the folder names its bundle and holds model.pt
        summary = read_summary(args.bundle)
        if "training" not in (summary.get("stages") or {}):
            raise InputError(args.bundle, "its training has not finished: rerun the monai-adiff train command")
        bundle = find_bundle(summary["bundle"])
        ckpt_path = os.path.abspath(args.checkpoint or os.path.join(args.bundle, MODEL))
    else:
        if not os.path.exists(args.bundle) and args.bundle not in list_bundles():
            raise InputError(args.bundle, f"no such model folder, and not one of the bundles {list_bundles()}")
        bundle = find_bundle(args.bundle)
        if not args.checkpoint:
            raise InputError(args.bundle, "is a bundle name: give --checkpoint model.pt (or pass a model folder)")
        ckpt_path = os.path.abspath(args.checkpoint)
    read_checkpoint(ckpt_path)  # one line naming an unreadable file
    # the inference config reads what the checkpoint was trained with; an args file and --set win over it
    overrides = _user_overrides(args)
    if args.assume_skull_stripped:
        overrides["assume_skull_stripped"] = True
    modalities = resolved_value(bundle, "inference", "modalities", {**overrides, "ckpt_path": ckpt_path})
    out = _output_folder(args.out)
    items, failed = collect_inputs(args.volumes, modalities)
    for it in items:
        srcs = it["image"] if isinstance(it["image"], list) else [it["image"]]
        if any(os.path.dirname(os.path.realpath(p)) == out for p in srcs):  # real paths: a link to an input too
            raise InputError(out, "output folder is an input folder; choose another one")
    items = unique_case_ids(items)
    items, bad = split_items(items, ["image"], label_key=None)
    failed += bad
    for problem in failed:
        print(f"error: {problem}", file=sys.stderr)
    if not items:
        print(f"error: none of the {len(failed)} requested case(s) can be scored", file=sys.stderr)
        return 1
    for line in voxel_size_warnings(items):
        print(line, file=sys.stderr)
    done = [] if args.overwrite else finished_cases(out, items)
    record = {"bundle": bundle.name, "checkpoint": checkpoint_fingerprint(ckpt_path), "overrides": overrides}
    check_run_record(out, record, args.overwrite, bool(done))
    if done:
        print(f"{len(done)} case(s) already written there, skipped (--overwrite recomputes them)", file=sys.stderr)
    todo = [it for it in items if it["case"] not in done]
    overrides.update({"data": todo, "output_dir": out, "ckpt_path": ckpt_path, "save_overlay": not args.no_overlay})
    if not args.verbose:  # MONAI's workflow logs its own set-up lines (workflow type, logging file) on stdout
        logging.getLogger("monai.bundle.workflows").setLevel(logging.ERROR)
        # and Ignite an empty error line on Ctrl-C; real errors are reported below, one line each
        logging.getLogger("ignite.engine").setLevel(logging.CRITICAL)
    try:
        if todo:
            run_bundle(bundle, "inference", overrides, logging_file=None if args.verbose else False)
    except KeyboardInterrupt:
        written = finished_cases(out, todo)
        left = [str(it["case"]) for it in todo if it["case"] not in written]
        print(
            f"interrupted: {len(written)} of {len(todo)} case(s) written ({', '.join(written) or 'none'}); left: "
            f"{', '.join(left)}; the same command finishes them",
            file=sys.stderr,
        )
        return 130
    for it in items:
        src = it["image"][0] if isinstance(it["image"], list) else it["image"]
        paths = ", ".join(os.path.join(out, f"{it['case']}_{s}.nii.gz") for s in OUTPUT_SUFFIXES)
        print(f"{src} -> {paths}")
    if failed:
        print(
            f"error: {len(failed)} of {len(failed) + len(items)} requested cases failed (listed above)", file=sys.stderr
        )
        return EXIT_PARTIAL
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import shlex

    from monai_adiff.bundle import train_model

    if not args.verbose:  # MONAI's workflow logs its own set-up lines (workflow type, logging file) on stdout
        logging.getLogger("monai.bundle.workflows").setLevel(logging.ERROR)
    summary = train_model(
        args.bundle,
        args.data,
        args.out,
        recipe=args.recipe,
        split_seed=args.split_seed,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        overrides={
            **_parse_set(args.set or []),
            **({"assume_skull_stripped": True} if args.assume_skull_stripped else {}),
        },
        command="monai-adiff " + " ".join(shlex.quote(a) for a in args.argv),
    )
    out = os.path.abspath(args.out)
    minutes = sum(s.get("minutes", 0) for s in summary["stages"].values())
    files = sorted(p for p in os.listdir(out) if os.path.isfile(os.path.join(out, p)))
    print(f"model folder {out} ({', '.join(files)}), {minutes:.1f} min in all")
    print(f"next: monai-adiff infer {shlex.quote(out)} <FLAIR volume or case folder> ... --out predictions")
    return 0


def _cmd_export_bundle(args: argparse.Namespace) -> int:
    from monai_adiff.bundle.export import export_bundle

    out = export_bundle(args.bundle, args.checkpoint, args.out, _user_overrides(args), torchscript=args.torchscript)
    print(out)
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from monai_adiff.benchmark import run_benchmark
    from monai_adiff.benchmark.pipeline import DEFAULT_BUNDLES
    from monai_adiff.errors import InputError

    checkpoints: dict[str, str] = {}
    overrides: dict[str, dict] = {}
    for pair in args.checkpoints or []:
        if "=" not in pair:
            raise InputError(None, f"--checkpoints expects BUNDLE=model.pt, got {pair!r}")
        bundle, path = pair.split("=", 1)
        checkpoints[bundle] = os.path.abspath(path)
    for item in args.set or []:
        bundle, sep, pair = item.partition(":")
        if not sep:
            raise InputError(None, f"--set expects BUNDLE:KEY=VALUE, got {item!r}")
        overrides.setdefault(bundle, {}).update(_parse_set([pair]))
    if not args.verbose:
        logging.getLogger("monai.bundle.workflows").setLevel(logging.ERROR)
    out = _output_folder(args.out)
    run_benchmark(
        args.data,
        out,
        bundles=args.bundles or DEFAULT_BUNDLES,
        recipe=args.recipe,
        checkpoints=checkpoints,
        quick=args.quick,
        split_seed=args.split_seed,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        overrides=overrides,
        dataset=args.dataset,
        store=args.store,
        folds=args.folds,
        only_folds=args.fold,
        ensembles=args.ensemble,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``monai-adiff``."""
    parser = argparse.ArgumentParser(
        prog="monai-adiff",
        description=__doc__.split("\n\n")[0],
        epilog="exit status: 0 every requested case written; 3 some cases failed (each listed on stderr, the others "
        "written); 1 nothing done (bad arguments, unreadable checkpoint or input, unwritable --out); 2 usage error",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "demo",
        help="train a tiny SSS model on synthetic data, infer and evaluate beside the FLAIR baseline (CPU, minutes)",
    )
    p.add_argument("--out", default="monai-adiff-demo", help="output folder (default ./monai-adiff-demo)")
    p.add_argument(
        "--cases", type=int, default=8, help="phantom cases (2 test, 1 threshold, the rest train; default 8)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--epochs", type=int, default=60, help="training epochs (default 60)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "train",
        help="train a bundle on your scans into a model folder (model.pt, label-free threshold and calibration, "
        "summary, log); a rerun resumes",
    )
    p.add_argument("bundle", help="bundle folder or name (" + ", ".join(list_bundles()) + ")")
    p.add_argument("data", help="BraTS-style folder <data>/<case>/<case>_<modality>.nii.gz, or a datalist JSON")
    p.add_argument("--out", required=True, help="model folder to create (new or empty; the same command resumes it)")
    p.add_argument(
        "--recipe",
        default="cpu",
        choices=RECIPES,
        help="cpu: the bundle's CPU recipe (small network, minutes to an hour on 2 cores; default); paper: the "
        "paper-size network (needs a GPU); protocol: paper size and the paper's protocol (paper_protocol.json)",
    )
    p.add_argument("--split-seed", type=int, help="seed of the patient split of a folder (default: the recipe's, 0)")
    p.add_argument("--val-fraction", type=float, help="validation patients (label-free fitting; default: recipe's)")
    p.add_argument("--test-fraction", type=float, help="held-out test patients (default: the recipe's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, repeatable")
    p.add_argument(
        "--assume-skull-stripped",
        action="store_true",
        help="skip the check that refuses volumes that look like a whole head (the scans are skull-stripped)",
    )
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "infer", help="score NIfTI volumes with a model folder or a bundle: <case>_anomaly_map/_anomaly_mask.nii.gz"
    )
    p.add_argument(
        "bundle",
        help="model folder (from monai-adiff train), or bundle folder or name (" + ", ".join(list_bundles()) + ")",
    )
    p.add_argument(
        "volumes",
        nargs="+",
        help="volumes of one modality (NIfTI, NRRD, MHA, or a folder of one DICOM series), BraTS-style case "
        "folders, or folders of those; outputs are NIfTI",
    )
    p.add_argument("--checkpoint", help="model.pt written by the bundle's training (not needed with a model folder)")
    p.add_argument("--out", required=True, help="output folder (must not be an input folder)")
    p.add_argument("--args-file", help="JSON of config overrides (the checkpoint's recipe applies without one)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, repeatable")
    p.add_argument("--no-overlay", action="store_true", help="do not write PNG overlays")
    p.add_argument(
        "--overwrite", action="store_true", help="recompute cases whose outputs are in --out already (default: skip)"
    )
    p.add_argument(
        "--assume-skull-stripped",
        action="store_true",
        help="skip the check that refuses volumes that look like a whole head (the scans are skull-stripped)",
    )
    p.set_defaults(func=_cmd_infer)

    p = sub.add_parser(
        "export-bundle",
        help="write a self-contained bundle for one checkpoint (overrides merged, models/model.pt): what MONAI Label "
        "and the model zoo serve",
    )
    p.add_argument("bundle", help="bundle folder or name (" + ", ".join(list_bundles()) + ")")
    p.add_argument("--checkpoint", required=True, help="model.pt written by the bundle's training")
    p.add_argument("--out", required=True, help="bundle folder to create (must not exist or be empty)")
    p.add_argument("--args-file", help="JSON of config overrides merged after the checkpoint's record")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, repeatable")
    p.add_argument(
        "--torchscript",
        action="store_true",
        help="also write models/model.ts (MONAI Deploy, Triton), checked against the eager network",
    )
    p.set_defaults(func=_cmd_export_bundle)

    p = sub.add_parser(
        "benchmark",
        help="train, calibrate and evaluate bundles on the same held-out patients: results.{md,csv,json} and plots",
    )
    p.add_argument("data", help="BraTS-style folder <data>/<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz")
    p.add_argument("--out", required=True, help="output folder (a rerun into it skips the finished steps)")
    p.add_argument(
        "--bundles", default=None, help="comma-separated bundles, in table order (default: every method, DAE last)"
    )
    p.add_argument(
        "--recipe",
        default="cpu",
        choices=RECIPES,
        help="cpu: each bundle's cpu_args.json; paper: defaults; protocol: each bundle's paper_protocol.json",
    )
    p.add_argument(
        "--checkpoints", nargs="+", metavar="BUNDLE=model.pt", help="evaluate these checkpoints instead of training"
    )
    p.add_argument("--quick", action="store_true", help="tiny networks, 2 epochs: checks the pipeline (demo data)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the patient split (default 0)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation patients (label-free thresholds)")
    p.add_argument("--test-fraction", type=float, default=0.25, help="held-out test patients")
    p.add_argument("--set", action="append", metavar="BUNDLE:KEY=VALUE", help="a bundle's config override")
    p.add_argument(
        "--folds",
        type=int,
        help="patient-level cross-validation with K folds: every patient tested once, by the model that did not see "
        "it (K models per bundle); per-fold tables, cv_results.md and patient_scatter.png",
    )
    p.add_argument(
        "--fold",
        type=int,
        action="append",
        metavar="K",
        help="with --folds, run fold K only (1-based; repeat for several): folds can run apart and meet in --store",
    )
    p.add_argument(
        "--ensemble",
        action="append",
        metavar="A+B",
        help="also score the map ensemble of benchmarked bundles A and B (each map divided by its label-free "
        "threshold, then averaged; mask: mean > 1), recorded as method A+B",
    )
    p.add_argument("--dataset", help="the data set's name in the result records (default: the data folder's name)")
    p.add_argument(
        "--store",
        help="results store to write the records into too (<store>/<dataset>/s<seed>/<bundle>@<version>.json; "
        "always written to OUT/records)",
    )
    p.set_defaults(func=_cmd_benchmark)

    p = sub.add_parser(
        "ensemble",
        help="combine the maps of two or more models (monai-adiff infer output folders): each over its label-free "
        "threshold, averaged; mask: mean > 1",
    )
    p.add_argument("maps", nargs="+", help="output folders of monai-adiff infer, one per model (cases matched by name)")
    p.add_argument("--models", nargs="+", required=True, help="the model folders that wrote them, in the same order")
    p.add_argument("--weights", nargs="+", type=float, help="a weight per model (default equal)")
    p.add_argument("--out", required=True, help="output folder of the ensemble's maps and masks")
    p.set_defaults(func=_cmd_ensemble)

    p = sub.add_parser("make-data", help="write a synthetic BraTS-style demo dataset")
    p.add_argument("--out", required=True, help="output folder (BraTS layout: <case>/<case>_<modality>.nii.gz)")
    p.add_argument("--cases", type=int, default=4, help="number of cases (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), help="volume shape (default 96 96 64)")
    p.add_argument("--overwrite", action="store_true", help="replace existing case folders")
    p.set_defaults(func=_cmd_make_data)

    p = sub.add_parser("datalist", help="scan a BraTS-style folder into a datalist JSON with its slice table")
    p.add_argument("root", help="BraTS-style folder <root>/<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz")
    p.add_argument("--out", help="datalist JSON to write (a <name>_slices.csv is written beside it)")
    p.add_argument("--summary", action="store_true", help="print per-case slice counts")
    p.add_argument("--modalities", nargs="+", default=["flair", "t1", "t1ce", "t2"], help="modalities to require")
    p.add_argument(
        "--min-brain-fraction",
        type=float,
        default=0.1,
        help="a brain slice has more than this fraction of the largest slice's brain area (default 0.1)",
    )
    p.add_argument("--val-fraction", type=float, default=0.0, help="patients in the validation section")
    p.add_argument("--test-fraction", type=float, default=0.0, help="patients in the test section")
    p.add_argument("--seed", type=int, default=0, help="seed of the patient split")
    p.add_argument(
        "--image-labels-only",
        action="store_true",
        help="write per-slice image-level labels (slice_labels) instead of segmentation paths",
    )
    p.set_defaults(func=_cmd_datalist)
    return parser


def _tolerate_plain_terminals() -> None:
    """Messages carry a few non-ASCII signs (dashes, arrows): on an ASCII-only terminal or pipe (``LC_ALL=C`` without
    Python's UTF-8 mode) they are escaped instead of crashing the command."""
    for stream in (sys.stdout, sys.stderr):
        if "utf" not in (getattr(stream, "encoding", None) or "utf").lower() and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``monai-adiff`` console script."""
    _tolerate_plain_terminals()
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # recorded by train in the model's summary
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:  # Ctrl-C: one line, the shell's status for an interrupt
        resumable = args.command in ("train", "benchmark")
        print(f"interrupted{': the same command resumes it' if resumable else ''}", file=sys.stderr)
        return 130
    except Exception as e:  # a clean one-line error for known bad input, a traceback for bugs
        from monai_adiff.errors import InputError, config_error_line, find_input_error

        err = e if isinstance(e, InputError) else find_input_error(e)
        if err is not None:
            print(f"error: {err}", file=sys.stderr)
            return 1
        line = config_error_line(e)
        if line is not None and not args.verbose:  # a bad override: one line (-v shows the traceback)
            print(f"error: {line}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
