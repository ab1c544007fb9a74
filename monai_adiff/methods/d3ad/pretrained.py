# SPDX-License-Identifier: Apache-2.0
"""Loading the pretrained parts D3AD's paper starts from (ImageNet ResNet-34, Stable Diffusion's VAE) from files the
user has: nothing is downloaded."""

from __future__ import annotations

import logging
import os

import torch

from monai_adiff.errors import InputError
from monai_adiff.methods.d3ad.network import D3ADModel
from monai_adiff.methods.d3ad.pretrained_autoencoder import load_diffusers_autoencoder
from monai_adiff.methods.d3ad.pretrained_features import TorchvisionResNetFeatures, load_torchvision_resnet

__all__ = ["load_pretrained_parts", "read_state_dict"]

logger = logging.getLogger(__name__)


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` (needs the ``safetensors`` package) or a ``torch.save`` file (``.pt``,
    ``.pth``, ``.bin``; a ``{"model": ...}`` or ``{"state_dict": ...}`` wrapper is unpacked), read with
    ``weights_only=True``."""
    if not os.path.isfile(path):
        raise InputError(path, "no such weights file")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state: object = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except ImportError as e:
        raise InputError(path, "reading .safetensors needs the safetensors package") from e
    except Exception as e:
        raise InputError(path, f"not a readable weights file ({type(e).__name__})") from e
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(path, "holds no state dict of tensors")
    return state


def load_pretrained_parts(model: D3ADModel, ae_weights: str | None = None, feature_weights: str | None = None) -> None:
    """Load the user's pretrained autoencoder (a diffusers ``AutoencoderKL`` state dict, into ``ae_layout`` "ldm")
    and feature extractor (a torchvision ResNet state dict into ``feature_layout`` "torchvision", or a state dict of
    the extractor itself) into ``model``. Errors name the file and the mismatch (:class:`InputError`)."""
    try:
        if ae_weights:
            load_diffusers_autoencoder(
                model.autoencoder, read_state_dict(ae_weights), source=ae_weights  # type: ignore[arg-type]
            )
            logger.info("autoencoder weights loaded from %s", ae_weights)
        if feature_weights:
            state = read_state_dict(feature_weights)
            if isinstance(model.feature_extractor, TorchvisionResNetFeatures):
                load_torchvision_resnet(model.feature_extractor, state, source=feature_weights)
            else:
                try:
                    model.feature_extractor.load_state_dict(state)
                except RuntimeError as e:
                    raise ValueError(
                        f"{feature_weights}: not a state dict of this extractor ({str(e).splitlines()[0]})"
                    ) from e
            logger.info("feature extractor weights loaded from %s", feature_weights)
    except InputError:
        raise
    except ValueError as e:  # the converters' messages start with the file
        raise InputError(None, str(e)) from e
