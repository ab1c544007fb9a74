# SPDX-License-Identifier: Apache-2.0
"""Inference over many volumes into one folder: output names that cannot collide, and a rerun that finishes an
interrupted run instead of starting again.

A case id comes from the file name (``Brats18_X_flair.nii.gz`` -> ``Brats18_X``), so ``subj01/FLAIR.nii.gz`` and
``subj02/FLAIR.nii.gz`` would write one output pair over the other; such inputs take their path relative to the
inputs' common folder (``subj01_FLAIR``). Outputs are written atomically case by case, so a case whose map and mask
exist is finished; the folder's run record (the checkpoint's SHA-256 and the overrides) tells whether they belong
to this model and settings. MONAI's evaluator has neither notion, hence this module.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from monai_adiff.errors import InputError
from monai_adiff.utils import atomic_write_text

__all__ = ["OUTPUT_SUFFIXES", "RUN_RECORD", "unique_case_ids", "finished_cases", "check_run_record"]

#: the files every case gets (``<case>_<suffix>.nii.gz``); a case with all of them is finished
OUTPUT_SUFFIXES = ("anomaly_map", "anomaly_mask")
#: the record of the model and settings that wrote an output folder
RUN_RECORD = ".monai-adiff-infer.json"


def _sources(item: Mapping[str, Any]) -> list[str]:
    image = item["image"]
    return [os.path.realpath(p) for p in (image if isinstance(image, (list, tuple)) else [image])]


def unique_case_ids(items: Sequence[dict]) -> list[dict]:
    """Copies of ``items`` with case ids that cannot collide.

    Ids shared by several inputs become the first input file's folder path relative to their common folder, joined
    with ``_`` to the id (``subj01/FLAIR.nii.gz`` -> ``subj01_FLAIR``).

    Raises:
        InputError: the same input given twice, or ids that still collide (naming both inputs).
    """
    seen: dict[tuple[str, ...], str] = {}
    for it in items:
        key = tuple(_sources(it))
        if key in seen:
            raise InputError(key[0], f"is given twice (as {seen[key]!r} and {it['case']!r}); give it once")
        seen[key] = str(it["case"])
    counts = Counter(str(it["case"]) for it in items)
    shared = [it for it in items if counts[str(it["case"])] > 1]
    out = [dict(it) for it in items]
    if shared:
        folders = [os.path.dirname(_sources(it)[0]) for it in shared]
        common = os.path.commonpath(folders)
        for new in out:
            if counts[str(new["case"])] > 1:
                rel = os.path.relpath(os.path.dirname(_sources(new)[0]), common)
                parts = [p for p in rel.split(os.sep) if p not in (".", "")]
                new["case"] = "_".join([*parts, str(new["case"])])
    final = Counter(str(it["case"]) for it in out)
    clash = [it for it in out if final[str(it["case"])] > 1]
    if clash:
        a, b = clash[0], next(it for it in clash[1:] if it["case"] == clash[0]["case"])
        raise InputError(
            _sources(a)[0], f"and {_sources(b)[0]} would write the same outputs ({a['case']}); infer them separately"
        )
    return out


def finished_cases(out: str, items: Sequence[Mapping[str, Any]]) -> list[str]:
    """The cases of ``items`` whose outputs are all in ``out``."""
    from monai_adiff.transforms.io.dictionary import pending_cases

    left = pending_cases(items, out, OUTPUT_SUFFIXES)
    return [str(it["case"]) for it in items if it not in left]


def check_run_record(out: str, record: Mapping[str, Any], overwrite: bool, any_finished: bool) -> None:
    """Write the folder's run record after checking that finished outputs there belong to this model and settings.

    Raises:
        InputError: the folder holds outputs of another checkpoint or other settings (and ``overwrite`` is off).
    """
    path = os.path.join(out, RUN_RECORD)
    before = None
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                before = json.load(f)
        except (OSError, json.JSONDecodeError):
            before = None
    plain = json.loads(json.dumps(record, default=str))
    if any_finished and not overwrite and before != plain:
        raise InputError(
            out,
            "holds outputs of another model or other settings; --overwrite recomputes them, or choose another --out",
        )
    atomic_write_text(path, json.dumps(plain, indent=1) + "\n")
