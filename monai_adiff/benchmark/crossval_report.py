# SPDX-License-Identifier: Apache-2.0
"""The cross-validation report: the fold table (pooled AUPRC per fold, mean ± sd over folds), every patient's AUPRC
(from the fold that tested it), the paired comparison with FLAIR, and the per-patient scatter; all read from the
folds' result records (:mod:`monai_adiff.benchmark.store`), so the report and the records cannot disagree."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from monai_adiff.benchmark.crossval import paired_comparison, patient_values
from monai_adiff.benchmark.store import BASELINE, value
from monai_adiff.utils import atomic_write_text

__all__ = ["cv_summary", "mean_sd_text", "cv_markdown", "plot_patient_scatter", "write_cv_report"]


def _mean_sd(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sd of the values present; the sd is ``None`` below two values (one fold has no spread to show)."""
    v = [x for x in values if x is not None]
    return (float(np.mean(v)) if v else None, float(np.std(v)) if len(v) > 1 else None)


def mean_sd_text(pair: tuple[float | None, float | None]) -> str:
    """``0.839 ± 0.051``; the mean alone where there is no sd; ``-`` where there is no value."""
    mean, sd = pair
    if mean is None:
        return "-"
    return f"{mean:.3f}" if sd is None else f"{mean:.3f} ± {sd:.3f}"


def cv_summary(folds: Sequence[Mapping[str, Mapping[str, Any]]], bundles: Sequence[str]) -> dict[str, Any]:
    """``{bundle: {...}}`` from the records of every fold (``folds[k][bundle]``): per-fold AUPRC of the method and of
    FLAIR on its slices, their mean and sd over folds, every patient's AUPRC and the paired comparison."""
    out: dict[str, Any] = {}
    for b in bundles:
        recs = [f[b] for f in folds if b in f]
        if not recs:
            continue
        mine = [value(r, "auprc") for r in recs]
        flair = [value(r, "auprc", BASELINE) for r in recs]
        pp, pp_flair = patient_values(recs, b), patient_values(recs, BASELINE)
        out[b] = {
            "version": recs[0]["version"],
            "folds": [r["split"] for r in recs],
            "auprc": mine,
            "flair_auprc": flair,
            "auprc_mean_sd": _mean_sd(mine),
            "flair_auprc_mean_sd": _mean_sd(flair),
            "dice_mean_sd": _mean_sd([value(r, "dice") for r in recs]),
            "flair_best_dice_mean_sd": _mean_sd([value(r, "best_dice", BASELINE) for r in recs]),
            "per_patient": pp,
            "flair_per_patient": pp_flair,
            "paired": paired_comparison(pp, pp_flair),
            "training_minutes": _mean_sd([r.get("training_minutes") for r in recs])[0],
            "seconds_per_volume": _mean_sd([r.get("seconds_per_volume") for r in recs])[0],
        }
    return out


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


def cv_markdown(summary: Mapping[str, Any]) -> str:
    """The fold table, the paired comparison and the per-patient table."""
    if not summary:
        return "No fold has been evaluated yet.\n"
    n = max(len(s["auprc"]) for s in summary.values())
    head = "| method | " + " | ".join(f"fold {k}" for k in range(n)) + " | mean ± sd | FLAIR mean ± sd |"
    lines = ["AUPRC (slices with tumour, pooled within the fold); FLAIR on the method's own slices:", "", head]
    lines.append("| --- " * (head.count("|") - 1) + "|")
    for b, s in summary.items():
        folds = [f"{_f(a)} ({_f(f)})" for a, f in zip(s["auprc"], s["flair_auprc"])]
        folds += ["-"] * (n - len(folds))
        spread = f"{mean_sd_text(s['auprc_mean_sd'])} | {mean_sd_text(s['flair_auprc_mean_sd'])}"
        lines.append(f"| {b} | " + " | ".join(folds) + f" | {spread} |")
    lines += [
        "",
        "Patient by patient (each patient's AUPRC from the fold that tested it) against FLAIR:",
        "",
        "| method | ahead of FLAIR | behind | mean difference [95 % bootstrap] | sign test p |",
        "| --- | --- | --- | --- | --- |",
    ]
    for b, s in summary.items():
        p = s["paired"]
        lines.append(
            f"| {b} | {p['wins']} of {p['patients']} | {p['losses']} | {_f(p['mean_difference'])} "
            f"[{_f(p['ci_low'])}, {_f(p['ci_high'])}] | {_f(p['sign_p'])} |"
        )
    patients = sorted({c for s in summary.values() for c in s["per_patient"]})
    first = next(iter(summary.values()))
    head = "| patient | FLAIR | " + " | ".join(summary) + " |"
    lines += ["", head, "| --- " * (head.count("|") - 1) + "|"]
    for c in patients:
        cells = [_f(first["flair_per_patient"].get(c))] + [_f(s["per_patient"].get(c)) for s in summary.values()]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_patient_scatter(summary: Mapping[str, Any], path: str, metadata: Mapping[str, str] | None = None) -> str:
    """Every patient's AUPRC of each method against FLAIR's (on the method's slices), the diagonal drawn
    (``metadata``: PNG text entries)."""
    from monai_adiff.benchmark.figures import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 5))
    for b, s in summary.items():
        cases = sorted(set(s["per_patient"]) & set(s["flair_per_patient"]))
        x = [s["flair_per_patient"][c] for c in cases]
        y = [s["per_patient"][c] for c in cases]
        p = s["paired"]
        ax.scatter(x, y, s=22, label=f"{b} ({p['wins']} of {p['patients']} above)")
    ax.plot([0, 1], [0, 1], color="0.4", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("FLAIR intensity: AUPRC per patient")
    ax.set_ylabel("method: AUPRC per patient")
    ax.set_title("Every patient, scored by the fold that held it out")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path, metadata)


def write_cv_report(
    out_dir: str | os.PathLike, folds: Sequence[Mapping[str, Mapping[str, Any]]], bundles: Sequence[str]
) -> dict[str, str]:
    """``cv_results.{md,json}`` and ``patient_scatter.png`` in ``out_dir``; returns their paths."""
    summary = cv_summary(folds, bundles)
    paths = {
        "cv_md": os.path.join(os.fspath(out_dir), "cv_results.md"),
        "cv_json": os.path.join(os.fspath(out_dir), "cv_results.json"),
        "patient_scatter": os.path.join(os.fspath(out_dir), "patient_scatter.png"),
    }
    atomic_write_text(paths["cv_md"], cv_markdown(summary))
    atomic_write_text(paths["cv_json"], json.dumps(summary, indent=1, allow_nan=False) + "\n")
    plot_patient_scatter(summary, paths["patient_scatter"])
    return paths
