# SPDX-License-Identifier: Apache-2.0
"""One source of truth for numbers: the results store, and everything a user reads rendered from it.

``pytest -k results`` fails when a README's generated table, a bundle's ``eval_metrics`` or a figure's legend differs
from the records in ``benchmarks/results/``, when a user README holds a result outside its generated blocks, or when
a README's options table says another default than the bundle's configs. Oracles: the records themselves (read
independently of the renderer for the spot checks), hand-counted wins, and the config files.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from monai_adiff.benchmark.publish import BUNDLE_ORDER, DATASET, figure_text, publish, wins
from monai_adiff.benchmark.store import (
    BASELINE,
    current_records,
    make_record,
    read_records,
    record_rows,
    value,
    write_record,
)
from monai_adiff.bundle import BUNDLES_DIR, resolved_value

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "benchmarks" / "results"
USER_READMES = [ROOT / "README.md", *(ROOT / "bundles" / b / "docs" / "README.md" for b in BUNDLE_ORDER)]
GENERATED = re.compile(r"<!-- results:[\w-]+ -->.*?<!-- /results -->", re.S)
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def test_results_everything_a_user_reads_equals_the_store():
    assert read_records(STORE), "the results store is empty"
    assert publish(ROOT, check=True) == []


def _a_raw_record() -> tuple[Path, dict]:
    """The first record of a seeded split in the store, read with plain json (no code of ours)."""
    path = sorted(p for p in (STORE / DATASET).glob("s*/*@*.json") if re.fullmatch(r"s\d+", p.parent.name))[0]
    return path, json.loads(path.read_text(encoding="utf-8"))


def test_results_a_spot_check_against_the_raw_records():
    """Read one record with plain json and find its numbers in the bundle README and metadata."""
    _, raw = _a_raw_record()
    bundle, split = raw["bundle"], raw["split"]

    def auprc(method: str) -> float:
        return next(
            e["value"]
            for e in raw["results"]
            if (e["method"], e["setup"], e["metric"]) == (method, "unhealthy", "auprc")
        )

    readme = (ROOT / "bundles" / bundle / "docs" / "README.md").read_text(encoding="utf-8")
    assert f"| {split} | {auprc(bundle):.3f} ({auprc('FLAIR'):.3f}) |" in readme
    meta = json.loads((BUNDLES_DIR / bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))
    assert meta["eval_metrics"][f"{split}_auprc"] == round(auprc(bundle), 3) and meta["version"] == raw["version"]


def _copy_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(STORE, root / "benchmarks" / "results")
    shutil.copy(ROOT / "README.md", root / "README.md")
    for b in BUNDLE_ORDER:
        for rel in ("docs/README.md", "method.json", "configs/metadata.json"):
            (root / "bundles" / b / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / "bundles" / b / rel, root / "bundles" / b / rel)
    return root


def test_results_any_difference_is_found(tmp_path):
    root = _copy_repo(tmp_path)
    assert publish(root, check=True) == []
    path, raw = _a_raw_record()
    bundle, split = raw["bundle"], raw["split"]
    # a README table cell
    readme = root / "bundles" / bundle / "docs" / "README.md"
    text = readme.read_text(encoding="utf-8")
    cell = re.search(rf"\| {split} \| (\d\.\d{{3}}) ", text)
    assert cell is not None
    readme.write_text(text.replace(f"| {split} | {cell.group(1)} ", f"| {split} | 0.999 ", 1), encoding="utf-8")
    assert any(f"{bundle}/docs/README.md" in c for c in publish(root, check=True))
    readme.write_text(text, encoding="utf-8")
    # an eval_metrics value
    meta_path = root / "bundles" / bundle / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["eval_metrics"][f"{split}_auprc"] = 0.5
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    assert any(f"{bundle}/configs/metadata.json" in c for c in publish(root, check=True))
    shutil.copy(ROOT / "bundles" / bundle / "configs" / "metadata.json", meta_path)
    # a figure drawn from other numbers
    record = root / path.relative_to(ROOT)
    content = json.loads(record.read_text(encoding="utf-8"))
    for e in content["results"]:
        if e["metric"] == "auprc" and e["method"] == bundle:
            e["value"] += 0.01
    record.write_text(json.dumps(content), encoding="utf-8")
    changed = publish(root, check=True)
    assert any("pr_curves.png" in c for c in changed) and any("README.md" in c for c in changed)
    # rendering again makes everything agree
    assert publish(root) and publish(root, check=True) == []


@pytest.mark.parametrize("readme", USER_READMES, ids=lambda p: p.parent.parent.name if p.name else "")
def test_results_no_result_outside_the_generated_blocks(readme):
    text = readme.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150, f"{readme} has more than 150 lines"
    prose = CODE.sub("", GENERATED.sub("", text))
    found = re.findall(r"(?<![\w.])0\.\d{3}(?![\d])", prose)
    assert not found, f"{readme}: result-like numbers outside the generated blocks: {found}"


def _options(readme: Path) -> list[tuple[str, str, str]]:
    rows = []
    in_table = False
    for line in readme.read_text(encoding="utf-8").splitlines():
        if line.startswith("| option | paper default | CPU recipe |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        m = re.match(r"\| `([^`]+)` \| `([^`]*)` \| (`[^`]*`|same) \|", line) if in_table else None
        if m:
            rows.append((m.group(1), m.group(2), m.group(3)))
    return rows


def _default(bundle: str, key: str):
    if key.startswith("noise#"):  # the spec's resolved argument (None in a config means the type's default)
        return resolved_value(bundle, "training", "noise").to_dict().get(key.split("#", 1)[1])
    for workflow in ("training", "inference"):
        try:
            return resolved_value(bundle, workflow, key)
        except (KeyError, ValueError):
            continue
    raise KeyError(f"{bundle}: no config id {key}")


@pytest.mark.parametrize("bundle", BUNDLE_ORDER)
def test_results_options_tables_say_the_configs_values(bundle):
    readme = ROOT / "bundles" / bundle / "docs" / "README.md"
    rows = _options(readme)
    assert len(rows) >= 5, f"{readme}: no options table"
    cpu = json.loads((BUNDLES_DIR / bundle / "configs" / "cpu_args.json").read_text(encoding="utf-8"))
    for key, default, cpu_cell in rows:
        actual = _default(bundle, key)
        actual = list(actual) if isinstance(actual, tuple) else actual
        want = json.loads(default)
        same = want == pytest.approx(actual) if isinstance(actual, float) else want == actual
        assert same, f"{bundle} {key}: README default {default}, config {actual!r}"
        if cpu_cell.strip("`") == "same":
            assert key not in cpu, f"{bundle} {key}: README says the CPU recipe keeps it, cpu_args.json sets it"
        else:
            assert key in cpu and json.loads(cpu_cell.strip("`")) == cpu[key], f"{bundle} {key}: CPU recipe {cpu_cell}"


def _rows(method: str, auprc: float, per: dict[str, float], setup: str = "unhealthy") -> list[dict]:
    return [
        {
            "method": method,
            "setup": setup,
            "auprc": auprc,
            "auprc_patient_mean": sum(per.values()) / len(per),
            "auprc_patient_sd": 0.0,
            "dice": 0.5,
            "per_patient": {c: {"auprc": v, "dice": 0.5} for c, v in per.items()},
            "pr_curve": {"recall": [0.5, 1.0], "precision": [1.0, 0.2]},
            "seconds_per_volume": 2.0,
            "training_minutes": 3.0,
            "parameters": 10,
        }
    ]


def test_results_store_round_trip_and_the_newest_version(tmp_path):
    info = {
        "dataset": "d",
        "version": "0.9.0",
        "recipe": "cpu",
        "split_seed": 1,
        "val_fraction": 0.1,
        "test_fraction": 0.25,
        "test_patients": ["a", "b", "c"],
        "command": "monai-adiff benchmark DATA --bundles m --split-seed 1 --out OUT",
    }
    mine = _rows("m", 0.7, {"a": 0.9, "b": 0.5, "c": 0.6})
    flair = _rows("flair_baseline", 0.6, {"a": 0.8, "b": 0.6, "c": 0.4})
    record = make_record("m", mine, flair, info)
    assert record["split"] == "s1" and value(record, "auprc") == 0.7 and value(record, "auprc", BASELINE) == 0.6
    assert wins(record) == (2, 3)  # a and c: 0.9 > 0.8, 0.6 > 0.4; b: 0.5 < 0.6
    back = record_rows(record)[0]
    assert back["per_patient"]["a"]["auprc"] == 0.9 and back["pr_curve"] == mine[0]["pr_curve"]
    path = write_record(tmp_path, record)
    assert path == tmp_path / "d" / "s1" / "m@0.9.0.json"
    write_record(tmp_path, {**record, "version": "0.10.0"})
    write_record(tmp_path, {**record, "version": "0.2.0", "split": "s0"})
    current = current_records(read_records(tmp_path), "d")
    assert list(current["m"]) == ["s1"] and current["m"]["s1"]["version"] == "0.10.0"  # 0.10 > 0.9 > 0.2


def test_results_figures_carry_their_legends():
    groups = [p.name for p in (STORE / DATASET).iterdir() if re.fullmatch(r"cv\d+-s\d+", p.name)]
    for group in groups:  # a cross-validation's per-patient scatter
        text = figure_text(STORE / DATASET / group / "patient_scatter.png")
        assert text is not None and json.loads(text)["patient_scatter"]
    for split in sorted(p.name for p in (STORE / DATASET).iterdir() if re.fullmatch(r"s\d+", p.name)):
        text = figure_text(STORE / DATASET / split / "pr_curves.png")
        assert text is not None
        legends = json.loads(text)["pr_curves"]
        current = current_records(read_records(STORE), DATASET)
        for b in BUNDLE_ORDER:
            if split in current.get(b, {}):
                assert f"{b} ({value(current[b][split], 'auprc'):.3f})" in legends
