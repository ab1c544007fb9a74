# SPDX-License-Identifier: Apache-2.0
"""RandSimplexNoise / RandSimplexNoised: shapes, types, formulas, random state."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from parameterized import parameterized

from monai_adiff.noise import simplex_noise, tsimplex_noise
from monai_adiff.transforms.noise import RandSimplexNoise, RandSimplexNoiseD, RandSimplexNoised, RandSimplexNoiseDict


class TestRandSimplexNoise(unittest.TestCase):
    @parameterized.expand([((1, 32, 32),), ((2, 24, 40),), ((1, 6, 16, 16),)])
    def test_shape_and_formula(self, shape):
        tr = RandSimplexNoise(timesteps=(0, 1000))
        tr.set_random_state(0)
        out = tr(torch.zeros(shape))
        self.assertEqual(out.shape, shape)
        self.assertTrue(0 <= tr.timestep < 1000)
        ref = simplex_noise((1, *shape), tr.timestep, seeds=[tr.seed])[0]
        torch.testing.assert_close(out, ref, rtol=0, atol=0)

    def test_tsimplex_and_fixed_timestep(self):
        tr = RandSimplexNoise(timesteps=250, noise_type="tsimplex")
        out = tr(torch.zeros(3, 32, 32))
        self.assertEqual(tr.timestep, 250)
        torch.testing.assert_close(out, tsimplex_noise((1, 3, 32, 32), 250, seeds=[tr.seed])[0], rtol=0, atol=0)

    def test_gaussian(self):
        out = RandSimplexNoise(noise_type="gaussian")(torch.zeros(1, 64, 64))
        self.assertLess(abs(out.std().item() - 1.0), 0.05)

    def test_types_follow_input(self):
        tr = RandSimplexNoise()
        meta = MetaTensor(torch.zeros(1, 16, 16), affine=torch.eye(4) * 2)
        out = tr(meta)
        self.assertIsInstance(out, MetaTensor)
        self.assertIsInstance(tr(np.zeros((1, 16, 16), np.float32)), np.ndarray)
        self.assertEqual(tr(torch.zeros(1, 16, 16, dtype=torch.int16)).dtype, torch.float32)

    def test_random_state_reproducible(self):
        a = RandSimplexNoise().set_random_state(3)
        b = RandSimplexNoise().set_random_state(3)
        img = torch.zeros(1, 16, 16)
        for _ in range(2):
            torch.testing.assert_close(a(img), b(img), rtol=0, atol=0)
        first = a(img)
        torch.testing.assert_close(a(img, randomize=False), first, rtol=0, atol=0)
        self.assertGreater((a(img) - first).abs().max().item(), 1e-3)

    @parameterized.expand([((5, 5),), ((10, 2),), (1.5,), ((0, 10, 20),)])
    def test_bad_timesteps(self, timesteps):
        with self.assertRaisesRegex(ValueError, "timesteps"):
            RandSimplexNoise(timesteps=timesteps)

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, "noise_type"):
            RandSimplexNoise(noise_type="perlin")
        with self.assertRaisesRegex(ValueError, "channel-first"):
            RandSimplexNoise()(torch.zeros(16, 16))


class TestRandSimplexNoised(unittest.TestCase):
    def test_writes_noise_and_timestep(self):
        tr = RandSimplexNoised(keys="image", noise_key="noise", timestep_key="t", timesteps=(10, 20))
        tr.set_random_state(1)
        img = torch.rand(1, 32, 32)
        out = tr({"image": img, "label": 1})
        self.assertIs(out["image"], img)  # the image is left as it is
        self.assertEqual(out["label"], 1)
        t = int(out["t"])
        self.assertTrue(10 <= t < 20)
        seed = tr.noiser.seed
        torch.testing.assert_close(out["noise"], simplex_noise((1, 1, 32, 32), t, seeds=[seed])[0], rtol=0, atol=0)

    def test_several_keys_independent_fields(self):
        tr = RandSimplexNoiseD(keys=["flair", "t1"], noise_key=["n_flair", "n_t1"], timestep_key=None)
        out = tr({"flair": torch.zeros(1, 16, 16), "t1": torch.zeros(1, 16, 16)})
        self.assertNotIn("timestep", out)
        self.assertGreater((out["n_flair"] - out["n_t1"]).abs().max().item(), 1e-3)

    def test_reproducible_and_aliases(self):
        self.assertIs(RandSimplexNoiseDict, RandSimplexNoised)
        data = {"image": torch.zeros(1, 16, 16)}
        a = RandSimplexNoised("image").set_random_state(7)(data)
        b = RandSimplexNoised("image").set_random_state(7)(data)
        torch.testing.assert_close(a["noise"], b["noise"], rtol=0, atol=0)
        self.assertEqual(int(a["timestep"]), int(b["timestep"]))

    def test_key_count_mismatch(self):
        with self.assertRaisesRegex(ValueError, "noise_key"):
            RandSimplexNoised(keys=["a", "b"], noise_key="noise")

    def test_missing_keys(self):
        out = RandSimplexNoised(keys="image", allow_missing_keys=True)({"other": 1})
        self.assertNotIn("noise", out)


if __name__ == "__main__":
    unittest.main()
