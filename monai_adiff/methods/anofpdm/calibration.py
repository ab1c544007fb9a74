# SPDX-License-Identifier: Apache-2.0
"""Label-free calibration of AnoFPDM (Che et al. 2025, sections 4.2-4.3): only image-level (slice) labels.

On validation slices, one forward sweep per batch measures, for every candidate guidance strength w at once, the
slice scores (``1 - cos`` of the guided and unguided error curves, the paper's, and the relative excess of the guided
error) and the peak divergence ``M_te``. For each score and w the threshold with the best healthy/unhealthy accuracy
is found; the score is the one with the best accuracy (ties: the first candidate, the paper's cosine); its w is the
largest one within 99 % of that score's best accuracy (the paper's rule; BraTS: w = 2), and ``M_max`` is the largest
``M_te`` at that w. No pixel label is read.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from monai_adiff.engines.checkpoint import load_network_weights
from monai_adiff.fitted import fitted_on
from monai_adiff.inferers import brain_from_inputs
from monai_adiff.methods.anofpdm.gap import conditioning_gap, summarize_gap
from monai_adiff.methods.anofpdm.inferer import FPDMInferer
from monai_adiff.methods.anofpdm.sweep import SLICE_SCORES
from monai_adiff.metrics.functional import auroc, spearman
from monai_adiff.utils import atomic_write_text

__all__ = ["best_accuracy_threshold", "select_guidance", "calibrate_fpdm"]

logger = logging.getLogger(__name__)


def best_accuracy_threshold(scores: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """The threshold ``thr`` maximising the accuracy of "unhealthy iff score >= thr" (higher: more anomalous).

    Exact: every cut between consecutive distinct scores (and below/above all of them) is tried; the threshold is
    the midpoint of the best cut; ties go to the cut that calls the fewest slices unhealthy.

    Args:
        scores: (N,) slice scores (e.g. ``1 - cos``).
        labels: (N,) 1 unhealthy, 0 healthy.

    Returns:
        ``(threshold, accuracy)``.
    """
    s = torch.as_tensor(scores, dtype=torch.float64).flatten()
    y = torch.as_tensor(labels).flatten().long()
    if s.numel() == 0 or s.numel() != y.numel():
        raise ValueError(f"need as many labels as scores (> 0), got {s.numel()} and {y.numel()}")
    order = torch.argsort(s, descending=True)
    s, y = s[order], y[order]
    n_healthy = int((y == 0).sum())
    # predicting unhealthy for the first k sorted scores: correct = unhealthy among them + healthy after them
    unh_cum = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(y == 1, 0)])
    hea_cum = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(y == 0, 0)])
    correct = unh_cum + (n_healthy - hea_cum)  # (N + 1,) for k = 0..N
    # a cut is only possible between distinct scores
    valid = torch.ones_like(correct, dtype=torch.bool)
    valid[1:-1] = s[1:] < s[:-1]
    correct = torch.where(valid, correct, torch.full_like(correct, -1))
    k = int(torch.argmax(correct))
    if k == 0:
        thr = float(s[0]) + 1e-6
    elif k == len(s):
        thr = float(s[-1])
    else:
        thr = float((s[k - 1] + s[k]) / 2)
    return thr, float(correct[k]) / len(s)


def select_guidance(accuracies: dict[float, float], tolerance: float = 0.99) -> float:
    """The largest guidance strength whose accuracy is within ``tolerance`` of the best one (paper: 99 %)."""
    if not accuracies:
        raise ValueError("no guidance strength to choose from")
    best = max(accuracies.values())
    return max(w for w, acc in accuracies.items() if acc >= tolerance * best)


@torch.no_grad()
def calibrate_fpdm(
    network: torch.nn.Module,
    inferer: FPDMInferer,
    dataset: Dataset,
    output_file: str,
    guidance_grid: Sequence[float] = (0.5, 1.0, 1.5, 2.0, 3.0, 5.0),
    tolerance: float = 0.99,
    checkpoint: str | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    label_key: str = "slice_label",
    gap_draws: int = 16,
    gap_max_timestep: int | None = None,
    slice_scores: Sequence[str] = SLICE_SCORES,
    settings: Any = None,
) -> dict[str, Any]:
    """Choose AnoFPDM's slice score, guidance strength, score threshold and ``M_max`` on validation slices; write
    them as JSON.

    Args:
        network: the class-conditional noise predictor.
        inferer: the :class:`FPDMInferer` whose step grid, mode, channels and early stop will be used at inference
            (the score threshold depends on them).
        dataset: validation slices with image-level labels (e.g. ``BrainSliceDataset(selection="brain")``; labels
            from segmentations or from a datalist's ``slice_labels``). Both classes must be present.
        output_file: the calibration JSON to write (atomically).
        guidance_grid: candidate w.
        tolerance: keep the largest w with accuracy >= tolerance * best accuracy.
        checkpoint: weights to load first (``models/model.pt``); None uses the network as it is. The file records
            its SHA-256, so inference refuses it for another checkpoint.
        batch_size: slices per sweep (default: the inferer's ``slice_batch_size``).
        device: where to run (default: the network's device).
        label_key: key of the slice label in the dataset items.
        gap_draws: ``(t, noise)`` draws per slice for the conditioning gap (``t`` stratified, MSEs averaged).
        gap_max_timestep: the gap's ``t`` is drawn below this: the range the network was trained on (default: every
            step of the scheduler).
        slice_scores: candidate slice scores (:meth:`FPDMSweep.slice_score`), in order of preference on ties;
            ``("cosine",)`` keeps the paper's test.
        settings: the run's recipe settings (``[[id, value], ...]``), recorded as those the calibration assumes.

    Returns:
        the calibration dict (also written to ``output_file``).
    """
    if checkpoint:
        load_network_weights(network, checkpoint)
    device = torch.device(device) if device is not None else next(network.parameters()).device
    network = network.to(device).eval()
    grid = sorted(float(w) for w in guidance_grid)
    kinds = list(dict.fromkeys(slice_scores))
    if not kinds or any(k not in SLICE_SCORES for k in kinds):
        raise ValueError(f"slice_scores must be a non-empty subset of {SLICE_SCORES}, got {list(slice_scores)}")
    loader = DataLoader(dataset, batch_size=batch_size or inferer.slice_batch_size, shuffle=False, num_workers=0)
    generator = inferer.generator()
    gap_generator = torch.Generator().manual_seed(0)
    scores: dict[str, list[torch.Tensor]] = {k: [] for k in kinds}
    m_end, labels, gaps, areas = [], [], [], []
    t0 = time.perf_counter()
    # a bar with the time left, on a terminal only
    for batch in tqdm(loader, desc="calibrate", disable=None, leave=False):
        x = batch["image"].to(device)
        if inferer.patience is None:  # one sweep serves every w: the trajectory does not depend on it
            res = inferer.sweep(x, network, generator, guidance=grid, keep_map=False)
            for k in kinds:
                scores[k].append(res.slice_score(k).cpu())
            m_end.append(res.m_end.cpu())
        else:  # the early stop follows w's own divergence peak, as at inference: one sweep per w
            state = generator.get_state() if generator is not None else None
            per = []
            for w in grid:
                if generator is not None and state is not None:
                    generator.set_state(state)  # the same encoding noise for every w
                per.append(inferer.sweep(x, network, generator, guidance=w, keep_map=False))
            for k in kinds:
                scores[k].append(torch.cat([r.slice_score(k).cpu() for r in per]))
            m_end.append(torch.cat([r.m_end.cpu() for r in per]))
        labels.append(torch.as_tensor(batch[label_key]).long().flatten())
        brain = batch["brain"] if "brain" in batch else brain_from_inputs(x, tol=inferer.brain_tol)
        areas.append(torch.as_tensor(brain).flatten(1).gt(0).sum(1).cpu())
        gaps.append(
            conditioning_gap(
                network,
                inferer.scheduler,
                x,
                labels[-1],
                gap_generator,
                inferer.null_label,
                inferer.network_call,
                max_timestep=gap_max_timestep,
                draws=gap_draws,
            )
        )
    m_all, y = torch.cat(m_end, dim=1), torch.cat(labels)
    area = torch.cat(areas).double()
    gap = {k: torch.cat([g[k] for g in gaps]) for k in ("true", "swapped", "null")}
    conditioning = {
        **summarize_gap(gap),
        "max_timestep": int(gap_max_timestep or inferer.scheduler.num_train_timesteps),
        "draws": int(gap_draws),
    }
    if len(torch.unique(y)) < 2:
        raise ValueError(
            f"calibration needs healthy and unhealthy validation slices; labels present: {y.unique().tolist()}"
        )
    per_w: list[dict[str, Any]] = []
    for kind in kinds:
        all_w = torch.cat(scores[kind], dim=1)
        for j, w in enumerate(grid):
            thr, acc = best_accuracy_threshold(all_w[j], y)
            # the threshold-free separability of the slice score (image labels only): a diagnostic
            per_w.append(
                {
                    "slice_score": kind,
                    "guidance": w,
                    "score_threshold": thr,
                    "accuracy": acc,
                    "m_max": float(m_all[j].max()),
                    "auroc": auroc(all_w[j], y),
                    "area_spearman": spearman(all_w[j], area),
                }
            )
    best_kind = max(kinds, key=lambda k: (max(r["accuracy"] for r in per_w if r["slice_score"] == k), -kinds.index(k)))
    rows = [r for r in per_w if r["slice_score"] == best_kind]
    w_star = select_guidance({r["guidance"]: r["accuracy"] for r in rows}, tolerance)
    chosen = next(r for r in rows if r["guidance"] == w_star)
    majority = max(float((y == 1).float().mean()), float((y == 0).float().mean()))
    # the best-threshold search overfits: accuracy within two binomial standard errors of the majority rate is noise
    margin = 2 * (majority * (1 - majority) / y.numel()) ** 0.5
    if chosen["accuracy"] <= majority + margin:
        logger.warning(
            "AnoFPDM calibration: no slice-score threshold separates healthy from unhealthy validation slices clearly "
            "better than calling every slice %s (accuracy %.3f, image-level AUROC %.3f); noise MSE with the true / "
            "swapped / null class label %.5f / %.5f / %.5f (the true label is better than the null on %.0f%% of "
            "slices): if these barely differ, the network has not learnt its class conditioning (train longer); "
            "masks will follow that decision.",
            "unhealthy" if float((y == 1).float().mean()) >= 0.5 else "healthy",
            chosen["accuracy"],
            chosen["auroc"],
            conditioning["noise_mse_true"],
            conditioning["noise_mse_swapped"],
            conditioning["noise_mse_null"],
            100 * conditioning["true_below_null_fraction"],
        )
    area_auroc = auroc(area, y)
    if chosen["auroc"] < 0.5:
        logger.warning(
            "AnoFPDM calibration: the slice score (%s) ranks healthy validation slices above unhealthy ones "
            "(image-level AUROC %.3f at w=%s): it tracks something other than tumour; its rank correlation with the "
            "slices' brain area is %.2f (brain area alone reaches AUROC %.3f).",
            best_kind,
            chosen["auroc"],
            w_star,
            chosen["area_spearman"],
            area_auroc,
        )
    result = {
        "slice_score": best_kind,
        "guidance": w_star,
        "score_threshold": chosen["score_threshold"],
        "m_max": chosen["m_max"],
        "accuracy": chosen["accuracy"],
        "majority_accuracy": majority,
        "auroc": chosen["auroc"],
        "brain_area_auroc": area_auroc,
        "conditioning": conditioning,
        "tolerance": tolerance,
        "grid": per_w,
        "n_slices": int(y.numel()),
        "n_unhealthy": int((y == 1).sum()),
        "sweep": {
            "timesteps": [inferer.timesteps[0], inferer.timesteps[-1], len(inferer.timesteps)],
            "mode": inferer.mode,
            "unguided": inferer.unguided,
            "channels": inferer.channels,
            "patience": inferer.patience,
        },
        "seconds": round(time.perf_counter() - t0, 2),
        "note": "label-free: only image-level (slice) labels were used",
        **fitted_on(checkpoint, settings),
    }
    atomic_write_text(output_file, json.dumps(result, indent=4))
    logger.info(
        "AnoFPDM calibration: slice score %s, w=%s, score_threshold=%.6g, M_max=%.6g, accuracy=%.3f -> %s",
        best_kind,
        w_star,
        result["score_threshold"],
        result["m_max"],
        result["accuracy"],
        output_file,
    )
    print(
        f"calibration: slice score {best_kind} (image-level AUROC {result['auroc']:.3f}), guidance {w_star}, "
        f"threshold {result['score_threshold']:.6g}, M_max {result['m_max']:.6g}, accuracy {result['accuracy']:.3f} "
        f"on {result['n_slices']} slices -> {output_file}\n"
        f"conditioning gap (t < {conditioning['max_timestep']}, {gap_draws} draws per slice): noise MSE with the "
        f"true / swapped / null label {conditioning['noise_mse_true']:.5f} / {conditioning['noise_mse_swapped']:.5f} "
        f"/ {conditioning['noise_mse_null']:.5f}; the true label is better than the null on "
        f"{100 * conditioning['true_below_null_fraction']:.0f}% of slices, than the swapped on "
        f"{100 * conditioning['true_below_swapped_fraction']:.0f}%"
    )
    return result
