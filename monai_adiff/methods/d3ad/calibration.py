# SPDX-License-Identifier: Apache-2.0
"""Label-free normalisation of D3AD's two map terms on healthy validation slices.

The public code min-max scales each term over the whole test set, which needs every test image at once and lets the
test set's own anomalies set the scale. Here each term's ``(lo, hi)`` is its minimum and ``q`` quantile over the
brain pixels of tumour-free validation slices, fixed before any test image is seen. No pixel label is read (the
slices are the validation patients' healthy ones, as for the bundles' healthy-slice thresholds).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from monai_adiff.engines.checkpoint import load_network_weights
from monai_adiff.inferers import brain_from_inputs
from monai_adiff.methods.d3ad.inferer import D3ADInferer
from monai_adiff.methods.d3ad.network import D3ADModel
from monai_adiff.utils import atomic_write_text

__all__ = ["calibrate_d3ad"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def calibrate_d3ad(
    network: D3ADModel,
    inferer: D3ADInferer,
    dataset: Dataset,
    output_file: str,
    q: float = 0.99,
    checkpoint: str | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Measure the ranges of the map terms on ``dataset`` (healthy slices); write them as JSON.

    Returns:
        ``{"latent_range": [lo, hi], "feature_range": [lo, hi], "image_range": [lo, hi], "q": q, "slices": n,
        "t_hat_counts": {...}}``.
    """
    if checkpoint:
        load_network_weights(network, checkpoint)
    device = torch.device(device) if device is not None else next(network.parameters()).device
    network = network.to(device).eval()
    loader = DataLoader(dataset, batch_size=inferer.slice_batch_size, shuffle=False, num_workers=0)
    generator = inferer.generator()
    pixels: dict[str, list[np.ndarray]] = {}
    t_hats = []
    for batch in loader:
        x = batch["image"].to(device)
        terms, t_hat = inferer.terms(x, network, generator, all_terms=True)
        brain = brain_from_inputs(x, tol=inferer.brain_tol)[:, 0]
        for name, term in terms.items():
            pixels.setdefault(name, []).append(term[brain].cpu().numpy())
        t_hats.append(t_hat.cpu())
    if not t_hats or not sum(a.size for a in pixels["latent"]):
        raise ValueError("no healthy brain slices to calibrate on")
    levels, counts = torch.cat(t_hats).unique(return_counts=True)
    out: dict[str, Any] = {}
    for name, parts in pixels.items():
        v = np.concatenate(parts)
        out[f"{name}_range"] = [float(v.min()), float(np.quantile(v, q))]
    out.update(
        {
            "q": float(q),
            "slices": int(sum(len(t) for t in t_hats)),
            "t_hat_counts": {str(int(t)): int(c) for t, c in zip(levels, counts)},
            "checkpoint": checkpoint,
        }
    )
    atomic_write_text(output_file, json.dumps(out, indent=2) + "\n")
    logger.info("D3AD calibration: %s -> %s", {k: out[k] for k in ("latent_range", "feature_range")}, output_file)
    return out
