# SPDX-License-Identifier: Apache-2.0
"""The benchmark's pictures: precision-recall curves, per-patient Dice box plots and an overlay grid.

Drawn with matplotlib (headless ``Agg``) from what the evaluation wrote: the thinned precision-recall curves of the
reports and the per-case slice snapshots (``metrics_snapshots.npz``), so the pictures show exactly what was scored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from monai_adiff.utils import atomic_write

__all__ = [
    "plot_pr_curves",
    "plot_dice_boxes",
    "plot_overlay_grid",
    "read_snapshots",
    "method_snapshots",
    "figure_paths",
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str, metadata: Mapping[str, str] | None = None) -> str:
    plt = _pyplot()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    out = atomic_write(
        path,
        lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png", metadata=dict(metadata or {})),
        ".png",
    )
    plt.close(fig)
    return out


def _style(name: str) -> dict[str, Any]:
    return {"color": "0.35", "linestyle": "--"} if name.startswith("FLAIR") else {}


def plot_pr_curves(rows: Sequence[Mapping[str, Any]], path: str, metadata: Mapping[str, str] | None = None) -> str:
    """Every method's pooled precision-recall curve, one panel per setup; the legend gives the AUPRC (``metadata``:
    PNG text entries)."""
    plt = _pyplot()
    setups = ("unhealthy", "mixed")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharey=True)
    for ax, setup in zip(axes, setups):
        for r in rows:
            curve = r.get("pr_curve")
            if r["setup"] != setup or not curve:
                continue
            auprc = "-" if r["auprc"] is None else f"{r['auprc']:.3f}"
            ax.step(
                curve["recall"],
                curve["precision"],
                where="post",
                label=f"{r['method']} ({auprc})",
                **_style(r["method"]),
            )
        ax.set_title(f"{setup} slices")
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(title="method (AUPRC)", fontsize=8, loc="upper right")
    axes[0].set_ylabel("precision")
    fig.suptitle("Pixel-level precision-recall over the brain, test patients pooled")
    return _save(fig, path, metadata)


def plot_dice_boxes(rows: Sequence[Mapping[str, Any]], path: str, metadata: Mapping[str, str] | None = None) -> str:
    """Per-patient Dice of the label-free masks (box plot with every patient as a point), one panel per setup
    (``metadata``: PNG text entries)."""
    plt = _pyplot()
    setups = ("unhealthy", "mixed")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, setup in zip(axes, setups):
        names, values = [], []
        for r in rows:
            if r["setup"] != setup:
                continue
            vals = [v["dice"] for v in r["per_patient"].values() if v.get("dice") is not None]
            if vals:
                names.append(r["method"])
                values.append(vals)
        if values:
            ax.boxplot(values, showmeans=True)
            ax.set_xticks(range(1, len(names) + 1), names, rotation=20)
            for i, vals in enumerate(values, start=1):
                ax.scatter(np.full(len(vals), i) + np.linspace(-0.08, 0.08, len(vals)), vals, s=14, color="k", zorder=3)
        ax.set_title(f"{setup} slices")
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("Dice per patient (label-free mask)")
    return _save(fig, path, metadata)


def read_snapshots(path: str) -> dict[str, dict[str, np.ndarray]]:
    """``{case: {key: array}}`` of a ``metrics_snapshots.npz`` (keys ``slices``, ``image``, ``label``,
    ``<method>/map``, ``<method>/mask``)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path) as z:
        for key in z.files:
            case, rest = key.split("/", 1)
            out.setdefault(case, {})[rest] = z[key]
    return out


def method_snapshots(snapshots: Mapping[str, Mapping[str, np.ndarray]], method: str) -> dict[str, dict[str, Any]]:
    """One method's arrays of :func:`read_snapshots` output: ``{case: {slices, label, image, map, mask}}``."""
    out: dict[str, dict[str, Any]] = {}
    for case, arrays in snapshots.items():
        if f"{method}/map" not in arrays:
            continue
        out[case] = {k: v for k, v in arrays.items() if "/" not in k}
        out[case]["map"] = arrays[f"{method}/map"]
        if f"{method}/mask" in arrays:
            out[case]["mask"] = arrays[f"{method}/mask"]
    return out


def _display(x: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """A map scaled to [0, 1] by its 99th percentile over the brain (per method, so colours compare ranks)."""
    vals = x[brain] if brain.any() else x.ravel()
    hi = float(np.quantile(vals, 0.99)) if vals.size else 0.0
    lo = float(min(0.0, vals.min())) if vals.size else 0.0
    return np.clip((x - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(x)


def plot_overlay_grid(
    snapshots: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]], path: str, max_rows: int = 4
) -> str | None:
    """One row per test slice (the largest-tumour slice of each patient), one column per method's map, the ground
    truth outlined in every panel and the method's label-free mask in colour.

    Args:
        snapshots: ``{method: {case: arrays}}``: ``slices``, ``label``, ``image`` and the method's ``map`` (and
            ``mask``) on those slices (:func:`method_snapshots`).
        path: the PNG to write.
        max_rows: at most this many slices (patients).

    Returns:
        the PNG's path, or None when no evaluated slice has a tumour.
    """
    plt = _pyplot()
    methods = list(snapshots)
    if not methods:
        return None
    first = snapshots[methods[0]]
    picks = []
    for case in sorted(first):
        arr = first[case]
        area = arr["label"].reshape(arr["label"].shape[0], -1).sum(1)
        picks.append((case, int(arr["slices"][int(np.argmax(area))])))
    picks = picks[:max_rows]
    if not picks:
        return None
    cols = ["image"] + methods
    fig, axes = plt.subplots(len(picks), len(cols), figsize=(2.2 * len(cols), 2.3 * len(picks)), squeeze=False)
    for i, (case, z) in enumerate(picks):
        for j, col in enumerate(cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            src = snapshots[methods[0] if col == "image" else col].get(case)
            if src is None or z not in list(src["slices"]):
                ax.set_facecolor("0.9")
                continue
            k = list(src["slices"]).index(z)
            label = src["label"][k].astype(bool)
            image = src.get("image")
            brain = image[k] > image[k].min() if image is not None else np.ones_like(label)
            if col == "image":
                shown = _display(image[k], brain) if image is not None else np.zeros(label.shape)
                ax.imshow(shown.T, cmap="gray", origin="lower", vmin=0, vmax=1)
            else:
                ax.imshow(_display(src["map"][k], brain).T, cmap="magma", origin="lower", vmin=0, vmax=1)
                mask = src.get("mask")
                if mask is not None and mask[k].any():
                    ax.contour(mask[k].astype(float).T, levels=[0.5], colors="cyan", linewidths=0.8, origin="lower")
            if label.any():
                ax.contour(label.astype(float).T, levels=[0.5], colors="lime", linewidths=0.8, origin="lower")
            if i == 0:
                ax.set_title(col, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{case}\nslice {z}", fontsize=7)
    fig.suptitle("Anomaly maps on the largest-tumour slice per patient (green: ground truth, cyan: label-free mask)")
    return _save(fig, path)


def figure_paths(out_dir: str) -> dict[str, str]:
    """Where the benchmark's pictures go."""
    return {k: os.path.join(out_dir, f"{k}.png") for k in ("pr_curves", "dice_per_patient", "overlays")}
