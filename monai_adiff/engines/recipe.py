# SPDX-License-Identifier: Apache-2.0
"""What a checkpoint was trained with, read back at inference.

A checkpoint saved by a bundle's training records, beside its weights (:class:`~monai_adiff.engines.CheckpointInfo`),
``config``: what rebuilds its network and prepares its input (network arguments, slice size, modalities, intensity
settings, noise); and ``recipe``: the inference settings of the recipe it was trained with (noise level, draws, map
post-processing, threshold rule, the patient split, the recipe's name). The bundles' inference configs read each of
those values as ``"$@trained_with.get('<id>', <default>)"``, so a CPU-recipe checkpoint run with no args file
(``python -m monai.bundle run inference --ckpt_path model.pt``, ``monai-adiff infer``, MONAI Label) gets the setting
it was measured with; an args file or a command-line override replaces the expression and wins.

MONAI has no notion of a checkpoint that describes its own inference, hence this module.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["TrainedWith", "SHARED_CPU_TRAINING", "SPLIT_IDS"]

logger = logging.getLogger(__name__)


def _norm(key: str) -> str:
    """An id in ``#`` form (MONAI rewrites ``#`` inside config strings to its ``::`` separator)."""
    return str(key).replace("::", "#")


def _flatten(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"noise": {"frequency": 16}}`` -> ``{"noise": {...}, "noise#frequency": 16}`` (one level, as recorded)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        key = _norm(key)
        out[key] = value
        if isinstance(value, Mapping):
            out.update({f"{key}#{k}": v for k, v in value.items()})
    return out


#: bundles whose CPU recipe trains exactly what another bundle's does (same network, noise, data and schedule;
#: only the inference differs): ``{bundle: the bundle whose CPU-recipe models it can score}``, checked by a test
SHARED_CPU_TRAINING = {"anoddpm": "sss"}
#: the recipe ids that name the patients a model was trained on: kept from the training's record whatever runs it
SPLIT_IDS = ("split_seed", "val_fraction", "test_fraction")


def _foreign_recipe(
    path: str, info: Mapping[str, Any], bundle_root: str | os.PathLike, bundle: str, recipe: Mapping[str, Any]
) -> dict[str, Any]:
    """The recipe values a bundle applies to a checkpoint another bundle trained: none (another bundle's inference
    settings would mean something else), except where this bundle's CPU recipe trains exactly what the other's does
    (:data:`SHARED_CPU_TRAINING`, AnoDDPM on SSS's models) and the checkpoint is a
    CPU-recipe one: then this bundle's own CPU recipe, on the patients the model was trained with."""
    trainer = info.get("bundle")
    args = Path(bundle_root) / "configs" / "cpu_args.json"
    if SHARED_CPU_TRAINING.get(bundle) == trainer and recipe.get("recipe_name") == "cpu" and args.is_file():
        recorded = _flatten(info.get("config") or {})
        own = {k: v for k, v in json.loads(args.read_text(encoding="utf-8")).items() if _norm(k) not in recorded}
        logger.info(
            "%s: trained by the '%s' CPU recipe, which '%s' shares: its CPU recipe applies", path, trainer, bundle
        )
        return {**own, **{k: recipe[k] for k in SPLIT_IDS if k in recipe}}
    logger.warning(
        "%s: trained by the '%s' bundle, run by '%s': its network settings are used, not its recipe",
        path,
        trainer,
        bundle,
    )
    return {}


class TrainedWith(Mapping):
    """The values a checkpoint was trained with, by config id (``network_def#channels``, ``noise#frequency``,
    ``sss_timesteps``, ...); empty for a missing file, a bare state dict or an older checkpoint.

    Args:
        config: the record's network and data values (applied to any bundle whose network the weights fit).
        recipe: the record's recipe values (applied only to the bundle that trained it: another bundle's inference
            settings would mean something else, e.g. AnoDDPM run on an SSS checkpoint).
        source: the checkpoint file, for messages.
    """

    def __init__(
        self, config: Mapping[str, Any] | None = None, recipe: Mapping[str, Any] | None = None, source: str = ""
    ) -> None:
        self.config = _flatten(config or {})
        self.recipe = _flatten(recipe or {})
        self.source = source
        self._values = {**self.config, **self.recipe}

    @classmethod
    def read(cls, ckpt_path: str | os.PathLike | None, bundle_root: str | os.PathLike | None = None) -> TrainedWith:
        """The record of ``ckpt_path`` (nothing when the file does not exist: the checkpoint loader then names it).

        The recipe part is kept only when the record's bundle name is ``bundle_root``'s (an exported copy of a bundle
        keeps its name).

        Raises:
            InputError: the file exists but cannot be read as a checkpoint.
        """
        from monai_adiff.engines.checkpoint import bundle_identity, checkpoint_info, read_checkpoint

        if ckpt_path is None or not os.path.isfile(os.fspath(ckpt_path)):
            return cls()
        path = os.fspath(ckpt_path)
        info = checkpoint_info(read_checkpoint(path)) or {}
        recipe = dict(info.get("recipe") or {})
        if recipe and bundle_root is not None:
            bundle, name, _ = bundle_identity(bundle_root)
            if name and info.get("name") and info["name"] != name:
                recipe = _foreign_recipe(path, info, bundle_root, bundle, recipe)
        out = cls(info.get("config"), recipe, path)
        if recipe:
            shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in recipe.items())
            logger.info("%s: trained with the recipe %s", path, shown)
        return out

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(_norm(key), default)

    def __getitem__(self, key: str) -> Any:
        return self._values[_norm(key)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"TrainedWith({self.source or 'nothing'}: {len(self.recipe)} recipe values)"

    def overrides(self) -> dict[str, Any]:
        """The record as config overrides (``noise#frequency`` for the noise spec; what an exported config holds)."""
        out = {}
        for key, value in self._values.items():
            if not isinstance(value, Mapping):
                out[key] = value
        return out
