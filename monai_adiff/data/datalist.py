# SPDX-License-Identifier: Apache-2.0
"""Datalists: scan a BraTS-style folder, read and write Decathlon-style datalist JSON, split by patient.

A datalist item is a dict with one key per modality (``flair``, ``t1``, ``t1ce``, ``t2``), an optional ``label``
(the segmentation, anomaly target ``label > 0``) and ``case`` (the patient id). Written datalists store paths
relative to the JSON file, so a dataset folder and its datalist can move together; MONAI's
``load_decathlon_datalist`` resolves them on reading.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Sequence

from monai.data import load_decathlon_datalist

from monai_adiff.data.io import check_case, strip_volume_suffix
from monai_adiff.errors import InputError
from monai_adiff.utils import atomic_write_text

__all__ = [
    "BRATS_MODALITIES",
    "scan_brats_folder",
    "read_datalist",
    "write_datalist",
    "split_cases",
    "validate_items",
    "split_items",
    "with_image_key",
    "load_cases",
    "case_id_from_path",
]

logger = logging.getLogger(__name__)

BRATS_MODALITIES = ("flair", "t1", "t1ce", "t2")
_NIFTI_SUFFIXES = (".nii.gz", ".nii")


def _find_file(case_dir: str, case: str, suffix: str) -> str | None:
    for ext in _NIFTI_SUFFIXES:
        p = os.path.join(case_dir, f"{case}_{suffix}{ext}")
        if os.path.isfile(p):
            return p
    return None


def scan_brats_folder(
    root: str | os.PathLike,
    modalities: Sequence[str] = BRATS_MODALITIES,
    *,
    require_label: bool = False,
    validate: bool = True,
) -> tuple[list[dict], list[InputError]]:
    """Find the cases of a BraTS-style folder ``<root>/<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz``.

    An optional ``<case>_brainmask.nii.gz`` is listed under ``brainmask`` (for scans whose background is not a
    constant value, see :class:`~monai_adiff.transforms.StandardizeBackground`).

    Bad cases are reported and skipped; the good ones are returned.

    Args:
        root: the dataset folder.
        modalities: the modalities every case must have.
        require_label: treat a case without ``<case>_seg`` as bad.
        validate: read every volume and check it (readable, 3D, finite, non-empty, same grid as the label).
            Costs one full read per file; ``False`` only checks that the files exist.

    Returns:
        ``(items, errors)``: datalist items sorted by case id (absolute paths), and one
        :class:`InputError` per skipped case.

    Raises:
        InputError: when ``root`` is not a folder or holds no case folder at all.
    """
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise InputError(root, "is not a folder")
    items, errors = [], []
    case_dirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    for case in case_dirs:
        case_dir = os.path.join(root, case)
        item: dict = {"case": case}
        try:
            for m in modalities:
                p = _find_file(case_dir, case, m)
                if p is None:
                    raise InputError(case_dir, f"missing modality '{m}' (expected {case}_{m}.nii.gz)")
                item[m] = p
            seg = _find_file(case_dir, case, "seg")
            if seg is not None:
                item["label"] = seg
            elif require_label:
                raise InputError(case_dir, f"missing segmentation (expected {case}_seg.nii.gz)")
            mask = _find_file(case_dir, case, "brainmask")  # optional: marks the brain of unusual scans
            if mask is not None:
                item["brainmask"] = mask
            if validate:
                check_case(item, modalities)
        except InputError as e:  # returned, for the caller to report once
            errors.append(e)
            continue
        items.append(item)
    if not items and not errors:
        raise InputError(root, "holds no case folders (<case>/<case>_<modality>.nii.gz)")
    return items, errors


def read_datalist(path: str | os.PathLike, section: str = "training", base_dir: str | None = None) -> list[dict]:
    """Read one section of a Decathlon-style datalist JSON; relative paths resolve against the JSON's folder."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "datalist file does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(path, f"is not valid JSON ({e})") from e
    if section not in content:
        raise InputError(
            path, f"has no '{section}' section (sections: {sorted(k for k in content if isinstance(content[k], list))})"
        )
    items = load_decathlon_datalist(path, is_segmentation=True, data_list_key=section, base_dir=base_dir)
    for i, item in enumerate(items):
        if isinstance(item, str):  # Decathlon "test" sections may list bare image paths
            items[i] = {"image": item}
        items[i].setdefault("case", _case_id(items[i], i))
    return items


def case_id_from_path(path: str) -> str:
    """The case id of a volume file: its name without extension and modality suffix (``Brats18_X_flair.nii.gz``
    -> ``Brats18_X``)."""
    name = strip_volume_suffix(os.path.basename(os.path.normpath(path)))
    for m in BRATS_MODALITIES:
        if name.endswith("_" + m):
            return name[: -len(m) - 1]
    return name


def _case_id(item: dict, index: int) -> str:
    for key in ("image", *BRATS_MODALITIES):
        v = item.get(key)
        if isinstance(v, (list, tuple)) and v:
            v = v[0]
        if isinstance(v, str):
            return case_id_from_path(v)
    return f"case_{index:04d}"


def _relative(item: dict, base: str) -> dict:
    out: dict = {}
    for k, v in item.items():
        if isinstance(v, str) and os.path.isabs(v):
            out[k] = os.path.relpath(v, base)
        elif isinstance(v, (list, tuple)) and all(isinstance(x, str) and os.path.isabs(x) for x in v):
            out[k] = [os.path.relpath(x, base) for x in v]
        else:
            out[k] = v
    return out


def write_datalist(path: str | os.PathLike, sections: dict[str, list[dict]], **metadata) -> str:
    """Write a Decathlon-style datalist JSON atomically, paths relative to its folder.

    Args:
        path: output JSON file.
        sections: e.g. ``{"training": [...], "validation": [...], "test": [...]}``.
        metadata: extra top-level keys (``name``, ``modalities``, ``slice_table``, ...).
    """
    path = os.path.abspath(os.fspath(path))
    base = os.path.dirname(path)
    content = dict(metadata)
    for name, items in sections.items():
        content[name] = [_relative(it, base) for it in items]
    atomic_write_text(path, json.dumps(content, indent=4))
    return path


def split_cases(
    items: Sequence[dict], val_fraction: float = 0.0, test_fraction: float = 0.0, seed: int = 0
) -> dict[str, list[dict]]:
    """Seeded patient-level split (every item is one patient; slices of a patient never cross splits).

    Counts round to the nearest integer, with at least one case in a split whose fraction is > 0 when there are
    enough cases. The order is reproducible for a seed and independent of the input order.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"bad split fractions val={val_fraction} test={test_fraction}")
    ordered = sorted(items, key=lambda it: str(it.get("case", "")))
    random.Random(seed).shuffle(ordered)
    n = len(ordered)

    def count(f: float) -> int:
        return 0 if f == 0 else max(1, round(f * n)) if n >= 3 else 0

    n_test, n_val = count(test_fraction), count(val_fraction)
    n_val = min(n_val, max(0, n - n_test - 1))
    by_case = lambda part: sorted(part, key=lambda it: str(it.get("case", "")))  # noqa: E731
    return {
        "test": by_case(ordered[:n_test]),
        "validation": by_case(ordered[n_test : n_test + n_val]),
        "training": by_case(ordered[n_test + n_val :]),
    }


def split_items(
    items: Sequence[dict], image_keys: Sequence[str], label_key: str | None = "label"
) -> tuple[list[dict], list[InputError]]:
    """``(good items, errors)``: each item checked by :func:`~monai_adiff.data.io.check_case`; nothing is logged, so
    a caller (the CLI) reports every bad case exactly once."""
    good, bad = [], []
    for item in items:
        try:
            check_case(item, image_keys, label_key)
            good.append(item)
        except InputError as e:
            bad.append(e)
    return good, bad


def validate_items(items: Sequence[dict], image_keys: Sequence[str], label_key: str | None = "label") -> list[dict]:
    """Keep the items whose files pass :func:`~monai_adiff.data.io.check_case`; log one line per dropped item.

    For batch jobs (inference over a folder): one bad case must not stop the others.

    Raises:
        InputError: when no item is left.
    """
    good, bad = split_items(items, image_keys, label_key)
    for e in bad:
        logger.error("skipping case: %s", e)
    if not good:
        raise InputError(None, f"no usable case among {len(items)}: " + "; ".join(str(e) for e in bad))
    return good


def with_image_key(items: Sequence[dict], modalities: Sequence[str], image_key: str = "image") -> list[dict]:
    """Copy items adding ``image``: the file list of the chosen modalities in order (loaded as channels).

    Items that already have ``image`` (plain Decathlon datalists, CLI inputs) keep it.
    """
    out = []
    for item in items:
        new = dict(item)
        if image_key not in new:
            missing = [m for m in modalities if m not in new]
            if missing:
                raise InputError(item.get("case"), f"missing modalities {missing}")
            new[image_key] = [new[m] for m in modalities]
        out.append(new)
    return out


def _scan(dataset_dir: str, modalities: Sequence[str]) -> list[dict]:
    """The cases of a folder (file names only), logging each skipped one."""
    items, errors = scan_brats_folder(dataset_dir, modalities, validate=False)
    for e in errors:
        logger.warning("skipping case: %s", e)
    return items


def load_cases(
    dataset_dir: str | None = None,
    datalist: str | None = None,
    section: str | None = None,
    modalities: Sequence[str] = ("flair",),
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    seed: int = 0,
    validate: bool = True,
) -> dict[str, list[dict]]:
    """The cases a bundle works on, from a datalist JSON or by scanning a BraTS-style folder.

    With ``datalist``: its ``training``/``validation``/``test`` sections are used as they are (or only ``section``).
    Otherwise ``dataset_dir`` is scanned and split by patient with the given fractions and seed (the split depends
    only on the case ids and the seed, so training, inference and evaluation configs agree on it). With
    ``validate``, the files of the returned sections are read and checked; bad cases are logged and dropped.

    ``section="all"`` returns every case (all datalist sections, or the whole folder) as ``{"all": [...]}``.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}`` (absent sections are empty lists).
    """
    if section == "all":  # every case, no split (e.g. to infer a whole folder)
        if datalist:
            items = [
                it
                for name in ("training", "validation", "test")
                for it in load_cases(datalist=datalist, modalities=modalities, validate=False)[name]
            ]
        elif dataset_dir is None:
            raise ValueError("give dataset_dir (a BraTS-style folder) or datalist (a datalist JSON)")
        else:
            items = _scan(dataset_dir, modalities)
        return {"all": validate_items(items, modalities) if validate else items}
    if datalist:
        out = {}
        for name in (section,) if section else ("training", "validation", "test"):
            try:
                out[name] = read_datalist(datalist, name)
            except InputError:
                if section:
                    raise
                out[name] = []
        if validate:
            out = {k: validate_items(v, modalities) if v else v for k, v in out.items()}
    elif dataset_dir:
        # the split only needs the file names; reading every volume is left to the sections actually used
        items = _scan(dataset_dir, modalities)
        out = split_cases(items, val_fraction, test_fraction, seed)
        if section:
            out = {section: out[section]}
        if validate:
            out = {k: validate_items(v, modalities) if v else v for k, v in out.items()}
    else:
        raise ValueError("give dataset_dir (a BraTS-style folder) or datalist (a JSON file)")
    for name in ("training", "validation", "test"):
        out.setdefault(name, [])
    return out
