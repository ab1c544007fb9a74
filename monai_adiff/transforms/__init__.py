# SPDX-License-Identifier: Apache-2.0
"""MONAI-style transforms (array + dictionary pairs) for brain-MRI anomaly detection.

Everything is re-exported here so bundle configs can say ``"_target_": "monai_adiff.transforms.ScaleByPercentiled"``.
"""

from . import intensity, io, noise, postprocessing, prior, slices, utility
from .intensity import *  # noqa: F401,F403
from .io import *  # noqa: F401,F403
from .noise import *  # noqa: F401,F403
from .pipelines import RAS_LABELS, volume_preprocessing
from .postprocessing import *  # noqa: F401,F403
from .prior import *  # noqa: F401,F403
from .slices import *  # noqa: F401,F403
from .utility import *  # noqa: F401,F403

__all__ = (
    intensity.__all__
    + io.__all__
    + noise.__all__
    + postprocessing.__all__
    + prior.__all__
    + slices.__all__
    + utility.__all__
    + ["RAS_LABELS", "volume_preprocessing"]
)
