# SPDX-License-Identifier: Apache-2.0
"""A self-contained bundle folder for one trained checkpoint: configs with its values merged, ``models/model.pt``.

MONAI Label and the model zoo read a bundle's ``configs/inference.json`` and ``models/model.pt`` as they are: they
take no args file. Our inference configs read what the checkpoint was trained with from ``models/model.pt`` anyway
(:class:`~monai_adiff.engines.TrainedWith`); the export also writes those values into the config files, so a reader
of the exported ``inference.json`` sees the model it serves, and applies an args file and single overrides on top.
MONAI's ``monai.bundle`` has no command that merges overrides into a bundle's files, so this module does it, each
value written into every config file that defines its id.

With ``torchscript=True`` the export also writes ``models/model.ts`` (:mod:`monai_adiff.bundle.torchscript`): the
network with the checkpoint's weights, checked against the eager network, which the inference config runs with
``torchscript_path`` set (the recipe and the fitted files still come from ``models/model.pt``).
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
from monai_adiff.engines.checkpoint import INFO_KEY, checkpoint_info, read_checkpoint
from monai_adiff.engines.recipe import TrainedWith
from monai_adiff.errors import InputError
from monai_adiff.fitted import check_fitted, fitted_on

__all__ = ["export_bundle", "write_torchscript", "EXPORT_RECORD", "SIDECAR_FILES", "TORCHSCRIPT_FILE"]

#: what was exported, written to ``models/`` of the exported bundle
EXPORT_RECORD = "export.json"
#: files beside a checkpoint that its bundle reads from ``models/`` (label-free calibration, healthy threshold)
SIDECAR_FILES = ("calibration.json", "healthy_threshold.json")
#: the TorchScript network of an exported bundle, in ``models/`` (the model zoo's name)
TORCHSCRIPT_FILE = "model.ts"
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


def _copy_fitted(src: Path, dst: Path, checkpoint: str | os.PathLike, resaved: Path | None) -> None:
    """Copy a fitted file after checking that it belongs to ``checkpoint``; tie it to ``resaved`` when the export
    wrote the weights into a new file."""
    try:
        record = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(str(src), f"cannot be read as JSON ({e})") from e
    check_fitted(src, record, checkpoint)
    if resaved is not None and isinstance(record.get("checkpoint"), Mapping):
        record.update(fitted_on(resaved, record.get("settings")))
        dst.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    else:
        shutil.copy2(src, dst)


def write_torchscript(root: str | os.PathLike, device: str | None = None) -> dict[str, Any]:
    """Write ``models/model.ts`` of bundle folder ``root`` from its ``models/model.pt`` and inference config.

    Args:
        root: an exported bundle folder.
        device: where to trace (default: CUDA when present): a trace keeps the device of tensors the network
            creates (MONAI's timestep embedding), so the file runs on the kind of device it was traced on.

    Returns:
        ``{"file", "kind" (script or trace), "max_abs_difference"}``: the check against the eager network.

    Raises:
        RuntimeError: the TorchScript network differs from the eager one by more than
            :data:`~monai_adiff.bundle.torchscript.TS_ATOL`.
    """
    from monai.bundle import ConfigParser

    from monai_adiff.bundle.runner import bundle_config_files
    from monai_adiff.bundle.torchscript import TS_ATOL, network_to_torchscript, save_torchscript, torchscript_difference

    root = Path(root)
    parser = ConfigParser()
    parser.read_config(bundle_config_files(root, "inference"))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    parser.update({"bundle_root": str(root), "device": f"$torch.device({device!r})"})
    network = parser.get_parsed_content("network_def").to(device)
    size = int(parser.get_parsed_content("spatial_size"))
    ckpt = read_checkpoint(root / "models" / "model.pt")
    network.load_state_dict(ckpt["model"] if isinstance(ckpt.get("model"), Mapping) else ckpt)
    scripted, kind = network_to_torchscript(network, size)
    diff = torchscript_difference(scripted, network, size)
    if not diff <= TS_ATOL:
        raise RuntimeError(
            f"the TorchScript of {root.name}'s network differs from the eager network by {diff:.3g} (more than "
            f"{TS_ATOL:g}): serve models/model.pt"
        )
    metadata = json.loads((root / "configs" / "metadata.json").read_text(encoding="utf-8"))
    config = json.loads((root / "configs" / "inference.json").read_text(encoding="utf-8"))
    save_torchscript(scripted, root / "models" / TORCHSCRIPT_FILE, metadata, {"inference.json": config})
    return {"file": TORCHSCRIPT_FILE, "kind": kind, "device": device, "max_abs_difference": diff}


def export_bundle(
    bundle: str | os.PathLike,
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    overrides: Mapping[str, Any] | None = None,
    torchscript: bool = False,
) -> Path:
    """Write a copy of ``bundle`` that serves ``checkpoint`` without an args file.

    Args:
        bundle: bundle name or folder.
        checkpoint: a ``model.pt`` written by the bundle's training (weights and record), or a bare state dict.
        out: the folder to create (must not exist, or be empty).
        overrides: config overrides applied after the checkpoint's record (an args file's content, ``--set``).
            The copied fitted files (healthy threshold, calibration) must belong to the checkpoint.
        torchscript: also write ``models/model.ts`` (:func:`write_torchscript`), checked against the eager network.

    Returns:
        the exported bundle folder.

    Raises:
        InputError: unreadable checkpoint, an existing non-empty ``out``, or an override that no config file defines.
        RuntimeError: ``torchscript`` and the TorchScript network does not match the eager one.
    """
    src = find_bundle(bundle)
    out = Path(out).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(str(out), "export folder exists and is not empty; choose a new one")
    ckpt = read_checkpoint(checkpoint)
    info = checkpoint_info(ckpt)
    merged = {**TrainedWith.read(checkpoint, src).overrides(), **dict(overrides or {})}
    state = ckpt["model"] if isinstance(ckpt, Mapping) and isinstance(ckpt.get("model"), Mapping) else ckpt
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(os.fspath(checkpoint), "holds no network state dict (expected {'model': ...} or weights)")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*_SKIP, "models", "eval"))
        used: set[str] = set()
        for path in sorted((tmp / "configs").glob("*.json")):
            config = json.loads(path.read_text(encoding="utf-8"))
            keys = [k for k in merged if _has_parent(config, k)]
            config = apply_overrides(config, {k: merged[k] for k in keys})
            used.update(keys)
            path.write_text(json.dumps(config, indent=4) + "\n", encoding="utf-8")
        unused = [k for k in merged if k not in used]
        if unused:
            raise InputError(os.fspath(checkpoint), f"override(s) {unused} match no config id of bundle {src.name!r}")
        models = tmp / "models"
        models.mkdir()
        copied = isinstance(ckpt, Mapping) and set(ckpt) <= {"model", INFO_KEY} and ckpt is not state
        if copied:  # a trained model.pt as it is: the fitted files beside it name its SHA-256
            shutil.copyfile(checkpoint, models / "model.pt")
        else:  # a periodic checkpoint or a bare state dict: the weights (and record) only
            saved: dict[str, Any] = {"model": {k: v.clone() for k, v in state.items()}}
            if info is not None:
                saved[INFO_KEY] = info
            torch.save(saved, models / "model.pt")
        ckpt_dir = Path(checkpoint).resolve().parent
        sidecars = [name for name in SIDECAR_FILES if (ckpt_dir / name).is_file()]
        for name in sidecars:
            _copy_fitted(ckpt_dir / name, models / name, checkpoint, None if copied else models / "model.pt")
        record = {
            "bundle": src.name,
            "checkpoint": os.path.basename(os.fspath(checkpoint)),
            "overrides": merged,
            "copied": sidecars,
        }
        if torchscript:
            record["torchscript"] = write_torchscript(tmp)
        (models / EXPORT_RECORD).write_text(json.dumps(record, indent=4, default=str) + "\n", encoding="utf-8")
        for p in [tmp, *tmp.rglob("*")]:  # mkdtemp makes 0700: the usual modes
            p.chmod(0o755 if p.is_dir() else 0o644)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
