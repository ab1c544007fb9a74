# SPDX-License-Identifier: Apache-2.0
"""D3AD's pretrained parts and the extractor's adaptation.

Oracles: an independent torchvision-layout ResNet (``reference_resnet.py``; torchvision itself where it imports),
diffusers' own ``AutoencoderKL`` (random weights built here, no download), eq. 11 written out pixel by pixel, and
BatchNorm statistics computed from the data directly."""

from __future__ import annotations

import pytest
import torch

from monai_adiff.errors import InputError
from monai_adiff.methods.d3ad import (
    D3ADModel,
    DomainAdaptationLoss,
    LDMAutoencoderKL,
    TorchvisionResNetFeatures,
    adapt_features,
    load_diffusers_autoencoder,
    load_pretrained_parts,
    load_torchvision_resnet,
    recalibrate_batchnorm,
)
from monai_adiff.methods.d3ad.pretrained_features import IMAGENET_MEAN, IMAGENET_STD
from tests.methods.d3ad.conftest import TINY, brain_slices, tiny_model
from tests.methods.d3ad.reference_resnet import ReferenceResNet, randomise_batchnorm


def _reference(layers=(3, 4, 6, 3), seed: int = 0) -> ReferenceResNet:
    torch.manual_seed(seed)
    return randomise_batchnorm(ReferenceResNet(layers), seed).eval()


def test_torchvision_resnet34_weights_give_the_same_features():
    ref = _reference()
    ours = TorchvisionResNetFeatures("resnet34", in_channels=3, imagenet_input=False).eval()
    load_torchvision_resnet(ours, ref.state_dict())  # fc.* included, as in torchvision's file
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        for a, b in zip(ours(x), ref.features(x), strict=True):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_imagenet_input_maps_grey_slices_as_torchvision_expects():
    ref = _reference()
    ours = TorchvisionResNetFeatures("resnet34", in_channels=1).eval()
    load_torchvision_resnet(ours, ref.state_dict())
    x = brain_slices(2, 32)  # [-1, 1], one channel
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    rgb = ((x + 1) / 2).repeat(1, 3, 1, 1)
    with torch.no_grad():
        for a, b in zip(ours(x), ref.features((rgb - mean) / std), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_real_torchvision_resnet34_when_it_imports():
    try:
        import torchvision
    except Exception:  # not installed, or a build that does not match this torch
        pytest.skip("torchvision does not import here")
    torch.manual_seed(1)
    ref = randomise_batchnorm(torchvision.models.resnet34()).eval()
    ours = TorchvisionResNetFeatures("resnet34", in_channels=3, imagenet_input=False).eval()
    load_torchvision_resnet(ours, ref.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        f = ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))
        torch.testing.assert_close(ours(x)[-1], ref.layer4(ref.layer3(ref.layer2(ref.layer1(f)))), atol=1e-5, rtol=0)


def test_weights_of_another_network_are_refused_naming_the_file(tmp_path):
    ours = TorchvisionResNetFeatures("resnet34", in_channels=1)
    with pytest.raises(ValueError, match="r18.pth: .*missing"):
        load_torchvision_resnet(ours, _reference((2, 2, 2, 2)).state_dict(), source="r18.pth")
    model = tiny_model()  # MONAI layouts
    path = tmp_path / "resnet18.pth"
    torch.save(_reference((2, 2, 2, 2)).state_dict(), path)
    with pytest.raises(InputError, match=r"resnet18\.pth: not a state dict of this extractor"):
        load_pretrained_parts(model, feature_weights=str(path))
    with pytest.raises(InputError, match=r"resnet18\.pth: .*ae_layout 'ldm'"):
        load_pretrained_parts(model, ae_weights=str(path))
    with pytest.raises(InputError, match=r"missing\.pt: no such weights file"):
        load_pretrained_parts(model, ae_weights=str(tmp_path / "missing.pt"))


def _diffusers_autoencoder(channels=(16, 32, 32), layers=2, latent=4, groups=8, seed=0):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(seed)
    levels = len(channels)
    ref = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=channels,
        layers_per_block=layers,
        latent_channels=latent,
        norm_num_groups=groups,
    ).eval()
    with torch.no_grad():  # away from the initialisation's zeros and ones (GroupNorm, biases)
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return ref


def test_diffusers_autoencoder_gives_the_same_latents_and_images():
    ref = _diffusers_autoencoder()
    ours = LDMAutoencoderKL(in_channels=3, image_channels=3, channels=(16, 32, 32), num_res_blocks=2, norm_num_groups=8)
    load_diffusers_autoencoder(ours.eval(), ref.state_dict())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        posterior = ref.encode(x).latent_dist
        mu, sigma = ours.encode(x)
        torch.testing.assert_close(mu, posterior.mean, atol=1e-5, rtol=0)
        torch.testing.assert_close(sigma, posterior.std, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.decode(mu), ref.decode(posterior.mean).sample, atol=1e-5, rtol=0)
        # grey slices: replicated to RGB on the way in, RGB averaged on the way out
        grey = LDMAutoencoderKL(
            in_channels=1, image_channels=3, channels=(16, 32, 32), num_res_blocks=2, norm_num_groups=8
        )
        load_diffusers_autoencoder(grey.eval(), ref.state_dict())
        g = x[:, :1]
        mu_g, _ = grey.encode(g)
        torch.testing.assert_close(mu_g, ref.encode(g.repeat(1, 3, 1, 1)).latent_dist.mean, atol=1e-5, rtol=0)
        rgb = ref.decode(mu_g).sample
        torch.testing.assert_close(grey.decode(mu_g), rgb.mean(1, keepdim=True), atol=1e-5, rtol=0)


def test_the_kl_f8_defaults_take_stable_diffusions_vae_parameter_for_parameter():
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):  # shapes only: the full-size VAE is 84 M parameters
        ref = diffusers.AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
        )
        ours = LDMAutoencoderKL()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    load_diffusers_autoencoder(ours, ref.state_dict())  # every key placed, every shape equal


def test_domain_adaptation_loss_is_eq_11_written_out():
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(4, c, s, s, generator=g) for c, s in ((3, 8), (5, 4), (6, 2))]  # 2 inputs + 2 recons
    expected = 0.0
    for j in (1, 2):
        f = feats[j]
        for n in range(2):
            a, b = f[n], f[n + 2]
            per_pixel = [
                1 - float(a[:, y, x] @ b[:, y, x]) / float(a[:, y, x].norm() * b[:, y, x].norm())
                for y in range(f.shape[2])
                for x in range(f.shape[3])
            ]
            expected += sum(per_pixel) / len(per_pixel) / 2  # GAP, then the batch mean
    assert float(DomainAdaptationLoss(layers=(1, 2))(feats)) == pytest.approx(expected, rel=1e-5)
    same = [torch.cat([f[:2], f[:2]]) for f in feats]
    assert float(DomainAdaptationLoss()(same + [same[0]])) == pytest.approx(0.0, abs=1e-6)


def test_batchnorm_statistics_are_the_datas():
    model = tiny_model()
    extractor = model.feature_extractor
    x = brain_slices(6, 32)
    recalibrate_batchnorm(extractor, [{"image": x}])  # one batch: the running statistics are its statistics
    with torch.no_grad():
        h = extractor.conv1(x)
    torch.testing.assert_close(extractor.bn1.running_mean, h.mean((0, 2, 3)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(extractor.bn1.running_var, h.var((0, 2, 3), unbiased=True), atol=1e-5, rtol=1e-4)
    assert not extractor.training and extractor.bn1.momentum == 0.1  # mode and momentum restored
    # a trailing one-slice batch (its 1 x 1 deepest block cannot be normalised in training mode) joins its neighbour
    recalibrate_batchnorm(extractor, [{"image": x[:5]}, {"image": x[5:]}])
    torch.testing.assert_close(extractor.bn1.running_mean, h.mean((0, 2, 3)), atol=1e-5, rtol=1e-5)


def test_adapt_features_fine_tunes_the_extractor_and_refits_the_bank(tmp_path):
    model = tiny_model()
    ckpt = tmp_path / "model.pt"
    torch.save({"model": model.state_dict(), "info": {"kept": 1}}, ckpt)
    loader = [{"image": brain_slices(4, 32, seed=s)} for s in range(2)]
    abar = torch.linspace(0.999, 0.5, 100).cumprod(0)
    before = {k: v.clone() for k, v in model.feature_extractor.state_dict().items()}
    args = dict(
        max_epochs=1, learning_rate=1e-3, ckpt_dir=str(tmp_path / "domain"), timestep=20, num_steps=2, k=2, num_bins=3
    )
    adapt_features(model, str(ckpt), loader, loader, abar, **args)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["info"] == {"kept": 1}
    after = {k[len("feature_extractor.") :]: v for k, v in saved["model"].items() if k.startswith("feature_extractor.")}
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))
    assert saved["model"]["bank"].shape[0] == 8 and saved["model"]["bin_edges"].numel() == 4
    # the same command again: the finished stage is not trained twice, the checkpoint's extractor is kept
    fresh = tiny_model(seed=1)
    adapt_features(fresh, str(ckpt), loader, loader, abar, **args)
    for k, v in after.items():
        torch.testing.assert_close(fresh.feature_extractor.state_dict()[k], v)
    assert adapt_features(fresh, str(ckpt), loader, loader, abar, max_epochs=0) == str(ckpt)


def test_the_pretrained_layouts_build_inside_the_model():
    layouts = dict(latent_channels=4, ae_layout="ldm", feature_model="resnet18", feature_layout="torchvision")
    model = D3ADModel(**{**TINY, **layouts}).eval()
    x = brain_slices(2, 32)
    with torch.no_grad():
        z = model.encode(x)
        assert z.shape == (2, 4, 16, 16) and model.decode(z).shape == x.shape
        assert [f.shape[1] for f in model.features(x)] == [64, 64, 128, 256, 512]
    # the TorchScript export holds these layouts too (the ImageNet mapping and RGB averaging traced in)
    from monai_adiff.methods.d3ad.torchscript import d3ad_to_torchscript

    scripted = d3ad_to_torchscript(model, x)
    with torch.no_grad():
        torch.testing.assert_close(
            scripted.decode(scripted.encode(x)), model.decode(model.encode(x)), atol=1e-5, rtol=0
        )
        for a, b in zip(scripted.features(x), model.features(x), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="ae_layout"):
        D3ADModel(ae_layout="sd")
