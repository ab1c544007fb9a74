# SPDX-License-Identifier: Apache-2.0
"""The results store: one JSON record per bundle version, data set and patient split, in one schema.

``<store>/<dataset>/<split>/<bundle>@<version>.json``, where ``split`` is ``s<seed>`` (the seed of the patient
split); inference speed (``monai-adiff infer`` end to end against the network's floor, measured by
``benchmarks/inference_floor.py``) in ``<store>/<dataset>/speed/<bundle>@<version>.json`` (:data:`SPEED_SCHEMA`).
A record holds what the benchmark measured for that bundle and, on the same slices and brain pixels, for the
FLAIR-intensity baseline: per method and setup, each metric's pooled value, its per-patient mean and sd and the
per-patient values; the precision-recall curves; seconds per volume, training minutes, parameters; the split's
patients; and the command that reproduces it. Every number a user reads (README tables, ``metadata.json``
``eval_metrics``, the figures) is rendered from these records (:mod:`monai_adiff.benchmark.publish`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_adiff.metrics.report import to_jsonable
from monai_adiff.utils import atomic_write_text

__all__ = [
    "SCHEMA",
    "BASELINE",
    "METRICS",
    "split_name",
    "make_record",
    "record_rows",
    "record_path",
    "write_record",
    "read_records",
    "current_records",
    "value",
    "SPEED_SCHEMA",
    "speed_record_path",
    "write_speed_record",
    "current_speed",
]

#: the schema id every record carries
SCHEMA = "monai-adiff.results/1"
#: the schema of inference-speed records (``benchmarks/inference_floor.py --store``)
SPEED_SCHEMA = "monai-adiff.speed/1"
#: the baseline's name in records (the FLAIR intensity, scored on the bundle's own slices and brain pixels)
BASELINE = "FLAIR"
#: the metrics a record keeps, by the benchmark's row column: ``(column, per-patient column or None)``
METRICS = {
    "auprc": "auprc",
    "auroc": None,
    "pro": None,
    "dice": "dice",
    "iou": None,
    "precision": None,
    "recall": None,
    "best_dice": None,
    "dice_3d": None,
    "image_auroc": None,
}
_SPREAD = {"auprc": ("auprc_patient_mean", "auprc_patient_sd"), "dice": ("dice_patient_mean", "dice_patient_sd")}
_VERSION = re.compile(r"^(?P<bundle>[\w+-]+)@(?P<version>[\w.+-]+)\.json$")


def split_name(seed: int) -> str:
    """The name of the patient split made with ``seed``: ``s0``, ``s1``, ... (the same everywhere)."""
    return f"s{int(seed)}"


def _entries(method: str, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        for metric, per_patient in METRICS.items():
            v = r.get(metric)
            if v is None:
                continue
            entry: dict[str, Any] = {"method": method, "setup": r["setup"], "metric": metric, "value": v}
            if metric in _SPREAD:
                entry["patient_mean"], entry["patient_sd"] = (r.get(k) for k in _SPREAD[metric])
            if metric == "dice_3d":
                entry["patient_sd"] = r.get("dice_3d_sd")
            if per_patient:
                entry["per_patient"] = {c: p[per_patient] for c, p in (r.get("per_patient") or {}).items()}
            out.append(entry)
        out.append({"method": method, "setup": r["setup"], "metric": "n_slices", "value": r.get("n_slices")})
    return out


def make_record(
    bundle: str, rows: Sequence[Mapping[str, Any]], baseline_rows: Sequence[Mapping[str, Any]], info: Mapping[str, Any]
) -> dict[str, Any]:
    """A record from the benchmark's rows of one bundle and of the FLAIR baseline it evaluated.

    Args:
        bundle: the bundle's name.
        rows: its table rows (:func:`~monai_adiff.benchmark.results.method_rows`), one per setup.
        baseline_rows: the baseline's rows on the same slices.
        info: ``dataset``, ``version``, ``recipe``, ``split_seed``, ``val_fraction``, ``test_fraction``,
            ``test_patients``, ``validation_patients``, ``command`` and, where known, ``package_version``; ``split``
            names a split that is not a seeded one (a cross-validation fold).
    """
    first = rows[0] if rows else {}
    record = {
        "schema": SCHEMA,
        "dataset": info["dataset"],
        "split": info.get("split") or split_name(info["split_seed"]),
        "bundle": bundle,
        "version": info["version"],
        **{k: v for k, v in info.items() if k not in ("dataset", "version", "split")},
        "seconds_per_volume": first.get("seconds_per_volume"),
        "training_minutes": first.get("training_minutes"),
        "parameters": first.get("parameters"),
        "results": _entries(bundle, rows) + _entries(BASELINE, baseline_rows),
        "curves": {
            f"{name}/{r['setup']}": r["pr_curve"]
            for name, rs in ((bundle, rows), (BASELINE, baseline_rows))
            for r in rs
            if r.get("pr_curve")
        },
    }
    return to_jsonable(record)


def value(
    record: Mapping[str, Any], metric: str, method: str | None = None, setup: str = "unhealthy", key: str = "value"
) -> Any:
    """One number of a record: ``key`` (``value``, ``patient_mean``, ``patient_sd``, ``per_patient``) of
    ``metric`` for ``method`` (default: the record's bundle; :data:`BASELINE` for FLAIR) on ``setup`` slices."""
    method = method or record["bundle"]
    for e in record["results"]:
        if e["method"] == method and e["setup"] == setup and e["metric"] == metric:
            return e.get(key)
    return None


def record_rows(record: Mapping[str, Any], method: str | None = None) -> list[dict[str, Any]]:
    """The benchmark rows of ``method`` (default: the bundle) back from a record (what the figures are drawn from)."""
    method = method or record["bundle"]
    rows: dict[str, dict[str, Any]] = {}
    for e in record["results"]:
        if e["method"] != method:
            continue
        r = rows.setdefault(e["setup"], {"method": method, "setup": e["setup"], "per_patient": {}})
        r[e["metric"]] = e["value"]
        for case, v in (e.get("per_patient") or {}).items():
            r["per_patient"].setdefault(case, {})[e["metric"]] = v
        if e["metric"] in _SPREAD:
            mean_key, sd_key = _SPREAD[e["metric"]]
            r[mean_key], r[sd_key] = e.get("patient_mean"), e.get("patient_sd")
    for setup, r in rows.items():
        r["pr_curve"] = (record.get("curves") or {}).get(f"{method}/{setup}")
    return list(rows.values())


def record_path(store: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """``<store>/<dataset>/<split>/<bundle>@<version>.json``."""
    return Path(store) / record["dataset"] / record["split"] / f"{record['bundle']}@{record['version']}.json"


def write_record(store: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write ``record`` into the store (atomically, replacing a record of the same bundle version and split)."""
    path = record_path(store, record)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1, allow_nan=False) + "\n")
    return path


def read_records(store: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of the store (``[]`` when there is none)."""
    out = []
    for path in sorted(Path(store).glob("*/*/*@*.json")):
        if _VERSION.match(path.name):
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("schema") == SCHEMA:
                out.append(record)
    return out


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.+-]", str(version)))


def current_records(records: Sequence[Mapping[str, Any]], dataset: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``{bundle: {split: record}}`` of ``dataset``: the newest version of each bundle that has records, and its
    records (a bundle's table never mixes versions)."""
    newest: dict[str, str] = {}
    for r in records:
        if r["dataset"] == dataset and (
            r["bundle"] not in newest or _version_key(r["version"]) > _version_key(newest[r["bundle"]])
        ):
            newest[r["bundle"]] = r["version"]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        if r["dataset"] == dataset and r["version"] == newest[r["bundle"]]:
            out.setdefault(r["bundle"], {})[r["split"]] = dict(r)
    return out


def speed_record_path(store: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """``<store>/<dataset>/speed/<bundle>@<version>.json``."""
    return Path(store) / record["dataset"] / "speed" / f"{record['bundle']}@{record['version']}.json"


def write_speed_record(store: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write an inference-speed record (atomically, replacing one of the same bundle version)."""
    path = speed_record_path(store, record)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"schema": SPEED_SCHEMA, **record}, indent=1, allow_nan=False) + "\n")
    return path


def current_speed(store: str | os.PathLike, dataset: str) -> dict[str, dict[str, Any]]:
    """``{bundle: speed record}``: each bundle's newest measured version."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((Path(store) / dataset / "speed").glob("*@*.json")):
        if not _VERSION.match(path.name):
            continue
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("schema") != SPEED_SCHEMA:
            continue
        old = out.get(record["bundle"])
        if old is None or _version_key(record["version"]) > _version_key(old["version"]):
            out[record["bundle"]] = record
    return out
