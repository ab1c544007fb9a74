# SPDX-License-Identifier: Apache-2.0
"""The trivial baseline every method must beat: the (FLAIR) intensity itself as the anomaly map."""

from __future__ import annotations

from collections.abc import Callable

import torch

from monai_adiff.inferers.base import AnomalyInferer

__all__ = ["IntensityInferer"]


class IntensityInferer(AnomalyInferer):
    """Anomaly map = the intensity of one channel mapped from [-1, 1] back to [0, 1] (no network).

    With our preprocessing (each volume divided by its 99th foreground percentile), this is the FLAIR-intensity
    baseline of the evaluation protocol (design section 6; Meissen et al. 2021 show such simple statistics rival deep
    unsupervised methods on BraTS). The network argument is ignored.

    Args:
        channel: which input channel (modality) to use; 0 = the first modality (FLAIR in our bundles).
    """

    def __init__(self, channel: int = 0, slice_batch_size: int = 1024, brain_tol: float = 1e-3) -> None:
        super().__init__(slice_batch_size=slice_batch_size, brain_tol=brain_tol, seed=None)
        self.channel = channel

    def score_slices(
        self, x: torch.Tensor, network: Callable[..., torch.Tensor] | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        return (x[:, self.channel : self.channel + 1] + 1.0) / 2.0
