# SPDX-License-Identifier: Apache-2.0
"""Denoising-autoencoder anomaly maps (Kascenas, Pugeault & O'Neil, MIDL 2022): the network restores the slice
as it was trained to restore noisy healthy slices; the map is the absolute residual."""

from __future__ import annotations

from collections.abc import Callable

import torch

from monai_adiff.inferers import AnomalyInferer
from monai_adiff.output import ANOMALY_MAP

__all__ = ["DenoisingInferer"]


class DenoisingInferer(AnomalyInferer):
    """One network pass on the clean slice, ``x_hat = f(x)``; the map is ``|x - x_hat|`` averaged over channels (the
    paper's residual; its 5 x 5 median filter and eroded brain mask are the bundle's map post-processing).

    No noise is added at inference: the denoiser removes what does not look like healthy tissue.

    Args:
        positive_residual: score only where the input is brighter than its reconstruction, ``max(x - x_hat, 0)``
            (hyperintense FLAIR lesions; not in the paper, off by default).
        slice_batch_size, autocast_dtype, brain_tol, seed, progress, network_batch_size: see
            :class:`AnomalyInferer`.
    """

    def __init__(
        self,
        positive_residual: bool = False,
        slice_batch_size: int = 64,
        autocast_dtype: str | None = None,
        brain_tol: float = 1e-3,
        seed: int | None = 0,
        progress: bool = False,
        network_batch_size: int | None = None,
    ) -> None:
        super().__init__("gaussian", slice_batch_size, autocast_dtype, brain_tol, seed, progress, network_batch_size)
        self.positive_residual = bool(positive_residual)

    def score_slices(
        self, x: torch.Tensor, network: Callable[..., torch.Tensor], generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        residual = x - self.network_call(network, x)
        if self.positive_residual:
            residual = residual.clamp_min(0)
        return {ANOMALY_MAP: residual.abs().mean(dim=1)}
