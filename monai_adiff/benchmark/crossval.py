# SPDX-License-Identifier: Apache-2.0
"""Patient-level cross-validation for the benchmark: folds, and the verdict over every patient.

Two seeded splits of three test patients gave opposite verdicts; with K folds every patient is a test patient exactly
once, scored by the model that did not see it, and a method is compared with the FLAIR baseline patient by patient.
MONAI has k-fold helpers for datalists (``partition_dataset``) but not the patient-level fold, validation and
paired-comparison bookkeeping of this benchmark, hence this module.

Folds: the cases sorted by id and shuffled with ``seed``; fold ``k`` tests every ``K``-th case from position ``k``;
its validation patients (for the label-free threshold and calibration) are the first ``round(val_fraction * n)``
(at least one) of the remaining cases in the shuffled order; the rest train.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_adiff.benchmark.store import BASELINE, value
from monai_adiff.bundle.recipes import SHARED_CPU_TRAINING
from monai_adiff.data import scan_brats_folder, write_datalist
from monai_adiff.errors import InputError

__all__ = [
    "fold_name",
    "fold_sections",
    "write_fold_datalists",
    "fold_models",
    "paired_comparison",
    "patient_values",
    "nested_choice",
]


def fold_name(folds: int, seed: int, fold: int) -> str:
    """The split name of a fold in records and tables: ``cv4-s0-f1`` (K folds, seed, fold index)."""
    return f"cv{int(folds)}-s{int(seed)}-f{int(fold)}"


def fold_sections(items: Sequence[dict], folds: int, val_fraction: float, seed: int) -> list[dict[str, list[dict]]]:
    """``[{"training", "validation", "test"}, ...]``, one per fold: every item is a test item exactly once.

    Raises:
        InputError: fewer cases than ``folds + 2`` (a fold needs test, validation and training patients).
    """
    if folds < 2:
        raise InputError(None, f"--folds must be at least 2, got {folds}")
    ordered = sorted(items, key=lambda it: str(it.get("case", "")))
    if len(ordered) < folds + 2:
        raise InputError(
            None, f"{len(ordered)} cases cannot make {folds} folds (each needs test, validation, training)"
        )
    random.Random(seed).shuffle(ordered)
    n_val = max(1, round(val_fraction * len(ordered)))
    by_case = lambda part: sorted(part, key=lambda it: str(it.get("case", "")))  # noqa: E731
    out = []
    for k in range(folds):
        test = ordered[k::folds]
        rest = [it for i, it in enumerate(ordered) if i % folds != k]
        out.append({"training": by_case(rest[n_val:]), "validation": by_case(rest[:n_val]), "test": by_case(test)})
    return out


def write_fold_datalists(
    data_dir: str | os.PathLike, out: str | os.PathLike, folds: int, val_fraction: float, seed: int
) -> list[Path]:
    """One datalist JSON per fold of a BraTS-style folder (``<out>/folds/fold<k>.json``); existing ones are kept
    when they hold the same split (a rerun resumes), refused when they differ."""
    items, errors = scan_brats_folder(data_dir, validate=False)
    if errors:
        raise InputError(errors[0].path, errors[0].problem)
    paths = []
    for k, sections in enumerate(fold_sections(items, folds, val_fraction, seed)):
        path = Path(out) / "folds" / f"fold{k}.json"
        cases = {name: [it["case"] for it in part] for name, part in sections.items()}
        if path.is_file():
            if _fold_cases(path) != cases:
                raise InputError(str(path), "holds another fold split; choose a new --out folder")
        else:
            write_datalist(path, sections, description=f"fold {k} of {folds} (seed {seed})", split_seed=seed)
        paths.append(path)
    return paths


def _fold_cases(path: Path) -> dict[str, list[Any]]:
    content = json.loads(path.read_text(encoding="utf-8"))
    return {n: [it.get("case") for it in content.get(n, [])] for n in ("training", "validation", "test")}


def fold_models(previous: str | os.PathLike, bundle: str, lists: Sequence[Path]) -> list[str]:
    """The checkpoints ``<previous>/fold<k>/<bundle>/model/model.pt`` of an earlier cross-validation run with the
    same folds: what measures an inference option on the fold models without training them again. Where ``previous``
    has no models of ``bundle``, those of the bundle whose CPU training it shares
    (:data:`~monai_adiff.bundle.recipes.SHARED_CPU_TRAINING`: AnoDDPM scores SSS's models).

    Raises:
        InputError: ``previous`` is not a cross-validation output folder, its folds hold other patients, or a
            fold's model is missing.
    """
    root = Path(previous)
    trainer = SHARED_CPU_TRAINING.get(bundle)
    if trainer and not (root / "fold0" / bundle / "model").is_dir() and (root / "fold0" / trainer).is_dir():
        bundle = trainer
    models = []
    for k, path in enumerate(lists):
        before = root / "folds" / f"fold{k}.json"
        if not before.is_file():
            raise InputError(str(root), f"is not a cross-validation output folder with {len(lists)} folds")
        if _fold_cases(before) != _fold_cases(path):
            raise InputError(str(before), "holds other patients than this run's fold; use the same folds and seed")
        model = root / f"fold{k}" / bundle / "model" / "model.pt"
        if not model.is_file():
            raise InputError(str(model), f"not found: fold {k} of {bundle} has not been trained there")
        models.append(str(model))
    return models


def patient_values(records: Sequence[Mapping[str, Any]], method: str, setup: str = "unhealthy") -> dict[str, float]:
    """Per-patient AUPRC of ``method`` over the records of every fold (each patient from the fold that tested it)."""
    out: dict[str, float] = {}
    for r in records:
        for e in r["results"]:
            if e["method"] == method and e["setup"] == setup and e["metric"] == "auprc":
                out.update(e.get("per_patient") or {})
    return out


def paired_comparison(
    mine: Mapping[str, float], flair: Mapping[str, float], resamples: int = 10000, seed: int = 0
) -> dict[str, Any]:
    """Patient-by-patient comparison of a method's AUPRC with FLAIR's.

    Returns:
        ``wins``, ``losses``, ``ties``, ``patients``, ``mean_difference`` (method - FLAIR), its 95 % bootstrap
        interval over patients (``ci_low``, ``ci_high``; ``resamples`` draws, seeded) and the two-sided sign test's
        ``sign_p`` (exact binomial, ties left out).
    """
    cases = sorted(set(mine) & set(flair))
    d = np.array([mine[c] - flair[c] for c in cases], dtype=np.float64)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    out: dict[str, Any] = {"patients": len(cases), "wins": wins, "losses": losses, "ties": len(cases) - wins - losses}
    if not cases:
        return {**out, "mean_difference": None, "ci_low": None, "ci_high": None, "sign_p": None}
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    n = wins + losses
    tail = sum(math.comb(n, i) for i in range(0, min(wins, losses) + 1)) / 2**n if n else 1.0
    return {
        **out,
        "mean_difference": float(d.mean()),
        "ci_low": float(np.quantile(means, 0.025)),
        "ci_high": float(np.quantile(means, 0.975)),
        "sign_p": float(min(1.0, 2 * tail)),
    }


def nested_choice(candidates: Mapping[str, Sequence[Mapping[str, Any]]], baseline: str = BASELINE) -> dict[str, Any]:
    """Choose between settings of a method without the held-out patients' labels: for each fold, the candidate with
    the largest mean per-patient AUPRC gain over ``baseline`` on the *other* folds' patients, scored on this fold.

    An option chosen on every patient (the fold table of each setting side by side) looks better than it is by the
    choice itself; this nested (leave-one-fold-out) choice is what a user choosing by cross-validation would get.
    Ties go to the candidate listed first (put the paper's setting first).

    Args:
        candidates: ``{label: [fold records in fold order]}``, every candidate over the same folds (the records of
            one method evaluated with each setting, e.g. ``sss@0.6.0`` and ``sss@0.7.0``).
        baseline: the method every candidate is compared with, from each candidate's own records.

    Returns:
        ``chosen`` (a label per fold), ``inner_gain`` (``{label: [gain per fold]}``), ``per_patient`` and
        ``flair_per_patient`` (each patient from the chosen candidate of its fold), ``auprc`` and ``flair_auprc``
        (the chosen candidate's pooled value per fold) and ``paired`` (:func:`paired_comparison` of the patients).

    Raises:
        ValueError: fewer than two candidates or two folds, or candidates over different folds.
    """
    labels = list(candidates)
    if len(labels) < 2:
        raise ValueError("a nested choice needs at least two candidates")
    splits = [[r["split"] for r in candidates[c]] for c in labels]
    if any(s != splits[0] for s in splits) or len(splits[0]) < 2:
        raise ValueError(f"the candidates must cover the same two or more folds, got {dict(zip(labels, splits))}")

    def gain(record: Mapping[str, Any]) -> list[float]:  # each patient's AUPRC minus the baseline's
        mine, base = patient_values([record], record["bundle"]), patient_values([record], baseline)
        return [v - base[p] for p, v in mine.items() if p in base]

    gains = {c: [gain(r) for r in candidates[c]] for c in labels}
    out: dict[str, Any] = {"chosen": [], "inner_gain": {c: [] for c in labels}, "per_patient": {}}
    out.update(flair_per_patient={}, auprc=[], flair_auprc=[])
    for k in range(len(splits[0])):
        inner = {c: [g for j, fold in enumerate(gains[c]) if j != k for g in fold] for c in labels}
        for c in labels:
            out["inner_gain"][c].append(float(np.mean(inner[c])) if inner[c] else float("-inf"))
        best = max(labels, key=lambda c: (out["inner_gain"][c][k], -labels.index(c)))
        record = candidates[best][k]
        out["chosen"].append(best)
        out["per_patient"].update(patient_values([record], record["bundle"]))
        out["flair_per_patient"].update(patient_values([record], baseline))
        out["auprc"].append(value(record, "auprc"))
        out["flair_auprc"].append(value(record, "auprc", baseline))
    out["paired"] = paired_comparison(out["per_patient"], out["flair_per_patient"])
    return out
