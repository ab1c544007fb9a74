# SPDX-License-Identifier: Apache-2.0
"""One home per method: its inferer, its fitting step (calibration, ...), its network tweaks and a README.

Methods build on the shared layers below them (``noise``, ``diffusion``, ``transforms``, ``metrics``, ``inferers``,
``engines``) and never the other way round. Subpackages load on first access (``monai_adiff.methods.sss``), so a
bundle config needs only ``"$import monai_adiff"``.
"""

from __future__ import annotations

import importlib
import pkgutil

#: the method subpackages, found on disk (a new method is a new folder)
METHODS = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg))

__all__ = ["METHODS", *METHODS]


def __getattr__(name: str):
    if name in METHODS:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
