# SPDX-License-Identifier: Apache-2.0
"""Label-free calibration of D3AD's map on validation slices: the terms' normalisation and, optionally, ``w``.

The public code min-max scales each term over the whole test set, which needs every test image at once and lets the
test set's own anomalies set the scale. Here each term's ``(lo, hi)`` is its minimum and ``q`` quantile over the
brain pixels of tumour-free validation slices, fixed before any test image is seen. No pixel label is read (the
slices are the validation patients' healthy ones, as for the bundles' healthy-slice thresholds).

The DDAD guidance ``w`` has no value that a healthy slice alone can pick (a stronger pull towards the input lowers
the error of healthy and anomalous pixels alike; the code uses 4, the paper 0 or 7-10). Given a grid and the
validation patients' brain slices with their image-level labels (from a segmentation or a datalist's
``slice_labels``; no pixel label), calibration keeps the ``w`` whose slice score (the map's maximum) separates
healthy from tumour slices best (largest image-level AUROC; the first of equal ones), as AnoFPDM's calibration
chooses its guidance.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from monai_adiff.engines.checkpoint import load_network_weights
from monai_adiff.fitted import fitted_on
from monai_adiff.inferers import brain_from_inputs
from monai_adiff.methods.d3ad.inferer import D3ADInferer
from monai_adiff.methods.d3ad.network import D3ADModel
from monai_adiff.metrics.functional import auroc
from monai_adiff.utils import atomic_write_text

__all__ = ["calibrate_d3ad"]

logger = logging.getLogger(__name__)


def _ranges(
    network: D3ADModel, inferer: D3ADInferer, loader: DataLoader, q: float, device: torch.device
) -> dict[str, Any]:
    """Each term's ``[min, q quantile]`` over the brain pixels of the healthy slices, and the levels they got."""
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
    out["slices"] = int(sum(len(t) for t in t_hats))
    out["t_hat_counts"] = {str(int(t)): int(c) for t, c in zip(levels, counts)}
    return out


def _slice_auroc(network: D3ADModel, inferer: D3ADInferer, loader: DataLoader, device: torch.device) -> float:
    """Image-level AUROC of the slice score (the map's maximum over the brain) against ``slice_label``."""
    generator = inferer.generator()
    scores, labels = [], []
    for batch in loader:
        x = batch["image"].to(device)
        terms, _ = inferer.terms(x, network, generator)
        scores.append(inferer.combine(terms, x)[1].cpu())
        labels.append(torch.as_tensor(batch["slice_label"]).flatten())
    return auroc(torch.cat(scores), torch.cat(labels)) if scores else float("nan")


@torch.no_grad()
def calibrate_d3ad(
    network: D3ADModel,
    inferer: D3ADInferer,
    dataset: Dataset,
    output_file: str,
    q: float = 0.99,
    checkpoint: str | None = None,
    device: str | torch.device | None = None,
    guidance_grid: Sequence[float] | None = None,
    labelled_dataset: Dataset | None = None,
    settings: Any = None,
) -> dict[str, Any]:
    """Measure the ranges of the map terms on ``dataset`` (healthy slices), choose ``w``; write them as JSON.

    Args:
        network, inferer: the trained model and the inferer whose map is calibrated.
        dataset: tumour-free validation slices (the ranges).
        output_file: the calibration JSON (written atomically).
        q: the upper quantile of each range.
        checkpoint: weights to load first; the file records its SHA-256, so inference refuses it for another
            checkpoint.
        device: where to run (default: the network's).
        guidance_grid: candidate ``w``; with more than one and ``labelled_dataset``, the best is kept.
        labelled_dataset: validation brain slices with image-level labels (``slice_label``).
        settings: the run's recipe settings (``[[id, value], ...]``), recorded as those the calibration assumes.

    Returns:
        ``{"latent_range": [lo, hi], "feature_range": [lo, hi], "image_range": [lo, hi], "q": q, "slices": n,
        "t_hat_counts": {...}}``, plus ``"guidance"`` and ``"guidance_auroc"`` ({w: AUROC}) when ``w`` was chosen.
    """
    if checkpoint:
        load_network_weights(network, checkpoint)
    device = torch.device(device) if device is not None else next(network.parameters()).device
    network = network.to(device).eval()
    healthy = DataLoader(dataset, batch_size=inferer.slice_batch_size, shuffle=False, num_workers=0)
    grid, configured = [float(w) for w in guidance_grid or ()], inferer.guidance
    out: dict[str, Any] = {}
    if len(grid) > 1 and labelled_dataset is not None:
        labelled = DataLoader(labelled_dataset, batch_size=inferer.slice_batch_size, shuffle=False, num_workers=0)
        found: dict[float, tuple[float, dict[str, Any]]] = {}
        for w in tqdm(grid, desc="calibrate w", disable=None, leave=False):  # time left, on a terminal
            inferer.guidance = w
            ranges = _ranges(network, inferer, healthy, q, device)
            for key in ("latent_range", "feature_range", "image_range"):
                setattr(inferer, key, tuple(ranges[key]))
            found[w] = (_slice_auroc(network, inferer, labelled, device), ranges)
        valid = {w: a for w, (a, _) in found.items() if not math.isnan(a)}
        if valid:
            best = max(valid, key=lambda w: (valid[w], -grid.index(w)))
            out = {**found[best][1], "guidance": best, "guidance_auroc": {str(w): a for w, a in valid.items()}}
            inferer.guidance = best
        else:
            logger.warning(
                "D3AD calibration: the validation slices hold only one image-level class, so w cannot be chosen; "
                "it stays %s",
                configured,
            )
            inferer.guidance = configured
    if not out:
        out = _ranges(network, inferer, healthy, q, device)
    for key in ("latent_range", "feature_range", "image_range"):
        setattr(inferer, key, tuple(out[key]))
    out.update({"q": float(q), **fitted_on(checkpoint, settings)})
    atomic_write_text(output_file, json.dumps(out, indent=2) + "\n")
    logger.info(
        "D3AD calibration: %s, w %s -> %s",
        {k: out[k] for k in ("latent_range", "feature_range")},
        out.get("guidance", inferer.guidance),
        output_file,
    )
    return out
