# SPDX-License-Identifier: Apache-2.0
"""monai-adiff: diffusion-model anomaly segmentation for brain MRI, shipped as MONAI bundles.

Importing the top-level package is cheap; subpackages load on first attribute access (``monai_adiff.data``,
``.noise``, ``.transforms``, ``.diffusion``, ``.inferers``, ``.engines``, ``.metrics``, ``.methods``, ``.bundle``),
so a bundle config needs only ``"$import monai_adiff"`` to use ``"$monai_adiff.data.load_cases(...)"``.
"""

from __future__ import annotations

import importlib

__version__ = "0.5.0"

_SUBMODULES = (
    "bundle",
    "cli",
    "data",
    "demo",
    "diffusion",
    "engines",
    "errors",
    "fitted",
    "inferers",
    "methods",
    "metrics",
    "noise",
    "output",
    "transforms",
    "utils",
)

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
