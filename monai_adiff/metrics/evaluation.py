# SPDX-License-Identifier: Apache-2.0
"""Volume-by-volume accumulator for the evaluation protocol of design section 6.

MONAI's ``Cumulative``/``CumulativeIterationMetric`` buffers whole predictions per iteration and knows nothing of
brain masks, slice setups or label-free vs oracle thresholds; this accumulator keeps only what the protocol needs:
per-slice confusion counts, and the anomaly-map values and labels of brain pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from monai_adiff.errors import InputError
from monai_adiff.metrics.functional import (
    SEGMENTATION_METRICS,
    _binarise,
    _to_tensor,
    pro_from_regions,
    ranking_metrics,
    scores_from_counts,
    slice_regions,
    spearman,
)

__all__ = ["AnomalyEvaluation", "SETUPS", "RANKING_KEYS", "ORACLE_KEYS"]

SETUPS = ("mixed", "unhealthy")
#: keys computed from the continuous map over the setup's brain pixels
RANKING_KEYS = ("auprc", "auroc", "best_dice", "best_threshold", "iou_at_best")
#: PRO's false-positive-rate limit (MVTec AD's and the D3AD paper's 0.3)
PRO_MAX_FPR = 0.3
#: keys that need pixel labels to choose the threshold: a ceiling, never a method's result
ORACLE_KEYS = ("best_dice", "best_threshold", "iou_at_best")


def _finite_or_none(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


class AnomalyEvaluation:
    """Accumulate anomaly maps, masks and slice scores of whole volumes; compute the protocol's metrics once.

    Setups (AnoFPDM's, design 6): ``"mixed"`` = all brain slices passed in, ``"unhealthy"`` = those whose target
    has any tumour pixel (image-level label = any ``seg > 0`` in the slice). A slice is a brain slice when
    ``brain_mask`` has any pixel in it; other slices are ignored. Pixel metrics count brain pixels only.

    What is kept per volume: int64 confusion counts per brain slice, the slice labels and scores, and (when
    ``keep_maps``) the map values (float32) and targets (bool) of brain pixels, split by healthy/unhealthy
    slice; they are concatenated once per setup in :meth:`compute`. Nothing else of the volume is kept.

    Conventions: per-slice scores follow :mod:`monai_adiff.metrics.functional` (0/0 is 1.0 when prediction and
    target are both empty, 0.0 when exactly one is); anything that cannot be computed (no slices, a single
    class, a piece not given for every volume) is ``None``, never an error at :meth:`compute`.

    Args:
        setups: which setups to report, a subset of ``("mixed", "unhealthy")``.
        keep_maps: keep brain-pixel map values for AUPRC/AUROC/best-Dice; False saves memory and reports those
            as None.
        curve_points: when > 0, each setup's result also holds ``pr_curve`` (the pooled precision-recall curve
            thinned to about this many points, :func:`~monai_adiff.metrics.functional.pr_curve`) for plots.

    Example::

        ev = AnomalyEvaluation()
        for case in cases:
            ev.add_volume(case.id, amap, mask, seg > 0, brain, slice_scores=scores)
        results = ev.compute()
        results["unhealthy"]["dice"], results["volume"]["dice_mean"], results["image"]["auroc"]
    """

    def __init__(self, setups: Sequence[str] = SETUPS, keep_maps: bool = True, curve_points: int = 0) -> None:
        setups = (setups,) if isinstance(setups, str) else tuple(setups)
        unknown = [s for s in setups if s not in SETUPS]
        if unknown or not setups:
            raise ValueError(f"setups must be a non-empty subset of {SETUPS}; got {setups}.")
        self.setups = tuple(dict.fromkeys(setups))
        self.keep_maps = bool(keep_maps)
        self.curve_points = int(curve_points)
        self.reset()

    def reset(self) -> None:
        """Forget every volume added so far."""
        self._case_ids: list[str] = []
        self._records: list[dict[str, Any]] = []
        # brain-pixel values split by slice health: index 0 healthy slices, 1 unhealthy slices
        self._map_values: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        self._map_targets: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        # the tumour region (2D connected component, unique over all volumes) of each kept pixel, 0 outside: PRO
        self._map_regions: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        self._n_regions = 0

    def __len__(self) -> int:
        return len(self._records)

    def _stack(self, x: Any, name: str, case_id: str, shape: tuple[int, ...] | None, binary: bool) -> torch.Tensor:
        try:
            t = _binarise(x, name) if binary else _to_tensor(x, name)
        except (TypeError, ValueError) as e:
            raise InputError(None, f"case {case_id!r}: {e}") from e
        t = t.detach().cpu()
        if t.ndim != 3:
            raise InputError(None, f"case {case_id!r}: {name} must be an (S, H, W) stack; got shape {tuple(t.shape)}.")
        if shape is not None and tuple(t.shape) != shape:
            raise InputError(None, f"case {case_id!r}: {name} shape {tuple(t.shape)} does not match target {shape}.")
        return t

    def _per_slice(self, x: Any, name: str, case_id: str, n_slices: int, binary: bool) -> torch.Tensor | None:
        if x is None:
            return None
        try:
            t = _binarise(x, name) if binary else _to_tensor(x, name)
        except (TypeError, ValueError) as e:
            raise InputError(None, f"case {case_id!r}: {e}") from e
        t = t.detach().cpu().reshape(-1)
        if t.numel() != n_slices:
            raise InputError(None, f"case {case_id!r}: {name} has {t.numel()} values for {n_slices} slices.")
        if not binary:
            t = t.to(torch.float64)
            if not bool(torch.isfinite(t).all()):
                raise InputError(None, f"case {case_id!r}: {name} contains NaN or Inf.")
        return t

    def add_volume(
        self,
        case_id: str,
        anomaly_map: Any | None,
        pred_mask: Any | None,
        target: Any,
        brain_mask: Any,
        slice_scores: Any | None = None,
        slice_labels_pred: Any | None = None,
    ) -> None:
        """Add one volume as a stack of axial slices.

        Args:
            case_id: unique case identifier (the key of the per-case 3D Dice).
            anomaly_map: continuous map ``(S, H, W)`` (larger = more anomalous), or None when the method gives none.
            pred_mask: the method's binary mask ``(S, H, W)`` from its own label-free threshold, or None.
            target: ground truth ``(S, H, W)``: bool, or labels where non-zero is tumour (``seg``).
            brain_mask: bool ``(S, H, W)``, true on brain pixels; slices without any are ignored.
            slice_scores: optional per-slice anomaly score ``(S,)`` for the image-level AUROC.
            slice_labels_pred: optional per-slice predicted label ``(S,)`` (1 = unhealthy) for image-level
                accuracy, sensitivity and specificity.

        Raises:
            InputError: duplicate case id, wrong shapes, non-binary masks, NaN or Inf in the map or scores.
        """
        case_id = str(case_id)
        if case_id in self._case_ids:
            raise InputError(None, f"case {case_id!r} was already added.")
        tgt = self._stack(target, "target", case_id, None, binary=True)
        shape = tuple(tgt.shape)
        brain = self._stack(brain_mask, "brain_mask", case_id, shape, binary=True)
        pred = None if pred_mask is None else self._stack(pred_mask, "pred_mask", case_id, shape, binary=True)
        amap = None if anomaly_map is None else self._stack(anomaly_map, "anomaly_map", case_id, shape, binary=False)
        s_scores = self._per_slice(slice_scores, "slice_scores", case_id, shape[0], binary=False)
        s_labels = self._per_slice(slice_labels_pred, "slice_labels_pred", case_id, shape[0], binary=True)

        is_brain = brain.flatten(1).any(dim=1)
        tgt, brain = tgt[is_brain], brain[is_brain]
        unhealthy = tgt.flatten(1).any(dim=1)  # image-level label: any tumour in the slice
        tgt_b = tgt & brain
        rec: dict[str, Any] = {
            "case_id": case_id,
            "unhealthy": unhealthy,
            "n_pixels": brain.flatten(1).sum(dim=1, dtype=torch.int64),
            "n_tumour": tgt_b.flatten(1).sum(dim=1, dtype=torch.int64),
            "tp": None,
            "fp": None,
            "slice_scores": None if s_scores is None else s_scores[is_brain],
            "slice_labels_pred": None if s_labels is None else s_labels[is_brain],
            "has_map": amap is not None,
        }
        if pred is not None:
            pred_b = pred[is_brain] & brain
            rec["tp"] = (pred_b & tgt_b).flatten(1).sum(dim=1, dtype=torch.int64)
            rec["fp"] = pred_b.flatten(1).sum(dim=1, dtype=torch.int64) - rec["tp"]
        if amap is not None:
            amap = amap[is_brain]
            values = amap[brain]
            if values.numel() and not bool(torch.isfinite(values).all()):
                raise InputError(None, f"case {case_id!r}: anomaly_map contains NaN or Inf inside the brain.")
            if self.keep_maps:
                regions = self._regions(tgt_b)
                for k, sel in enumerate((~unhealthy, unhealthy)):
                    m = brain & sel[:, None, None]
                    self._map_values[k].append(amap[m].to(torch.float32))
                    self._map_targets[k].append(tgt[m])
                    self._map_regions[k].append(regions[m])
        self._case_ids.append(case_id)
        self._records.append(rec)

    def _regions(self, tumour: torch.Tensor) -> torch.Tensor:
        """Ids of the 8-connected tumour regions of each slice (MVTec AD's PRO regions), unique over the volumes
        added so far; 0 outside the tumour."""
        region, n = slice_regions(tumour.cpu().numpy(), connectivity=2, first_id=self._n_regions + 1)
        self._n_regions += n
        return torch.from_numpy(region.astype(np.int32))  # half the memory of int64 per kept pixel

    def _setup_metrics(self, setup: str) -> dict[str, Any]:
        recs = self._records
        sel = [r["unhealthy"] if setup == "unhealthy" else torch.ones_like(r["unhealthy"]) for r in recs]
        n_slices = int(sum(int(s.sum()) for s in sel))
        out: dict[str, Any] = {k: None for k in SEGMENTATION_METRICS}
        out.update({f"{k}_pooled": None for k in SEGMENTATION_METRICS})
        out.update({k: None for k in RANKING_KEYS})
        out["pro"] = None
        if self.curve_points > 0:
            out["pr_curve"] = None
        n_pixels = int(sum(int(r["n_pixels"][s].sum()) for r, s in zip(recs, sel)))
        n_tumour = int(sum(int(r["n_tumour"][s].sum()) for r, s in zip(recs, sel)))
        out.update(
            {
                "n_slices": n_slices,
                "n_volumes": sum(1 for s in sel if bool(s.any())),
                "n_pixels": n_pixels,
                "tumour_fraction": n_tumour / n_pixels if n_pixels else None,
            }
        )
        if n_slices == 0:
            return out
        if all(r["tp"] is not None for r in recs):
            tp = torch.cat([r["tp"][s] for r, s in zip(recs, sel)])
            fp = torch.cat([r["fp"][s] for r, s in zip(recs, sel)])
            fn = torch.cat([r["n_tumour"][s] for r, s in zip(recs, sel)]) - tp
            per_slice = scores_from_counts(tp, fp, fn)
            pooled = scores_from_counts(tp.sum(), fp.sum(), fn.sum())
            for k in SEGMENTATION_METRICS:
                out[k] = float(per_slice[k].mean())
                out[f"{k}_pooled"] = float(pooled[k])
        if self.keep_maps and all(r["has_map"] for r in recs) and n_pixels and n_tumour:
            parts = (1,) if setup == "unhealthy" else (0, 1)
            values = torch.cat([v for k in parts for v in self._map_values[k]])
            labels = torch.cat([t for k in parts for t in self._map_targets[k]])
            ranked = ranking_metrics(values, labels, self.curve_points)
            del labels
            out.update({k: _finite_or_none(ranked[k]) for k in RANKING_KEYS})
            regions = torch.cat([r for k in parts for r in self._map_regions[k]])
            out["pro"] = _finite_or_none(pro_from_regions(values.numpy(), regions.numpy(), PRO_MAX_FPR))
            del values, regions
            if self.curve_points > 0:
                out["pr_curve"] = ranked["pr_curve"]
        return out

    def _volume_metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dice_mean": None, "dice_std": None, "n_volumes": len(self._records), "per_case": {}}
        if not self._records or any(r["tp"] is None for r in self._records):
            return out
        for r in self._records:
            tp, fp = r["tp"].sum(), r["fp"].sum()
            fn = r["n_tumour"].sum() - tp
            out["per_case"][r["case_id"]] = float(scores_from_counts(tp, fp, fn)["dice"])
        dice = np.array(list(out["per_case"].values()), dtype=np.float64)
        out["dice_mean"] = float(dice.mean())
        out["dice_std"] = float(dice.std())  # population std (ddof=0) over volumes
        return out

    def _case_metrics(self) -> dict[str, Any]:
        """Per volume and setup: AUPRC, AUROC (of its own brain pixels) and pooled Dice of its mask; and their
        mean and population std over volumes (the per-patient spread of a pooled number)."""
        per_case: dict[str, Any] = {}
        maps_ok = self.keep_maps and all(r["has_map"] for r in self._records)
        for i, r in enumerate(self._records):
            per_case[r["case_id"]] = {}
            for setup in self.setups:
                sel = r["unhealthy"] if setup == "unhealthy" else torch.ones_like(r["unhealthy"])
                out: dict[str, Any] = {"auprc": None, "auroc": None, "dice_pooled": None, "n_slices": int(sel.sum())}
                if not bool(sel.any()):
                    per_case[r["case_id"]][setup] = out
                    continue
                if r["tp"] is not None:
                    tp, fp = r["tp"][sel].sum(), r["fp"][sel].sum()
                    out["dice_pooled"] = float(scores_from_counts(tp, fp, r["n_tumour"][sel].sum() - tp)["dice"])
                if maps_ok:
                    parts = (1,) if setup == "unhealthy" else (0, 1)
                    labels = torch.cat([self._map_targets[k][i] for k in parts])
                    if bool(labels.any()):
                        ranked = ranking_metrics(torch.cat([self._map_values[k][i] for k in parts]), labels)
                        out["auprc"], out["auroc"] = _finite_or_none(ranked["auprc"]), _finite_or_none(ranked["auroc"])
                per_case[r["case_id"]][setup] = out
        spread: dict[str, Any] = {}
        for setup in self.setups:
            spread[setup] = {}
            for key in ("auprc", "auroc", "dice_pooled"):
                vals = [c[setup][key] for c in per_case.values() if c[setup][key] is not None]
                spread[setup][key] = (
                    {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "min": min(vals), "max": max(vals)}
                    if vals
                    else None
                )
        return {"per_case": per_case, "spread": spread}

    def _image_metrics(self) -> dict[str, Any]:
        recs = self._records
        labels = torch.cat([r["unhealthy"] for r in recs]) if recs else torch.zeros(0, dtype=torch.bool)
        n_pos = int(labels.sum())
        out: dict[str, Any] = {
            "auroc": None,
            "auprc": None,
            "accuracy": None,
            "sensitivity": None,
            "specificity": None,
            "brain_area_auroc": None,
            "score_area_spearman": None,
            "n_slices": int(labels.numel()),
            "n_unhealthy": n_pos,
        }
        if labels.numel() == 0:
            return out
        # what a slice score reaches by tracking brain size alone (tumours sit in the large central slices): a
        # method's image AUROC near it, or near 1 - it, with a strong score-area correlation, is a size detector
        area = torch.cat([r["n_pixels"] for r in recs]).double()
        out["brain_area_auroc"] = _finite_or_none(ranking_metrics(area, labels)["auroc"])
        if all(r["slice_scores"] is not None for r in recs):
            scores = torch.cat([r["slice_scores"] for r in recs])
            ranked = ranking_metrics(scores, labels)
            out["auroc"] = _finite_or_none(ranked["auroc"])
            out["auprc"] = _finite_or_none(ranked["auprc"])
            out["score_area_spearman"] = _finite_or_none(spearman(scores, area))
        if all(r["slice_labels_pred"] is not None for r in recs):
            pred = torch.cat([r["slice_labels_pred"] for r in recs])
            tp = int((pred & labels).sum())
            tn = int((~pred & ~labels).sum())
            n_neg = labels.numel() - n_pos
            out["accuracy"] = (tp + tn) / labels.numel()
            out["sensitivity"] = tp / n_pos if n_pos else None
            out["specificity"] = tn / n_neg if n_neg else None
        return out

    def compute(self) -> dict[str, Any]:
        """All metrics of the volumes added so far (the accumulator is left as it is).

        Returns:
            dict with one entry per setup (``"mixed"``, ``"unhealthy"``) holding

            - ``dice``, ``iou``, ``precision``, ``recall``: means over the setup's slices of the per-slice
              scores of the binary masks, and ``dice_pooled`` ... ``recall_pooled``: over all the setup's
              brain pixels at once;
            - ``auprc`` (average precision), ``auroc``: of the continuous map over the setup's brain pixels,
              pooled across volumes; ``pro``: the normalised area under the per-region-overlap curve up to a
              false-positive rate of 0.3 (MVTec AD, the D3AD paper), regions = 8-connected tumour components of
              each slice, false positives over the setup's healthy brain pixels;
            - ``best_dice``, ``best_threshold``, ``iou_at_best``: the pooled best-Dice ORACLE, whose threshold is
              chosen with pixel labels: a ceiling reported beside the method, never its result (see
              ``ORACLE_KEYS``);
            - ``n_slices``, ``n_volumes``, ``n_pixels`` (brain pixels), ``tumour_fraction``;

            a ``"volume"`` entry: ``dice_mean``, ``dice_std`` (ddof=0), ``n_volumes`` and ``per_case``
            (3D Dice of each volume's mask over its brain pixels); and an ``"image"`` entry: ``auroc`` and
            ``auprc`` of the slice scores against the slice labels (any tumour) over brain slices, ``accuracy``,
            ``sensitivity``, ``specificity`` of the predicted slice labels, ``brain_area_auroc`` (the AUROC of the
            slices' brain area used as the score: what tracking slice size alone reaches), ``score_area_spearman``
            (rank correlation of the slice scores with the brain area), ``n_slices``, ``n_unhealthy``.
            Metrics that cannot be computed are None (e.g. no tumour slices: the unhealthy setup has
            ``n_slices`` 0 and None metrics; no tumour at all: AUROC/AUPRC/best-Dice None).
        """
        results: dict[str, Any] = {}
        # unhealthy first: its concatenation is freed before the larger mixed one is built
        for setup in sorted(self.setups, key=lambda s: s != "unhealthy"):
            results[setup] = self._setup_metrics(setup)
        results = {s: results[s] for s in self.setups}
        results["volume"] = self._volume_metrics()
        results["image"] = self._image_metrics()
        results.update(self._case_metrics())
        return results
