# SPDX-License-Identifier: Apache-2.0
"""monai-adiff: diffusion-model anomaly segmentation for brain MRI, shipped as MONAI bundles.

Importing the top-level package is cheap: subpackages (``monai_adiff.data``, ``.noise``, ``.transforms``,
``.diffusion``, ``.inferers``, ``.engines``, ``.metrics``, ``.networks``) are imported on use.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
