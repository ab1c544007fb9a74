# SPDX-License-Identifier: Apache-2.0
"""D3AD's feature extractor in torchvision's ResNet layout, so ImageNet weights (the paper's extractor) load.

MONAI's ``ResNetFeatures("resnet34")`` uses shortcut A (zero-padded identity) where torchvision's ResNet-34 has
shortcut B (1x1 convolution + BatchNorm, no bias), so a torchvision state dict cannot load into it. MONAI's own
``ResNet`` with ``shortcut_type="B"``, ``bias_downsample=False`` and a stride-2 7x7 stem is torchvision's network
with the same parameter names (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ...); only the
classifier (``fc``) is absent. :class:`TorchvisionResNetFeatures` builds that network and returns MONAI
``ResNetFeatures``' block list; :func:`load_torchvision_resnet` loads a torchvision checkpoint into it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from monai.networks.nets import ResNetFeatures
from monai.networks.nets.resnet import ResNet, get_inplanes

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "TorchvisionResNetFeatures", "load_torchvision_resnet"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: torchvision's basic-block ResNets (the bottleneck ones use other widths per block and are not offered)
TORCHVISION_LAYERS = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}


class TorchvisionResNetFeatures(ResNetFeatures):
    """torchvision's ResNet-18/34 as MONAI ``ResNetFeatures``: ``x -> [stem, layer1, ..., layer4]``.

    The input is a slice in [-1, 1] with ``in_channels`` channels; ``imagenet_input`` maps it as torchvision's
    ImageNet models expect (channels averaged to grey, replicated to RGB, scaled to [0, 1] and normalised by
    ImageNet's mean and std), so weights trained on ImageNet see the statistics they were trained on. The network
    itself then takes 3 channels; without ``imagenet_input`` it takes ``in_channels``.

    ``ResNetFeatures.__init__`` fixes MONAI's shortcut type per model name, so this class builds MONAI's ``ResNet``
    directly and inherits ``ResNetFeatures.forward`` (the block list).

    Args:
        model_name: ``"resnet18"`` or ``"resnet34"``.
        in_channels: channels of the slices.
        imagenet_input: map the slices to ImageNet's RGB statistics (needed for ImageNet weights).
    """

    def __init__(self, model_name: str = "resnet34", in_channels: int = 1, imagenet_input: bool = True) -> None:
        if model_name not in TORCHVISION_LAYERS:
            raise ValueError(
                f"torchvision layout: model_name must be one of {sorted(TORCHVISION_LAYERS)}, got {model_name!r}"
            )
        ResNet.__init__(
            self,
            block="basic",
            layers=TORCHVISION_LAYERS[model_name],
            block_inplanes=get_inplanes(),
            spatial_dims=2,
            n_input_channels=3 if imagenet_input else in_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            shortcut_type="B",
            feed_forward=False,
            bias_downsample=False,
        )
        self.imagenet_input = bool(imagenet_input)
        # not persistent: a torchvision state dict (and ours) holds network parameters only
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    mean: torch.Tensor
    std: torch.Tensor

    def forward(self, inputs: torch.Tensor):
        if self.imagenet_input:
            grey = (inputs.mean(dim=1, keepdim=True) + 1) / 2
            inputs = (grey.expand(-1, 3, -1, -1) - self.mean) / self.std
        return super().forward(inputs)


def load_torchvision_resnet(
    extractor: TorchvisionResNetFeatures, state_dict: Mapping[str, torch.Tensor], source: str = "state dict"
) -> None:
    """Load a torchvision ResNet state dict (e.g. ``resnet34-b627a593.pth``) into ``extractor``.

    The classifier (``fc.*``) is dropped; every other key must match by name and shape (BatchNorm running statistics
    included). Raises ``ValueError`` naming ``source`` and the first mismatch otherwise.
    """
    if not isinstance(extractor, TorchvisionResNetFeatures):
        raise ValueError(
            f"{source}: torchvision ResNet weights need network_def#feature_layout 'torchvision' "
            f"(got {type(extractor).__name__})"
        )
    own = extractor.state_dict()
    state = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ValueError(f"{source}: not a torchvision {type(extractor).__name__} state dict of this size ({what})")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(
                f"{source}: {key} has shape {tuple(value.shape)}, the extractor {tuple(own[key].shape)} "
                "(another ResNet depth, or imagenet_input off with 3-channel weights)"
            )
    extractor.load_state_dict(state)
