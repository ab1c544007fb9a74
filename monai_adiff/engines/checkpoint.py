# SPDX-License-Identifier: Apache-2.0
"""Finding the checkpoint to resume from.

MONAI's ``CheckpointSaver`` names periodic checkpoints ``<prefix>_epoch=<n>.pt`` (keeping ``n_saved`` of them); a
bundle that resumes must find the newest one, which MONAI does not provide.
"""

from __future__ import annotations

import glob
import os
import re

__all__ = ["latest_checkpoint"]

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
