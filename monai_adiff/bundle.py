# SPDX-License-Identifier: Apache-2.0
"""Running our MONAI bundles from Python (the CLI, the demo and the tests all go through here).

This is ``python -m monai.bundle run <id> --config_file ...`` in-process: the same ``ConfigWorkflow``, the same
config files, ``args_file`` and overrides, so anything done here can be repeated on the command line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["BUNDLES", "find_bundle", "bundle_config_files", "run_bundle", "cpu_overrides"]

#: the bundles this repository ships, by name
BUNDLES = ("anoddpm", "sss", "anofpdm")

# which config files make up each workflow (later files override earlier ones)
_WORKFLOWS = {
    "training": ("train.json",),
    "run": ("train.json",),
    "inference": ("inference.json",),
    "evaluate": ("inference.json", "evaluate.json"),
    "calibrate": ("inference.json", "calibrate.json"),
    "multi_gpu_training": ("train.json", "multi_gpu_train.json"),
}


def find_bundle(name_or_path: str | os.PathLike) -> Path:
    """A bundle folder from a path, or from a bundle name (``"sss"``) looked up in this repository's ``bundles/``.

    Raises:
        FileNotFoundError: naming what was tried.
    """
    path = Path(name_or_path)
    if (path / "configs" / "metadata.json").is_file():
        return path.resolve()
    repo_bundles = Path(__file__).resolve().parents[1] / "bundles" / str(name_or_path)
    if (repo_bundles / "configs" / "metadata.json").is_file():
        return repo_bundles
    raise FileNotFoundError(
        f"{name_or_path}: not a bundle folder (no configs/metadata.json) and not one of the bundles {BUNDLES} of "
        f"this repository"
    )


def bundle_config_files(bundle: str | os.PathLike, workflow: str) -> list[str]:
    """The config files of ``workflow`` (``training``, ``inference``, ``evaluate``, ...) in ``bundle``."""
    bundle = find_bundle(bundle)
    if workflow not in _WORKFLOWS:
        raise ValueError(f"unknown workflow {workflow!r}; one of {sorted(_WORKFLOWS)}")
    return [str(bundle / "configs" / f) for f in _WORKFLOWS[workflow]]


def run_bundle(
    bundle: str | os.PathLike,
    run_id: str,
    overrides: Mapping[str, Any] | None = None,
    args_file: str | os.PathLike | None = None,
    workflow: str | None = None,
    logging_file: str | bool | None = None,
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

    Returns:
        the ``ConfigWorkflow`` after ``finalize`` (its ``parser`` holds the instantiated components).
    """
    from monai.bundle import ConfigWorkflow

    bundle = find_bundle(bundle)
    files = bundle_config_files(bundle, workflow or run_id)
    merged: dict[str, Any] = {"bundle_root": str(bundle)}
    if args_file:
        with open(args_file) as f:
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
    wf.run()
    wf.finalize()
    return wf


def cpu_overrides(spatial_size: int = 64, channels: Sequence[int] = (32, 64, 64)) -> dict[str, Any]:
    """Config overrides that shrink a bundle's paper-size UNet to a network that trains on a laptop CPU.

    The same keys work on the command line (``--network_def#channels "[32, 64, 64]"``) and in an ``args_file``;
    bundle READMEs list them. Attention stays on the lowest resolution only.
    """
    channels = [int(c) for c in channels]
    n = len(channels)
    return {
        "spatial_size": int(spatial_size),
        "network_def#channels": channels,
        "network_def#attention_levels": [False] * (n - 1) + [True],
        "network_def#num_head_channels": [0] * (n - 1) + [channels[-1] // 2],
        "network_def#num_res_blocks": 1,
        "network_def#norm_num_groups": 8,
        "network_def#use_flash_attention": False,
    }
