# SPDX-License-Identifier: Apache-2.0
"""Single-step sampling (Damudi & Kini 2024): see ``README.md`` beside this file."""

from .inferer import SingleStepInferer

__all__ = ["SingleStepInferer"]
