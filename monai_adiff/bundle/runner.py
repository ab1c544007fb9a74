# SPDX-License-Identifier: Apache-2.0
"""Finding and running our MONAI bundles from Python (the CLI, the demo and the tests all go through here).

Bundles are discovered on disk: every folder of the package's ``bundles/`` with a ``configs/metadata.json`` (found
with ``importlib.resources``: in a checkout it links to the repository's ``bundles/``, in a wheel it is package
data).
A bundle's workflows are discovered from its config files: ``train.json`` runs ``training`` (and ``run``, the id
MONAI Label calls), ``inference.json`` runs ``inference``; any other ``<name>.json`` in ``configs/`` is an overlay
that runs ``<name>`` on top of ``train.json`` when its name contains ``train`` (``multi_gpu_train.json``, run as
``multi_gpu_training``), else on top of ``inference.json`` (``evaluate.json``, ``calibrate.json``, ...). Args files
(``*_args.json``, ``paper_protocol.json``) and ``metadata.json`` are not workflows.

:func:`run_bundle` is ``python -m monai.bundle run <id> --config_file ...`` in-process: the same ``ConfigWorkflow``,
the same config files, ``args_file`` and overrides, so anything done here can be repeated on the command line.
"""

from __future__ import annotations

import importlib.resources
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_adiff.bundle.recipes import RECIPE_FILES

__all__ = [
    "BUNDLES_DIR",
    "list_bundles",
    "find_bundle",
    "bundle_workflows",
    "bundle_config_files",
    "resolved_value",
    "run_bundle",
]

#: the shipped bundles (a real folder: the checkout's ``bundles/``, or the installed package data)
BUNDLES_DIR = Path(str(importlib.resources.files("monai_adiff") / "bundles")).resolve()


def _is_bundle(path: Path) -> bool:
    return (path / "configs" / "metadata.json").is_file()


def list_bundles(root: str | os.PathLike | None = None) -> list[str]:
    """The names of the bundles in ``root`` (default: the shipped ``bundles/``), sorted."""
    root = Path(root) if root is not None else BUNDLES_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _is_bundle(p))


def find_bundle(name_or_path: str | os.PathLike) -> Path:
    """A bundle folder from a path, or from a bundle name (``"sss"``) looked up in the shipped ``bundles/``.

    Raises:
        InputError: naming what was tried.
    """
    path = Path(name_or_path)
    if _is_bundle(path):
        return path.resolve()
    repo_bundle = BUNDLES_DIR / str(name_or_path)
    if _is_bundle(repo_bundle):
        return repo_bundle
    from monai_adiff.errors import InputError

    raise InputError(
        os.fspath(name_or_path),
        f"not a bundle folder (no configs/metadata.json) and not one of the bundles {list_bundles()}",
    )


def bundle_workflows(bundle: str | os.PathLike) -> dict[str, list[str]]:
    """``{workflow id: config file names}`` of a bundle, discovered from its ``configs/`` (see the module doc)."""
    configs = find_bundle(bundle) / "configs"
    names = sorted(p.name for p in configs.glob("*.json"))
    out: dict[str, list[str]] = {}
    if "train.json" in names:
        out["training"] = out["run"] = ["train.json"]
    if "inference.json" in names:
        out["inference"] = ["inference.json"]
    for name in names:
        stem = name[: -len(".json")]
        # the recipes' args files are overrides, not workflows
        if name in ("train.json", "inference.json", "metadata.json", *RECIPE_FILES.values()) or stem.endswith("_args"):
            continue
        base = "train.json" if "train" in stem else "inference.json"
        # an overlay of another overlay: multi_gpu_evaluate goes on inference.json + evaluate.json
        middle = [f"{stem[len('multi_gpu_'):]}.json"] if stem.startswith("multi_gpu_") else []
        middle = [m for m in middle if m in names and m != base]
        if base in names:
            out[stem.replace("_train", "_training") if stem.endswith("_train") else stem] = [base, *middle, name]
    return out


def bundle_config_files(bundle: str | os.PathLike, workflow: str) -> list[str]:
    """The config files of ``workflow`` (``training``, ``inference``, ``evaluate``, ...) in ``bundle``."""
    workflows = bundle_workflows(bundle)
    if workflow not in workflows:
        raise ValueError(f"{bundle}: unknown workflow {workflow!r}; one of {sorted(workflows)}")
    configs = find_bundle(bundle) / "configs"
    return [str(configs / f) for f in workflows[workflow]]


def resolved_value(
    bundle: str | os.PathLike, workflow: str, config_id: str, overrides: Mapping[str, Any] | None = None
) -> Any:
    """The value ``config_id`` takes in ``workflow`` of ``bundle`` with ``overrides`` (what a run would use, e.g.
    the modalities an inference reads from its checkpoint), without running anything else."""
    return resolved_values(bundle, workflow, [config_id], overrides)[config_id]


def resolved_values(
    bundle: str | os.PathLike, workflow: str, config_ids: Sequence[str], overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """:func:`resolved_value` of several ids from one parse of the workflow's config files."""
    from monai.bundle import ConfigParser

    bundle = find_bundle(bundle)
    parser = ConfigParser()
    parser.read_config(bundle_config_files(bundle, workflow))
    parser.update({"bundle_root": str(bundle), **dict(overrides or {})})
    return {k: parser.get_parsed_content(k) for k in config_ids}


def run_bundle(
    bundle: str | os.PathLike,
    run_id: str,
    overrides: Mapping[str, Any] | None = None,
    args_file: str | os.PathLike | None = None,
    workflow: str | None = None,
    logging_file: str | bool | None = None,
    before_run: Callable[[Any], None] | None = None,
) -> Any:
    """Run a bundle workflow in-process, like ``python -m monai.bundle run <run_id> --config_file [...]``.

    Args:
        bundle: bundle folder or name.
        run_id: the config id to run (``training``, ``inference``, ``evaluate``, ``calibrate``, ...).
        overrides: ``{config_id: value}`` overrides (``"network_def#channels": [32, 64]``, ...).
        args_file: a JSON file of further overrides (the ``--args_file`` of ``monai.bundle run``); ``overrides``
            win over it.
        workflow: which config files to load (defaults to ``run_id``'s).
        logging_file: the logging config (default: the bundle's ``configs/logging.conf``; ``False`` for none).
        before_run: called with the initialised workflow before it runs (e.g. to attach a progress bar to one of
            its engines).

    Returns:
        the ``ConfigWorkflow`` after ``finalize`` (its ``parser`` holds the instantiated components).
    """
    from monai.bundle import ConfigWorkflow

    bundle = find_bundle(bundle)
    files = bundle_config_files(bundle, workflow or run_id)
    merged: dict[str, Any] = {"bundle_root": str(bundle)}
    if args_file:
        with open(args_file, encoding="utf-8") as f:
            merged.update(json.load(f))
    merged.update(overrides or {})
    if logging_file is None:
        logging_file = str(bundle / "configs" / "logging.conf")
    wf = ConfigWorkflow(
        config_file=files,
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=logging_file,
        run_id=run_id,
        workflow_type=None,
        **merged,
    )
    wf.initialize()
    if before_run is not None:
        before_run(wf)
    wf.run()
    wf.finalize()
    return wf
