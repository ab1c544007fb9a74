# SPDX-License-Identifier: Apache-2.0
"""Cross-validation records in the results store, rendered: the fold rows and fold means in a bundle's table, the
chooser's fold-mean columns, the status line, ``eval_metrics`` and the per-patient scatter, against numbers
worked out by hand from hand-made records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from monai_adiff.benchmark.cv_publish import cv_groups, seeded_splits
from monai_adiff.benchmark.publish import (
    BUNDLE_ORDER,
    DATASET,
    bundle_table,
    eval_metrics,
    figure_text,
    front_table,
    publish,
    status_text,
)
from monai_adiff.benchmark.store import SCHEMA

ROOT = Path(__file__).resolve().parents[1]


def _record(split: str, pooled: float, flair_pooled: float, mine: dict, flair: dict, bundle: str = "sss") -> dict:
    def entry(method: str, value: float, per: dict) -> dict:
        return {"method": method, "setup": "unhealthy", "metric": "auprc", "value": value, "per_patient": per}

    return {
        "schema": SCHEMA,
        "dataset": DATASET,
        "split": split,
        "bundle": bundle,
        "version": "9.9.9",
        "recipe": "cpu",
        "split_seed": 0,
        "test_patients": sorted(mine),
        "validation_patients": [],
        "command": f"monai-adiff benchmark DATA --bundles {bundle} --recipe cpu --folds 2 --split-seed 0 --out OUT",
        "seconds_per_volume": 2.0,
        "training_minutes": 10.0,
        "results": [entry(bundle, pooled, mine), entry("FLAIR", flair_pooled, flair)],
        "curves": {},
    }


# fold 0: a ahead, b behind; fold 1: c and d ahead -> 3 of 4 patients ahead of FLAIR
F0 = _record("cv2-s0-f0", 0.6, 0.5, {"a": 0.9, "b": 0.5}, {"a": 0.8, "b": 0.6})
F1 = _record("cv2-s0-f1", 0.8, 0.7, {"c": 0.7, "d": 0.9}, {"c": 0.6, "d": 0.5})


def test_fold_groups_are_found_apart_from_seeded_splits():
    records = {"s0": {}, "s1": {}, "cv2-s0-f1": F1, "cv2-s0-f0": F0, "cv4-s1-f0": F0}
    assert list(seeded_splits(records)) == ["s0", "s1"]
    groups = cv_groups(records)
    assert list(groups) == ["cv2-s0", "cv4-s1"] and groups["cv2-s0"] == [F0, F1]


def test_fold_means_patients_and_metrics_by_hand():
    records = {"cv2-s0-f0": F0, "cv2-s0-f1": F1}
    table = bundle_table("sss", records)
    # mean of 0.6 and 0.8 = 0.700, population sd 0.100; FLAIR 0.600 +- 0.100; 3 of 4 patients ahead
    assert "| cv2-s0 mean ± sd over 2 folds | 0.700 ± 0.100 (0.600 ± 0.100) |" in table
    assert (
        "| 3 of 4 |" in table and "| cv2-s0 f0 | 0.600 (0.500) |" in table and "| cv2-s0 f1 | 0.800 (0.700) |" in table
    )
    assert "a 0.900 (0.800), b 0.500 (0.600), c 0.700 (0.600), d 0.900 (0.500)" in table
    # mean difference (0.1 - 0.1 + 0.1 + 0.4) / 4 = 0.125
    assert "mean difference 0.125" in table and "--folds 2" in table
    metrics = eval_metrics(records)
    assert metrics["cv2-s0_auprc_mean"] == 0.7 and metrics["cv2-s0_auprc_sd"] == 0.1
    assert metrics["cv2-s0_flair_auprc_mean"] == 0.6 and metrics["cv2-s0_patients_ahead_of_flair"] == "3 of 4"
    assert metrics["cv2-s0_folds_run"] == 2
    current = {"sss": records}
    assert "0.700 ± 0.100 (0.600 ± 0.100) | 3 of 4 |" in front_table(current)
    status = status_text(current)
    assert "2-fold patient cross-validation cv2-s0" in status and "ahead of FLAIR: sss" in status
    assert "at least 3 in 4 patients: sss" in status


def test_a_cross_validation_still_running_says_so():
    table = bundle_table("sss", {"cv2-s0-f0": F0})
    assert "| cv2-s0, 1 of 2 folds | 0.600 (0.500) |" in table
    assert "1 of 2 folds" in front_table({"sss": {"cv2-s0-f0": F0}})


def test_an_ensemble_is_a_chooser_row_linking_its_members():
    ens = {
        k: {**r, "bundle": "sss+dae", "version": "9.9.9+1.0.0"} for k, r in {"cv2-s0-f0": F0, "cv2-s0-f1": F1}.items()
    }
    for r in ens.values():  # its results under its own name
        r["results"] = [{**e, "method": "sss+dae"} if e["method"] == "sss" else e for e in r["results"]]
    speed = {b: {"seconds_per_volume": v} for b, v in (("sss", 18.7), ("dae", 6.3))}
    row = next(line for line in front_table({"sss+dae": ens}, speed).splitlines() if "ensemble" in line)
    assert row.startswith(
        "| [sss](bundles/sss/docs/README.md) + [dae](bundles/dae/docs/README.md) ensemble 9.9.9+1.0.0"
    )
    assert "| FLAIR, T1, T1ce, T2 | none (trains on tumour-free slices) |" in row
    assert "| 10 | 25 | 0.700 ± 0.100 (0.600 ± 0.100) | 3 of 4 |" in row  # inference: both members' seconds


def test_models_an_earlier_version_trained_are_named():
    """Records of the current version measured on models an earlier one trained the same way say so."""
    earlier = {k: {**r, "trained_version": "9.8.0"} for k, r in {"cv2-s0-f0": F0, "cv2-s0-f1": F1}.items()}
    assert "- Version 9.9.9 (models trained by 9.8.0, whose training it keeps), cpu recipe" in bundle_table(
        "sss", earlier
    )
    assert "models trained by" not in bundle_table("sss", {"cv2-s0-f0": F0, "cv2-s0-f1": F1})
    shared = {k: {**r, "trained_by": "sss"} for k, r in {"cv2-s0-f0": F0, "cv2-s0-f1": F1}.items()}
    assert "- Version 9.9.9 (the sss bundle's models: the same CPU training), cpu recipe" in bundle_table(
        "anoddpm", shared
    )


def test_publish_draws_the_scatter_and_checks_its_legend(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(ROOT / "README.md", root / "README.md")
    for b in BUNDLE_ORDER:
        for rel in ("docs/README.md", "method.json", "configs/metadata.json"):
            (root / "bundles" / b / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / "bundles" / b / rel, root / "bundles" / b / rel)
    store = root / "benchmarks" / "results" / DATASET
    for r in (F0, F1):
        (store / r["split"]).mkdir(parents=True)
        (store / r["split"] / "sss@9.9.9.json").write_text(json.dumps(r), encoding="utf-8")
    changed = publish(root)
    scatter = store / "cv2-s0" / "patient_scatter.png"
    assert any("patient_scatter.png" in c for c in changed) and scatter.stat().st_size > 0
    assert json.loads(figure_text(scatter) or "{}")["patient_scatter"] == ["sss (3 of 4 above)"]
    assert publish(root, check=True) == []
    readme = (root / "bundles" / "sss" / "docs" / "README.md").read_text(encoding="utf-8")
    assert "| cv2-s0 mean ± sd over 2 folds | 0.700 ± 0.100" in readme
    # another number in a fold record is found
    moved = json.loads((store / "cv2-s0-f1" / "sss@9.9.9.json").read_text(encoding="utf-8"))
    moved["results"][0]["per_patient"]["c"] = 0.1
    (store / "cv2-s0-f1" / "sss@9.9.9.json").write_text(json.dumps(moved), encoding="utf-8")
    assert any("patient_scatter.png" in c for c in publish(root, check=True))


@pytest.mark.parametrize("bundle", BUNDLE_ORDER)
def test_every_user_readme_has_its_block(bundle):
    text = (ROOT / "bundles" / bundle / "docs" / "README.md").read_text(encoding="utf-8")
    assert f"<!-- results:{bundle} -->" in text


def test_seconds_per_volume_come_from_the_newest_speed_record(tmp_path):
    """The README's seconds per volume are the speed records' (``benchmarks/inference_floor.py --store``), the newest
    version's, never the evaluation's timing; a file of another schema is ignored."""
    from monai_adiff.benchmark.store import current_speed, write_speed_record

    store = tmp_path / "results"
    base = {"bundle": "sss", "dataset": DATASET, "floor_seconds": 10.0, "ratio": 1.5, "weights": "trained"}
    base.update(machine="2 CPU cores", command="python benchmarks/inference_floor.py --bundles sss")
    write_speed_record(store, {**base, "version": "9.9.9", "seconds_per_volume": 15.0})
    write_speed_record(store, {**base, "version": "9.10.0", "seconds_per_volume": 12.3})
    (store / DATASET / "speed" / "sss@9.11.0.json").write_text(json.dumps({**base, "version": "9.11.0"}), "utf-8")
    speed = current_speed(store, DATASET)
    assert list(speed) == ["sss"] and speed["sss"]["version"] == "9.10.0"
    records = {"cv2-s0-f0": F0, "cv2-s0-f1": F1}  # their evaluation timing says 2.0 s
    table = bundle_table("sss", records, speed["sss"])
    assert "- Inference: 12.3 s per 155-slice volume" in table and "ratio 1.50; version 9.10.0" in table
    assert "2.0" not in table.split("\n")[0] and "s / volume" not in table
    front = front_table({"sss": records}, speed)
    row = next(line for line in front.splitlines() if line.startswith("| [sss]"))
    assert row.split(" | ")[4] == "12"  # CPU training min 10, then s / volume 12
    assert "Inference speed: not measured yet." in bundle_table("sss", records)
    # a record that timed the noise draws says so beside the network's floor
    noisy = {**speed["sss"], "noise_seconds": 3.25, "ratio_with_noise": 0.93}
    assert "ratio 1.50 (drawing the noise 3.2 s more: network and noise 0.93); version" in bundle_table(
        "sss", records, noisy
    )
