# SPDX-License-Identifier: Apache-2.0
"""The denoising autoencoder's training loss: the squared error over the brain only (Kascenas et al. 2022).

``torch.nn.MSELoss`` averages over the whole slice, where most pixels are background that the network restores
exactly; the brain is found from the clean target (the bundles' background is exactly -1), so the loss needs no
extra input and fits ``SupervisedTrainer``'s ``loss_function(pred, target)``.
"""

from __future__ import annotations

import torch
from torch import nn

from monai_adiff.inferers import brain_from_inputs

__all__ = ["BrainMSELoss"]


class BrainMSELoss(nn.Module):
    """``sum(brain * (pred - target)^2) / numel``: the mean squared error with the background's share set to zero.

    As in the paper the sum is divided by every element, not by the brain's, so slices with more brain weigh more.

    Args:
        brain_tol: a target pixel is brain when any channel exceeds ``-1 + brain_tol``.
    """

    def __init__(self, brain_tol: float = 1e-3) -> None:
        super().__init__()
        self.brain_tol = float(brain_tol)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        brain = brain_from_inputs(target, tol=self.brain_tol)
        return ((pred - target).square() * brain).mean()
