# SPDX-License-Identifier: Apache-2.0
"""Every number a user reads, rendered from the results store: README tables, ``eval_metrics``, figures.

The front README's method chooser, each bundle README's performance table and each bundle's ``metadata.json``
``eval_metrics`` are generated from the newest records of each bundle (:func:`~monai_adiff.benchmark.store.
current_records`) of the reference data set; the figures per split are drawn from the same records and carry their
legends as PNG text, so a test can compare them. Generated README parts sit between ``<!-- results:NAME -->`` and
``<!-- /results -->``; nothing else in a README may hold a result.

``python -m monai_adiff.benchmark.publish`` rewrites them (and recomposes the bundles); ``--check`` lists what differs
and exits 1.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_adiff.benchmark.cv_publish import (
    cv_bundle_rows,
    cv_eval_metrics,
    cv_front_cells,
    cv_groups,
    cv_legend,
    cv_status_line,
    group_summary,
    seeded_splits,
)
from monai_adiff.benchmark.store import BASELINE, current_records, current_speed, read_records, record_rows, value

__all__ = [
    "DATASET",
    "BUNDLE_ORDER",
    "CHOOSER",
    "bundle_table",
    "speed_line",
    "front_table",
    "status_text",
    "eval_metrics",
    "figure_legends",
    "write_figures",
    "publish",
    "main",
]

#: the reference data set of the published numbers
DATASET = "brats18-dev"
#: table order
BUNDLE_ORDER = ("sss", "anoddpm", "dtunet", "d3ad", "anofpdm", "dae")
#: what a user needs to choose a method besides the numbers: inputs, labels needed to train, when to use it
CHOOSER: dict[str, tuple[str, str, str]] = {
    "sss": (
        "FLAIR",
        "none (trains on tumour-free slices)",
        "the simplest: a DDPM denoiser read in one step, with few knobs to set",
    ),
    "anoddpm": (
        "FLAIR",
        "none (trains on tumour-free slices)",
        "the literature's common baseline: iterative partial diffusion on the same network as SSS",
    ),
    "dtunet": (
        "FLAIR",
        "none; image-level labels for its weakly supervised variant",
        "a transformer denoiser with Tsimplex noise; slice labels for its weakly supervised variant",
    ),
    "d3ad": (
        "FLAIR",
        "none (trains on tumour-free slices)",
        "latent diffusion with a noise level chosen per image from its nearest healthy neighbours",
    ),
    "anofpdm": (
        "FLAIR, T1, T1ce, T2",
        "image-level (slice) labels",
        "scans with all four modalities and slice labels; no pixel labels needed for its thresholds",
    ),
    "dae": (
        "FLAIR, T1, T1ce, T2",
        "none (trains on tumour-free slices)",
        "not diffusion: the learned baseline (Kascenas et al. 2022) a diffusion method must beat to be worth its cost",
    ),
}


def _chooser(bundle: str) -> tuple[str, str, str]:
    """(inputs, labels to train, use it when) of a bundle or of an ensemble ``a+b`` (its members' inputs)."""
    if "+" not in bundle:
        return CHOOSER.get(bundle, ("-", "-", "-"))
    members = bundle.split("+")
    inputs = list(dict.fromkeys(m for b in members for m in CHOOSER.get(b, ("-",))[0].split(", ")))
    labels = [CHOOSER.get(b, ("-", "-"))[1] for b in members]
    # members that need no labels make an ensemble that needs none
    labels = ["none (trains on tumour-free slices)"] if all(x.startswith("none") for x in labels) else labels
    use = "both members' maps, each over its own label-free threshold, averaged (`monai-adiff ensemble`)"
    return ", ".join(inputs), "; ".join(dict.fromkeys(labels)), use


def _seconds(bundle: str, speed: Mapping[str, Mapping[str, Any]]) -> float | None:
    """Seconds per volume of a bundle's speed record; of an ensemble, its members' added (each runs its inference)."""
    parts = [(speed.get(b) or {}).get("seconds_per_volume") for b in bundle.split("+")]
    known = [float(p) for p in parts if p is not None]
    return sum(known) if len(known) == len(parts) else None


def _method_cell(bundle: str, version: str) -> str:
    if "+" in bundle:
        return " + ".join(f"[{b}](bundles/{b}/docs/README.md)" for b in bundle.split("+")) + f" ensemble {version}"
    return f"[{bundle}](bundles/{bundle}/docs/README.md) {version}"


_BLOCK = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)


def _f(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _pm(mean: Any, sd: Any) -> str:
    return "-" if mean is None else f"{mean:.3f} ± {sd:.3f}"


def wins(record: Mapping[str, Any], setup: str = "unhealthy") -> tuple[int, int]:
    """``(patients whose AUPRC beats FLAIR's, patients)`` of a record."""
    mine = value(record, "auprc", setup=setup, key="per_patient") or {}
    flair = value(record, "auprc", BASELINE, setup, "per_patient") or {}
    common = sorted(set(mine) & set(flair))
    return sum(mine[c] > flair[c] for c in common), len(common)


def _splits(records: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return list(seeded_splits(records))


def _split_row(label: str, r: Mapping[str, Any]) -> str:
    w, n = wins(r)

    def pair(metric: str, key: str = "value") -> str:
        a, b = value(r, metric, key=key), value(r, metric, BASELINE, key=key)
        return f"{_f(a)} ({_f(b)})"

    per = (
        f"{_pm(value(r, 'auprc', key='patient_mean'), value(r, 'auprc', key='patient_sd'))} "
        f"({_pm(value(r, 'auprc', BASELINE, key='patient_mean'), value(r, 'auprc', BASELINE, key='patient_sd'))})"
    )
    return (
        f"| {label} | {pair('auprc')} | {per} | {w} of {n} | {pair('dice')} | {pair('best_dice')} "
        f"| {_f(value(r, 'image_auroc'))} | {_f(r.get('training_minutes'), 1)} |"
    )


#: the speed notes, from a bundle README: the time per volume taken apart, and what was tried against it
SPEED_NOTES = "../../../benchmarks/README.md#inference_floorpy-monai-adiff-infer-against-the-networks-floor"


def speed_line(bundle: str, speed: Mapping[str, Any] | None) -> str:
    """A bundle README's inference-speed line, from its speed record (``benchmarks/inference_floor.py``)."""
    if not speed:
        return "Inference speed: not measured yet."
    return (
        f"Inference: {_f(speed['seconds_per_volume'], 1)} s per 155-slice volume, `monai-adiff infer` end to end "
        f"on {speed['machine']}; the network's own floor {_f(speed['floor_seconds'], 1)} s, "
        f"ratio {_f(speed['ratio'], 2)}"
        + (
            f" (drawing the noise {_f(speed['noise_seconds'], 1)} s more: network and noise "
            f"{_f(speed['ratio_with_noise'], 2)})"
            if speed.get("noise_seconds")
            else ""
        )
        + f"; version {speed['version']}, {speed['weights']} weights. Reproduce: `{speed['command']}`. Where the "
        f"time goes and what was tried: [speed notes]({SPEED_NOTES})."
    )


def bundle_table(bundle: str, records: Mapping[str, Mapping[str, Any]], speed: Mapping[str, Any] | None = None) -> str:
    """A bundle README's performance table: one row per seeded split and per cross-validation fold, a mean row per
    cross-validation, the method beside FLAIR on the same slices; below it the inference speed."""
    if not records:
        return "No measured results yet.\n" + (f"\n- {speed_line(bundle, speed)}\n" if speed else "")
    version = next(iter(records.values()))["version"]
    head = (
        "| split | AUPRC pooled (FLAIR) | AUPRC per patient (FLAIR) | patients ahead of FLAIR | Dice, label-free "
        "(FLAIR) | best Dice* (FLAIR) | slice AUROC | training min |"
    )
    lines = [head, "| --- " * (head.count("|") - 1) + "|"]
    seeded, groups = seeded_splits(records), cv_groups(records)
    notes = []
    for group, folds in groups.items():
        lines += [_split_row(f"{group} {f['split'].rsplit('-', 1)[1]}", f) for f in folds]
        row, note = cv_bundle_rows(group, folds, bundle)
        lines.append(row)
        notes.append(note)
    lines += [_split_row(split, r) for split, r in seeded.items()]
    for split, r in seeded.items():
        mine = value(r, "auprc", key="per_patient") or {}
        flair = value(r, "auprc", BASELINE, key="per_patient") or {}
        every = ", ".join(f"{c} {_f(mine[c])} ({_f(flair.get(c))})" for c in sorted(mine))
        notes.append(f"{split}, every test patient (FLAIR): {every or '-'}.")
    first = next(iter(seeded.values()), None) or next(iter(groups.values()))[0]
    lines += ["", *(f"- {note}" for note in notes)]  # one list: short for the reader
    earlier = sorted({r["trained_version"] for r in records.values() if r.get("trained_version")})
    trained = f" (models trained by {', '.join(earlier)}, whose training it keeps)" if earlier else ""
    others = sorted({r["trained_by"] for r in records.values() if r.get("trained_by")})
    trained += f" (the {', '.join(others)} bundle's models: the same CPU training)" if others else ""
    lines.append(
        f"- Version {version}{trained}, {first['recipe']} recipe, {first['dataset']}, slices with tumour. "
        "`*` best Dice: at the threshold chosen with the test labels, a ceiling only. Reproduce: "
        + "; ".join(_commands(records))
        + "."
    )
    lines.append(f"- {speed_line(bundle, speed)}")
    return "\n".join(lines) + "\n"


def _commands(records: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The commands that reproduce the rows (Markdown): one per cross-validation and one for the seeded splits."""
    out = []
    for folds in cv_groups(records).values():
        out.append(f"`{folds[0]['command']}`")
    seeded = seeded_splits(records)
    if seeded:
        first = next(iter(seeded.values()))
        command = first["command"].replace(f"--split-seed {first['split_seed']}", "--split-seed N")
        out.append(f"`{command}` (split sN)")
    return out


def front_table(
    current: Mapping[str, Mapping[str, Mapping[str, Any]]], speed: Mapping[str, Mapping[str, Any]] | None = None
) -> str:
    """The front README's method chooser: inputs, labels, cost and quality beside FLAIR, cross-validation first
    (seconds per volume from the speed records)."""
    speed = speed or {}
    groups = sorted({g for recs in current.values() for g in cv_groups(recs)})
    splits = sorted({s for recs in current.values() for s in seeded_splits(recs)}, key=lambda s: int(s[1:]))
    head = "| method | inputs | labels to train | CPU training min | s / volume |"
    head += "".join(f" AUPRC {g}, fold mean ± sd (FLAIR) | ahead of FLAIR, {g} |" for g in groups)
    head += "".join(f" AUPRC {s} (FLAIR) | ahead of FLAIR, {s} |" for s in splits) + " use it when |"
    lines = [head, "| --- " * (head.count("|") - 1) + "|"]
    for bundle in [b for b in BUNDLE_ORDER if b in current] + sorted(set(current) - set(BUNDLE_ORDER)):
        recs = current[bundle]
        inputs, labels, use = _chooser(bundle)
        any_r = next(iter(seeded_splits(recs).values()), None) or next(iter(recs.values()))
        cells = [_method_cell(bundle, any_r["version"]), inputs, labels]
        bundle_groups = cv_groups(recs)
        # training cost: the mean over the first cross-validation's folds where there is one, else the seeded split's
        cost = group_summary(bundle, next(iter(bundle_groups.values()))) if bundle_groups else any_r
        cells += [_f(cost.get("training_minutes"), 0), _f(_seconds(bundle, speed), 0)]
        for g in groups:
            cells += cv_front_cells(g, bundle_groups.get(g), bundle)
        for s in splits:
            r = recs.get(s)
            if r is None:
                cells += ["-", "-"]
                continue
            w, n = wins(r)
            cells += [f"{_f(value(r, 'auprc'))} ({_f(value(r, 'auprc', BASELINE))})", f"{w} of {n}"]
        cells.append(use)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def status_text(current: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """The front README's status lines: which methods are ahead of FLAIR, pooled and patient by patient, per split."""
    splits = sorted({s for recs in current.values() for s in seeded_splits(recs)}, key=lambda s: int(s[1:]))
    groups = sorted({g for recs in current.values() for g in cv_groups(recs)})
    if not splits and not groups:
        return "No measured results yet.\n"
    order = [b for b in BUNDLE_ORDER if b in current]
    lines = [cv_status_line(g, {b: cv_groups(current[b]).get(g, []) for b in order}, order) for g in groups]
    for split in splits:
        measured = [b for b in order if split in current[b]]
        ahead = [
            b
            for b in measured
            if (value(current[b][split], "auprc") or 0) > (value(current[b][split], "auprc", BASELINE) or 0)
        ]
        every = [b for b in measured if wins(current[b][split])[0] == wins(current[b][split])[1]]
        n = max((wins(current[b][split])[1] for b in measured), default=0)
        lines.append(
            f"- Split {split} ({n} test patients): pooled AUPRC ahead of FLAIR: {', '.join(ahead) or 'none'}; behind: "
            f"{', '.join(b for b in measured if b not in ahead) or 'none'}. Ahead on every test patient: "
            f"{', '.join(every) or 'none'}."
        )
    return "\n".join(lines) + "\n"


def eval_metrics(records: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A bundle's ``metadata.json`` ``eval_metrics``: the headline numbers of each split, FLAIR beside them."""
    if not records:
        return {}
    first = next(iter(seeded_splits(records).values()), None) or next(iter(records.values()))
    out: dict[str, Any] = {
        "setup": f"version {first['version']}, {first['recipe']} recipe, {first['dataset']}, slices with tumour, "
        "label-free threshold"
    }
    for split in _splits(records):
        r = records[split]
        w, n = wins(r)
        out.update(
            {
                f"{split}_auprc": _round(value(r, "auprc")),
                f"{split}_auprc_patient_mean": _round(value(r, "auprc", key="patient_mean")),
                f"{split}_dice_label_free": _round(value(r, "dice")),
                f"{split}_flair_auprc": _round(value(r, "auprc", BASELINE)),
                f"{split}_flair_auprc_patient_mean": _round(value(r, "auprc", BASELINE, key="patient_mean")),
                f"{split}_flair_dice_label_free": _round(value(r, "dice", BASELINE)),
                f"{split}_patients_ahead_of_flair": f"{w} of {n}",
            }
        )
    for group, folds in cv_groups(records).items():
        out.update(cv_eval_metrics(group, folds, first["bundle"]))
    return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _figure_rows(current: Mapping[str, Mapping[str, Mapping[str, Any]]], split: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    bundles = [b for b in BUNDLE_ORDER if split in current.get(b, {})]
    for b in bundles:
        rows += record_rows(current[b][split])
    if bundles:  # FLAIR once, on the slices of the first bundle
        rows += [{**r, "method": "FLAIR"} for r in record_rows(current[bundles[0]][split], BASELINE)]
    return rows


def figure_legends(current: Mapping[str, Mapping[str, Mapping[str, Any]]], split: str) -> dict[str, list[str]]:
    """The legend entries of the split's figures, as drawn (the test compares them with the PNG's text)."""
    rows = _figure_rows(current, split)
    return {
        "pr_curves": [f"{r['method']} ({_f(r.get('auprc'))})" for r in rows if r["setup"] == "unhealthy"],
        "versions": [f"{b} {current[b][split]['version']}" for b in BUNDLE_ORDER if split in current.get(b, {})],
    }


def write_figures(current: Mapping[str, Mapping[str, Mapping[str, Any]]], store: Path) -> list[Path]:
    """``<store>/<dataset>/<split>/pr_curves.png`` and ``dice_per_patient.png`` of every split, from the records."""
    from monai_adiff.benchmark.crossval_report import plot_patient_scatter
    from monai_adiff.benchmark.figures import plot_dice_boxes, plot_pr_curves

    paths = []
    for group, per_bundle in _groups(current).items():
        order = [b for b in BUNDLE_ORDER if per_bundle.get(b)]
        summary = {b: group_summary(b, per_bundle[b]) for b in order}
        text = json.dumps(cv_legend(group, per_bundle, order), sort_keys=True)
        path = store / DATASET / group / "patient_scatter.png"
        paths.append(Path(plot_patient_scatter(summary, str(path), metadata={"Description": text})))
    for split in sorted({s for recs in current.values() for s in seeded_splits(recs)}):
        rows = _figure_rows(current, split)
        folder = store / DATASET / split
        text = json.dumps(figure_legends(current, split), sort_keys=True)
        paths.append(Path(plot_pr_curves(rows, str(folder / "pr_curves.png"), metadata={"Description": text})))
        paths.append(Path(plot_dice_boxes(rows, str(folder / "dice_per_patient.png"), metadata={"Description": text})))
    return paths


def _groups(current: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, list]]:
    """``{group: {bundle: fold records}}`` of every cross-validation in ``current``."""
    out: dict[str, dict[str, list]] = {}
    for bundle, recs in current.items():
        for group, folds in cv_groups(recs).items():
            out.setdefault(group, {})[bundle] = folds
    return out


def figure_text(path: Path) -> str | None:
    """The legend text a figure was drawn with (``None`` for a figure without one)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.text.get("Description")


def _replace_blocks(text: str, blocks: Mapping[str, str]) -> str:
    def sub(m: re.Match) -> str:
        name = m.group("name")
        return m.group(1) + blocks[name] + m.group(4) if name in blocks else m.group(0)

    return _BLOCK.sub(sub, text)


def _readmes(root: Path) -> dict[Path, dict[str, str]]:
    """``{README: {block name: generated text}}`` from the store under ``root``."""
    store = root / "benchmarks" / "results"
    current, speed = current_records(read_records(store), DATASET), current_speed(store, DATASET)
    out = {root / "README.md": {"status": status_text(current), "front": front_table(current, speed)}}
    for bundle in BUNDLE_ORDER:
        table = bundle_table(bundle, current.get(bundle, {}), speed.get(bundle))
        out[root / "bundles" / bundle / "docs" / "README.md"] = {bundle: table}
    return out


def publish(root: str | Path, check: bool = False) -> list[str]:
    """Render every result a user reads from the store under ``root`` (a checkout).

    Args:
        root: the repository root (``benchmarks/results``, ``README.md``, ``bundles/``).
        check: only compare; nothing is written.

    Returns:
        what differs from the store (with ``check``) or what was rewritten.
    """
    from monai_adiff.bundle.compose import write_bundle

    root = Path(root)
    store = root / "benchmarks" / "results"
    current = current_records(read_records(store), DATASET)
    changed: list[str] = []
    for path, blocks in _readmes(root).items():
        text = path.read_text(encoding="utf-8")
        found = {m.group("name"): m.group("body") for m in _BLOCK.finditer(text)}
        for name, body in blocks.items():
            if name not in found:
                changed.append(f"{path}: no <!-- results:{name} --> block")
            elif found[name] != body:
                changed.append(f"{path}: block {name} differs from the results store")
        if not check and any(found.get(n) != b for n, b in blocks.items()):
            path.write_text(_replace_blocks(text, blocks), encoding="utf-8")
    for bundle in BUNDLE_ORDER:
        fragment_path = root / "bundles" / bundle / "method.json"
        fragment = json.loads(fragment_path.read_text(encoding="utf-8"))
        metrics = eval_metrics(current.get(bundle, {}))
        if fragment["metadata"].get("eval_metrics") != metrics:
            changed.append(f"{fragment_path}: eval_metrics differ from the results store")
            if not check:
                fragment["metadata"]["eval_metrics"] = metrics
                fragment_path.write_text(json.dumps(fragment, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")
                write_bundle(fragment_path.parent)
        meta = json.loads((root / "bundles" / bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))
        if check and meta.get("eval_metrics") != metrics:
            changed.append(f"{bundle}/configs/metadata.json: eval_metrics differ from the results store")
    for group, per_bundle in _groups(current).items():
        order = [b for b in BUNDLE_ORDER if per_bundle.get(b)]
        want = json.dumps(cv_legend(group, per_bundle, order), sort_keys=True)
        path = store / DATASET / group / "patient_scatter.png"
        if not path.is_file() or figure_text(path) != want:
            changed.append(f"{path}: legend differs from the results store")
    for split in sorted({s for recs in current.values() for s in seeded_splits(recs)}):
        want = json.dumps(figure_legends(current, split), sort_keys=True)
        for name in ("pr_curves.png", "dice_per_patient.png"):
            path = store / DATASET / split / name
            if not path.is_file() or figure_text(path) != want:
                changed.append(f"{path}: legend differs from the results store")
    if not check and any("png" in c for c in changed):
        write_figures(current, store)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monai_adiff.benchmark.publish [--check] [--root DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m monai_adiff.benchmark.publish", description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=".", help="the repository root (default: the current folder)")
    parser.add_argument("--check", action="store_true", help="only list what differs from the store (exit 1)")
    args = parser.parse_args(argv)
    changed = publish(args.root, check=args.check)
    for line in changed:
        print(line)
    return 1 if changed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
