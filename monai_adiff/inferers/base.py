# SPDX-License-Identifier: Apache-2.0
"""The inferer contract every method follows.

An anomaly inferer is a ``monai.inferers.Inferer``: ``inferer(inputs, network)`` returns a tensor shaped like the input
image, channel 0 the anomaly map (>= 0), further channels method-specific and documented by each method; every
channel is zero outside the brain. That one return type serves both callers: ``SupervisedEvaluator`` (which stores it
as ``pred`` and runs post-processing transforms on it) and MONAI Label (which expects an image-shaped tensor).
Python users who want the structured result call :meth:`AnomalyInferer.predict`, which returns an
:class:`AnomalyOutput`.

2D methods score 3D volumes slice-wise: the axial slices of a (B, C, H, W, S) volume are gathered into batches of
``slice_batch_size`` and only brain slices go through the network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from monai_adiff.noise import make_noise
from monai_adiff.transforms.postprocessing.array import AnomalyScore

__all__ = ["AnomalyOutput", "AnomalyInferer", "brain_from_inputs"]


@dataclass
class AnomalyOutput:
    """The structured result of an anomaly method for a batch (like anomalib's ``InferenceBatch``).

    Attributes:
        anomaly_map: (B, 1, *spatial) float map, larger = more anomalous.
        pred_mask: (B, 1, *spatial) 0/1 mask.
        pred_score: per-slice scores, (B, S) for volumes or (B,) for 2D images.
        volume_score: (B,) volume scores (max over slices) for volumes, else ``None``.
        pred_label: per-slice or per-image 0/1 labels where the method classifies, else ``None``.
        extras: method-specific outputs (e.g. AnoFPDM's ``t_e``), keyed by name.
    """

    anomaly_map: torch.Tensor
    pred_mask: torch.Tensor
    pred_score: torch.Tensor
    volume_score: torch.Tensor | None = None
    pred_label: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def brain_from_inputs(x: torch.Tensor, background: float = -1.0, tol: float = 1e-3) -> torch.Tensor:
    """Brain mask (B, 1, *spatial) of images mapped to [-1, 1] whose background sits at ``background``.

    Our preprocessing maps the zero background of skull-stripped MRI to exactly -1, so any channel above
    ``background + tol`` is brain. Works for MONAI Label inputs too, which arrive without a separate mask.
    """
    return (x > background + tol).any(dim=1, keepdim=True)


class AnomalyInferer(Inferer):
    """Base class of the slice-wise anomaly inferers.

    Subclasses implement :meth:`score_slices` for a batch of 2D slices; this class handles 2D batches, 3D volumes
    (slices batched, non-brain slices skipped), the brain mask, mixed precision and the MetaTensor plumbing.

    Args:
        slice_batch_size: slices per network call when scoring volumes (all slices of a volume share one call when
            it is at least the number of brain slices).
        autocast_dtype: ``"bfloat16"``/``"float16"`` to run the network under ``torch.autocast`` on CUDA; ignored
            on CPU. ``None`` runs in float32.
        brain_tol: a pixel is brain when any channel exceeds ``-1 + brain_tol``.
        seed: seed of the inferer's random noise; each call restarts from it, so a volume always gets the same map.
            ``None`` draws fresh noise every call.
        progress: show a progress bar over slice batches (and steps, for iterative methods).
    """

    #: number of output channels (channel 0 = anomaly map)
    out_channels: int = 1
    #: noise of the methods that draw it (see :meth:`noise_like`)
    noise_type: str = "gaussian"
    noise_kwargs: dict = {}

    def __init__(
        self,
        slice_batch_size: int = 64,
        autocast_dtype: str | None = None,
        brain_tol: float = 1e-3,
        seed: int | None = 0,
        progress: bool = False,
    ) -> None:
        super().__init__()
        if slice_batch_size < 1:
            raise ValueError(f"slice_batch_size must be >= 1, got {slice_batch_size}")
        self.slice_batch_size = slice_batch_size
        self.autocast_dtype = autocast_dtype
        self.brain_tol = brain_tol
        self.seed = seed
        self.progress = progress

    # -- to implement -------------------------------------------------------------------------------------------
    def score_slices(
        self, x: torch.Tensor, network: Callable[..., torch.Tensor], generator: torch.Generator | None
    ) -> torch.Tensor:
        """Score a batch of 2D slices (N, C, H, W) in [-1, 1]; return (N, out_channels, H, W), channel 0 the map."""
        raise NotImplementedError(f"{type(self).__name__} must implement score_slices")

    # -- shared machinery ---------------------------------------------------------------------------------------
    def _generator(self) -> torch.Generator | None:
        # noise seeds are drawn on the CPU (a few integers per slice); the noise itself is made on the data's device
        return None if self.seed is None else torch.Generator().manual_seed(int(self.seed))

    def _autocast(self, device: torch.device):
        if self.autocast_dtype and device.type == "cuda":
            return torch.autocast("cuda", dtype=getattr(torch, self.autocast_dtype))
        return torch.autocast(device.type, enabled=False)

    def noise_like(self, x: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Noise of ``self.noise_type`` (with ``self.noise_kwargs``) for slices ``x`` at timesteps ``t``, made on
        ``x``'s device (the simplex seeds come from ``generator``)."""
        return make_noise(self.noise_type, x.shape, t, generator=generator, device=x.device, **self.noise_kwargs).to(
            x.dtype
        )

    def network_call(self, network: Callable[..., torch.Tensor], x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """Call the network (under autocast when asked) and return float32 output."""
        with self._autocast(x.device):
            return network(x, *args, **kwargs).float()

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        """Anomaly prediction for a batch of 2D images (B, C, H, W) or volumes (B, C, H, W, S) in [-1, 1].

        Returns:
            (B, out_channels, *spatial), a MetaTensor carrying the input's metadata when the input is one (so
            ``Invertd`` can map it back to the input's space).
        """
        x = inputs.as_subclass(torch.Tensor) if isinstance(inputs, MetaTensor) else inputs
        if x.ndim not in (4, 5):
            raise ValueError(f"expected (B, C, H, W) images or (B, C, H, W, S) volumes, got shape {tuple(x.shape)}")
        volume = x.ndim == 5
        if volume:
            b, c, h, w, s = x.shape
            slices = x.permute(0, 4, 1, 2, 3).reshape(b * s, c, h, w)
        else:
            slices = x
        brain = brain_from_inputs(slices, tol=self.brain_tol)
        out = slices.new_zeros((slices.shape[0], self.out_channels, *slices.shape[2:]), dtype=torch.float32)
        todo = torch.nonzero(brain.flatten(1).any(1)).flatten()  # the one host sync per call: which slices
        generator = self._generator()
        chunks = todo.split(self.slice_batch_size)
        if self.progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc=type(self).__name__, leave=False)
        for idx in chunks:
            out[idx] = self.score_slices(slices[idx], network, generator).float()
        out *= brain  # every output channel is zero outside the brain
        if volume:
            out = out.reshape(b, s, self.out_channels, h, w).permute(0, 2, 3, 4, 1)
        if isinstance(inputs, MetaTensor):
            out = MetaTensor(out, meta=inputs.meta, applied_operations=inputs.applied_operations)
            out.is_batch = inputs.is_batch
        return out

    def predict(
        self,
        inputs: torch.Tensor,
        network: Callable[..., torch.Tensor],
        threshold: float,
        mask_channel: int = 0,
        postprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
        score_quantile: float = 0.99,
    ) -> AnomalyOutput:
        """Run the inferer and package the result as an :class:`AnomalyOutput`.

        Args:
            inputs: images (B, C, H, W) or volumes (B, C, H, W, S) in [-1, 1].
            network: the trained network.
            threshold: threshold of ``pred[mask_channel]`` that makes the mask.
            mask_channel: channel the threshold applies to.
            postprocess: optional callable on each (1, *spatial) mask (e.g. a ``Compose`` of dilation and
                component filters); applied per batch item.
            score_quantile: the per-slice score is this quantile of the map over brain pixels.
        """
        pred = self(inputs, network).as_subclass(torch.Tensor)
        x = inputs.as_subclass(torch.Tensor) if isinstance(inputs, MetaTensor) else inputs
        brain = brain_from_inputs(x, tol=self.brain_tol)
        mask = (pred[:, mask_channel : mask_channel + 1] > threshold).float()
        if postprocess is not None:
            mask = torch.stack([torch.as_tensor(postprocess(m)).float() for m in mask])
        amap = pred[:, :1]
        scorer = AnomalyScore(reduction="quantile", q=score_quantile)
        scores = torch.stack([scorer(m, b) for m, b in zip(amap, brain)])
        if amap.ndim == 5:
            return AnomalyOutput(amap, mask, scores, volume_score=scores.amax(dim=1))
        return AnomalyOutput(amap, mask, scores)
