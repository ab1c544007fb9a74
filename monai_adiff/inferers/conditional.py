# SPDX-License-Identifier: Apache-2.0
"""Training forward pass of a class-conditional diffusion model.

MONAI's ``DiffusionInferer`` calls ``network(x, timesteps, context=condition)``: it can condition through
cross-attention or concatenation but never passes ``class_labels``, the argument that drives
``DiffusionModelUNet(num_class_embeds=...)``. This inferer does the same noising and passes the condition as class
labels, so the network stays a plain MONAI ``DiffusionModelUNet`` (and its checkpoints plain state dicts).
Without a condition it is MONAI's call, so one config serves a bundle's conditional and unconditional variants.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.inferers import DiffusionInferer

__all__ = ["ConditionalDiffusionInferer"]


class ConditionalDiffusionInferer(DiffusionInferer):
    """``DiffusionInferer`` whose ``condition`` is a (B,) tensor of class labels for ``num_class_embeds``."""

    def __call__(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        diffusion_model: Callable[..., torch.Tensor],
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        condition: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Noise ``inputs`` to ``timesteps`` with ``noise`` and predict the noise given the class labels.

        Args:
            inputs: clean images (B, C, H, W).
            diffusion_model: a ``DiffusionModelUNet`` built with ``num_class_embeds``.
            noise: noise of the forward process, shaped like ``inputs``.
            timesteps: (B,) timesteps.
            condition: (B,) integer class labels (the null class for unconditional samples); ``None``: an
                unconditional network, called without class labels.
        """
        noisy = self.scheduler.add_noise(original_samples=inputs, noise=noise, timesteps=timesteps)
        if condition is None:
            return diffusion_model(noisy, timesteps=timesteps)
        return diffusion_model(noisy, timesteps=timesteps, class_labels=condition.long().reshape(-1))
