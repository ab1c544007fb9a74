# SPDX-License-Identifier: Apache-2.0
"""Networks: small extensions of MONAI's generative networks."""

from .diffusion_unet import DropoutDiffusionModelUNet

__all__ = ["DropoutDiffusionModelUNet"]
