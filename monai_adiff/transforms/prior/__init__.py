# SPDX-License-Identifier: Apache-2.0
from . import array, dictionary
from .array import *  # noqa: F401,F403
from .dictionary import *  # noqa: F401,F403

__all__ = array.__all__ + dictionary.__all__
