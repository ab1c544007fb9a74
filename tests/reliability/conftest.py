# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the reliability corpus: a tiny SSS checkpoint saved the way training saves one (weights + record)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from monai_adiff.bundle import bundle_config_files, cpu_overrides, find_bundle
from monai_adiff.engines import CheckpointInfo

#: a network small enough that a 240 x 240 x 155 volume infers in seconds on 2 cores
TINY_NET = cpu_overrides(spatial_size=32, channels=(8, 16, 16))
#: a fast SSS inference: one noise level, one draw, the map thresholded near its 90th brain percentile
FAST = {"sss_timesteps": 100, "slice_batch_size": 64, "threshold": 0.07}


def save_checkpoint(path: Path, bundle: str = "sss", overrides: dict | None = None, seed: int = 0) -> Path:
    """Build ``bundle``'s network from its own config with ``overrides`` and save it as training does:
    ``{"model": state_dict, "info": CheckpointInfo}`` (random weights, seeded)."""
    parser = ConfigParser()
    parser.read_config(bundle_config_files(bundle, "training"))  # the record as training writes it
    parser.update({"bundle_root": str(find_bundle(bundle)), **(overrides or {})})
    torch.manual_seed(seed)
    network = parser.get_parsed_content("network_def")
    config, recipe = parser.get_parsed_content("checkpoint_config"), parser.get_parsed_content("recipe_config")
    info = CheckpointInfo(find_bundle(bundle), config, recipe)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": network.state_dict(), "info": info.state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny SSS checkpoint at 32 px with its record (no args file needed to infer with it)."""
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", "sss", TINY_NET)
