# SPDX-License-Identifier: Apache-2.0
"""Checkpoints: finding the one to resume from, recording what built them, and loading them with clear errors.

MONAI's ``CheckpointSaver`` names periodic checkpoints ``<prefix>_epoch=<n>.pt`` (keeping ``n_saved`` of them); a
bundle that resumes must find the newest one, which MONAI does not provide. A state dict alone does not say which
bundle and network size produced it, and MONAI's ``CheckpointLoader`` reports a wrong or corrupt file as a long
state-dict traceback that never names it. So our training configs save a :class:`CheckpointInfo` beside the weights
(bundle, version, the network arguments and the data settings), our :class:`CheckpointLoader` checks a checkpoint
against the config before loading it and says in one line what differs, and ``monai-adiff infer`` rebuilds the
network from the record (:func:`recorded_overrides`). Fitting steps outside an Ignite engine (calibration,
benchmarks) load weights with :func:`load_network_weights`, which runs the same checks.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.handlers import CheckpointLoader as _MonaiCheckpointLoader
from monai.handlers import CheckpointSaver as _MonaiCheckpointSaver

from monai_adiff.errors import InputError
from monai_adiff.fitted import settings_dict

__all__ = [
    "latest_checkpoint",
    "load_network_weights",
    "read_checkpoint",
    "checkpoint_info",
    "recorded_overrides",
    "check_checkpoint",
    "CheckpointInfo",
    "CheckpointLoader",
    "CheckpointSaver",
    "INFO_KEY",
    "bundle_identity",
]

logger = logging.getLogger(__name__)

_EPOCH = re.compile(r"_(?:epoch|iteration)=(\d+)\.pt$")
#: the checkpoint key of the :class:`CheckpointInfo` record
INFO_KEY = "info"
#: recorded ids that describe the network (named when the weights do not fit it)
_NETWORK_PREFIX = "network_def#"


def _periodic_checkpoints(ckpt_dir: str, prefix: str = "checkpoint") -> list[tuple[int, str]]:
    """``[(n, path), ...]`` of the ``<prefix>_epoch=<n>.pt`` (or ``_iteration=<n>``) files, oldest first."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(ckpt_dir), f"{prefix}_*.pt")):
        m = _EPOCH.search(os.path.basename(path))
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def latest_checkpoint(ckpt_dir: str, prefix: str = "checkpoint") -> str | None:
    """The newest ``<prefix>_epoch=<n>.pt`` (or ``_iteration=<n>``) in ``ckpt_dir``, or ``None``.

    Bundle configs use it as ``"$monai_adiff.engines.latest_checkpoint(@ckpt_dir)"`` with the loader disabled when it
    is ``None``, so a restarted ``run training`` resumes where the last one stopped.
    """
    found = _periodic_checkpoints(ckpt_dir, prefix)
    return found[-1][1] if found else None


def bundle_identity(bundle_root: str | os.PathLike) -> tuple[str, str | None, str | None]:
    """``(id, name, version)`` of a bundle folder: its folder name, and its metadata's ``name`` and ``version``."""
    root = Path(bundle_root).resolve()
    meta = root / "configs" / "metadata.json"
    content: dict[str, Any] = {}
    if meta.is_file():
        with open(meta, encoding="utf-8") as f:
            content = json.load(f)
    return root.name, content.get("name"), content.get("version")


def _config_values(config: Sequence[Sequence[Any]] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``{id: plain value}`` from ``[[id, value], ...]`` or a mapping (see :func:`monai_adiff.fitted.settings_dict`)."""
    return settings_dict(config)


class CheckpointInfo:
    """The record a training saves beside its weights: bundle name and version, config values and recipe values.

    It has ``state_dict``/``load_state_dict`` so MONAI's ``CheckpointSaver`` stores it like any other object
    (``"save_dict": {"model": ..., "info": "@checkpoint_info"}``); its state is plain Python data, so it loads with
    ``torch.load(..., weights_only=True)``.

    Args:
        bundle_root: the bundle folder (its name is the bundle id, its ``configs/metadata.json`` gives the version).
        config: ``[[config_id, value], ...]`` (or a mapping): the values that rebuild the network and prepare its
            input (``network_def#channels``, ``spatial_size``, ``noise``, ...).
        recipe: ``[[config_id, value], ...]``: the inference settings of the recipe it is trained with (the bundles'
            ``recipe_config``), read back at inference by :class:`~monai_adiff.engines.TrainedWith`.
    """

    def __init__(
        self,
        bundle_root: str | os.PathLike,
        config: Sequence[Sequence[Any]] | Mapping[str, Any],
        recipe: Sequence[Sequence[Any]] | Mapping[str, Any] | None = None,
    ) -> None:
        self.bundle, self.name, self.version = bundle_identity(bundle_root)
        self.config = _config_values(config)
        self.recipe = _config_values(recipe)

    def state_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "name": self.name,
            "version": self.version,
            "config": dict(self.config),
            "recipe": dict(self.recipe),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.bundle = state.get("bundle", self.bundle)
        self.name = state.get("name", self.name)
        self.version = state.get("version", self.version)
        self.config = dict(state.get("config", {}))
        self.recipe = dict(state.get("recipe", {}))


def read_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with one clear error naming the file.

    Raises:
        InputError: a missing, empty, corrupt or non-PyTorch file, or one that needs pickled code to load.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "checkpoint file does not exist")
    if os.path.getsize(path) == 0:
        raise InputError(path, "checkpoint file is empty")
    try:
        # memory-mapped: checks and records need no copy of the weights (paper-size UNets are hundreds of MB)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        pass  # not a zip-format checkpoint, or not a checkpoint: a plain read gives the real error
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors; torch's own advice (weights_only=False) is unsafe
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(path, f"cannot be read as a PyTorch checkpoint ({type(e).__name__}: {first[:200]})") from e


def checkpoint_info(checkpoint: Any) -> dict[str, Any] | None:
    """The :class:`CheckpointInfo` record of a loaded checkpoint, or ``None`` (older or foreign checkpoints)."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get(INFO_KEY), Mapping):
        return dict(checkpoint[INFO_KEY])
    return None


def recorded_overrides(info: Mapping[str, Any] | None) -> dict[str, Any]:
    """Config overrides that rebuild a checkpoint's network and input preparation from its record.

    The noise spec is recorded as one value and returned as ``noise#<argument>`` overrides.
    """
    out: dict[str, Any] = {}
    for key, value in dict((info or {}).get("config", {})).items():
        if key == "noise" and isinstance(value, Mapping):
            out.update({f"noise#{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def _model_state(checkpoint: Any, key: str) -> Any:
    if isinstance(checkpoint, Mapping) and key in checkpoint and isinstance(checkpoint[key], Mapping):
        return checkpoint[key]
    return checkpoint


def _fmt(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def _state_mismatch(network: torch.nn.Module, state: Any) -> str | None:
    """One line on how a state dict does not fit ``network`` (``None`` when it fits)."""
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return "holds no model state dict (expected tensors by parameter name)"
    own = network.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    # buffers a network sizes by fitting (e.g. D3AD's feature bank) take the checkpoint's size on load
    resizable = set(getattr(network, "fitted_buffers", ()))
    shapes = [
        (k, tuple(own[k].shape), tuple(state[k].shape))
        for k in own
        if k in state and own[k].shape != state[k].shape and k not in resizable
    ]
    if not (missing or unexpected or shapes):
        return None
    parts = [
        f"{n} {what}"
        for n, what in ((len(missing), "missing"), (len(unexpected), "unexpected"), (len(shapes), "differently shaped"))
        if n
    ]
    example = (
        f"{shapes[0][0]}: network {list(shapes[0][1])}, checkpoint {list(shapes[0][2])}"
        if shapes
        else f"{(missing or unexpected)[0]}"
    )
    return f"parameters do not fit the network ({', '.join(parts)}; e.g. {example})"


def check_checkpoint(
    path: str | os.PathLike,
    network: torch.nn.Module | None = None,
    bundle_root: str | os.PathLike | None = None,
    expected: Sequence[Sequence[Any]] | Mapping[str, Any] | None = None,
    key: str = "model",
    recipe: Sequence[Sequence[Any]] | Mapping[str, Any] | None = None,
) -> Any:
    """Read a checkpoint and check it against a bundle and its network before anything is loaded.

    Args:
        path: the checkpoint file.
        network: the network it must fit (key and shape check).
        bundle_root: the bundle that uses it (named in errors; a checkpoint of another bundle is used with a warning
            when its network fits, as SSS and AnoDDPM share theirs).
        expected: the config values of the run (``[[id, value], ...]``), compared with the checkpoint's record: the
            differing network arguments explain a network that does not fit; other differences (data, noise) warn.
        key: the checkpoint key of the weights.
        recipe: the run's recipe values (``[[id, value], ...]``); those that differ from the recipe the checkpoint
            was trained with (an override) are logged, when it was trained by the same bundle.

    Returns:
        the loaded checkpoint.

    Raises:
        InputError: one line naming the file, the bundle and what differs.
    """
    path = os.fspath(path)
    ckpt = read_checkpoint(path)
    info = checkpoint_info(ckpt)
    bundle, name, _ = bundle_identity(bundle_root) if bundle_root is not None else (None, None, None)
    hint = "pass the args file it was trained with (monai-adiff infer reads it from the checkpoint)"
    if info is not None:
        if name and info.get("name") and info["name"] != name:
            # SSS and AnoDDPM train the same network: a foreign checkpoint is fine when it fits, said once
            logger.warning("%s: a checkpoint of the '%s' bundle, used by '%s'", path, info.get("bundle"), bundle)
    exp = _config_values(expected)
    rec = dict((info or {}).get("config", {}))
    diff = [k for k in exp if k in rec and exp[k] != rec[k]]
    if network is not None:
        problem = _state_mismatch(network, _model_state(ckpt, key))
        if problem:
            # the record says why in config terms; without one, the state dict's keys and shapes
            net = [k for k in diff if k.startswith(_NETWORK_PREFIX)]
            if info is not None and name and info.get("name") and info["name"] != name:
                problem = f"is a checkpoint of the '{info.get('bundle')}' bundle {info.get('version') or ''}".rstrip()
                problem += f", whose network does not fit the {bundle} bundle's"
                raise InputError(path, problem)
            if net:
                what = "; ".join(
                    f"{k[len(_NETWORK_PREFIX):]} {_fmt(exp[k])}, checkpoint has {_fmt(rec[k])}" for k in net
                )
                problem = f"does not fit the {bundle or 'configured'} network: it expects {what}"
            elif bundle:
                problem = f"{problem} of the {bundle} bundle"
            raise InputError(path, f"{problem}: {hint}")
    for k in diff:
        logger.warning("%s: trained with %s = %s, run with %s", path, k, _fmt(rec[k]), _fmt(exp[k]))
    same_bundle = not (name and info and info.get("name") and info["name"] != name)
    trained, run = dict((info or {}).get("recipe") or {}), _config_values(recipe)
    changed = [k for k in run if k in trained and run[k] != trained[k]] if same_bundle else []
    if changed:
        logger.warning(
            "%s: run with %s instead of its recipe's %s (an override)",
            path,
            ", ".join(f"{k} = {_fmt(run[k])}" for k in changed),
            ", ".join(f"{k} = {_fmt(trained[k])}" for k in changed),
        )
    return ckpt


def load_network_weights(
    network: torch.nn.Module,
    path: str | os.PathLike,
    key: str = "model",
    bundle_root: str | os.PathLike | None = None,
    expected: Sequence[Sequence[Any]] | Mapping[str, Any] | None = None,
) -> torch.nn.Module:
    """Load ``path`` (a bare state dict or ``{key: state_dict, ...}``) into ``network`` with ``weights_only=True``,
    after :func:`check_checkpoint`."""
    ckpt = check_checkpoint(path, network, bundle_root, expected, key)
    network.load_state_dict(_model_state(ckpt, key))
    return network


class CheckpointLoader(_MonaiCheckpointLoader):
    """MONAI's ``CheckpointLoader`` that first checks the file (:func:`check_checkpoint`) and fails in one line.

    Args:
        load_path, load_dict, name, map_location, strict, strict_shape: as MONAI's ``CheckpointLoader``.
        bundle_root: the bundle folder (its name is checked against the checkpoint's record).
        expected: the run's config values to compare with the record (``[[id, value], ...]``).
        model_key: the ``load_dict`` key of the network the weights must fit.
        recipe: the run's recipe values, compared with the recipe the checkpoint was trained with.
    """

    def __init__(
        self,
        load_path: str,
        load_dict: dict,
        name: str | None = None,
        map_location: dict | None = None,
        strict: bool = True,
        strict_shape: bool = True,
        bundle_root: str | os.PathLike | None = None,
        expected: Sequence[Sequence[Any]] | Mapping[str, Any] | None = None,
        model_key: str = "model",
        recipe: Sequence[Sequence[Any]] | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(load_path, load_dict, name, map_location, strict, strict_shape)
        self.bundle_root = bundle_root
        self.expected = expected
        self.model_key = model_key
        self.recipe = recipe

    def __call__(self, engine) -> None:
        network = self.load_dict.get(self.model_key)
        check_checkpoint(
            self.load_path,
            network if isinstance(network, torch.nn.Module) else None,
            self.bundle_root,
            self.expected,
            self.model_key,
            self.recipe,
        )
        super().__call__(engine)
        if engine.state.iteration:  # bundles call the loader before run, so Ignite's first line shows these too
            logger.info(
                "resumed from %s at epoch %d, iteration %d", self.load_path, engine.state.epoch, engine.state.iteration
            )


class CheckpointSaver(_MonaiCheckpointSaver):
    """MONAI's ``CheckpointSaver`` that also keeps ``n_saved`` across restarts.

    Ignite's ``Checkpoint`` deletes only the files it wrote itself, so a resumed training would keep the checkpoint
    it resumed from (and every earlier one) forever. After each periodic save this removes the older
    ``checkpoint_epoch=<n>.pt`` files in ``save_dir`` beyond the newest ``n_saved``.

    Args:
        save_dir, save_dict, n_saved: as MONAI's ``CheckpointSaver``; every other MONAI argument by keyword.
    """

    def __init__(self, save_dir: str, save_dict: dict, n_saved: int | None = None, **kwargs: Any) -> None:
        super().__init__(save_dir, save_dict, n_saved=n_saved, **kwargs)
        self.keep = n_saved

    def interval_completed(self, engine) -> None:
        super().interval_completed(engine)
        if self.keep:
            for _, path in _periodic_checkpoints(self.save_dir)[: -self.keep]:
                os.remove(path)
