# SPDX-License-Identifier: Apache-2.0
"""Point-level exactness of the 3D and 4D OpenSimplex kernels, including region boundaries and ties."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized

from monai_adiff.noise.lattice3 import (
    _INDEX_CODES,
    _extra_vertex_code,
    _extra_vertex_index,
    gradient_tables3,
    opensimplex3,
)
from monai_adiff.noise.lattice4 import gradient_tables4, opensimplex4
from monai_adiff.noise.tables import permutation_tables
from tests.noise.oracle import opensimplex

SEEDS = [0, -7, 2**62 + 11, 987654321]
TOL = 2e-6


def _points(kind: str, dims: int, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "uniform":
        return rng.uniform(-50, 600, (n, dims))
    # dyadic and sixth-grid points sit on cell faces and make the region cascade compare equal values
    grid = {"dyadic": 1 / 8, "sixths": 1 / 6}[kind]
    return rng.integers(-400, 4000, (n, dims)) * grid


class TestLattice(unittest.TestCase):
    @parameterized.expand([("uniform",), ("dyadic",), ("sixths",)])
    def test_noise3_points(self, kind):
        rng = np.random.default_rng(3)
        pts = _points(kind, 3, 3000, rng)
        planes = rng.integers(0, len(SEEDS), len(pts))
        tables = gradient_tables3(permutation_tables(torch.tensor(SEEDS)))
        args = [torch.from_numpy(pts[:, i].copy()) for i in range(3)]
        gens = [opensimplex.OpenSimplex(s) for s in SEEDS]
        ref = np.array([gens[p].noise3(*pt) for p, pt in zip(planes, pts)])
        for fused in (False, True):
            ours = opensimplex3(*args, torch.from_numpy(planes).int(), tables, fused)
            np.testing.assert_allclose(ours.numpy(), ref, atol=TOL, rtol=0)

    @parameterized.expand([("uniform",), ("dyadic",), ("sixths",)])
    def test_noise4_points(self, kind):
        rng = np.random.default_rng(4)
        pts = _points(kind, 4, 3000, rng)
        planes = rng.integers(0, len(SEEDS), len(pts))
        tables = gradient_tables4(permutation_tables(torch.tensor(SEEDS)))
        ours = opensimplex4(
            *[torch.from_numpy(pts[:, i].copy()) for i in range(4)], torch.from_numpy(planes).int(), tables
        )
        gens = [opensimplex.OpenSimplex(s) for s in SEEDS]
        ref = np.array([gens[p].noise4(*pt) for p, pt in zip(planes, pts)])
        np.testing.assert_allclose(ours.numpy(), ref, atol=TOL, rtol=0)

    def test_region_index_agrees_with_case_code(self):
        # the fused kernels' bit index + table and the eager closed form are two forms of one cascade: equal codes,
        # also on the ties a 1/12 grid of in-cell coordinates produces (every region and comparison tie)
        rng = np.random.default_rng(5)
        pts = np.concatenate([rng.integers(0, 12, (20000, 3)) / 12, rng.uniform(0, 1, (20000, 3))])
        sx, sy, sz = (torch.from_numpy(pts[:, i].copy()) for i in range(3))
        in_sum = sx + sy + sz
        index = _extra_vertex_index(sx, sy, sz, in_sum, in_sum <= 1, in_sum >= 2)
        codes = torch.tensor(_INDEX_CODES)[index.long()]
        self.assertTrue(torch.equal(codes, _extra_vertex_code(sx, sy, sz, in_sum).long()))
        self.assertGreaterEqual(int(index.min()), 0)
        self.assertLess(int(index.max()), 128)

    def test_noise3_pixel_grid_worst_case(self):
        # t = 999 at the finest octave (f = 2): coordinates near 500, every grid point on a cell face or a tie
        tables = gradient_tables3(permutation_tables(torch.tensor([5])))
        gen = opensimplex.OpenSimplex(5)
        for f in (2.0, 1.0, 0.5):
            x, y = np.arange(96) / f, np.arange(80) / f
            ref = gen.noise3array(x, y, np.array([999 / f]))[0]
            ours = opensimplex3(
                torch.from_numpy(x)[None],
                torch.from_numpy(y)[:, None],
                torch.tensor(999 / f, dtype=torch.float64),
                torch.tensor(0, dtype=torch.int32),
                tables,
            )
            np.testing.assert_allclose(ours.numpy(), ref, atol=TOL, rtol=0)


if __name__ == "__main__":
    unittest.main()
