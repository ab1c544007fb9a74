# SPDX-License-Identifier: Apache-2.0
"""D3AD's model and fitting steps: checkpoints with a fitted bank, the latent scale, the bank and its bins against
brute force, the autoencoder loss by hand, the masking pretext, the stages' cosine schedule in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_adiff.engines.checkpoint import latest_checkpoint, load_network_weights
from monai_adiff.methods.d3ad import (
    AutoencoderKLLoss,
    ImagePrepareBatch,
    LatentDiffusionPrepareBatch,
    MaskedImagePrepareBatch,
    fit_feature_bank,
    fit_latent_scale,
    sync_fitted_parts,
    train_stage,
)
from tests.methods.d3ad.conftest import brain_slices, tiny_model


def _loader(x: torch.Tensor, batch: int = 4):
    return [{"image": x[i : i + batch]} for i in range(0, x.shape[0], batch)]


def test_latent_scale_makes_unit_variance_latents(model):
    x = brain_slices(8)
    fit_latent_scale(model, _loader(x))
    with torch.no_grad():
        z = model.encode(x)
    assert abs(float(z.double().std(unbiased=False)) - 1.0) < 1e-4
    torch.testing.assert_close(model.decode(z), model.autoencoder.decode(z / model.latent_scale))


def test_bank_and_bins_match_brute_force(model):
    x = brain_slices(8)
    dist = fit_feature_bank(model, _loader(x, 3), k=3, num_bins=10)
    with torch.no_grad():
        feats = model.knn_features(x).numpy()
    np.testing.assert_allclose(model.bank.numpy(), feats, rtol=1e-5, atol=1e-6)
    d = np.abs(feats[:, None] - feats[None]).sum(-1)
    np.fill_diagonal(d, np.inf)
    expected = np.sort(d, 1)[:, :3].mean(1)
    np.testing.assert_allclose(dist.numpy(), expected, rtol=1e-4)
    np.testing.assert_allclose(model.bin_edges.numpy(), np.histogram(expected, bins=10)[1], rtol=1e-4)


def test_constant_features_are_refused(model):
    with torch.no_grad():
        for p in model.feature_extractor.parameters():
            p.zero_()
    with pytest.raises(ValueError, match="same features"):
        fit_feature_bank(model, _loader(brain_slices(6)), k=2)


def test_checkpoint_with_a_fitted_bank_loads_into_a_fresh_model(model, tmp_path):
    x = brain_slices(6)
    fit_latent_scale(model, _loader(x))
    fit_feature_bank(model, _loader(x), k=2)
    torch.save({"model": model.state_dict()}, tmp_path / "model.pt")
    fresh = tiny_model(seed=1)
    assert not fresh.fitted
    load_network_weights(fresh, tmp_path / "model.pt")  # weights_only=True, shape checks tolerate the bank's size
    assert fresh.fitted and torch.equal(fresh.bank, model.bank) and torch.equal(fresh.bin_edges, model.bin_edges)
    assert float(fresh.latent_scale) == float(model.latent_scale)
    other = tiny_model(seed=2)
    sync_fitted_parts(model, other)
    torch.testing.assert_close(other.encode(x), model.encode(x))
    assert torch.equal(other.bank, model.bank)


def test_autoencoder_loss_by_hand():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    recon = x + torch.tensor([[[[1.0, -1.0], [0.5, 0.5]]]])
    mu, sigma = torch.zeros(1, 1, 1, 2), torch.ones(1, 1, 1, 2)
    assert float(AutoencoderKLLoss(1.0)((recon, mu, sigma), x)) == pytest.approx(0.75)  # KL of N(0, 1) is 0
    mu2, sigma2 = torch.tensor([[[[1.0, 0.0]]]]), torch.tensor([[[[1.0, 2.0]]]])
    kl = 0.5 * (1 + 0) + 0.5 * (4 - np.log(4) - 1)  # 0.5 (mu^2 + s^2 - log s^2 - 1), summed
    assert float(AutoencoderKLLoss(0.1)((recon, mu2, sigma2), x)) == pytest.approx(0.75 + 0.1 * kl, rel=1e-6)


def test_masking_pretext_hides_whole_patches_and_keeps_the_target():
    torch.manual_seed(0)
    x = torch.rand(16, 1, 32, 32)
    masked, target = MaskedImagePrepareBatch(patch_size=8, mask_ratio=0.5)({"image": x})
    assert torch.equal(target, x)
    hidden = masked != x
    frac = float((masked == -1).float().mean())
    assert 0.35 < frac < 0.65
    # each 8 x 8 patch is masked entirely or not at all
    patches = (masked == -1).reshape(16, 1, 4, 8, 4, 8).float().mean((3, 5))
    assert set(patches.unique().tolist()) <= {0.0, 1.0}
    assert hidden.sum() <= (masked == -1).sum()


def test_latent_prepare_batch_trains_on_scaled_latents(model):
    x = brain_slices(4)
    fit_latent_scale(model, _loader(x))
    z, target, args, kwargs = LatentDiffusionPrepareBatch(model, 1000, sample=False)({"image": x})
    torch.testing.assert_close(z, model.encode(x))
    assert target.shape == z.shape and torch.equal(target, kwargs["noise"]) and kwargs["timesteps"].shape == (4,)


class _Interrupting:
    """Two batches per epoch; raises when epoch ``stop_at`` starts (an interrupted training)."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at, self.epoch = stop_at, 0
        self.batches = [{"image": torch.randn(4, 3, generator=torch.Generator().manual_seed(i))} for i in range(2)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        self.epoch += 1
        if self.epoch == self.stop_at:
            raise RuntimeError("interrupted")
        return iter(self.batches)


def _saved_lr(ckpt_dir) -> tuple[float, dict]:
    state = torch.load(latest_checkpoint(str(ckpt_dir)), weights_only=True)
    return state["optimizer"]["param_groups"][0]["lr"], state.get("lr_scheduler", {})


def test_cosine_stage_schedule_follows_the_closed_form_and_resumes(tmp_path):
    lr, epochs = 0.1, 4
    args = {"loss_function": torch.nn.MSELoss(), "prepare_batch": ImagePrepareBatch(), "learning_rate": lr}
    net = torch.nn.Linear(3, 3)
    with pytest.raises(RuntimeError, match="interrupted"):
        train_stage(
            net, data_loader=_Interrupting(stop_at=3), max_epochs=epochs, ckpt_dir=str(tmp_path), cosine_lr=True, **args
        )
    saved, sched = _saved_lr(tmp_path)
    assert saved == pytest.approx(0.5 * lr * (1 + np.cos(np.pi * 2 / epochs)))  # after 2 of 4 epochs: lr / 2
    assert sched["last_epoch"] == 2
    train_stage(net, data_loader=_Interrupting(), max_epochs=epochs, ckpt_dir=str(tmp_path), cosine_lr=True, **args)
    saved, sched = _saved_lr(tmp_path)
    assert sched["last_epoch"] == epochs  # the schedule went on from the checkpoint, not from its start
    assert saved == pytest.approx(0.0, abs=1e-9)
    plain = tmp_path / "constant"
    train_stage(torch.nn.Linear(3, 3), data_loader=_Interrupting(), max_epochs=2, ckpt_dir=str(plain), **args)
    assert _saved_lr(plain) == (lr, {})
