# SPDX-License-Identifier: Apache-2.0
"""Bundles composed from one shared base and a short method fragment.

Every bundle shares data loading, the patient split, preprocessing, the trainer, EMA, checkpoints, multi-GPU
training, logging, evaluation and the CPU-sized network; only the method differs. Those shared parts live once in
``bundles/_base/``; each bundle keeps only ``bundles/<name>/method.json``, its differences. The bundle's
``configs/`` are generated from the two, so every bundle stays a self-contained MONAI bundle (MONAI Label, the
model zoo and ``python -m monai.bundle run`` read plain config files) while nothing is written twice; a test checks
that the generated files are in sync.

``method.json`` sections (each optional), applied as ``monai.bundle`` overrides (``"a#b#0"`` ids set nested
values; ``"_remove_": [ids]`` deletes):

- ``metadata``: onto ``_base/metadata.json`` -> ``configs/metadata.json``;
- ``common``: onto ``_base/common.json``, the part that ``train.json`` and ``inference.json`` share (modalities,
  network, scheduler, noise, ...); ``checkpoint_config`` and ``recipe_config`` (what checkpoints record, read back
  by inference: :mod:`monai_adiff.bundle.record`) are generated;
- ``train``, ``inference``, ``evaluate``, ``multi_gpu_*``, ``healthy_threshold``: onto ``_base/<section>.json``
  (train and inference after the common part);
- ``cpu_args``: onto the CPU recipe (:func:`~monai_adiff.bundle.recipes.cpu_overrides` plus its training knobs),
  merged flat: its keys are the args file's override ids (``"noise#frequency"``);
- ``configs``: further config files written as given (``{"calibrate.json": {...}}``).

``logging.conf`` and the repository's ``LICENSE`` are copied. Run ``python -m monai_adiff.bundle`` after
editing a base file or a fragment (``--check`` only reports).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_adiff import __version__
from monai_adiff.bundle.recipes import RECIPE_FILES, cpu_overrides
from monai_adiff.bundle.record import checkpoint_config, read_back, recipe_ids
from monai_adiff.bundle.runner import BUNDLES_DIR
from monai_adiff.utils import atomic_write_text

__all__ = [
    "BASE_DIR",
    "FRAGMENT",
    "apply_overrides",
    "compose_bundle",
    "write_bundle",
    "check_bundle",
    "checkpoint_config",
    "main",
]

#: the shared base of every bundle
BASE_DIR = BUNDLES_DIR / "_base"
#: a bundle's method fragment
FRAGMENT = "method.json"
#: the CPU recipe's training knobs beside the small network (batch, loader, EMA for a few thousand iterations)
CPU_TRAINING = {
    "num_workers": 0,
    "batch_size": 32,
    "ema_momentum": 0.005,
    "ema_momentum_warmup": 0.1,
    "ema_warmup_iters": 200,
    "recipe_name": "cpu",
}
_REMOVE = "_remove_"
#: base overlay workflows every bundle gets (on top of inference.json, or train.json for multi-GPU training;
#: multi_gpu_evaluate on inference.json + evaluate.json)
OVERLAYS = ("evaluate", "multi_gpu_train", "multi_gpu_inference", "multi_gpu_evaluate", "healthy_threshold")


def _child(node: Any, key: str) -> Any:
    return node[int(key)] if isinstance(node, list) else node[key]


def apply_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with ``monai.bundle``-style overrides applied (``"a#b#0"`` ids, ``"_remove_"``); a list
    index one past the end appends.

    A new top-level key goes last; an existing one keeps its place, so generated files read like the base.

    Raises:
        KeyError: an id whose parent does not exist, or a removal of a missing id.
    """
    out: dict[str, Any] = copy.deepcopy(dict(config))
    for key, value in overrides.items():
        if key == _REMOVE:
            continue
        *parents, last = key.split("#")
        node: Any = out
        for p in parents:
            node = _child(node, p)
        if isinstance(node, list) and int(last) == len(node):  # one past the end appends (compose time only)
            node.append(copy.deepcopy(value))
        elif isinstance(node, list):
            node[int(last)] = copy.deepcopy(value)
        else:
            node[last] = copy.deepcopy(value)
    for key in overrides.get(_REMOVE, []):
        *parents, last = key.split("#")
        node = out
        for p in parents:
            node = _child(node, p)
        del node[int(last) if isinstance(node, list) else last]
    return out


#: the expression that reads a boolean config value (see :func:`coerce_flag_references`)
FLAG_READER = "monai.utils.str2bool"


def coerce_flag_references(configs: Mapping[str, Any], flags: Sequence[str]) -> dict[str, Any]:
    """A copy of ``configs`` (``{file name: config}``) in which every reference to a boolean top-level id reads it
    through MONAI's ``str2bool``.

    ``python -m monai.bundle run ... --dynamic false`` passes the string ``'false'``, which Python takes as true, so
    without this a documented override would be silently ignored; ``str2bool`` turns ``"false"``/``"true"`` (and
    ``"no"``, ``"0"``, ...) into booleans, keeps booleans, and refuses anything else. ``"@flag"`` becomes
    ``"$monai.utils.str2bool(@flag)"``, and ``@flag`` inside an expression ``monai.utils.str2bool(@flag)``.
    """
    if not flags:
        return copy.deepcopy(dict(configs))
    pattern = re.compile(r"@(" + "|".join(re.escape(f) for f in sorted(flags, key=len, reverse=True)) + r")(?![\w#])")

    def rewrite(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {k: rewrite(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        if isinstance(node, str) and pattern.search(node):
            if node.startswith("$"):
                return pattern.sub(lambda m: f"{FLAG_READER}({m.group(0)})", node)
            if pattern.fullmatch(node):
                return f"${FLAG_READER}({node})"
        return node

    return {name: rewrite(cfg) for name, cfg in configs.items()}


def _flags(configs: Mapping[str, Any]) -> list[str]:
    """The top-level ids of ``configs`` (``{file name: config}``) whose value is a boolean."""
    return sorted({k for cfg in configs.values() for k, v in cfg.items() if isinstance(v, bool) and "#" not in k})


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _dump(config: Mapping[str, Any]) -> str:
    return json.dumps(config, indent=4) + "\n"


def compose_bundle(bundle_dir: str | os.PathLike, base_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """The generated files of a bundle, ``{path relative to the bundle: text}``, from its fragment and the base.

    Raises:
        FileNotFoundError: no ``method.json`` in ``bundle_dir``.
        ValueError: an unknown section in the fragment.
    """
    bundle_dir, base = Path(bundle_dir), Path(base_dir) if base_dir is not None else BASE_DIR
    fragment = _read_json(bundle_dir / FRAGMENT)
    known = {"metadata", "common", "train", "inference", "cpu_args", "configs", *OVERLAYS}
    unknown = sorted(set(fragment) - known)
    if unknown:
        raise ValueError(f"{bundle_dir / FRAGMENT}: unknown section(s) {unknown}; known: {sorted(known)}")
    common = apply_overrides(_read_json(base / "common.json"), fragment.get("common", {}))
    common["checkpoint_config"] = checkpoint_config(common)
    files: dict[str, Any] = {
        "metadata.json": apply_overrides(_read_json(base / "metadata.json"), fragment.get("metadata", {}))
    }
    # the one version source of the package: the bundles need at least the release they were composed with
    files["metadata.json"]["required_packages_version"]["monai_adiff"] = __version__
    for name in ("train", "inference"):
        merged = {**common, **_read_json(base / f"{name}.json")}
        files[f"{name}.json"] = apply_overrides(merged, fragment.get(name, {}))
    for name in OVERLAYS:
        files[f"{name}.json"] = apply_overrides(_read_json(base / f"{name}.json"), fragment.get(name, {}))
    # an args file is flat: its keys are override ids ("noise#frequency"), merged as they are
    cpu = {**cpu_overrides(), **CPU_TRAINING, **fragment.get("cpu_args", {})}
    files["cpu_args.json"] = {k: v for k, v in cpu.items() if k != _REMOVE and k not in cpu.get(_REMOVE, [])}
    # what checkpoints record of the recipe: training defines every recipe id (with its inference default)
    ids = recipe_ids(
        files["inference.json"], fragment.get("inference", {}), files["cpu_args.json"], fragment.get("common", {})
    )
    for name in ("train.json", "inference.json"):
        for i in ids:
            files[name].setdefault(i, files["inference.json"][i])
        files[name]["recipe_config"] = [[i, f"@{i}"] for i in ids]
    files.update(fragment.get("configs", {}))
    workflows = {k: v for k, v in files.items() if k != "metadata.json" and k not in RECIPE_FILES.values()}
    files.update(coerce_flag_references(workflows, _flags(files)))
    # inference reads every recorded value from the checkpoint first (an override still wins)
    files["inference.json"] = read_back(files["inference.json"], ids)
    out = {f"configs/{name}": _dump(cfg) for name, cfg in files.items()}
    out["configs/logging.conf"] = (base / "logging.conf").read_text(encoding="utf-8")
    out["LICENSE"] = (base.parent.parent / "LICENSE").read_text(encoding="utf-8")
    return out


def _stale(bundle_dir: str | os.PathLike, base_dir: str | os.PathLike | None) -> dict[str, str]:
    """The generated files of a bundle that are missing or differ, with the text they should have."""
    out = {}
    for rel, text in compose_bundle(bundle_dir, base_dir).items():
        path = Path(bundle_dir) / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out[rel] = text
    return out


def write_bundle(bundle_dir: str | os.PathLike, base_dir: str | os.PathLike | None = None) -> list[str]:
    """Write the generated files of a bundle (atomically); returns those whose content changed."""
    stale = _stale(bundle_dir, base_dir)
    for rel, text in stale.items():
        path = Path(bundle_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    return list(stale)


def check_bundle(bundle_dir: str | os.PathLike, base_dir: str | os.PathLike | None = None) -> list[str]:
    """The generated files of a bundle that are missing or differ from what the fragment and base give."""
    return list(_stale(bundle_dir, base_dir))


def _fragment_bundles(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / FRAGMENT).is_file())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monai_adiff.bundle [--check] [BUNDLE_DIR ...]`` (default: every bundle with a fragment)."""
    parser = argparse.ArgumentParser(prog="python -m monai_adiff.bundle", description=__doc__.split("\n")[0])
    parser.add_argument("bundles", nargs="*", help="bundle folders (default: every bundle of bundles/ with a fragment)")
    parser.add_argument("--check", action="store_true", help="only report files that are out of sync (exit 1)")
    parser.add_argument("--base", help="the shared base folder (default: bundles/_base)")
    args = parser.parse_args(argv)
    dirs = [Path(b) for b in args.bundles] or _fragment_bundles(BUNDLES_DIR)
    bad = 0
    for d in dirs:
        if args.check:
            stale = check_bundle(d, args.base)
            bad += len(stale)
            for rel in stale:
                print(f"{d / rel}: out of sync with {FRAGMENT} and the base (run python -m monai_adiff.bundle)")
        else:
            for rel in write_bundle(d, args.base):
                print(f"wrote {d / rel}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
