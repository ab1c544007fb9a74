# SPDX-License-Identifier: Apache-2.0
"""The independent oracle: the formulas of the noise docstrings evaluated with ``opensimplex==0.4.5.1``.

``opensimplex`` is bit-identical to AnoDDPM's ``simplex.py`` and Annotsim's ``noise.py`` (peers.md 1(c), 2(c)).
Its array functions return ``(w, z, y, x)`` / ``(z, y, x)`` shaped arrays.
"""

from __future__ import annotations

import numpy as np
import pytest

opensimplex = pytest.importorskip("opensimplex")

__all__ = ["opensimplex", "simplex_field", "tsimplex_field", "volume_field"]


def _octaves(octaves: int, persistence: float, frequency: float):
    f, amp = float(frequency), 1.0
    for _ in range(octaves):
        yield f, amp
        f, amp = f / 2, amp * persistence


def simplex_field(seed: int, h: int, w: int, t: float, octaves=6, persistence=0.8, frequency=64.0) -> np.ndarray:
    """AnoDDPM: ``sum_k p^k OpenSimplex(seed).noise3array(x / f_k, y / f_k, [t / f_k])[0]`` -> (H, W)."""
    gen = opensimplex.OpenSimplex(seed=seed)
    x, y = np.arange(w), np.arange(h)
    out = np.zeros((h, w))
    for f, amp in _octaves(octaves, persistence, frequency):
        out += amp * gen.noise3array(x / f, y / f, np.array([t / f]))[0]
    return out


def tsimplex_field(seed: int, c: int, h: int, w: int, t: float, octaves=6, persistence=0.9, frequency=64.0):
    """Tsimplex: ``sum_k p^k OpenSimplex(seed).noise4array(x / f, y / f, c / f, [t / f])[0]`` -> (C, H, W)."""
    gen = opensimplex.OpenSimplex(seed=seed)
    x, y, z = np.arange(w), np.arange(h), np.arange(c)
    out = np.zeros((c, h, w))
    for f, amp in _octaves(octaves, persistence, frequency):
        out += amp * gen.noise4array(x / f, y / f, z / f, np.array([t / f]))[0]
    return out


def volume_field(seed: int, d: int, h: int, w: int, t: float, octaves=6, persistence=0.8, frequency=64.0):
    """Simplex on volumes: ``sum_k p^k OpenSimplex(seed).noise4array(x / f, y / f, z / f, [t / f])[0]``."""
    return tsimplex_field(seed, d, h, w, t, octaves, persistence, frequency)
