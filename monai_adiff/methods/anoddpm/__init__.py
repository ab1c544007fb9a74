# SPDX-License-Identifier: Apache-2.0
"""AnoDDPM (Wyatt et al. 2022): see ``README.md`` beside this file."""

from .inferer import IterativeReconstructionInferer

__all__ = ["IterativeReconstructionInferer"]
