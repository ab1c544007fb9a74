# SPDX-License-Identifier: Apache-2.0
"""Tests of :mod:`monai_adiff.noise` against the opensimplex oracle."""
