# SPDX-License-Identifier: Apache-2.0
"""Pixel metrics for anomaly segmentation: overlap scores, ranking scores (AUROC, AUPRC), the best-Dice
oracle and PRO.

Why not MONAI's metrics: ``monai.metrics`` works on one-hot ``(B, C, ...)`` batches without a region mask
(we evaluate over brain pixels only), leaves the empty-slice cases to a ``smooth`` term or NaN, and its
``compute_roc_auc`` walks the sorted scores in a Python loop (minutes for the ~50 M brain pixels of a test
split); it has no average precision, best-Dice threshold search or per-region overlap (PRO).

Conventions (the tests pin them):

- Binary inputs may be ``bool``, integer (non-zero is positive, so a BraTS ``seg`` works as is) or floating
  with values in ``{0, 1}`` (anything else raises: an anomaly map passed as a mask is a bug).
- ``mask`` restricts every count to the pixels where it is true (the brain).
- Overlap scores from the counts ``tp, fp, fn``:
  Dice ``2tp / (2tp + fp + fn)``, IoU ``tp / (tp + fp + fn)``, precision ``tp / (tp + fp)`` and recall
  ``tp / (tp + fn)``. Precision is the fraction of predicted pixels that are tumour, recall the fraction
  of tumour pixels that are predicted (AnoFPDM's public evaluation code has the two swapped; see design 5.4).
- Zero denominators with ``smooth=0``: the score is ``1.0`` when prediction and target are both empty
  (perfect agreement) and ``0.0`` when exactly one of them is empty. So on a tumour-free slice, an empty
  prediction scores 1 on all four metrics and any false positive scores 0 on all four (recall included:
  the slice has nothing to recall, but the prediction is wrong); on a tumour slice, an empty prediction
  scores 0 on all four (precision included: the tumour was missed). No score is ever NaN.
- With ``smooth > 0`` every score is ``(num + smooth) / (den + smooth)`` (MONAI's convention), which is
  never a zero division.
- Ranking scores treat larger scores as more anomalous and a pixel as predicted positive when
  ``score >= threshold``; tied scores are one threshold (one step of the curve).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "confusion_counts",
    "scores_from_counts",
    "dice_score",
    "iou_score",
    "precision_score",
    "recall_score",
    "per_slice_scores",
    "binary_clf_curve",
    "auroc",
    "average_precision",
    "best_dice_threshold",
    "ranking_metrics",
    "pr_curve",
    "spearman",
    "pro_score",
    "pro_from_regions",
    "slice_regions",
]

SEGMENTATION_METRICS = ("dice", "iou", "precision", "recall")


def _to_tensor(x: Any, name: str, device: torch.device | None = None) -> torch.Tensor:
    """Tensor view of ``x`` (numpy array, tensor, MetaTensor or sequence), optionally moved to ``device``."""
    if isinstance(x, torch.Tensor):
        t = x.as_subclass(torch.Tensor) if type(x) is not torch.Tensor else x  # drop MetaTensor metadata
    elif isinstance(x, (np.ndarray, np.generic, Sequence, int, float, bool)):
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected bool or numeric values, got numpy dtype {arr.dtype}.")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    else:
        raise TypeError(f"{name}: expected a torch tensor or numpy array, got {type(x).__name__}.")
    if device is not None and t.device != device:
        t = t.to(device)
    return t


def _binarise(x: Any, name: str, device: torch.device | None = None) -> torch.Tensor:
    """Bool tensor from a bool, integer (non-zero is positive) or {0, 1} floating array."""
    t = _to_tensor(x, name, device)
    if t.dtype == torch.bool:
        return t
    if t.is_floating_point():
        if t.numel() and not bool(((t == 0) | (t == 1)).all()):
            raise ValueError(f"{name} must be binary (values 0/1 or bool); got floating values outside {{0, 1}}.")
        return t != 0
    if t.is_complex():
        raise TypeError(f"{name}: complex input is not supported.")
    return t != 0


def _check_same_shape(ref: torch.Tensor, other: torch.Tensor, ref_name: str, other_name: str) -> None:
    if ref.shape != other.shape:
        raise ValueError(f"{other_name} shape {tuple(other.shape)} does not match {ref_name} shape {tuple(ref.shape)}.")


def _prepare_binary(pred: Any, target: Any, mask: Any | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    p = _binarise(pred, "pred")
    t = _binarise(target, "target", p.device)
    _check_same_shape(p, t, "pred", "target")
    m = None
    if mask is not None:
        m = _binarise(mask, "mask", p.device)
        _check_same_shape(p, m, "pred", "mask")
    return p, t, m


def _counts(
    p: torch.Tensor, t: torch.Tensor, m: torch.Tensor | None, dim: tuple[int, ...] | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tp, fp, fn, tn) as int64 tensors, summed over ``dim`` (all dimensions when None)."""
    kw: dict[str, Any] = {"dtype": torch.int64} if dim is None else {"dim": dim, "dtype": torch.int64}
    if m is not None:
        p, t = p & m, t & m
    tp = (p & t).sum(**kw)
    fp = p.sum(**kw) - tp
    fn = t.sum(**kw) - tp
    if m is not None:
        n = m.sum(**kw)
    else:
        n = torch.full_like(tp, p.numel() if dim is None else math.prod(p.shape[d] for d in dim))
    tn = n - tp - fp - fn
    return tp, fp, fn, tn


def confusion_counts(pred: Any, target: Any, mask: Any | None = None) -> tuple[int, int, int, int]:
    """Pixel confusion counts of a binary prediction against a binary target.

    Args:
        pred: binary prediction, any shape (bool, integer or {0, 1} floating; tensor or numpy array).
        target: binary ground truth, same shape (integer labels: non-zero is positive, e.g. ``seg > 0``).
        mask: optional bool array of the same shape; only pixels where it is true are counted (the brain).

    Returns:
        ``(tp, fp, fn, tn)`` as Python ints (accumulated in int64).

    Raises:
        ValueError: shapes differ, or a floating input holds values other than 0 and 1.
    """
    p, t, m = _prepare_binary(pred, target, mask)
    return tuple(int(c) for c in _counts(p, t, m, None))  # type: ignore[return-value]


def _ratio(num: torch.Tensor, den: torch.Tensor, empty_value: torch.Tensor, smooth: float) -> torch.Tensor:
    if smooth > 0:
        return (num + smooth) / (den + smooth)
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, empty_value)


def scores_from_counts(tp: Any, fp: Any, fn: Any, smooth: float = 0.0) -> dict[str, torch.Tensor]:
    """Dice, IoU, precision and recall from confusion counts, with the module's empty-case conventions.

    Args:
        tp: true-positive counts (scalar or tensor; broadcast together with ``fp`` and ``fn``).
        fp: false-positive counts.
        fn: false-negative counts.
        smooth: added to numerator and denominator when > 0; with 0 the zero-denominator convention applies
            (1.0 when prediction and target are both empty, 0.0 when exactly one is).

    Returns:
        dict ``{"dice", "iou", "precision", "recall"}`` of float64 tensors shaped like the broadcast counts.

    Raises:
        ValueError: ``smooth`` is negative.
    """
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}.")
    tp_ = torch.as_tensor(tp).to(torch.float64)
    fp_, fn_ = (torch.as_tensor(c).to(device=tp_.device, dtype=torch.float64) for c in (fp, fn))
    tp_, fp_, fn_ = torch.broadcast_tensors(tp_, fp_, fn_)
    pred_empty = (tp_ + fp_) == 0
    target_empty = (tp_ + fn_) == 0
    both_empty = (pred_empty & target_empty).to(torch.float64)
    return {
        "dice": _ratio(2 * tp_, 2 * tp_ + fp_ + fn_, both_empty, smooth),
        "iou": _ratio(tp_, tp_ + fp_ + fn_, both_empty, smooth),
        # zero denominator means nothing predicted: right only when there is nothing to find
        "precision": _ratio(tp_, tp_ + fp_, both_empty, smooth),
        # zero denominator means no tumour: right only when nothing was predicted
        "recall": _ratio(tp_, tp_ + fn_, both_empty, smooth),
    }


def _pooled(metric: str, pred: Any, target: Any, mask: Any | None, smooth: float) -> float:
    p, t, m = _prepare_binary(pred, target, mask)
    tp, fp, fn, _ = _counts(p, t, m, None)
    return float(scores_from_counts(tp, fp, fn, smooth)[metric])


def dice_score(pred: Any, target: Any, mask: Any | None = None, smooth: float = 0.0) -> float:
    """Dice ``2tp / (2tp + fp + fn)`` pooled over all (masked) pixels.

    Args:
        pred: binary prediction, any shape.
        target: binary ground truth, same shape.
        mask: optional bool array restricting the pixels (the brain).
        smooth: see :func:`scores_from_counts`; with 0, both empty gives 1.0.

    Returns:
        the Dice score as a float in [0, 1].
    """
    return _pooled("dice", pred, target, mask, smooth)


def iou_score(pred: Any, target: Any, mask: Any | None = None, smooth: float = 0.0) -> float:
    """IoU (Jaccard) ``tp / (tp + fp + fn)`` pooled over all (masked) pixels; both empty gives 1.0.

    Args:
        pred: binary prediction, any shape.
        target: binary ground truth, same shape.
        mask: optional bool array restricting the pixels (the brain).
        smooth: see :func:`scores_from_counts`.

    Returns:
        the IoU as a float in [0, 1].
    """
    return _pooled("iou", pred, target, mask, smooth)


def precision_score(pred: Any, target: Any, mask: Any | None = None, smooth: float = 0.0) -> float:
    """Precision ``tp / (tp + fp)``: the fraction of predicted pixels that are tumour.

    With nothing predicted (``tp + fp == 0``) and ``smooth=0`` it is 1.0 when the target is empty too and 0.0
    when tumour is present (the tumour was missed).

    Args:
        pred: binary prediction, any shape.
        target: binary ground truth, same shape.
        mask: optional bool array restricting the pixels (the brain).
        smooth: see :func:`scores_from_counts`.

    Returns:
        the precision as a float in [0, 1].
    """
    return _pooled("precision", pred, target, mask, smooth)


def recall_score(pred: Any, target: Any, mask: Any | None = None, smooth: float = 0.0) -> float:
    """Recall (sensitivity) ``tp / (tp + fn)``: the fraction of tumour pixels that are predicted.

    With no tumour (``tp + fn == 0``) and ``smooth=0`` it is 1.0 when nothing is predicted and 0.0 when
    something is (a false alarm).

    Args:
        pred: binary prediction, any shape.
        target: binary ground truth, same shape.
        mask: optional bool array restricting the pixels (the brain).
        smooth: see :func:`scores_from_counts`.

    Returns:
        the recall as a float in [0, 1].
    """
    return _pooled("recall", pred, target, mask, smooth)


def per_slice_scores(pred: Any, target: Any, mask: Any | None = None, smooth: float = 0.0) -> dict[str, torch.Tensor]:
    """Dice, IoU, precision and recall of every slice of a stack.

    Args:
        pred: binary prediction ``(S, H, W)`` (any ``(S, ...)``: all dimensions after the first are pooled).
        target: binary ground truth, same shape.
        mask: optional bool array of the same shape restricting the pixels (the brain).
        smooth: see :func:`scores_from_counts`.

    Returns:
        dict ``{"dice", "iou", "precision", "recall"}`` of float64 tensors ``(S,)`` on the input's device,
        with the module's empty-case conventions (never NaN).

    Raises:
        ValueError: fewer than 2 dimensions, or shapes differ.
    """
    p, t, m = _prepare_binary(pred, target, mask)
    if p.ndim < 2:
        raise ValueError(f"pred must be a stack (S, H, W); got shape {tuple(p.shape)}.")
    tp, fp, fn, _ = _counts(p, t, m, tuple(range(1, p.ndim)))
    return scores_from_counts(tp, fp, fn, smooth)


def _prepare_scores(scores: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    s = _to_tensor(scores, "scores")
    if not s.is_floating_point():  # float32 maps stay float32 (memory); integer/bool scores become float64
        s = s.to(torch.float64)
    y = _binarise(labels, "labels", s.device)
    _check_same_shape(s, y, "scores", "labels")
    s = s.reshape(-1)
    y = y.reshape(-1)
    if s.numel() and bool(torch.isnan(s).any()):
        raise ValueError("scores contain NaN; ranking metrics need an ordered set of scores.")
    return s, y


def binary_clf_curve(scores: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cumulative counts at every distinct threshold, from one descending sort.

    ``O(N log N)`` time; memory is a few arrays of length N (the sort and the cumulative count), never
    ``N x N``. Tied scores form one threshold, as in scikit-learn's ``_binary_clf_curve``.

    Args:
        scores: continuous scores, any shape (larger means more anomalous); float32 is kept as is.
        labels: binary labels, same shape.

    Returns:
        ``(fps, tps, thresholds)``: ``thresholds`` are the distinct scores in decreasing order; ``tps[i]`` and
        ``fps[i]`` count the positives and negatives with ``score >= thresholds[i]`` (int64). All three are
        empty for empty input.

    Raises:
        ValueError: shapes differ or scores contain NaN.
    """
    s, y = _prepare_scores(scores, labels)
    if s.numel() == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=s.device)
        return empty, empty.clone(), s[:0]
    s_sorted, order = torch.sort(s, descending=True)
    y_sorted = y[order]
    del order
    # last index of every run of equal scores
    idx = torch.nonzero(s_sorted[1:] != s_sorted[:-1]).squeeze(1)
    idx = torch.cat([idx, torch.tensor([s_sorted.numel() - 1], device=idx.device, dtype=idx.dtype)])
    thresholds = s_sorted[idx]
    del s_sorted
    tps = torch.cumsum(y_sorted, dim=0, dtype=torch.int64)[idx]
    del y_sorted
    fps = idx.add_(1).sub_(tps)  # in place: idx + 1 pixels are at or above the threshold
    return fps, tps, thresholds


def _auroc_from_curve(fps: torch.Tensor, tps: torch.Tensor) -> float:
    if fps.numel() == 0:
        return math.nan
    n_pos, n_neg = int(tps[-1]), int(fps[-1])
    if n_pos == 0 or n_neg == 0:
        return math.nan
    # trapezoids of the ROC step curve in integer units: 2 * AUC * P * N = sum dFP * (TP_i + TP_{i-1});
    # exact in int64 (bounded by 2 P N) and equal to Mann-Whitney U with mid-ranks for ties.
    d_fps = torch.diff(fps, prepend=fps.new_zeros(1))
    tp_sum = tps + torch.cat([tps.new_zeros(1), tps[:-1]])
    twice_area = int((d_fps * tp_sum).sum())
    return twice_area / (2.0 * n_pos * n_neg)


def _ap_from_curve(fps: torch.Tensor, tps: torch.Tensor) -> float:
    if tps.numel() == 0 or int(tps[-1]) == 0:
        return math.nan
    n_pos = int(tps[-1])
    d_tps = torch.diff(tps, prepend=tps.new_zeros(1))
    keep = d_tps > 0  # only thresholds where recall moves contribute
    tp_k = tps[keep].to(torch.float64)
    precision = tp_k / (tp_k + fps[keep].to(torch.float64))
    return float((d_tps[keep].to(torch.float64) * precision).sum() / n_pos)


def _best_dice_from_curve(fps: torch.Tensor, tps: torch.Tensor, thresholds: torch.Tensor) -> tuple[float, float, float]:
    """(best Dice, its threshold, IoU at that threshold)."""
    if tps.numel() == 0:
        return math.nan, math.nan, math.nan
    n_pos = int(tps[-1])
    if n_pos == 0:
        # predicting nothing is the only perfect answer (both empty -> 1.0)
        return 1.0, math.inf, 1.0
    tp = tps.to(torch.float64)
    dice = 2 * tp / (tp + fps.to(torch.float64) + n_pos)  # 2tp / (2tp + fp + fn) with fn = P - tp
    i = int(torch.argmax(dice))  # first maximum = highest threshold among ties
    tp_i, fp_i = int(tps[i]), int(fps[i])
    iou = tp_i / (tp_i + fp_i + (n_pos - tp_i))
    return float(dice[i]), float(thresholds[i]), iou


def auroc(scores: Any, labels: Any) -> float:
    """Exact area under the ROC curve.

    Equal to the Mann-Whitney U statistic ``P(s_pos > s_neg) + 0.5 P(s_pos == s_neg)`` (mid-ranks for ties),
    computed from one sort in ``O(N log N)``, so it handles the ~50 M brain pixels of a test split.

    Args:
        scores: continuous scores, any shape (larger means more anomalous).
        labels: binary labels, same shape.

    Returns:
        the AUROC in [0, 1]; NaN when the labels hold only one class or the input is empty.
    """
    fps, tps, _ = binary_clf_curve(scores, labels)
    return _auroc_from_curve(fps, tps)


def average_precision(scores: Any, labels: Any) -> float:
    """Area under the precision-recall curve as step-wise average precision.

    ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct thresholds in decreasing order, ``R_0 = 0``, tied scores
    forming one threshold: scikit-learn's ``average_precision_score`` definition (no interpolation).

    Args:
        scores: continuous scores, any shape (larger means more anomalous).
        labels: binary labels, same shape.

    Returns:
        the AP in [0, 1]; NaN when there are no positives or the input is empty.
    """
    fps, tps, _ = binary_clf_curve(scores, labels)
    return _ap_from_curve(fps, tps)


def best_dice_threshold(scores: Any, labels: Any) -> tuple[float, float]:
    """The best pooled Dice over all thresholds (``pred = scores >= threshold``): an oracle that needs labels.

    Exact: every distinct score is tried, from one sort with cumulative counts. Among thresholds with the same
    Dice the highest is returned. This is the ceiling reported beside a method's own label-free threshold
    (design section 6), never a method result.

    Args:
        scores: continuous scores, any shape (larger means more anomalous).
        labels: binary labels, same shape.

    Returns:
        ``(best_dice, threshold)``; ``(1.0, inf)`` when there are no positives (predicting nothing is perfect);
        ``(nan, nan)`` for empty input.
    """
    fps, tps, thr = binary_clf_curve(scores, labels)
    dice, threshold, _ = _best_dice_from_curve(fps, tps, thr)
    return dice, threshold


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(x, stable=True)
    v = x[order]
    # ties share the mean of their positions: group boundaries of the sorted values
    starts = torch.cat([torch.tensor([True]), v[1:] != v[:-1]])
    group = torch.cumsum(starts.long(), 0) - 1
    pos = torch.arange(1, len(x) + 1, dtype=torch.float64)
    mean_pos = torch.zeros(int(group[-1]) + 1, dtype=torch.float64).index_add_(0, group, pos)
    mean_pos /= torch.bincount(group).double()
    ranks = torch.empty(len(x), dtype=torch.float64)
    ranks[order] = mean_pos[group]
    return ranks


def spearman(a: Any, b: Any) -> float:
    """Spearman's rank correlation of two equally long 1-D sequences (ties get their average rank); NaN when either
    is constant or shorter than 2."""
    x = _to_tensor(a, "a").detach().cpu().double().flatten()
    y = _to_tensor(b, "b").detach().cpu().double().flatten()
    if x.numel() != y.numel():
        raise ValueError(f"need equally long sequences, got {x.numel()} and {y.numel()}")
    if x.numel() < 2:
        return float("nan")
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = float(rx.norm() * ry.norm())
    return float((rx * ry).sum()) / den if den > 0 else float("nan")


def _pr_points(fps: torch.Tensor, tps: torch.Tensor, points: int) -> dict[str, list[float]] | None:
    if tps.numel() == 0 or int(tps[-1]) == 0:
        return None
    n_pos = int(tps[-1])
    # the first threshold reaching each of ``points`` evenly spaced recall levels, then the whole curve's last point
    levels = torch.linspace(1, n_pos, max(2, int(points)), dtype=torch.float64).ceil().to(torch.int64)
    idx = torch.unique(torch.searchsorted(tps, levels).clamp_max(tps.numel() - 1))
    tp, fp = tps[idx].to(torch.float64), fps[idx].to(torch.float64)
    return {"recall": (tp / n_pos).tolist(), "precision": (tp / (tp + fp)).tolist()}


def pr_curve(scores: Any, labels: Any, points: int = 200) -> dict[str, list[float]] | None:
    """A precision-recall curve thinned to about ``points`` points, for plots (the metrics use the whole curve).

    Each point is the highest threshold at which recall reaches one of ``points`` evenly spaced levels in
    ``(0, 1]``, so the curve keeps its shape where recall moves and stays small for millions of pixels.

    Args:
        scores: continuous scores, any shape (larger means more anomalous).
        labels: binary labels, same shape.
        points: recall levels.

    Returns:
        ``{"recall": [...], "precision": [...]}`` in increasing recall, ending at recall 1; None without positives.
    """
    fps, tps, _ = binary_clf_curve(scores, labels)
    return _pr_points(fps, tps, points)


def ranking_metrics(scores: Any, labels: Any, curve_points: int = 0) -> dict[str, Any]:
    """AUROC, average precision and the best-Dice oracle from a single sort (what the evaluator uses).

    Args:
        scores: continuous scores, any shape (larger means more anomalous).
        labels: binary labels, same shape.

    Returns:
        dict with ``auroc``, ``auprc`` (average precision), ``best_dice``, ``best_threshold`` and
        ``iou_at_best`` (IoU at the best-Dice threshold; IoU = D / (2 - D) is monotone in Dice, so that
        threshold maximises IoU too), with the conventions of :func:`auroc`, :func:`average_precision` and
        :func:`best_dice_threshold`; with ``curve_points`` > 0 also ``pr_curve``, as from :func:`pr_curve` on the
        same sort.
    """
    fps, tps, thr = binary_clf_curve(scores, labels)
    best, threshold, iou = _best_dice_from_curve(fps, tps, thr)
    out: dict[str, Any] = {
        "auroc": _auroc_from_curve(fps, tps),
        "auprc": _ap_from_curve(fps, tps),
        "best_dice": best,
        "best_threshold": threshold,
        "iou_at_best": iou,
    }
    if curve_points > 0:
        out["pr_curve"] = _pr_points(fps, tps, curve_points)
    return out


def _area_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoidal area under the piecewise-linear curve (x non-decreasing) from x[0] to x_max."""
    i = int(np.searchsorted(x, x_max, side="right"))  # x[:i] <= x_max
    xs, ys = x[:i], y[:i]
    if i < x.size and xs[-1] < x_max:
        # x[i] > x_max > x[i-1]: cut the segment with linear interpolation
        y_cut = ys[-1] + (y[i] - ys[-1]) * (x_max - xs[-1]) / (x[i] - xs[-1])
        xs = np.append(xs, x_max)
        ys = np.append(ys, y_cut)
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2.0))


def _check_pro_args(max_fpr: float, num_thresholds: int | None) -> None:
    if not 0 < max_fpr <= 1:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}.")
    if num_thresholds is not None and num_thresholds < 2:
        raise ValueError(f"num_thresholds must be None or >= 2, got {num_thresholds}.")


def pro_score(
    scores: Any, labels: Any, max_fpr: float = 0.3, num_thresholds: int | None = None, connectivity: int = 2
) -> float:
    """Normalised area under the per-region-overlap (PRO) curve up to ``max_fpr``.

    Bergmann et al., "The MVTec Anomaly Detection Dataset", IJCV 2021 (section 4.2): ground-truth regions are
    the connected components of each 2D label image; at a threshold, PRO is the mean over all regions (of all
    images) of the fraction of the region's pixels predicted anomalous, and FPR is the fraction of all
    normal pixels predicted anomalous. The curve PRO(FPR) is integrated with trapezoids from 0 to
    ``max_fpr`` (linear interpolation at the cut) and divided by ``max_fpr``, so a perfect map scores 1
    and a random one about ``max_fpr / 2``.

    The mean region overlap is a weighted true-positive rate (each region pixel weighs
    ``1 / (n_regions * region_size)``), so the exact curve comes from one sort like ROC.

    Args:
        scores: continuous maps ``(S, H, W)`` or a single ``(H, W)`` image (larger means more anomalous).
        labels: binary ground truth of the same shape.
        max_fpr: the FPR integration limit, in (0, 1]; 0.3 as in MVTec AD.
        num_thresholds: None (default) for the exact curve over all distinct scores; an integer for
            ``num_thresholds`` equally spaced thresholds from the maximum to the minimum score (the usual
            binned approximation, e.g. anomalib's), which is cheaper to reason about but not exact.
        connectivity: 2 for 8-connected regions (MVTec's ``np.ones((3, 3))`` structure), 1 for 4-connected.

    Returns:
        the normalised PRO area in [0, 1]; NaN when there are no anomalous or no normal pixels.

    Raises:
        ValueError: wrong dimensionality, bad ``max_fpr``/``num_thresholds``/``connectivity``, NaN scores.
    """
    _check_pro_args(max_fpr, num_thresholds)
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 (4-connected) or 2 (8-connected), got {connectivity}.")
    s = _to_tensor(scores, "scores")
    if s.ndim == 2:
        s = s[None]
    if s.ndim != 3:
        raise ValueError(f"scores must be (S, H, W) or (H, W); got shape {tuple(s.shape)}.")
    y = _binarise(labels, "labels", s.device)
    if y.ndim == 2:
        y = y[None]
    _check_same_shape(s, y, "scores", "labels")
    s_np = s.detach().cpu().numpy().astype(np.float64, copy=False)
    y_np = y.cpu().numpy()
    region, _ = slice_regions(y_np, connectivity)
    return pro_from_regions(s_np.ravel(), region.ravel(), max_fpr, num_thresholds)


def slice_regions(labels: np.ndarray, connectivity: int = 2, first_id: int = 1) -> tuple[np.ndarray, int]:
    """PRO's regions: the connected components of each 2D image of ``labels`` (``(S, H, W)`` bool), numbered from
    ``first_id`` across all the images (0 outside); returns the ids (int64) and how many regions there are."""
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(2, connectivity)
    region = np.zeros(labels.shape, dtype=np.int64)
    n_regions = 0
    for i, sl in enumerate(labels):
        if sl.any():
            lab, n = ndimage.label(sl, structure=structure)
            region[i] = np.where(lab > 0, lab + first_id - 1 + n_regions, 0)
            n_regions += n
    return region, n_regions


def pro_from_regions(scores: Any, regions: Any, max_fpr: float = 0.3, num_thresholds: int | None = None) -> float:
    """PRO (:func:`pro_score`) of flat ``scores`` whose pixels carry region ids: ``regions`` is 0 on normal pixels
    and the id of the anomalous region (any positive integers, gaps allowed) elsewhere. What an evaluation that keeps
    only the brain pixels' values, with the region of each, computes PRO from.

    Returns:
        the normalised PRO area in [0, 1]; NaN when there are no anomalous or no normal pixels.
    """
    _check_pro_args(max_fpr, num_thresholds)
    flat = np.asarray(scores, dtype=np.float64).ravel()
    ids = np.asarray(regions).ravel()
    if flat.shape != ids.shape:
        raise ValueError(f"scores ({flat.size}) and regions ({ids.size}) differ in size.")
    if np.isnan(flat).any():
        raise ValueError("scores contain NaN; PRO needs an ordered set of scores.")
    if ids.size and (ids.min() < 0 or not np.issubdtype(ids.dtype, np.integer)):
        raise ValueError("regions must be non-negative integers (0: normal pixel).")
    sizes = np.bincount(ids).astype(np.float64) if ids.size else np.zeros(1)
    sizes[0] = 0.0  # normal pixels weigh nothing
    n_regions = int((sizes > 0).sum())
    n_neg = int((ids == 0).sum())
    if n_regions == 0 or n_neg == 0:
        return math.nan
    weight = np.divide(1.0, n_regions * sizes, out=np.zeros_like(sizes), where=sizes > 0)
    pix_w = weight[ids]  # each region's pixels sum to 1 / n_regions
    neg = (ids == 0).astype(np.float64)

    order = np.argsort(-flat, kind="stable")
    s_sorted = flat[order]
    cum_pro = np.cumsum(pix_w[order])
    cum_fp = np.cumsum(neg[order])
    if num_thresholds is None:
        ends = np.flatnonzero(np.diff(s_sorted) != 0)
        ends = np.append(ends, s_sorted.size - 1)
    else:
        grid = np.linspace(s_sorted[0], s_sorted[-1], num_thresholds)
        # number of pixels with score >= thr, on the descending sort
        counts = np.searchsorted(-s_sorted, -grid, side="right")
        counts = counts[counts > 0]
        ends = counts - 1
    fpr = np.concatenate([[0.0], cum_fp[ends] / n_neg])
    pro = np.concatenate([[0.0], cum_pro[ends]])
    return _area_up_to(fpr, pro, max_fpr) / max_fpr
