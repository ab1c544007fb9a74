# SPDX-License-Identifier: Apache-2.0
"""Ensembles of anomaly maps from different methods, normalised by their own label-free thresholds.

Two methods' maps live on different scales (a squared reconstruction error, a residual, a cosine distance), so they
cannot be averaged as they are. Each map is divided by its method's label-free threshold, the healthy-slice quantile
that ``healthy_threshold`` fits (``healthy_threshold.json`` beside the model): a normalised value of 1 is as anomalous
as the method's own mask boundary, whatever its units. The ensemble is the weighted mean of the normalised maps
(MONAI's :class:`~monai.transforms.MeanEnsemble`), and its label-free mask is ``ensemble > 1`` (:data:`THRESHOLD`):
a pixel at both methods' thresholds is at the ensemble's, no pixel label is used anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import MeanEnsemble

__all__ = ["THRESHOLD", "ensemble_maps", "ensemble_name", "parse_ensemble"]

#: the label-free threshold of a threshold-normalised ensemble map
THRESHOLD = 1.0


def ensemble_maps(
    maps: Sequence[np.ndarray | torch.Tensor], thresholds: Sequence[float], weights: Sequence[float] | None = None
) -> np.ndarray:
    """The weighted mean of ``maps``, each divided by its label-free threshold.

    Args:
        maps: the methods' maps, one shape, on the same pixels.
        thresholds: each method's label-free threshold of its map (positive).
        weights: each method's weight (default equal).

    Raises:
        ValueError: a count, shape or threshold that does not fit.
    """
    if len(maps) < 2 or len(maps) != len(thresholds):
        raise ValueError(f"an ensemble needs two or more maps and one threshold each, got {len(maps)} and "
                         f"{len(thresholds)}")  # fmt: skip
    shapes = {tuple(m.shape) for m in maps}
    if len(shapes) != 1:
        raise ValueError(f"the maps of an ensemble must have one shape, got {sorted(shapes)}")
    bad = [t for t in thresholds if not np.isfinite(t) or t <= 0]
    if bad:
        raise ValueError(f"label-free thresholds must be positive and finite, got {bad[0]}")
    scaled = torch.stack(
        [torch.as_tensor(np.asarray(m), dtype=torch.float64) / float(t) for m, t in zip(maps, thresholds)]
    )
    out = MeanEnsemble(weights=list(weights) if weights is not None else None)(scaled)
    return torch.as_tensor(out).numpy().astype(np.float32)


def parse_ensemble(spec: str, known: Sequence[str]) -> list[str]:
    """The member bundles of an ensemble written ``a+b`` (two or more distinct bundles of ``known``).

    Raises:
        ValueError: fewer than two members, a repeated one or one not in ``known``.
    """
    members = [m.strip() for m in spec.split("+") if m.strip()]
    if len(members) < 2 or len(set(members)) != len(members):
        raise ValueError(f"an ensemble is two or more distinct bundles joined by '+', got {spec!r}")
    unknown = [m for m in members if m not in known]
    if unknown:
        raise ValueError(f"ensemble {spec!r}: {unknown[0]} is not among the benchmarked bundles {list(known)}")
    return members


def ensemble_name(members: Sequence[str]) -> str:
    """The name of an ensemble in tables and records: ``sss+dae``."""
    return "+".join(members)
