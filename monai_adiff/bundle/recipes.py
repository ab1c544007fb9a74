# SPDX-License-Identifier: Apache-2.0
"""The one definition of the small networks that train on a CPU.

The bundles' ``cpu_args.json``, the demo and the tests all derive their network from :func:`cpu_overrides`; the
bundle composer writes it into every bundle's ``configs/cpu_args.json``. :func:`quick_overrides` shrinks every
bundle further, to a network and schedule that run a whole train/infer/evaluate cycle in seconds (the bundle contract
test and ``monai-adiff benchmark --quick``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monai_adiff.engines.recipe import SHARED_CPU_TRAINING

__all__ = [
    "cpu_overrides",
    "quick_overrides",
    "recipe_overrides",
    "RECIPES",
    "RECIPE_FILES",
    "QUICK_EPOCHS",
    "CPU_SPATIAL_SIZE",
    "CPU_CHANNELS",
    "QUICK_SPATIAL_SIZE",
    "SHARED_CPU_TRAINING",
]

#: the CPU recipe's slice size and UNet widths (the bundles' ``cpu_args.json``)
CPU_SPATIAL_SIZE = 64
CPU_CHANNELS = (16, 32, 64)
#: the quick mode's slice size
QUICK_SPATIAL_SIZE = 32
#: ``cpu``: each bundle's ``configs/cpu_args.json``; ``paper``: the bundle's defaults (the paper's sizes);
#: ``protocol``: ``configs/paper_protocol.json``, the paper's protocol (or its public code's) where the defaults differ
RECIPES = ("cpu", "paper", "protocol")
#: the args file of each recipe that has one
RECIPE_FILES = {"cpu": "cpu_args.json", "protocol": "paper_protocol.json"}
#: training epochs of the quick mode (tiny networks: the run checks the pipeline, its numbers mean nothing)
QUICK_EPOCHS = 2
#: bundles whose network is not a diffusion UNet: their own tiny network instead of its keys
_QUICK_NETWORKS: dict[str, dict[str, Any]] = {
    "dae": {"network_def#channels": [8, 16, 16], "network_def#strides": [2, 2]},
    "dtunet": {
        "network_def#patch_size": 4,
        "network_def#embed_dim": 32,
        "network_def#depth": 2,
        "network_def#num_heads": 2,
    },
}


def cpu_overrides(spatial_size: int = CPU_SPATIAL_SIZE, channels: Sequence[int] = CPU_CHANNELS) -> dict[str, Any]:
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


def quick_overrides(bundle: str = "sss", spatial_size: int = QUICK_SPATIAL_SIZE) -> dict[str, Any]:
    """Overrides that make ``bundle`` tiny: a whole train/infer/evaluate cycle in seconds on 2 CPU cores.

    For tests and ``monai-adiff benchmark --quick``: the numbers they give say that the pipeline works, not how well
    a method detects. Keys a bundle does not have are ignored by it (``noise_level`` is AnoDDPM's lambda and
    DTU-Net's, ``num_steps`` AnoFPDM's forward sweep, ``ae_epochs``/``feature_epochs`` D3AD's first stages).

    Args:
        bundle: the bundle's name (``dtunet`` gets a tiny transformer, ``dae`` a tiny plain UNet, the others a tiny
            diffusion UNet).
        spatial_size: slice size.
    """
    out = {
        **cpu_overrides(spatial_size=spatial_size, channels=(16, 32, 32)),
        "batch_size": 8,
        "num_workers": 0,
        "ema_warmup_iters": 10,
        "noise_level": 8,
        "num_steps": 6,
        "ae_epochs": 1,
        "feature_epochs": 1,
    }
    if bundle in _QUICK_NETWORKS:
        out = {k: v for k, v in out.items() if not k.startswith("network_def#")}
        out.update(_QUICK_NETWORKS[bundle])
    return out


def recipe_overrides(bundle: str, recipe: str = "cpu", quick: bool = False) -> dict[str, Any]:
    """The overrides of a recipe of ``bundle``: its ``cpu_args.json`` (``cpu``), nothing (``paper``), its
    ``paper_protocol.json`` (``protocol``), or with ``quick`` the tiny set of :func:`quick_overrides` with
    :data:`QUICK_EPOCHS` epochs and the CPU recipe's label-free threshold rule.

    Raises:
        InputError: an unknown recipe, or a bundle without that recipe's file.
    """
    import json

    from monai_adiff.bundle.runner import find_bundle
    from monai_adiff.errors import InputError

    if recipe not in RECIPES:
        raise InputError(None, f"recipe must be one of {RECIPES}, got {recipe!r}")
    configs = find_bundle(bundle) / "configs"

    def read(name: str) -> dict[str, Any] | None:
        path = configs / RECIPE_FILES[name]
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    if not quick:
        if recipe not in RECIPE_FILES:
            return {}
        args = read(recipe)
        if args is None:
            raise InputError(str(configs / RECIPE_FILES[recipe]), f"bundle {bundle} has no {recipe} recipe")
        return args
    cpu = read("cpu")
    out = {**quick_overrides(bundle), "max_epochs": QUICK_EPOCHS, "val_interval": QUICK_EPOCHS, "recipe_name": "quick"}
    if cpu and "use_healthy_threshold" in cpu:
        out["use_healthy_threshold"] = cpu["use_healthy_threshold"]
    return out
