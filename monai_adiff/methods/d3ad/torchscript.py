# SPDX-License-Identifier: Apache-2.0
# mypy: disable-error-code="operator"
# (the autoencoder's traced methods are called; TorchScript reads `# type:` comments, so none inside the methods)
"""D3AD's model as one TorchScript module: its three networks traced, the methods the inferer calls scripted.

:class:`D3ADModel` is used through ``encode``, ``decode``, ``features``, ``knn_features`` and the denoiser's
``forward``, not one ``forward``, and MONAI 1.6's ``DiffusionModelUNet`` cannot be scripted (its attention block
unpacks a shape with ``*``). Tracing alone keeps one method. So each part is traced (the autoencoder's ``encode`` and
``decode`` with ``torch.jit.trace_module``, the denoiser and the ResNet features with ``torch.jit.trace``) and
:class:`D3ADTorchScript`, which holds them with the fitted buffers, is scripted: the saved ``model.ts`` offers the
same methods and attributes as the eager model, so :class:`~monai_adiff.methods.d3ad.D3ADInferer` runs it unchanged.

No ``from __future__ import annotations`` here: TorchScript reads the annotations as types.
"""

import copy
import functools
import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from monai_adiff.methods.d3ad.network import D3ADModel

__all__ = ["D3ADTorchScript", "d3ad_to_torchscript"]


class D3ADTorchScript(nn.Module):
    """The scriptable shell of a traced :class:`D3ADModel` (build it with :func:`d3ad_to_torchscript`).

    Args:
        denoiser: the traced latent denoiser ``(z, timesteps) -> eps``.
        autoencoder: the autoencoder traced with methods ``encode`` (``-> (z_mu, z_sigma)``) and ``decode``.
        feature_extractor: the traced ResNet features ``x -> [stem, layer1, ..., layer4]``.
        model: the eager model whose buffers (latent scale, feature bank, bin edges) and layer choices are copied.
    """

    map_layers: list[int]
    knn_layer: int
    knn_pool: int
    in_channels: int
    latent_scale: torch.Tensor
    bank: torch.Tensor
    bin_edges: torch.Tensor

    def __init__(
        self, denoiser: nn.Module, autoencoder: nn.Module, feature_extractor: nn.Module, model: D3ADModel
    ) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.autoencoder = autoencoder
        self.feature_extractor = feature_extractor
        self.map_layers = list(model.map_layers)
        self.knn_layer = model.knn_layer
        self.knn_pool = model.knn_pool
        self.in_channels = model.in_channels
        for name in ("latent_scale", "bank", "bin_edges"):
            self.register_buffer(name, getattr(model, name).detach().clone())

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The latent denoiser's noise prediction."""
        return self.denoiser(x, timesteps)

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled posterior means (:meth:`D3ADModel.encode`)."""
        z_mu, _ = self.autoencoder.encode(x)
        return z_mu * self.latent_scale

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images from scaled latents (:meth:`D3ADModel.decode`)."""
        return self.autoencoder.decode(z / self.latent_scale)

    @torch.jit.export
    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The extractor's blocks (:meth:`D3ADModel.features`)."""
        return self.feature_extractor(x)

    @torch.jit.export
    def knn_features(self, x: torch.Tensor, feats: Optional[list[torch.Tensor]] = None) -> torch.Tensor:  # noqa: UP045
        """Dynamic-conditioning features (:meth:`D3ADModel.knn_features`)."""
        f = (feats if feats is not None else self.features(x))[self.knn_layer]
        return F.adaptive_avg_pool2d(f.float(), self.knn_pool).flatten(1)


class _ZeroPadShortcut(nn.Module):
    """MONAI ResNet's shortcut A (stride, then zero channels appended) as a module: MONAI's is a bound method that
    makes the zeros with the batch size as a Python int, which a trace would freeze at the example's batch size."""

    def __init__(self, planes: int, stride: int) -> None:
        super().__init__()
        self.planes = int(planes)
        self.stride = int(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x[:, :, :: self.stride, :: self.stride]  # avg-pool with kernel 1: the strided subsample
        return F.pad(out, (0, 0, 0, 0, 0, self.planes - out.shape[1]))


def _traceable_extractor(extractor: nn.Module) -> nn.Module:
    """A copy of ``extractor`` with every shortcut-A block's downsample made :class:`_ZeroPadShortcut`."""
    extractor = copy.deepcopy(extractor)
    for block in extractor.modules():
        down = getattr(block, "downsample", None)
        if isinstance(down, functools.partial) and getattr(down.func, "__name__", "") == "_downsample_basic_block":
            if down.keywords.get("spatial_dims", 3) != 2:
                raise ValueError("only 2D ResNet features are traced")
            block.downsample = _ZeroPadShortcut(down.keywords["planes"], down.keywords["stride"])
    return extractor


class _Features(nn.Module):
    """ResNet features as a list (MONAI's ``ResNetFeatures`` returns one; tracing needs a fixed container type)."""

    def __init__(self, extractor: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.extractor(x))


def d3ad_to_torchscript(model: D3ADModel, example: torch.Tensor) -> torch.jit.ScriptModule:
    """Trace the parts of ``model`` on image slices ``example`` (N, C, H, W) and script :class:`D3ADTorchScript`.

    The timesteps of the denoiser's trace are drawn per slice (so per-slice timesteps, what the inferer passes,
    are what is recorded).
    """
    model = model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing warns about Python booleans of tensors and its own deprecation
        z_mu, _ = model.autoencoder.encode(example)
        autoencoder = torch.jit.trace_module(model.autoencoder, {"encode": example, "decode": z_mu})
        t = torch.arange(1, example.shape[0] + 1, device=example.device)
        denoiser = torch.jit.trace(model.denoiser, (z_mu, t))
        features = torch.jit.trace(_Features(_traceable_extractor(model.feature_extractor)), example, strict=False)
    return torch.jit.script(D3ADTorchScript(denoiser, autoencoder, features, model))
