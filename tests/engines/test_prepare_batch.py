# SPDX-License-Identifier: Apache-2.0
"""NoiseDiffusionPrepareBatch: timesteps first, noise for those timesteps, MONAI's return contract."""

from __future__ import annotations

import unittest
from unittest import mock

import torch
from monai.engines import DiffusionPrepareBatch, SupervisedTrainer
from monai.inferers import DiffusionInferer
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDPMScheduler
from parameterized import parameterized

import monai_adiff.noise.spec as spec_module
from monai_adiff.engines.prepare_batch import NoiseDiffusionPrepareBatch
from monai_adiff.noise import NoiseSpec, simplex_noise, tsimplex_noise


def _batch(n=3, c=1, size=32):
    return {"image": torch.rand(n, c, size, size) * 2 - 1, "label": torch.arange(n)}


class TestNoiseDiffusionPrepareBatch(unittest.TestCase):
    def test_is_monai_prepare_batch(self):
        self.assertIsInstance(NoiseDiffusionPrepareBatch(1000), DiffusionPrepareBatch)

    @parameterized.expand([("simplex", None), ("tsimplex", None), ("gaussian", None), ("simplex", "label")])
    def test_contract(self, noise_type, condition_name):
        prep = NoiseDiffusionPrepareBatch(1000, condition_name=condition_name, noise=noise_type)
        batch = _batch(c=2)
        images, target, args, kwargs = prep(batch, device="cpu")
        self.assertTrue(torch.equal(images, batch["image"]))
        self.assertEqual(args, ())
        expected_keys = {"noise", "timesteps"} | ({"condition"} if condition_name else set())
        self.assertEqual(set(kwargs), expected_keys)
        self.assertIs(target, kwargs["noise"])
        self.assertEqual(kwargs["noise"].shape, images.shape)
        self.assertEqual(kwargs["noise"].dtype, images.dtype)
        t = kwargs["timesteps"]
        self.assertEqual((t.shape, t.dtype), (torch.Size([3]), torch.long))
        self.assertTrue(((t >= 0) & (t < 1000)).all())
        if condition_name:
            self.assertTrue(torch.equal(kwargs["condition"], batch["label"]))

    @parameterized.expand([("simplex", simplex_noise, 0.8), ("tsimplex", tsimplex_noise, 0.9)])
    def test_noise_is_for_the_batch_timesteps(self, noise_type, fn, persistence):
        prep = NoiseDiffusionPrepareBatch(1000, noise=NoiseSpec(noise_type, octaves=4, frequency=32.0))
        seeds = torch.tensor([11, 22, 33])
        # draw the seeds we expect, so the noise can be recomputed from the returned timesteps
        real_make_noise = spec_module.make_noise
        calls = []

        def spy(kind, shape, timesteps, **kwargs):
            calls.append((kind, tuple(shape), timesteps, kwargs))
            return real_make_noise(kind, shape, timesteps, seeds=seeds, **kwargs)

        with mock.patch.object(spec_module, "make_noise", spy):
            _, _, _, kwargs = prep(_batch(c=2))
        self.assertEqual(len(calls), 1)
        kind, shape, t_used, kw = calls[0]
        self.assertEqual((kind, shape), (noise_type, (3, 2, 32, 32)))
        self.assertIs(t_used, kwargs["timesteps"])  # the very timesteps returned to the inferer
        self.assertEqual(kw["device"], torch.device("cpu"))
        self.assertEqual((kw["octaves"], kw["persistence"], kw["frequency"]), (4, persistence, 32.0))
        expected = fn(
            (3, 2, 32, 32), kwargs["timesteps"], seeds=seeds, octaves=4, persistence=persistence, frequency=32.0
        )
        torch.testing.assert_close(kwargs["noise"], expected, rtol=0, atol=0)

    def test_samples_get_different_noise(self):
        torch.manual_seed(0)
        prep = NoiseDiffusionPrepareBatch(1, noise="simplex")  # every timestep is 0
        _, _, _, kwargs = prep(_batch(n=4))
        self.assertTrue((kwargs["timesteps"] == 0).all())
        noise = kwargs["noise"]
        for i in range(4):
            for j in range(i):
                self.assertGreater((noise[i] - noise[j]).abs().max().item(), 0.1)

    def test_reproducible_with_global_seed(self):
        prep = NoiseDiffusionPrepareBatch(1000)
        torch.manual_seed(5)
        a = prep(_batch())[3]
        torch.manual_seed(5)
        b = prep(_batch())[3]
        torch.testing.assert_close(a["noise"], b["noise"], rtol=0, atol=0)
        torch.testing.assert_close(a["timesteps"], b["timesteps"], rtol=0, atol=0)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "noise_type"):
            NoiseDiffusionPrepareBatch(1000, noise="perlin")
        with self.assertRaisesRegex(ValueError, "timesteps"):
            NoiseDiffusionPrepareBatch(1000).get_noise(torch.zeros(1, 1, 8, 8))

    def test_trains_with_monai_engine(self):
        torch.manual_seed(0)
        net = DiffusionModelUNet(
            spatial_dims=2,
            in_channels=1,
            out_channels=1,
            channels=(8, 8),
            attention_levels=(False, False),
            num_res_blocks=1,
            norm_num_groups=8,
        )
        scheduler = DDPMScheduler(num_train_timesteps=1000)
        loader = [_batch(n=2, size=16) for _ in range(2)]
        trainer = SupervisedTrainer(
            device=torch.device("cpu"),
            max_epochs=1,
            train_data_loader=loader,
            network=net,
            optimizer=torch.optim.Adam(net.parameters(), 1e-4),
            loss_function=torch.nn.MSELoss(),
            inferer=DiffusionInferer(scheduler),
            prepare_batch=NoiseDiffusionPrepareBatch(1000, noise="simplex"),
        )
        trainer.run()
        self.assertTrue(torch.isfinite(torch.as_tensor(trainer.state.output[0]["loss"])))


if __name__ == "__main__":
    unittest.main()
