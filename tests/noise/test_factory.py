# SPDX-License-Identifier: Apache-2.0
"""make_noise dispatch and gaussian_noise."""

from __future__ import annotations

import unittest

import torch
from parameterized import parameterized

from monai_adiff.noise import gaussian_noise, make_noise, simplex_noise, tsimplex_noise


class TestMakeNoise(unittest.TestCase):
    @parameterized.expand([("simplex", simplex_noise), ("TSimplex", tsimplex_noise)])
    def test_dispatch(self, name, fn):
        t = torch.tensor([3, 4])
        torch.testing.assert_close(
            make_noise(name, (2, 2, 32, 32), t, seeds=[1, 2], octaves=3),
            fn((2, 2, 32, 32), t, seeds=[1, 2], octaves=3),
            rtol=0,
            atol=0,
        )

    def test_gaussian_ignores_simplex_parameters(self):
        g = torch.Generator().manual_seed(0)
        out = make_noise(
            "gaussian",
            torch.Size((2, 1, 8, 8)),
            torch.tensor([1, 2]),
            generator=g,
            octaves=6,
            persistence=0.8,
            frequency=64.0,
        )
        torch.testing.assert_close(out, torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)))

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "noise_type"):
            make_noise("perlin", (1, 1, 8, 8), 0)
        with self.assertRaisesRegex(ValueError, "unknown keyword"):
            make_noise("simplex", (1, 1, 8, 8), 0, octave=3)
        with self.assertRaisesRegex(ValueError, "timesteps"):
            make_noise("simplex", (1, 1, 8, 8))


class TestGaussian(unittest.TestCase):
    def test_shape_dtype_generator(self):
        g = torch.Generator().manual_seed(5)
        out = gaussian_noise((3, 2, 4, 4), generator=g, dtype=torch.float64)
        self.assertEqual((out.shape, out.dtype), (torch.Size((3, 2, 4, 4)), torch.float64))
        torch.testing.assert_close(
            out, torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        )


if __name__ == "__main__":
    unittest.main()
