# SPDX-License-Identifier: Apache-2.0
"""The one output contract of every anomaly method.

Every inferer builds an :class:`AnomalyOutput`: named tensors (the anomaly map, the method's own mask where it makes
one, per-slice scores and labels, method extras). MONAI's callers need an image-shaped tensor instead (
``SupervisedEvaluator`` stores it as ``pred`` and runs post-processing on it; MONAI Label calls
``inferer(inputs, network)``), so only at that edge the result is packed into one (:meth:`AnomalyOutput.to_image`):
the spatial outputs as channels, their names and the per-slice values in the MetaTensor's metadata, which MONAI's
``decollate_batch`` splits per batch item. :meth:`AnomalyOutput.from_image` (and the post-processing transform
``SplitAnomalyOutputd``) unpack it by name; no code reads a channel by its number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from monai.data import MetaTensor

__all__ = [
    "ANOMALY_MAP",
    "PRED_MASK",
    "PRED_SCORE",
    "PRED_LABEL",
    "CHANNELS_META_KEY",
    "VALUES_META_KEY",
    "AnomalyOutput",
    "channel_names",
    "slice_values",
]

ANOMALY_MAP = "anomaly_map"
PRED_MASK = "pred_mask"
PRED_SCORE = "pred_score"
PRED_LABEL = "pred_label"
#: metadata key of the packed tensor: its channel names, comma-separated (a string, so decollation leaves it whole)
CHANNELS_META_KEY = "anomaly_channels"
#: metadata key of the packed tensor: ``{name: per-slice values}``
VALUES_META_KEY = "anomaly_values"


@dataclass
class AnomalyOutput:
    """The structured result of an anomaly method for a batch (like anomalib's ``InferenceBatch``).

    Shapes: maps are ``(B, 1, *spatial)``; per-slice values are ``(B, S)`` for volumes ``(B, C, H, W, S)`` and
    ``(B,)`` for 2D images.

    Attributes:
        anomaly_map: float map, larger = more anomalous, zero outside the brain.
        pred_mask: 0/1 mask where the method decides it itself (AnoFPDM's Algorithm 1, SSS's vote), else ``None``
            (the bundle thresholds the map).
        pred_score: per-slice anomaly scores where the method gives its own (AnoFPDM's ``1 - cos``), else ``None``.
        pred_label: per-slice 0/1 labels where the method classifies slices, else ``None``.
        maps: further named maps (e.g. SSS's ``vote``).
        values: further named per-slice values (e.g. AnoFPDM's ``t_e``).
    """

    anomaly_map: torch.Tensor
    pred_mask: torch.Tensor | None = None
    pred_score: torch.Tensor | None = None
    pred_label: torch.Tensor | None = None
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    values: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def volume_score(self) -> torch.Tensor | None:
        """(B,) volume scores (the maximum slice score) for volumes, else ``None``."""
        if self.pred_score is None or self.pred_score.ndim < 2:
            return None
        return self.pred_score.amax(dim=-1)

    def named_maps(self) -> dict[str, torch.Tensor]:
        """The spatial outputs by name, in channel order: the map, the mask (if any), the extra maps."""
        out = {ANOMALY_MAP: self.anomaly_map}
        if self.pred_mask is not None:
            out[PRED_MASK] = self.pred_mask
        return {**out, **self.maps}

    def named_values(self) -> dict[str, torch.Tensor]:
        """The per-slice outputs by name: score and label (if any), then the extras."""
        out = {k: v for k, v in ((PRED_SCORE, self.pred_score), (PRED_LABEL, self.pred_label)) if v is not None}
        return {**out, **self.values}

    def to_image(self, like: torch.Tensor | None = None) -> MetaTensor:
        """Pack into one image-shaped tensor ``(B, n_maps, *spatial)`` for MONAI's engines and MONAI Label.

        Args:
            like: the inferer's input; when it is a MetaTensor its metadata (affine, applied transforms, batch flag)
                is carried over, so ``Invertd`` maps the output back to the input's space.
        """
        maps = self.named_maps()
        image = torch.cat([m.float() for m in maps.values()], dim=1)
        meta = dict(like.meta) if isinstance(like, MetaTensor) else {}
        meta[CHANNELS_META_KEY] = ",".join(maps)
        meta[VALUES_META_KEY] = {k: v.float() for k, v in self.named_values().items()}
        ops = like.applied_operations if isinstance(like, MetaTensor) else None
        out = MetaTensor(image, meta=meta, applied_operations=ops)
        out.is_batch = like.is_batch if isinstance(like, MetaTensor) else True
        return out

    @classmethod
    def from_named(cls, maps: Mapping[str, torch.Tensor], values: Mapping[str, torch.Tensor]) -> AnomalyOutput:
        """An output from named maps (``"anomaly_map"`` required) and named per-slice values."""
        maps, values = dict(maps), dict(values)
        return cls(
            anomaly_map=maps.pop(ANOMALY_MAP),
            pred_mask=maps.pop(PRED_MASK, None),
            pred_score=values.pop(PRED_SCORE, None),
            pred_label=values.pop(PRED_LABEL, None),
            maps=maps,
            values=values,
        )

    @classmethod
    def from_image(cls, image: torch.Tensor, channel_dim: int = 1) -> AnomalyOutput:
        """Unpack :meth:`to_image`'s tensor by its channel and value names.

        Args:
            image: the packed tensor, batched (``channel_dim=1``) or one decollated item (``channel_dim=0``).
            channel_dim: its channel axis; the unpacked maps keep it (one channel each).
        """
        names = channel_names(image, channel_dim)
        plain = image.as_subclass(torch.Tensor) if isinstance(image, MetaTensor) else image
        maps = {n: plain.narrow(channel_dim, i, 1) for i, n in enumerate(names)}
        return cls.from_named(maps, slice_values(image))


def channel_names(image: torch.Tensor, channel_dim: int = 1) -> list[str]:
    """The channel names of a packed output; a tensor without them must be a bare one-channel anomaly map.

    Args:
        image: a packed output, batched (``channel_dim=1``) or one decollated item (``channel_dim=0``).
        channel_dim: its channel axis.

    Raises:
        ValueError: a multi-channel tensor whose channels are not named, or names that do not match the channels.
    """
    meta = image.meta if isinstance(image, MetaTensor) else {}
    names = str(meta[CHANNELS_META_KEY]).split(",") if CHANNELS_META_KEY in meta else [ANOMALY_MAP]
    if image.shape[channel_dim] != len(names):
        raise ValueError(
            f"an output with {image.shape[channel_dim]} channels named {names}: pack method outputs with "
            "AnomalyOutput.to_image so their channels are named"
        )
    return names


def slice_values(image: torch.Tensor) -> dict[str, torch.Tensor]:
    """The per-slice values of a packed output (empty for a tensor without them)."""
    meta = image.meta if isinstance(image, MetaTensor) else {}
    # MONAI decollates an empty dict to None
    return {k: torch.as_tensor(v) for k, v in dict(meta.get(VALUES_META_KEY) or {}).items()}
