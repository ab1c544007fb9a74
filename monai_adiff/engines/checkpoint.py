# SPDX-License-Identifier: Apache-2.0
"""Finding the checkpoint to resume from, and loading trained weights outside an engine.

MONAI's ``CheckpointSaver`` names periodic checkpoints ``<prefix>_epoch=<n>.pt`` (keeping ``n_saved`` of them); a
bundle that resumes must find the newest one, which MONAI does not provide. Fitting steps that run outside an Ignite
engine (calibration) load weights with :func:`load_network_weights` (MONAI's ``CheckpointLoader`` is a handler).
"""

from __future__ import annotations

import glob
import os
import re

import torch

__all__ = ["latest_checkpoint", "load_network_weights"]

_EPOCH = re.compile(r"_(?:epoch|iteration)=(\d+)\.pt$")


def latest_checkpoint(ckpt_dir: str, prefix: str = "checkpoint") -> str | None:
    """The newest ``<prefix>_epoch=<n>.pt`` (or ``_iteration=<n>``) in ``ckpt_dir``, or ``None``.

    Bundle configs use it as ``"$monai_adiff.engines.latest_checkpoint(@ckpt_dir)"`` with the loader disabled when it
    is ``None``, so a restarted ``run training`` resumes where the last one stopped.
    """
    best, best_n = None, -1
    for path in glob.glob(os.path.join(glob.escape(ckpt_dir), f"{prefix}_*.pt")):
        m = _EPOCH.search(os.path.basename(path))
        if m and int(m.group(1)) > best_n:
            best, best_n = path, int(m.group(1))
    return best


def load_network_weights(network: torch.nn.Module, path: str, key: str = "model") -> torch.nn.Module:
    """Load ``path`` (a bare state dict or ``{key: state_dict, ...}``) into ``network`` with ``weights_only=True``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and key in state and isinstance(state[key], dict):
        state = state[key]
    network.load_state_dict(state)
    return network
