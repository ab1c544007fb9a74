# SPDX-License-Identifier: Apache-2.0
"""simplex_noise / tsimplex_noise against the opensimplex formulas, plus the properties the peers lack."""

from __future__ import annotations

import os
import unittest
from unittest import mock

import numpy as np
import pytest
import torch
from parameterized import parameterized

import monai_adiff.noise.simplex as simplex_module
from monai_adiff.noise import compiled_kernels_enabled, simplex_noise, tsimplex_noise, use_compiled_kernels
from tests.noise.oracle import simplex_field, tsimplex_field, volume_field

TOL = 1e-4  # float32 vs the float64 reference; observed ~1e-6

# (seeds, shape, timesteps, octaves): sizes 32..128, non-square, negative / large seeds, t = 0 and 999, float t
EXACT_CASES = [
    ([0], (1, 1, 32, 32), [0], 6),
    ([-5, 7], (2, 1, 48, 64), [999, 0], 6),
    ([2**62 + 123, -(10**10)], (2, 2, 40, 32), [250, 999], 1),
    ([123456789], (1, 1, 128, 96), [999], 6),
    ([3, 3], (2, 1, 33, 57), [17.5, 500.25], 6),
    ([-(2**63), 2**63 - 1, 42], (3, 1, 32, 40), [1, 998, 499], 1),
]


class TestSimplexExact(unittest.TestCase):
    @parameterized.expand(EXACT_CASES)
    def test_matches_anoddpm_formula(self, seeds, shape, timesteps, octaves):
        t = torch.tensor(timesteps)
        noise = simplex_noise(shape, t, octaves=octaves, seeds=seeds)
        self.assertEqual(noise.shape, shape)
        self.assertEqual(noise.dtype, torch.float32)
        for b in range(shape[0]):
            for c in range(shape[1]):
                ref = simplex_field(seeds[b] + c, shape[2], shape[3], float(t[b]), octaves=octaves)
                np.testing.assert_allclose(noise[b, c].numpy(), ref, atol=TOL, rtol=0, err_msg=f"sample {b} ch {c}")

    @parameterized.expand([(6, 0.8, 64.0), (3, 0.5, 16.0), (2, 1.0, 10.0)])
    def test_octave_parameters(self, octaves, persistence, frequency):
        noise = simplex_noise(
            (1, 1, 40, 48), 321, octaves=octaves, persistence=persistence, frequency=frequency, seeds=[9]
        )
        ref = simplex_field(9, 40, 48, 321, octaves, persistence, frequency)
        np.testing.assert_allclose(noise[0, 0].numpy(), ref, atol=TOL, rtol=0)

    def test_volume_is_4d_noise_over_slices(self):
        seeds, t = [11, -4], torch.tensor([999, 3])
        noise = simplex_noise((2, 2, 10, 32, 24), t, seeds=seeds)
        for b in range(2):
            for c in range(2):
                ref = volume_field(seeds[b] + c, 10, 32, 24, float(t[b]))
                np.testing.assert_allclose(noise[b, c].numpy(), ref, atol=TOL, rtol=0)


class TestTsimplexExact(unittest.TestCase):
    @parameterized.expand(
        [
            ([8], (1, 1, 32, 32), [0], 6),
            ([-3, 2**40], (2, 4, 40, 56), [999, 120], 6),
            ([5, 6], (2, 3, 64, 48), [7, 7], 1),
        ]
    )
    def test_matches_dtunet_formula(self, seeds, shape, timesteps, octaves):
        noise = tsimplex_noise(shape, torch.tensor(timesteps), octaves=octaves, seeds=seeds)
        self.assertEqual(noise.shape, shape)
        for b in range(shape[0]):
            ref = tsimplex_field(seeds[b], shape[1], shape[2], shape[3], timesteps[b], octaves=octaves)
            np.testing.assert_allclose(noise[b].numpy(), ref, atol=TOL, rtol=0)

    def test_channels_are_correlated_samples_are_not(self):
        noise = tsimplex_noise((2, 2, 128, 128), 300, seeds=[1, 2])
        corr = np.corrcoef(noise[:, 0].reshape(2, -1).numpy(), noise[:, 1].reshape(2, -1).numpy())
        self.assertGreater(corr[0, 2], 0.85)  # channels 0 and 1 of sample 0 (DTU-Net: about 0.94)
        self.assertLess(abs(corr[0, 1]), 0.3)  # channel 0 of samples 0 and 1

    def test_volume_refused(self):
        with self.assertRaisesRegex(ValueError, "5D"):
            tsimplex_noise((1, 1, 8, 16, 16), 3)


class TestBatchAndSeeds(unittest.TestCase):
    def test_default_statistics(self):
        # AnoDDPM defaults at 128 px: std about 0.5 (peers.md 1(c)), not normalised
        noise = simplex_noise((8, 1, 128, 128), torch.arange(8) * 120, seeds=list(range(100, 108)))
        std = noise.std(dim=(1, 2, 3))
        mean = noise.mean(dim=(1, 2, 3))
        self.assertTrue(((std > 0.40) & (std < 0.60)).all(), std)
        self.assertTrue((mean.abs() < 0.3).all(), mean)
        self.assertLess(noise.abs().max().item(), 2.5)
        self.assertTrue(0.45 < noise.std().item() < 0.55)

    def test_independent_per_sample(self):
        t = torch.full((3,), 500)
        noise = simplex_noise((3, 1, 32, 32), t, seeds=[1, 2, 1])
        self.assertGreater((noise[0] - noise[1]).abs().max().item(), 0.1)  # equal t, different seeds
        torch.testing.assert_close(noise[0], noise[2], rtol=0, atol=0)  # equal seeds and t
        drawn = simplex_noise((4, 1, 32, 32), t[0], generator=torch.Generator().manual_seed(0))
        for i in range(4):
            for j in range(i):
                self.assertGreater((drawn[i] - drawn[j]).abs().max().item(), 0.1)

    def test_channels_use_consecutive_seeds(self):
        two = simplex_noise((1, 2, 32, 32), 10, seeds=[40])
        one = simplex_noise((1, 1, 32, 32), 10, seeds=[41])
        torch.testing.assert_close(two[0, 1], one[0, 0], rtol=0, atol=0)

    def test_depends_on_timestep(self):
        a, b = (simplex_noise((1, 1, 32, 32), t, seeds=[1]) for t in (100, 101))
        corr = np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1]
        self.assertGreater(corr, 0.5)  # neighbouring t correlate (AnoDDPM: 0.94 at 249/250) but differ
        self.assertGreater((a - b).abs().max().item(), 1e-3)

    def test_generator_reproducible(self):
        t = torch.tensor([5, 700])
        a = simplex_noise((2, 1, 32, 32), t, generator=torch.Generator().manual_seed(123))
        b = simplex_noise((2, 1, 32, 32), t, generator=torch.Generator().manual_seed(123))
        c = simplex_noise((2, 1, 32, 32), t, generator=torch.Generator().manual_seed(124))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        self.assertGreater((a - c).abs().max().item(), 0.1)
        torch.manual_seed(7)
        d = tsimplex_noise((2, 2, 32, 32), t)
        torch.manual_seed(7)
        torch.testing.assert_close(d, tsimplex_noise((2, 2, 32, 32), t), rtol=0, atol=0)

    def test_seed_tensor_equals_seed_list(self):
        seeds = [2**62 + 5, -3]
        a = simplex_noise((2, 2, 32, 32), 9, seeds=seeds)
        b = simplex_noise((2, 2, 32, 32), 9, seeds=torch.tensor(seeds))
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    @parameterized.expand(
        [
            (250,),
            (250.0,),
            (torch.tensor(250),),
            (torch.tensor([250, 250]),),
            (torch.tensor([250.0, 250.0], dtype=torch.float64),),
        ]
    )
    def test_timestep_forms(self, t):
        ref = simplex_noise((2, 1, 32, 32), torch.tensor([250, 250]), seeds=[1, 2])
        torch.testing.assert_close(simplex_noise((2, 1, 32, 32), t, seeds=[1, 2]), ref, rtol=0, atol=0)

    def test_dtype_and_device(self):
        out = simplex_noise((1, 1, 32, 32), 3, seeds=[1], dtype=torch.float64, device="cpu")
        self.assertEqual((out.dtype, out.device.type), (torch.float64, "cpu"))
        self.assertEqual(simplex_noise((1, 1, 32, 32), 3, seeds=[1], dtype=torch.float16).dtype, torch.float16)


class TestChunking(unittest.TestCase):
    def test_chunks_across_rows_and_planes(self):
        # tiny chunks: chunk boundaries fall inside planes and inside volumes' slices
        seeds, t = [4, -9], torch.tensor([999, 31])
        ref2 = simplex_noise((2, 2, 33, 24), t, seeds=seeds)
        ref3 = simplex_noise((2, 1, 5, 17, 24), t, seeds=seeds)
        reft = tsimplex_noise((2, 3, 17, 24), t, seeds=seeds)
        with mock.patch.object(simplex_module, "_CPU_CHUNK", 24 * 7):
            torch.testing.assert_close(simplex_noise((2, 2, 33, 24), t, seeds=seeds), ref2, rtol=0, atol=0)
            torch.testing.assert_close(simplex_noise((2, 1, 5, 17, 24), t, seeds=seeds), ref3, rtol=0, atol=0)
            torch.testing.assert_close(tsimplex_noise((2, 3, 17, 24), t, seeds=seeds), reft, rtol=0, atol=0)
        np.testing.assert_allclose(ref3[1, 0].numpy(), volume_field(-9, 5, 17, 24, 31), atol=TOL, rtol=0)

    def test_compiled_failure_falls_back_to_eager(self):
        def broken(kind):
            raise RuntimeError("no compiler here")

        ref = simplex_noise((1, 1, 32, 32), 5, seeds=[1])
        with mock.patch.object(simplex_module, "_compiled_term", broken):
            use_compiled_kernels(True)
            try:
                with self.assertWarnsRegex(UserWarning, "no compiler here"):
                    out = simplex_noise((1, 1, 32, 32), 5, seeds=[1])
                self.assertFalse(compiled_kernels_enabled())
            finally:
                use_compiled_kernels(False)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)


class TestValidation(unittest.TestCase):
    @parameterized.expand(
        [
            ((1, 32, 32), 0, {}, "shape"),
            ((1, 1, 0, 32), 0, {}, "positive"),
            ((1, 1, 32, 32), torch.zeros(2), {}, r"\(1,\)"),
            ((2, 1, 32, 32), torch.zeros(2, 1), {}, r"\(2,\)"),
            ((1, 1, 32, 32), float("nan"), {}, "finite"),
            ((1, 1, 32, 32), "3", {}, "timesteps"),
            ((1, 1, 32, 32), torch.tensor([True]), {}, "dtype"),
            ((2, 1, 32, 32), 0, {"seeds": [1]}, "one seed per sample"),
            ((1, 1, 32, 32), 0, {"seeds": [1.5]}, "integers"),
            ((1, 1, 32, 32), 0, {"seeds": torch.zeros(1)}, "integer tensor"),
            ((1, 1, 32, 32), 0, {"octaves": 0}, "octaves"),
            ((1, 1, 32, 32), 0, {"frequency": 0.0}, "frequency"),
            ((1, 1, 32, 32), 0, {"persistence": float("inf")}, "persistence"),
            ((1, 1, 32, 32), 0, {"dtype": torch.int32}, "dtype"),
        ]
    )
    def test_errors(self, shape, t, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            simplex_noise(shape, t, **kwargs)


@unittest.skipUnless(torch.cuda.is_available(), "needs CUDA")
class TestCuda(unittest.TestCase):
    def test_same_values_as_cpu(self):
        t = torch.tensor([0, 999, 400])
        for fn, shape in (
            (simplex_noise, (3, 2, 64, 48)),
            (tsimplex_noise, (3, 2, 48, 64)),
            (simplex_noise, (3, 1, 8, 32, 32)),
        ):
            cpu = fn(shape, t, seeds=[1, -2, 2**62])
            gpu = fn(shape, t.cuda(), seeds=[1, -2, 2**62], device="cuda")
            self.assertEqual(gpu.device.type, "cuda")
            torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-5)

    def test_cuda_generator(self):
        g = torch.Generator(device="cuda").manual_seed(3)
        out = simplex_noise((2, 1, 32, 32), torch.tensor([1, 2], device="cuda"), generator=g)
        self.assertEqual(out.device.type, "cuda")
        g.manual_seed(3)
        torch.testing.assert_close(out, simplex_noise((2, 1, 32, 32), torch.tensor([1, 2], device="cuda"), generator=g))


@pytest.mark.slow
@unittest.skipUnless(
    os.environ.get("MONAI_ADIFF_TEST_COMPILE") == "1", "compiling takes minutes: set MONAI_ADIFF_TEST_COMPILE=1"
)
class TestCompiled(unittest.TestCase):
    def test_compiled_equals_reference(self):
        use_compiled_kernels(True)
        try:
            t = torch.tensor([999, 0])
            noise = simplex_noise((2, 1, 48, 40), t, seeds=[3, -8])
            tnoise = tsimplex_noise((2, 2, 32, 32), t, seeds=[3, -8])
            # wavelengths that are not powers of two take the kernel that divides instead of multiplying by 1 / f
            odd = simplex_noise((2, 1, 24, 24), t, seeds=[3, -8], octaves=2, frequency=3.0)
        finally:
            use_compiled_kernels(False)
        for b, seed in enumerate((3, -8)):
            np.testing.assert_allclose(noise[b, 0].numpy(), simplex_field(seed, 48, 40, float(t[b])), atol=TOL, rtol=0)
            want = simplex_field(seed, 24, 24, float(t[b]), octaves=2, frequency=3.0)
            np.testing.assert_allclose(odd[b, 0].numpy(), want, atol=TOL, rtol=0)
            np.testing.assert_allclose(
                tnoise[b].numpy(), tsimplex_field(seed, 2, 32, 32, float(t[b])), atol=TOL, rtol=0
            )


if __name__ == "__main__":
    unittest.main()
