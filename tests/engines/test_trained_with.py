# SPDX-License-Identifier: Apache-2.0
"""``TrainedWith``: which recorded values a bundle applies to a checkpoint. Oracles: the bundles' own args files."""

from __future__ import annotations

import json

import pytest
import torch

from monai_adiff.bundle import BUNDLES_DIR
from monai_adiff.engines import CheckpointInfo, TrainedWith


def _checkpoint(tmp_path, bundle: str, recipe_name: str):
    """A checkpoint as ``bundle``'s training saves it: its CPU args file as the recipe, a wider network recorded."""
    args = json.loads((BUNDLES_DIR / bundle / "configs" / "cpu_args.json").read_text(encoding="utf-8"))
    recipe = {**{k: v for k, v in args.items() if not k.startswith("network_def")}, "recipe_name": recipe_name}
    recipe["split_seed"] = 3
    info = CheckpointInfo(BUNDLES_DIR / bundle, {"network_def#channels": [32, 64, 64], "spatial_size": 64}, recipe)
    path = tmp_path / f"{bundle}-{recipe_name}.pt"
    torch.save({"model": {}, "info": info.state_dict()}, path)
    return path


def test_own_checkpoint_gives_its_recipe(tmp_path):
    read = TrainedWith.read(_checkpoint(tmp_path, "sss", "cpu"), BUNDLES_DIR / "sss")
    assert read.get("sss_timesteps") == 100 and read.get("split_seed") == 3
    assert read.get("network_def#channels") == [32, 64, 64]


def test_a_shared_cpu_training_gets_the_running_bundles_cpu_recipe(tmp_path):
    """AnoDDPM's CPU recipe trains what SSS's does: on an SSS CPU model it runs its own CPU recipe's inference, on
    the patients the model was trained with, with the network the checkpoint records."""
    anoddpm = json.loads((BUNDLES_DIR / "anoddpm" / "configs" / "cpu_args.json").read_text(encoding="utf-8"))
    read = TrainedWith.read(_checkpoint(tmp_path, "sss", "cpu"), BUNDLES_DIR / "anoddpm")
    for key in ("noise_level", "inference_steps", "num_samples", "aggregate", "map_median_kernel"):
        assert read.get(key) == anoddpm[key], key
    assert read.get("sss_timesteps") is None  # SSS's inference settings mean nothing to AnoDDPM
    assert read.get("split_seed") == 3 and read.get("recipe_name") == "cpu"
    assert read.get("network_def#channels") == [32, 64, 64]  # the record, not the args file's network


@pytest.mark.parametrize("bundle, recipe_name", [("sss", "paper"), ("dae", "cpu")])
def test_another_bundles_checkpoint_gives_no_recipe(tmp_path, bundle, recipe_name):
    read = TrainedWith.read(_checkpoint(tmp_path, bundle, recipe_name), BUNDLES_DIR / "anoddpm")
    assert read.get("noise_level") is None and read.get("recipe_name") is None and read.get("split_seed") is None
    assert read.get("spatial_size") == 64
