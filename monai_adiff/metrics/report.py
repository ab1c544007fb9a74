# SPDX-License-Identifier: Apache-2.0
"""JSON/CSV metrics reports and a plain-text comparison table.

MONAI's ``MetricsSaver`` writes one CSV per metric from Ignite engine state; our results are a nested dict per
method (setups, volume and image sections) that a user compares across methods, so the report is written here:
one JSON with the full structure and one long-format CSV (``method, setup, metric, value``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from monai_adiff.utils import atomic_write_text

__all__ = ["write_report", "format_table", "to_jsonable", "flatten_results", "TABLE_COLUMNS"]

_SECTIONS = ("mixed", "unhealthy", "volume", "image")
_METHOD_KEYS = ("method", "source")
#: (column header, result key) of :func:`format_table`, per setup; ``*`` marks the label-chosen oracle
TABLE_COLUMNS = (
    ("Dice", "dice"),
    ("IoU", "iou"),
    ("Prec", "precision"),
    ("Rec", "recall"),
    ("AUPRC", "auprc"),
    ("AUROC", "auroc"),
    ("PRO", "pro"),
    ("best-Dice*", "best_dice"),
)


def to_jsonable(obj: Any) -> Any:
    """A copy of ``obj`` that ``json.dumps(..., allow_nan=False)`` accepts.

    Tensors and numpy values become Python numbers or lists, tuples become lists, keys become strings, paths
    become strings, and NaN or infinite floats become None (JSON ``null``).

    Args:
        obj: nested dicts/lists of numbers, strings, None, numpy or torch values.

    Returns:
        the converted object.
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write a {type(obj).__name__} to a metrics report.")


def _is_single_result(results: Mapping) -> bool:
    return any(k in results for k in _SECTIONS)


#: plot data kept in the JSON report only (hundreds of numbers that are no metric)
_JSON_ONLY_KEYS = ("pr_curve",)


def _flatten(prefix: str, obj: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if k in _JSON_ONLY_KEYS:
                continue
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _flatten(f"{prefix}.{i}" if prefix else str(i), v, out)
    else:
        out.append((prefix, obj))


def flatten_results(results: Mapping) -> list[dict[str, Any]]:
    """Long-format rows ``{"method", "setup", "metric", "value"}`` of a result dict.

    Args:
        results: either one result (as from :meth:`AnomalyEvaluation.compute`, optionally with a ``"method"``
            or ``"source"`` string) or a dict ``{method_name: result}``.

    Returns:
        one row per (method, setup/section, metric); nested keys (e.g. per-case Dice) are joined with ``.``;
        precision-recall curves (``pr_curve``) are left out (they are plot data, in the JSON report only);
        ``method`` is ``""`` when absent, ``setup`` is ``""`` for top-level scalars. Values are JSON-able
        (NaN/Inf already None).
    """
    results = to_jsonable(results)
    by_method: Mapping[Any, Any]
    if _is_single_result(results) or not all(isinstance(v, Mapping) for v in results.values()):
        by_method = {"": results}
    else:
        by_method = results
    rows: list[dict[str, Any]] = []
    for method_key, res in by_method.items():
        method = method_key or next((str(res[k]) for k in _METHOD_KEYS if isinstance(res.get(k), str)), "")
        for section, sub in res.items():
            if section in _METHOD_KEYS and isinstance(sub, str):
                continue
            if isinstance(sub, (Mapping, list)):
                pairs: list[tuple[str, Any]] = []
                _flatten("", sub, pairs)
                rows += [{"method": method, "setup": section, "metric": k, "value": v} for k, v in pairs]
            else:
                rows.append({"method": method, "setup": "", "metric": section, "value": sub})
    return rows


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)  # shortest text that reads back to the same float
    return str(v)


def write_report(results: Mapping, out_dir: str | os.PathLike, name: str = "metrics") -> dict[str, str]:
    """Write ``<name>.json`` and ``<name>.csv`` into ``out_dir``, each atomically.

    Both texts are built in memory first, so a result that cannot be serialised writes nothing; each file is
    written to a temporary name in ``out_dir`` and renamed (``os.replace``), so a reader never sees half a file.

    Args:
        results: one result dict or ``{method: result}`` (see :func:`flatten_results`).
        out_dir: the folder (created if missing).
        name: file stem, without folders.

    Returns:
        ``{"json": path, "csv": path}``.

    Raises:
        ValueError: ``name`` is empty or contains a path separator.
        TypeError: a value cannot be written (e.g. an arbitrary object).
    """
    if not name or os.sep in name or (os.altsep and os.altsep in name) or name in (".", ".."):
        raise ValueError(f"name must be a plain file stem, got {name!r}.")
    out_dir = os.fspath(out_dir)
    data = to_jsonable(results)
    json_text = json.dumps(data, indent=4, allow_nan=False) + "\n"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["method", "setup", "metric", "value"], lineterminator="\n")
    writer.writeheader()
    for row in flatten_results(data):
        writer.writerow({**row, "value": _csv_value(row["value"])})
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, f"{name}.json"), "csv": os.path.join(out_dir, f"{name}.csv")}
    atomic_write_text(paths["json"], json_text)
    atomic_write_text(paths["csv"], buf.getvalue())
    return paths


def _fmt(v: Any, digits: int) -> str:
    if isinstance(v, bool) or v is None:
        return "-"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-"
    return f"{f:.{digits}f}" if math.isfinite(f) else "-"


def format_table(
    results_by_method: Mapping[str, Mapping],
    setups: Sequence[str] = ("mixed", "unhealthy"),
    pooled: bool = False,
    digits: int = 3,
) -> str:
    """A plain-text table, methods as rows, ``Dice IoU Prec Rec AUPRC AUROC best-Dice*`` per setup.

    Args:
        results_by_method: ``{method: result}`` with results as from :meth:`AnomalyEvaluation.compute`
            (e.g. ``{"sss": ..., "flair_baseline": ...}``); rows keep this order.
        setups: the setups to show, as column groups.
        pooled: show the pixel-pooled Dice/IoU/precision/recall instead of the means over slices.
        digits: decimals (3 by default).

    Returns:
        the table (no trailing newline): a setup header line, a column header line, a rule, one line per
        method, and two footnote lines (what the columns measure; best-Dice uses a threshold chosen with pixel
        labels). Missing values are ``-``.
    """
    setups = (setups,) if isinstance(setups, str) else tuple(setups)
    suffix = "_pooled" if pooled else ""
    keys = [k + suffix if k in ("dice", "iou", "precision", "recall") else k for _, k in TABLE_COLUMNS]
    headers = [h for h, _ in TABLE_COLUMNS]
    widths = [max(len(h), digits + 2) for h in headers]
    group_w = sum(widths) + 2 * (len(widths) - 1)
    group_w = max(group_w, *(len(s) for s in setups)) if setups else group_w

    cells: dict[str, list[list[str]]] = {}
    for method, res in results_by_method.items():
        res = res if isinstance(res, Mapping) else {}
        subs: list[Any] = [res.get(s) if isinstance(res.get(s), Mapping) else {} for s in setups]
        cells[str(method)] = [[_fmt(sub.get(k), digits) for k in keys] for sub in subs]
    name_w = max([len("method")] + [len(m) for m in cells])

    def group(texts: list[str]) -> str:
        return "  ".join(t.rjust(w) for t, w in zip(texts, widths)).ljust(group_w)

    sep = " | "
    lines = [
        sep.join([" " * name_w] + [s.ljust(group_w) for s in setups]),
        sep.join(["method".ljust(name_w)] + [group(headers) for _ in setups]),
    ]
    lines.append("-" * len(lines[1]))
    for method, per_setup in cells.items():
        lines.append(sep.join([method.ljust(name_w)] + [group(c) for c in per_setup]))
    lines = [line.rstrip() for line in lines]
    basis = "pooled over brain pixels" if pooled else "mean over slices"
    lines.append(f"Dice/IoU/Prec/Rec: each method's own mask, {basis}; AUPRC/AUROC: continuous map over brain pixels.")
    lines.append("* best-Dice: pooled Dice at a threshold chosen with pixel labels (a ceiling, not a method result).")
    return "\n".join(lines)
