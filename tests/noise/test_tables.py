# SPDX-License-Identifier: Apache-2.0
"""Seed -> permutation tables against ``opensimplex.OpenSimplex(seed)._perm``."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized

from monai_adiff.noise.tables import hash2_table, normalize_seeds, permutation_tables
from tests.noise.oracle import opensimplex

EDGE_SEEDS = [0, 3, 1, -1, 12345, -987654321, 10**10, -(10**10), 2**63 - 1, -(2**63), 2**63 - 31, 2**62 + 7]


class TestPermutationTables(unittest.TestCase):
    def test_matches_opensimplex_init(self):
        rng = np.random.default_rng(0)
        seeds = EDGE_SEEDS + rng.integers(-(2**63), 2**63 - 1, 300, dtype=np.int64).tolist()
        perm = permutation_tables(torch.tensor(seeds, dtype=torch.int64))
        for row, seed in zip(perm, seeds):
            np.testing.assert_array_equal(row.numpy(), opensimplex.OpenSimplex(seed)._perm, err_msg=f"seed {seed}")

    def test_hash2_table(self):
        # the definition, entry by entry against the reference's own permutation: perm[(perm[X] + Y) & 255]
        seeds = [0, -3, 2**62 + 1]
        table = hash2_table(permutation_tables(torch.tensor(seeds))).view(3, 256, 256)
        self.assertEqual(table.dtype, torch.uint8)
        for plane, seed in enumerate(seeds):
            perm = np.asarray(opensimplex.OpenSimplex(seed)._perm)
            want = perm[(perm[:, None] + np.arange(256)[None]) & 255]
            np.testing.assert_array_equal(table[plane].numpy(), want, err_msg=f"seed {seed}")

    def test_rows_are_permutations(self):
        perm = permutation_tables(torch.arange(-50, 50, dtype=torch.int64))
        self.assertTrue(torch.equal(perm.sort(dim=1).values, torch.arange(256).expand(100, 256)))

    @parameterized.expand([(2**64 + 5, 5), (-(2**64) - 1, -1), (2**63, -(2**63)), (np.int64(-7), -7)])
    def test_seed_wraparound(self, seed, wrapped):
        self.assertEqual(normalize_seeds([seed]), [wrapped])
        # opensimplex wraps inside its LCG the same way
        np.testing.assert_array_equal(
            permutation_tables(torch.tensor([wrapped]))[0].numpy(), opensimplex.OpenSimplex(int(seed))._perm
        )

    @parameterized.expand([([1.5],), ([True],), (["3"],)])
    def test_bad_seeds(self, seeds):
        with self.assertRaises(TypeError):
            normalize_seeds(seeds)

    def test_bad_tensor(self):
        with self.assertRaises(ValueError):
            permutation_tables(torch.zeros(3, dtype=torch.int32))


if __name__ == "__main__":
    unittest.main()
