# SPDX-License-Identifier: Apache-2.0
"""Checks of a training data set before any training starts: a bad folder must fail in seconds, in one line, not
after an hour of training (or in the label-free fitting step that follows it).

MONAI's bundle workflows find such problems late (an empty dataset at the first epoch, a missing validation patient
only at the healthy-threshold step), so ``monai-adiff train`` runs these first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from monai_adiff.errors import InputError

__all__ = ["training_cases", "check_training_data"]


def training_cases(data: str | os.PathLike, modalities: Sequence[str], split: Mapping[str, Any]) -> dict[str, list]:
    """The ``training``/``validation``/``test`` cases of ``data`` (a BraTS-style folder, split by ``split``'s
    fractions and seed, or a datalist JSON with its own sections).

    Raises:
        InputError: no case, or a case that lacks a modality the bundle needs (naming it).
    """
    from monai_adiff.data import load_cases, scan_brats_folder, split_cases

    data = os.path.abspath(os.fspath(data))
    if os.path.isfile(data):
        sections = load_cases(datalist=data, modalities=modalities, validate=False)
        for name, items in sections.items():
            for it in items:
                missing = [m for m in modalities if m not in it and "image" not in it]
                if missing:
                    raise InputError(
                        data,
                        f"case {it.get('case')} ({name}) has no {missing[0]} file: this bundle needs "
                        f"{list(modalities)}",
                    )
        return sections
    if not os.path.isdir(data):
        raise InputError(data, "is neither a data folder nor a datalist JSON")
    items, errors = scan_brats_folder(data, modalities, validate=False)
    if errors:
        more = f" ({len(errors)} of {len(items) + len(errors)} cases have a problem)" if len(errors) > 1 else ""
        raise InputError(
            errors[0].path,
            f"{errors[0].problem}; this bundle needs {list(modalities)}{more}: add the files or leave " "the case out",
        )
    return split_cases(items, split["val_fraction"], split["test_fraction"], split["seed"])


def _slice_counts(items: Sequence[dict], modalities: Sequence[str]) -> dict[str, Any]:
    """Healthy, unhealthy and unlabelled brain slices of ``items`` and the cases without labels (reads every file: a
    bad one fails here)."""
    from monai_adiff.data import build_slice_table

    rows, errors = build_slice_table(items, modalities)
    if errors:
        raise InputError(errors[0].path, errors[0].problem)
    counts: dict[str, Any] = {"healthy": 0, "unhealthy": 0, "unlabelled": 0}
    labels = {it.get("case"): it.get("slice_labels") for it in items}
    unknown: set[str] = set()
    for r in rows:
        label = r["label"]
        weak = labels.get(r["case"])
        if label is None and weak is not None:
            label = int(weak[r["slice"]])
        if label is None:
            unknown.add(str(r["case"]))
        if r["brain"]:
            counts["unlabelled" if label is None else "unhealthy" if label else "healthy"] += 1
    counts["unlabelled_cases"] = sorted(unknown)
    return counts


def check_training_data(
    sections: Mapping[str, Sequence[dict]],
    modalities: Sequence[str],
    selection: str,
    needs_both_classes: bool,
    unlabelled_as_healthy: bool = False,
) -> dict[str, dict[str, Any]]:
    """Check that the sections can train a model and fit its label-free steps.

    Args:
        sections: ``training``/``validation``/``test`` cases.
        modalities: the bundle's modalities.
        selection: the bundle's training slices (``"healthy"``: tumour-free brain slices; ``"brain"``: all brain
            slices with image-level labels).
        needs_both_classes: the fitting steps choose a setting by image-level AUROC on the validation patients
            (a calibration), so these need slices with and without tumour.
        unlabelled_as_healthy: the user says that cases without labels are healthy.

    Returns:
        ``{section: {"cases", "healthy", "unhealthy", "unlabelled", "unlabelled_cases"}}`` (brain slices).

    Raises:
        InputError: what is missing, in one line.
    """
    train, val = list(sections.get("training") or []), list(sections.get("validation") or [])
    if not train:
        raise InputError(None, "no training case (the split left none; give more cases or smaller fractions)")
    if not val:
        raise InputError(
            None,
            "no validation case: the label-free threshold is fitted on one (raise --val-fraction, or give a "
            "datalist with a validation section)",
        )
    out = {}
    for name, items in (("training", train), ("validation", val)):
        out[name] = {"cases": len(items), **_slice_counts(items, modalities)}
    t, v = out["training"], out["validation"]
    if selection != "all" and t["unlabelled_cases"] and not unlabelled_as_healthy:
        cases = t["unlabelled_cases"]
        raise InputError(
            None,
            f"{len(cases)} training case(s) have no segmentation and no slice labels ({', '.join(cases[:3])}"
            f"{', ...' if len(cases) > 3 else ''}): their tumour slices would be taken as healthy; add their "
            "<case>_seg.nii.gz, write slice labels with monai-adiff datalist --image-labels-only, or, for healthy "
            "scans, --set unlabelled_as_healthy=true",
        )
    if selection == "healthy" and t["healthy"] + (t["unlabelled"] if unlabelled_as_healthy else 0) == 0:
        raise InputError(None, f"no tumour-free brain slice in the {t['cases']} training case(s): nothing to train on")
    if v["healthy"] == 0:
        raise InputError(
            None,
            f"no tumour-free brain slice with a known label in the {v['cases']} validation case(s): the "
            "label-free threshold needs some",
        )
    if needs_both_classes and v["unhealthy"] == 0:
        raise InputError(
            None,
            f"no brain slice with tumour in the {v['cases']} validation case(s): this bundle's calibration "
            "needs slices with and without tumour there",
        )
    return out
