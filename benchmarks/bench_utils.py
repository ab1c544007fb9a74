# SPDX-License-Identifier: Apache-2.0
"""What the speed benchmarks share: a bundle's network and inferer with random weights, and timing helpers.

Timings do not depend on the weights, so no checkpoint is needed; D3AD's feature bank (a fitted buffer its inferer
needs) is filled from random slices of the real bank's size.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from monai.bundle import ConfigParser

from monai_adiff.bundle import bundle_config_files, find_bundle

__all__ = ["cpu_training_parser", "inference_parts", "random_slices", "timed", "sync", "BANK_SLICES"]

#: healthy training slices in a D3AD bank on the dev split (8 patients)
BANK_SLICES = 600


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall seconds of one call of ``fn``, the device synchronised before and after."""
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def random_slices(n: int, channels: int, size: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """``(n, channels, size, size)`` uniform in [-1, 1]: every pixel counts as brain, so every slice is scored."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, channels, size, size, generator=g) * 2 - 1).to(device)


def cpu_training_parser(bundle: str) -> ConfigParser:
    """``bundle``'s training config under its CPU recipe (``configs/cpu_args.json``), nothing parsed yet."""
    root = find_bundle(bundle)
    parser = ConfigParser()
    parser.read_config(bundle_config_files(bundle, "training"))
    parser.update({"bundle_root": str(root)})
    parser.update(json.loads((root / "configs" / "cpu_args.json").read_text(encoding="utf-8")))
    return parser


def inference_parts(
    bundle: str, overrides: Mapping[str, Any], device: torch.device, recipe: str = "cpu"
) -> tuple[ConfigParser, torch.nn.Module, Any]:
    """``(parser, network, inferer)`` of ``bundle``'s inference config with random weights.

    Args:
        bundle: bundle name.
        overrides: config overrides applied after the recipe (``spatial_size``, ``slice_batch_size``, ...).
        device: where the network goes.
        recipe: ``cpu`` (the bundle's ``cpu_args.json``) or ``paper`` (its defaults).
    """
    root = find_bundle(bundle)
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser["bundle_root"] = str(root)
    if recipe == "cpu":
        for k, v in json.loads((root / "configs" / "cpu_args.json").read_text(encoding="utf-8")).items():
            parser[k] = v
    parser["threshold_file"] = None  # no label-free threshold file: timing only
    config = parser.get()
    if isinstance(config, dict) and "calibration_file" in config:
        parser["calibration_file"] = None
    for k, v in overrides.items():
        parser[k] = v
    network = parser.get_parsed_content("network").to(device).eval()
    inferer = parser.get_parsed_content("inferer")
    if bundle == "d3ad":
        from monai_adiff.methods.d3ad.fitting import fit_feature_bank

        size, c = int(parser.get_parsed_content("spatial_size")), len(parser.get_parsed_content("modalities"))
        batches = [{"image": random_slices(64, c, size, device, seed=i)} for i in range(BANK_SLICES // 64)]
        with torch.no_grad():
            fit_feature_bank(network, batches, device)
    return parser, network, inferer
