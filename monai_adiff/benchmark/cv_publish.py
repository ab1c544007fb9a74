# SPDX-License-Identifier: Apache-2.0
"""The cross-validation part of what :mod:`~monai_adiff.benchmark.publish` renders from the results store.

Records of ``monai-adiff benchmark --folds K`` are named ``cv<K>-s<seed>-f<k>``; the folds of one run form a group
``cv<K>-s<seed>``. A group is summarised by :func:`~monai_adiff.benchmark.crossval_report.cv_summary` (fold means
and sd beside FLAIR's, every patient's AUPRC from the fold that held it out, the paired comparison with FLAIR) and
rendered here as rows of a bundle's table, columns of the front README's chooser, a status line, ``eval_metrics``
entries and a per-patient scatter. A group with folds still missing says how many have run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from monai_adiff.benchmark.crossval_report import _mean_sd, cv_summary, mean_sd_text

__all__ = [
    "SEEDED",
    "FOLD",
    "seeded_splits",
    "cv_groups",
    "group_summary",
    "cv_bundle_rows",
    "cv_front_cells",
    "cv_status_line",
    "cv_eval_metrics",
    "cv_legend",
]

#: a seeded split's name (``s0``) and a fold's (``cv4-s0-f1``: group ``cv4-s0``, K 4, fold 1)
SEEDED = re.compile(r"s\d+")
FOLD = re.compile(r"(?P<group>cv(?P<k>\d+)-s\d+)-f(?P<fold>\d+)")
#: patients a method must beat FLAIR on, out of every patient with tumour, for the status line's bar (9 of 12)
PATIENT_BAR = 0.75


def seeded_splits(records: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """``{split: record}`` of the seeded splits (``s0``, ``s1``, ...), in seed order."""
    names = sorted((s for s in records if SEEDED.fullmatch(s)), key=lambda s: int(s[1:]))
    return {s: records[s] for s in names}


def cv_groups(records: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """``{group: [fold records in fold order]}`` of the cross-validation records."""
    out: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
    for split, r in records.items():
        m = FOLD.fullmatch(split)
        if m:
            out.setdefault(m["group"], []).append((int(m["fold"]), r))
    return {g: [r for _, r in sorted(folds, key=lambda x: x[0])] for g, folds in sorted(out.items())}


def folds_of(group: str) -> int:
    """K of a group name (``cv4-s0``: 4)."""
    return int(group[2:].split("-")[0])


def group_summary(bundle: str, folds: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The cross-validation summary of one bundle's fold records (:func:`cv_summary`)."""
    return cv_summary([{bundle: r} for r in folds], [bundle])[bundle]


def _f(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _run(group: str, folds: list[Mapping[str, Any]]) -> str:
    """The row label of a group: ``cv4-s0 mean ± sd over 4 folds``; ``cv4-s0, 1 of 4 folds`` (no sd of one fold)."""
    k, n = folds_of(group), len(folds)
    if n < 2:
        return f"{group}, {n} of {k} folds"
    return f"{group} mean ± sd over " + (f"{n} of {k} folds" if n < k else f"{k} folds")


def cv_bundle_rows(group: str, folds: list[Mapping[str, Any]], bundle: str) -> list[str]:
    """A bundle table's summary row of a group and, below the table, its per-patient line."""
    s = group_summary(bundle, folds)
    p = s["paired"]
    pp = s["per_patient"]
    per = (
        f"{mean_sd_text(_mean_sd(list(pp.values())))} ({mean_sd_text(_mean_sd(list(s['flair_per_patient'].values())))})"
    )
    row = (
        f"| {_run(group, folds)} | {mean_sd_text(s['auprc_mean_sd'])} ({mean_sd_text(s['flair_auprc_mean_sd'])}) "
        f"| {per} | {p['wins']} of {p['patients']} | {mean_sd_text(s['dice_mean_sd'])} (-) "
        f"| - ({mean_sd_text(s['flair_best_dice_mean_sd'])}) | - | {_f(s['training_minutes'], 1)} |"
    )
    patients = ", ".join(f"{c} {_f(pp[c])} ({_f(s['flair_per_patient'].get(c))})" for c in sorted(pp))
    diff = (
        f"mean difference {_f(p['mean_difference'])} [95 % bootstrap {_f(p['ci_low'])}, {_f(p['ci_high'])}], "
        f"sign test p = {_f(p['sign_p'])}"
    )
    return [row, f"{group}, every patient scored by the fold that held it out (FLAIR): {patients}; {diff}."]


def cv_front_cells(group: str, folds: list[Mapping[str, Any]] | None, bundle: str) -> list[str]:
    """The chooser's two cells of a group: mean ± sd over folds (FLAIR's), patients ahead of FLAIR."""
    if not folds:
        return ["-", "-"]
    s = group_summary(bundle, folds)
    cell = f"{mean_sd_text(s['auprc_mean_sd'])} ({mean_sd_text(s['flair_auprc_mean_sd'])})"
    if len(folds) < folds_of(group):
        cell += f", {len(folds)} of {folds_of(group)} folds"
    return [cell, f"{s['paired']['wins']} of {s['paired']['patients']}"]


def cv_status_line(group: str, per_bundle: Mapping[str, list[Mapping[str, Any]]], order: list[str]) -> str:
    """One status line of a group: who is ahead of FLAIR on the fold mean, and who clears the per-patient bar."""
    measured = [b for b in order if per_bundle.get(b)]
    sums = {b: group_summary(b, per_bundle[b]) for b in measured}
    ahead = [b for b in measured if (sums[b]["auprc_mean_sd"][0] or 0) > (sums[b]["flair_auprc_mean_sd"][0] or 0)]
    bar = [b for b in measured if sums[b]["paired"]["wins"] >= PATIENT_BAR * max(sums[b]["paired"]["patients"], 1)]
    runs = "; ".join(f"{b} {len(per_bundle[b])}" for b in measured)
    n = max((s["paired"]["patients"] for s in sums.values()), default=0)
    return (
        f"- {folds_of(group)}-fold patient cross-validation {group} ({n} patients with tumour; folds run: {runs}): "
        f"mean AUPRC ahead of FLAIR: {', '.join(ahead) or 'none'}; behind: "
        f"{', '.join(b for b in measured if b not in ahead) or 'none'}. Ahead of FLAIR on at least 3 in 4 patients: "
        f"{', '.join(bar) or 'none'}."
    )


def cv_eval_metrics(group: str, folds: list[Mapping[str, Any]], bundle: str) -> dict[str, Any]:
    """A group's ``eval_metrics`` entries."""
    s = group_summary(bundle, folds)
    (m, sd), (fm, fsd) = s["auprc_mean_sd"], s["flair_auprc_mean_sd"]
    p = s["paired"]
    out = {
        f"{group}_folds_run": len(folds),
        f"{group}_auprc_mean": _round(m),
        f"{group}_auprc_sd": _round(sd),
        f"{group}_flair_auprc_mean": _round(fm),
        f"{group}_flair_auprc_sd": _round(fsd),
        f"{group}_patients_ahead_of_flair": f"{p['wins']} of {p['patients']}",
    }
    return {k: v for k, v in out.items() if v is not None}  # one fold has no sd


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def cv_legend(group: str, per_bundle: Mapping[str, list[Mapping[str, Any]]], order: list[str]) -> dict[str, Any]:
    """The scatter's legend entries and versions, as drawn (compared with the PNG's text by the tests)."""
    measured = [b for b in order if per_bundle.get(b)]
    sums = {b: group_summary(b, per_bundle[b]) for b in measured}
    return {
        "patient_scatter": [f"{b} ({s['paired']['wins']} of {s['paired']['patients']} above)" for b, s in sums.items()],
        "versions": [f"{b} {per_bundle[b][0]['version']}" for b in measured],
    }
