# SPDX-License-Identifier: Apache-2.0
"""Our MONAI bundles from Python: discovery, running workflows in-process, composing bundles from the shared base
and a method fragment, and the CPU-sized network."""

from .compose import BASE_DIR, FRAGMENT, apply_overrides, check_bundle, compose_bundle, write_bundle
from .model_folder import is_model_folder, read_summary, train_model
from .recipes import CPU_CHANNELS, CPU_SPATIAL_SIZE, RECIPES, cpu_overrides, quick_overrides, recipe_overrides
from .runner import (
    BUNDLES_DIR,
    bundle_config_files,
    bundle_workflows,
    find_bundle,
    list_bundles,
    resolved_value,
    run_bundle,
)

__all__ = [
    "BASE_DIR",
    "BUNDLES_DIR",
    "CPU_CHANNELS",
    "CPU_SPATIAL_SIZE",
    "FRAGMENT",
    "apply_overrides",
    "bundle_config_files",
    "bundle_workflows",
    "check_bundle",
    "compose_bundle",
    "cpu_overrides",
    "find_bundle",
    "list_bundles",
    "quick_overrides",
    "RECIPES",
    "recipe_overrides",
    "is_model_folder",
    "read_summary",
    "train_model",
    "resolved_value",
    "run_bundle",
    "write_bundle",
]
