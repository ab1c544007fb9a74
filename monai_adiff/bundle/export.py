# SPDX-License-Identifier: Apache-2.0
"""A self-contained bundle folder for one trained checkpoint: configs with its overrides merged, ``models/model.pt``.

MONAI Label and the model zoo read a bundle's ``configs/inference.json`` and ``models/model.pt`` as they are: they
take no args file, so a CPU-sized or user-trained checkpoint cannot be served from the repository's bundle folder.
MONAI's ``monai.bundle`` has no command that merges overrides into a bundle's files, so this module does it: the
checkpoint's record (network size, slice size, noise), then an args file, then single overrides, each written into
every config file that defines its id.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from monai_adiff.bundle.compose import FRAGMENT, apply_overrides
from monai_adiff.bundle.runner import find_bundle
from monai_adiff.engines.checkpoint import INFO_KEY, checkpoint_info, read_checkpoint, recorded_overrides
from monai_adiff.errors import InputError

__all__ = ["export_bundle", "EXPORT_RECORD", "SIDECAR_FILES"]

#: what was exported, written to ``models/`` of the exported bundle
EXPORT_RECORD = "export.json"
#: files beside a checkpoint that its bundle reads from ``models/`` (label-free calibration, healthy threshold)
SIDECAR_FILES = ("calibration.json", "healthy_threshold.json")
#: bundle files that are not part of an exported bundle (the composer's fragment, the CPU recipe: merged instead)
_SKIP = (FRAGMENT, "cpu_args.json")


def _has_parent(config: Mapping[str, Any], key: str) -> bool:
    """Whether override id ``key`` ("a#b#c") belongs to ``config``: its first part is defined there and every
    part but the last leads to an existing dict or list."""
    *parents, last = key.split("#")
    if not parents:
        return last in config
    node: Any = config
    for p in parents:
        if isinstance(node, list) and p.lstrip("-").isdigit() and -len(node) <= int(p) < len(node):
            node = node[int(p)]
        elif isinstance(node, Mapping) and p in node:
            node = node[p]
        else:
            return False
    return isinstance(node, (Mapping, list))


def export_bundle(
    bundle: str | os.PathLike,
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Write a copy of ``bundle`` that serves ``checkpoint`` without an args file.

    Args:
        bundle: bundle name or folder.
        checkpoint: a ``model.pt`` written by the bundle's training (weights and record), or a bare state dict.
        out: the folder to create (must not exist, or be empty).
        overrides: config overrides applied after the checkpoint's record (an args file's content, ``--set``).

    Returns:
        the exported bundle folder.

    Raises:
        InputError: unreadable checkpoint, an existing non-empty ``out``, or an override that no config file defines.
    """
    src = find_bundle(bundle)
    out = Path(out).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(str(out), "export folder exists and is not empty; choose a new one")
    ckpt = read_checkpoint(checkpoint)
    info = checkpoint_info(ckpt)
    merged = {**recorded_overrides(info), **dict(overrides or {})}
    state = ckpt["model"] if isinstance(ckpt, Mapping) and isinstance(ckpt.get("model"), Mapping) else ckpt
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(os.fspath(checkpoint), "holds no network state dict (expected {'model': ...} or weights)")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*_SKIP, "models", "eval"))
        used: set[str] = set()
        for path in sorted((tmp / "configs").glob("*.json")):
            config = json.loads(path.read_text())
            keys = [k for k in merged if _has_parent(config, k)]
            config = apply_overrides(config, {k: merged[k] for k in keys})
            used.update(keys)
            path.write_text(json.dumps(config, indent=4) + "\n")
        unused = [k for k in merged if k not in used]
        if unused:
            raise InputError(os.fspath(checkpoint), f"override(s) {unused} match no config id of bundle {src.name!r}")
        models = tmp / "models"
        models.mkdir()
        saved: dict[str, Any] = {"model": {k: v.clone() for k, v in state.items()}}
        if info is not None:
            saved[INFO_KEY] = info
        torch.save(saved, models / "model.pt")
        ckpt_dir = Path(checkpoint).resolve().parent
        sidecars = [name for name in SIDECAR_FILES if (ckpt_dir / name).is_file()]
        for name in sidecars:
            shutil.copy2(ckpt_dir / name, models / name)
        record = {
            "bundle": src.name,
            "checkpoint": os.path.basename(os.fspath(checkpoint)),
            "overrides": merged,
            "copied": sidecars,
        }
        (models / EXPORT_RECORD).write_text(json.dumps(record, indent=4, default=str) + "\n")
        for p in [tmp, *tmp.rglob("*")]:  # mkdtemp makes 0700: the usual modes
            p.chmod(0o755 if p.is_dir() else 0o644)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
