# SPDX-License-Identifier: Apache-2.0
"""What a bundle's checkpoints record, and the inference config that reads it back (used by the composer).

Two lists of ``[id, "@id"]`` pairs are generated into every bundle's configs:

- ``checkpoint_config``: the network's arguments and the data settings (slice size, modalities, intensity, noise):
  what rebuilds the network and prepares its input;
- ``recipe_config``: the inference settings a recipe chooses: the base's threshold rule and map post-processing, the
  method's own literal knobs (noise level, draws, ...), every inference id the CPU recipe sets, the patient split and
  the recipe's name.

Training saves both, resolved, in the checkpoint (``CheckpointInfo``); so ``train.json`` gets every recipe id with its
inference default. In ``inference.json`` each recorded id reads the checkpoint's value first:
``"$@trained_with.get('sss_timesteps', 300)"``, where ``trained_with`` is
:meth:`monai_adiff.engines.TrainedWith.read` of ``@ckpt_path``. An override of the id (command line, args file)
replaces the expression, so it still wins.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "RECORDED_IDS",
    "BASE_KNOBS",
    "SPLIT_IDS",
    "RUNTIME_IDS",
    "NOISE_ARGS",
    "checkpoint_config",
    "recipe_ids",
    "read_back",
    "is_literal",
]

#: config ids recorded in every checkpoint besides the network's arguments (the data settings)
RECORDED_IDS = ("modalities", "spatial_size", "intensity_clip", "range_mode", "num_train_timesteps", "noise")
#: network arguments that are runtime choices, not architecture (not recorded)
UNRECORDED_NETWORK_ARGS = ("_target_", "use_flash_attention")
#: the shared base's inference knobs (threshold rule, map post-processing) and the recipe's name
BASE_KNOBS = (
    "recipe_name",
    "threshold",
    "otsu_per_slice",
    "use_healthy_threshold",
    "map_median_kernel",
    "map_brain_erosion",
    "map_hyperintensity_prior",
)
#: the patient split a checkpoint was trained on (evaluation and fitting steps reuse it)
SPLIT_IDS = ("val_fraction", "test_fraction", "split_seed")
#: runtime choices, never part of a recipe
RUNTIME_IDS = ("slice_batch_size", "autocast_dtype", "device", "num_workers", "save_overlay", "output_dir")
#: the noise spec's arguments (``monai_adiff.noise.NoiseSpec``), read back one by one
NOISE_ARGS = ("noise_type", "octaves", "persistence", "frequency")
#: the config id of the checkpoint's record in inference configs
TRAINED_WITH = "trained_with"


def is_literal(value: Any) -> bool:
    """A plain JSON value: no expression, reference, macro or component."""
    if isinstance(value, str):
        return not value.startswith(("$", "@", "%"))
    if isinstance(value, list):
        return all(is_literal(v) and not isinstance(v, (dict, list)) for v in value)
    return value is None or isinstance(value, (bool, int, float))


def checkpoint_config(common: Mapping[str, Any]) -> list[list[str]]:
    """``[[id, "@id"], ...]``: the network arguments and data settings a checkpoint records."""
    ids = [f"network_def#{k}" for k in common.get("network_def", {}) if k not in UNRECORDED_NETWORK_ARGS]
    ids += [k for k in RECORDED_IDS if k in common]
    return [[i, f"@{i}"] for i in ids]


def recipe_ids(
    inference: Mapping[str, Any],
    method_inference: Mapping[str, Any],
    cpu_args: Mapping[str, Any],
    method_common: Mapping[str, Any] | None = None,
) -> list[str]:
    """The recipe ids of a bundle, in a stable order: those of the candidates below that ``inference`` defines
    with a literal value (a knob, not an expression or a component).

    Args:
        inference: the composed ``inference.json``.
        method_inference: the method fragment's ``inference`` section (its top-level ids: the method's knobs).
        cpu_args: the CPU recipe's overrides (its top-level ids that inference defines are recipe settings).
        method_common: the method fragment's ``common`` section (switches shared by training and inference, e.g.
            DTU-Net's ``weakly_supervised``).
    """
    recorded = {k for k in RECORDED_IDS} | {"network_def", "noise"}
    candidates = [*BASE_KNOBS, *(method_common or {}), *method_inference, *cpu_args, *SPLIT_IDS]
    out: list[str] = []
    for key in candidates:
        if "#" in key or key in out or key in recorded or key in RUNTIME_IDS or key not in inference:
            continue
        if is_literal(inference[key]):
            out.append(key)
    return out


def _python(value: Any) -> str:
    """The Python source of a config value inside an expression: the body of an expression, a reference as it is
    (MONAI resolves ``@id`` inside expressions), a literal as its ``repr`` (JSON values are Python literals)."""
    if isinstance(value, str) and value.startswith("$"):
        return f"({value[1:]})"
    if isinstance(value, str) and value.startswith("@"):
        return value
    return repr(value)


def _reader(key: str, default: Any) -> str:
    return f"$@{TRAINED_WITH}.get({key!r}, {_python(default)})"


def read_back(inference: Mapping[str, Any], ids: Iterable[str]) -> dict[str, Any]:
    """A copy of ``inference`` in which every recorded id (``checkpoint_config``'s network arguments, data settings
    and noise arguments, and the recipe ``ids``) reads the checkpoint's value first.

    Raises:
        KeyError: a recorded id that ``inference`` does not define.
    """
    out: dict[str, Any] = copy.deepcopy(dict(inference))
    for key in ids:
        out[key] = _reader(key, out[key])
    network = out.get("network_def")
    if isinstance(network, dict):
        for k in list(network):
            if k not in UNRECORDED_NETWORK_ARGS:
                network[k] = _reader(f"network_def#{k}", network[k])
    for key in RECORDED_IDS:
        if key == "noise" or key not in out:
            continue
        out[key] = _reader(key, out[key])
    noise = out.get("noise")
    if isinstance(noise, dict) and "_target_" in noise:
        for k in NOISE_ARGS:
            noise[k] = _reader(f"noise#{k}", noise.get(k))
    return out
