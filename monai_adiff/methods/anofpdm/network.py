# SPDX-License-Identifier: Apache-2.0
"""MONAI's ``DiffusionModelUNet`` with dropout in its residual blocks.

Guided-diffusion UNets (AnoFPDM: dropout 0.1) drop activations right before the second convolution of every
residual block; MONAI's ``DiffusionModelUNet`` has no such option. This subclass adds it with forward pre-hooks on
those convolutions, so its state dict is exactly MONAI's (weights load into either class).
"""

from __future__ import annotations

import torch.nn.functional as F
from monai.networks.nets import DiffusionModelUNet
from monai.networks.nets.diffusion_model_unet import DiffusionUNetResnetBlock

__all__ = ["DropoutDiffusionModelUNet"]


class DropoutDiffusionModelUNet(DiffusionModelUNet):
    """``DiffusionModelUNet`` (same arguments) plus ``dropout``: the drop probability before ``conv2`` of every
    residual block, active in training mode only."""

    def __init__(self, *args, dropout: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = float(dropout)
        if self.dropout > 0:
            for module in self.modules():
                if isinstance(module, DiffusionUNetResnetBlock):
                    module.conv2.register_forward_pre_hook(self._drop)

    def _drop(self, module, inputs):
        return (F.dropout(inputs[0], self.dropout, self.training), *inputs[1:])
