# SPDX-License-Identifier: Apache-2.0
"""Classifier-free guidance (Ho & Salimans 2021) as a network wrapper, so any inferer runs a guided model.

MONAI's inferers and ours call ``network(x, timesteps)``; a class-conditional noise predictor needs its class
labels and, for guidance, a second pass with the null class. Wrapping the network keeps every inferer unchanged:
the bundle hands the wrapper to its evaluator and loads the checkpoint into the wrapped network.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ClassifierFreeGuidance"]


class ClassifierFreeGuidance(nn.Module):
    """``eps = eps(x, t, null) + s * (eps(x, t, label) - eps(x, t, null))``, both passes in one batch.

    Args:
        network: a noise predictor called as ``network(x, timesteps, class_labels=...)``.
        label: the class to guide towards (0: healthy); ``None``: pass-through (an unconditional network).
        null_label: the null class the network was trained with under label dropout.
        guidance_scale: s; 1 is the conditional prediction alone (one pass), 0 the unconditional one.
    """

    def __init__(
        self, network: nn.Module, label: int | None = 0, null_label: int = 2, guidance_scale: float = 1.0
    ) -> None:
        super().__init__()
        self.network = network
        self.label = None if label is None else int(label)
        self.null_label = int(null_label)
        self.guidance_scale = float(guidance_scale)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, **kwargs) -> torch.Tensor:
        if self.label is None:
            return self.network(x, timesteps, **kwargs)
        n = x.shape[0]
        t = torch.as_tensor(timesteps, device=x.device).reshape(-1).expand(n)
        cond = torch.full((n,), self.label, device=x.device, dtype=torch.long)
        if self.guidance_scale == 1.0:
            return self.network(x, t, class_labels=cond, **kwargs)
        null = torch.full_like(cond, self.null_label)
        both = self.network(torch.cat([x, x]), torch.cat([t, t]), class_labels=torch.cat([cond, null]), **kwargs)
        eps_c, eps_null = both[:n], both[n:]
        return eps_null + self.guidance_scale * (eps_c - eps_null)
