# SPDX-License-Identifier: Apache-2.0
"""``monai-adiff benchmark``: the quick mode end to end on phantoms (tables and pictures checked against the
evaluation module's own reports), resuming, refusing a mixed rerun, and the table code on hand-made reports."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from monai_adiff.benchmark import CSV_COLUMNS, markdown_table, method_rows
from monai_adiff.benchmark.results import same_baseline
from monai_adiff.bundle import recipe_overrides
from monai_adiff.cli import main
from monai_adiff.data.synthetic import make_demo_dataset
from monai_adiff.errors import InputError


def _report(auprc: float, dice: float, cases: dict[str, float]) -> dict:
    setup = {
        "dice_pooled": dice,
        "iou_pooled": dice / (2 - dice),
        "precision_pooled": 0.5,
        "recall_pooled": 0.25,
        "auprc": auprc,
        "auroc": 0.9,
        "best_dice": 0.7,
        "n_slices": 10,
        "n_volumes": len(cases),
        "n_pixels": 1000,
    }
    per_case = {
        c: {s: {"auprc": v, "dice_pooled": v, "n_slices": 5} for s in ("mixed", "unhealthy")} for c, v in cases.items()
    }
    vals = np.array(list(cases.values()))
    sp = {"mean": float(vals.mean()), "std": float(vals.std()), "min": float(vals.min()), "max": float(vals.max())}
    return {
        "mixed": dict(setup),
        "unhealthy": dict(setup),
        "volume": {"dice_mean": 0.4, "dice_std": 0.1},
        "image": {"auroc": 0.8},
        "per_case": per_case,
        "spread": {s: {"auprc": sp, "dice_pooled": sp} for s in ("mixed", "unhealthy")},
    }


def test_rows_and_markdown_from_a_report():
    rows = method_rows("m", _report(0.61, 0.5, {"a": 0.2, "b": 0.6}), "m", {"parameters": 1_500_000})
    assert [r["setup"] for r in rows] == ["mixed", "unhealthy"]
    u = rows[1]
    assert u["dice"] == 0.5 and u["auprc"] == 0.61 and u["dice_3d"] == 0.4 and u["image_auroc"] == 0.8
    assert u["auprc_patient_mean"] == pytest.approx(0.4) and u["auprc_patient_sd"] == pytest.approx(0.2)
    assert u["per_patient"] == {"a": {"auprc": 0.2, "dice": 0.2}, "b": {"auprc": 0.6, "dice": 0.6}}
    assert set(CSV_COLUMNS) <= set(u)
    md = markdown_table(rows).splitlines()
    assert md[2].startswith("| m | unhealthy | 0.500 | 0.333 |") and "0.400 ± 0.200" in md[2] and "1.50 M" in md[2]
    assert md[0].count("|") == md[1].count("|") == md[2].count("|")


def test_same_baseline():
    a = _report(0.5, 0.5, {"a": 0.5})
    assert same_baseline(a, json.loads(json.dumps(a)))
    b = json.loads(json.dumps(a))
    b["unhealthy"]["n_slices"] = 11
    assert not same_baseline(a, b)


def test_recipes():
    assert recipe_overrides("sss", "paper") == {}
    cpu = recipe_overrides("sss", "cpu")
    assert cpu == json.loads(
        (Path(__file__).parents[1] / "bundles/sss/configs/cpu_args.json").read_text(encoding="utf-8")
    )
    quick = recipe_overrides("dtunet", "cpu", quick=True)
    assert quick["max_epochs"] == 2 and quick["network_def#embed_dim"] == 32 and quick["use_healthy_threshold"]
    assert "use_healthy_threshold" not in recipe_overrides("anofpdm", "cpu", quick=True)  # its own: calibration
    with pytest.raises(InputError):
        recipe_overrides("sss", "gpu")


@pytest.mark.slow
def test_quick_benchmark_end_to_end(tmp_path, capsys):
    data = tmp_path / "data"
    make_demo_dataset(data, cases=5, seed=3, shape=(40, 36, 20), lesion_fraction=0.8)
    out = tmp_path / "bench"
    args = ["benchmark", str(data), "--quick", "--bundles", "sss,dtunet", "--ensemble", "sss+dtunet"]
    args += ["--out", str(out), "--test-fraction", "0.4"]
    assert main(args) == 0
    for name in ("results.md", "results.csv", "results.json", "pr_curves.png", "dice_per_patient.png", "overlays.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert len(results["test_patients"]) == 2
    rows = {(r["method"], r["setup"]): r for r in results["rows"]}
    assert set(rows) == {(m, s) for m in ("sss", "dtunet", "sss+dtunet", "FLAIR") for s in ("mixed", "unhealthy")}
    # every number of the table is the evaluation module's, read from the bundle's own report
    for bundle in ("sss", "dtunet"):
        report = json.loads((out / bundle / "eval" / "metrics.json").read_text(encoding="utf-8"))
        for setup in ("mixed", "unhealthy"):
            r, m = rows[(bundle, setup)], report[bundle][setup]
            for col, key in (("dice", "dice_pooled"), ("iou", "iou_pooled"), ("auprc", "auprc"), ("auroc", "auroc")):
                assert r[col] == pytest.approx(m[key], abs=1e-12), (bundle, setup, col)
            assert r["best_dice"] == pytest.approx(m["best_dice"])
            assert r["image_auroc"] == pytest.approx(report[bundle]["image"]["auroc"])
            assert r["dice_3d"] == pytest.approx(report[bundle]["volume"]["dice_mean"])
            assert r["seconds_per_volume"] == pytest.approx(report[bundle]["timing"]["seconds_per_volume"])
            # the plotted curve is the evaluated one: its step area is the AUPRC (up to the thinning), it ends at
            # recall 1 with at least the tumour fraction as precision
            curve = r["pr_curve"]
            assert curve["recall"][-1] == 1.0 and curve["precision"][-1] >= m["tumour_fraction"] - 1e-12
            area = float(np.sum(np.diff([0.0, *curve["recall"]]) * np.asarray(curve["precision"])))
            assert area == pytest.approx(m["auprc"], abs=0.01)
        # both bundles score the same FLAIR baseline on the same slices
        assert rows[("FLAIR", "unhealthy")]["auprc"] == pytest.approx(report["flair_baseline"]["unhealthy"]["auprc"])
        assert rows[("sss", "mixed")]["n_slices"] == report["flair_baseline"]["mixed"]["n_slices"]
        assert rows[(bundle, "mixed")]["training_minutes"] > 0 and rows[(bundle, "mixed")]["parameters"] > 0
    with open(out / "results.csv", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 8 and float(table[0]["auprc"]) == pytest.approx(rows[("sss", "mixed")]["auprc"])
    md = (out / "results.md").read_text(encoding="utf-8")
    assert f"| sss | unhealthy | {rows[('sss', 'unhealthy')]['dice']:.3f} |" in md
    log = (out / "benchmark.log").read_text(encoding="utf-8")
    assert "run_bundle('dtunet', 'evaluate'" in log and "network_def" not in log  # evaluation: the model's record
    train_log = (out / "dtunet" / "model" / "train.log").read_text(encoding="utf-8")
    assert "run_bundle('dtunet', 'training'" in train_log and '"network_def#embed_dim": 32' in train_log
    _check_ensemble(out, rows)

    # a rerun skips every finished step; another configuration into the same folder is refused
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("skipped") == 6
    # ... also from a copy of the folder (paths inside it are recorded relative to it)
    shutil.copytree(out, tmp_path / "moved")
    moved = [a if a != str(out) else str(tmp_path / "moved") for a in args]
    assert main(moved) == 0
    assert capsys.readouterr().out.count("skipped") == 6
    assert main([*args[:-2], "--out", str(out), "--split-seed", "1"]) == 1
    assert "another configuration" in capsys.readouterr().err


def _average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Step-wise average precision at every distinct score, written out here (ties share one threshold)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(float)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # the last index of each run of equal scores
    tp = np.cumsum(y)[last]
    precision, recall = tp / (last + 1), tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _check_ensemble(out: Path, rows: dict) -> None:
    """The sss+dtunet row: each member's saved map over its healthy threshold, averaged, scored by hand."""
    from monai_adiff.benchmark.store import read_records, value

    members = {}
    for b in ("sss", "dtunet"):
        with np.load(out / b / "eval" / "metrics_maps.npz") as f:
            maps = {k: f[k] for k in f.files}
        thr = json.loads((out / b / "model" / "healthy_threshold.json").read_text(encoding="utf-8"))["threshold"]
        members[b] = (maps, thr)
    (maps, _), cases = members["sss"], sorted({k.split("/")[0] for k in members["sss"][0]})
    record = next(r for r in read_records(out / "records") if r["bundle"] == "sss+dtunet")
    versions = [next(r for r in read_records(out / "records") if r["bundle"] == b)["version"] for b in members]
    assert record["version"] == "+".join(versions) and "--ensemble sss+dtunet" in record["command"]
    per_patient = value(record, "auprc", key="per_patient")
    scores_all, labels_all = [], []
    for c in cases:
        target, brain = maps[f"{c}/target"] > 0, maps[f"{c}/brain"]
        ens = (
            members["sss"][0][f"{c}/sss"] / members["sss"][1]
            + members["dtunet"][0][f"{c}/dtunet"] / members["dtunet"][1]
        ) / 2
        unhealthy = (target & brain).reshape(len(target), -1).any(1)  # slices with tumour
        inside = brain & unhealthy[:, None, None]
        if not unhealthy.any():
            continue
        scores_all.append(ens[inside])
        labels_all.append(target[inside])
        assert per_patient[c] == pytest.approx(_average_precision(ens[inside], target[inside]), abs=1e-6), c
    pooled = _average_precision(np.concatenate(scores_all), np.concatenate(labels_all))
    assert rows[("sss+dtunet", "unhealthy")]["auprc"] == pytest.approx(pooled, abs=1e-6)
    # the FLAIR baseline beside it is the members' (the same pixels)
    assert value(record, "auprc", "FLAIR") == pytest.approx(rows[("FLAIR", "unhealthy")]["auprc"])


def test_bad_arguments(tmp_path, capsys):
    assert main(["benchmark", str(tmp_path), "--bundles", "nope", "--out", str(tmp_path / "o")]) == 1
    assert "nope" in capsys.readouterr().err
    assert (
        main(
            [
                "benchmark",
                str(tmp_path),
                "--bundles",
                "sss",
                "--checkpoints",
                "dtunet=x.pt",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 1
    )
    assert "not benchmarked" in capsys.readouterr().err


def _bundle_run(tmp_path, user):
    from monai_adiff.benchmark.pipeline import _BundleRun

    return _BundleRun("sss", tmp_path / "w", "cpu", False, user, "data", {}, "model.pt", lambda m: None)


def test_an_earlier_versions_model_counts_as_the_current_recipe_only_when_it_is_one(tmp_path):
    """A checkpoint an earlier SSS version trained with the CPU recipe is scored as the current version when its
    recorded network is the recipe's and the run's inference settings (recorded, then overridden) are the recipe's.
    The record is built as training writes it (``CheckpointInfo`` of the training config's ``checkpoint_config``
    and ``recipe_config`` under the CPU recipe's args file)."""
    from monai_adiff.bundle import find_bundle, resolved_value
    from monai_adiff.engines import CheckpointInfo

    root = find_bundle("sss")
    args = json.loads((root / "configs" / "cpu_args.json").read_text(encoding="utf-8"))
    info = CheckpointInfo(
        root,
        resolved_value("sss", "training", "checkpoint_config", args),
        resolved_value("sss", "training", "recipe_config", args),
    ).state_dict()
    assert _bundle_run(tmp_path, {})._runs_current_recipe(info)
    prior = args.get("map_hyperintensity_prior", "none")
    other = "gate" if prior != "gate" else "weight"
    older = {**info, "recipe": {**info["recipe"], "map_hyperintensity_prior": other}}
    assert not _bundle_run(tmp_path, {})._runs_current_recipe(older)
    assert _bundle_run(tmp_path, {"map_hyperintensity_prior": prior})._runs_current_recipe(older)
    lacking = {**info, "recipe": {k: v for k, v in info["recipe"].items() if k != "otsu_per_slice"}}
    assert _bundle_run(tmp_path, {})._runs_current_recipe(lacking)  # an id added since runs at its default (false)
    # one the recipe sets away from the default (a 3 x 3 median; the inference default is none): not the recipe
    no_median = {**info, "recipe": {k: v for k, v in info["recipe"].items() if k != "map_median_kernel"}}
    assert not _bundle_run(tmp_path, {})._runs_current_recipe(no_median)
    wider = {**info, "config": {**info["config"], "network_def#channels": [32, 64, 64]}}
    assert not _bundle_run(tmp_path, {})._runs_current_recipe(wider)
    paper = {**info, "recipe": {**info["recipe"], "recipe_name": "paper"}}
    assert not _bundle_run(tmp_path, {})._runs_current_recipe(paper)
