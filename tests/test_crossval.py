# SPDX-License-Identifier: Apache-2.0
"""Patient-level cross-validation: every patient tested exactly once, validation patients drawn from the training
part, the paired comparison against hand-computed values, and ``monai-adiff benchmark --folds`` end to end.

Oracles: set arithmetic on the case ids; the sign test and mean difference by hand; the fold records themselves for
the fold means."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from monai_adiff.benchmark.crossval import fold_models, fold_name, fold_sections, nested_choice, paired_comparison
from monai_adiff.errors import InputError


def _items(n: int) -> list[dict]:
    return [{"case": f"P{i:02d}"} for i in range(n)]


@pytest.mark.parametrize(("n", "folds"), [(12, 4), (10, 3), (5, 2)])
def test_every_patient_is_tested_exactly_once(n, folds):
    sections = fold_sections(_items(n), folds, val_fraction=0.1, seed=3)
    assert len(sections) == folds
    tested = [it["case"] for s in sections for it in s["test"]]
    assert sorted(tested) == sorted(f"P{i:02d}" for i in range(n))
    for s in sections:
        test, val, train = ({it["case"] for it in s[k]} for k in ("test", "validation", "training"))
        assert val and train and not (test & val) and not (test & train) and not (val & train)
        assert test | val | train == {f"P{i:02d}" for i in range(n)}
    assert fold_sections(_items(n), folds, 0.1, seed=3) == sections  # seeded
    assert fold_sections(list(reversed(_items(n))), folds, 0.1, seed=3) == sections  # order-free
    assert fold_sections(_items(n), folds, 0.1, seed=4) != sections


def test_too_few_cases_for_the_folds_are_refused():
    with pytest.raises(InputError, match="cannot make 4 folds"):
        fold_sections(_items(5), 4, 0.1, 0)
    assert fold_name(4, 0, 1) == "cv4-s0-f1"


def test_paired_comparison_by_hand():
    cases = [f"c{i}" for i in range(12)]
    flair = {c: 0.5 for c in cases}
    mine = {c: 0.5 + (0.1 if i < 9 else -0.2) for i, c in enumerate(cases)}  # 9 ahead, 3 behind
    p = paired_comparison(mine, flair, resamples=2000, seed=0)
    assert (p["wins"], p["losses"], p["ties"], p["patients"]) == (9, 3, 0, 12)
    assert p["mean_difference"] == pytest.approx((9 * 0.1 - 3 * 0.2) / 12)
    # two-sided exact sign test: 2 * P(X <= 3), X ~ Binomial(12, 1/2)
    assert p["sign_p"] == pytest.approx(2 * sum(math.comb(12, i) for i in range(4)) / 2**12)
    assert p["ci_low"] <= p["mean_difference"] <= p["ci_high"]
    tied = paired_comparison(flair, flair)
    assert (tied["wins"], tied["ties"], tied["sign_p"]) == (0, 12, 1.0) and tied["mean_difference"] == 0


def _fold_record(bundle, fold, gains, pooled):
    """A minimal result record of one fold: FLAIR at 0.5 on each patient, the method at 0.5 + its gain."""
    patients = {f"p{2 * fold + i}": g for i, g in enumerate(gains)}

    def entry(method, v, pp):
        return {"method": method, "setup": "unhealthy", "metric": "auprc", "value": v, "per_patient": pp}

    return {
        "bundle": bundle,
        "split": f"cv3-s0-f{fold}",
        "results": [
            entry(bundle, pooled, {p: 0.5 + g for p, g in patients.items()}),
            entry("FLAIR", 0.4, {p: 0.5 for p in patients}),
        ],
    }


def test_nested_choice_by_hand():
    # per-fold gains over FLAIR: the paper setting A is ahead on folds 1-2, B only on fold 3
    a = [_fold_record("m", k, g, 0.6 + k / 10) for k, g in enumerate([(0.1, 0.1), (0.1, 0.1), (-0.3, -0.3)])]
    b = [_fold_record("m", k, g, 0.9 - k / 10) for k, g in enumerate([(-0.2, -0.2), (0.0, 0.0), (0.2, 0.2)])]
    res = nested_choice({"A": a, "B": b})
    # fold 1: A's gain on folds 2-3 is (0.1 - 0.3) / 2 = -0.1, B's (0.0 + 0.2) / 2 = +0.1: B; fold 2: A -0.1, B 0.0: B;
    # fold 3: A +0.1, B -0.1: A. Each chosen setting then loses or ties on the fold it did not see.
    assert res["inner_gain"]["A"] == pytest.approx([-0.1, -0.1, 0.1])
    assert res["inner_gain"]["B"] == pytest.approx([0.1, 0.0, -0.1])
    assert res["chosen"] == ["B", "B", "A"]
    assert res["auprc"] == pytest.approx([0.9, 0.8, 0.8]) and res["flair_auprc"] == [0.4, 0.4, 0.4]
    assert res["per_patient"] == pytest.approx({"p0": 0.3, "p1": 0.3, "p2": 0.5, "p3": 0.5, "p4": 0.2, "p5": 0.2})
    p = res["paired"]
    assert (p["wins"], p["losses"], p["ties"]) == (0, 4, 2)
    assert p["mean_difference"] == pytest.approx((-0.2 * 2 + 0 - 0.3 * 2) / 6)
    # equal gains: the candidate listed first (the paper's setting) wins the tie
    assert nested_choice({"B": b, "B again": b})["chosen"] == ["B", "B", "B"]
    with pytest.raises(ValueError, match="same two or more folds"):
        nested_choice({"A": a, "B": b[:2]})
    with pytest.raises(ValueError, match="at least two candidates"):
        nested_choice({"A": a})


def _write_folds(root, sections):
    (root / "folds").mkdir(parents=True)
    for k, sec in enumerate(sections):
        (root / "folds" / f"fold{k}.json").write_text(json.dumps(sec), encoding="utf-8")
    return [root / "folds" / f"fold{k}.json" for k in range(len(sections))]


def test_fold_models_of_an_earlier_cross_validation(tmp_path):
    sections = fold_sections(_items(8), 2, 0.1, seed=0)
    lists = _write_folds(tmp_path / "new", sections)
    before = tmp_path / "before"
    _write_folds(before, sections)
    with pytest.raises(InputError, match="fold 0 of sss has not been trained"):
        fold_models(before, "sss", lists)
    for k in range(2):
        (before / f"fold{k}" / "sss" / "model").mkdir(parents=True)
        (before / f"fold{k}" / "sss" / "model" / "model.pt").write_bytes(b"x")
    expected = [str(before / f"fold{k}" / "sss" / "model" / "model.pt") for k in (0, 1)]
    assert fold_models(before, "sss", lists) == expected
    # AnoDDPM's CPU recipe trains what SSS's does: it scores SSS's fold models where it has none of its own
    assert fold_models(before, "anoddpm", lists) == expected
    with pytest.raises(InputError, match="fold 0 of dae has not been trained"):
        fold_models(before, "dae", lists)
    with pytest.raises(InputError, match="not a cross-validation output folder with 2 folds"):
        fold_models(tmp_path / "elsewhere", "sss", lists)
    other = tmp_path / "other"
    _write_folds(other, fold_sections(_items(8), 2, 0.1, seed=1))
    with pytest.raises(InputError, match="holds other patients"):
        fold_models(other, "sss", lists)


@pytest.mark.slow
def test_benchmark_with_folds_end_to_end(tmp_path):
    import nibabel as nib

    from monai_adiff.benchmark.store import read_records, value
    from monai_adiff.cli import main
    from monai_adiff.data.synthetic import make_demo_dataset

    data = tmp_path / "data"
    make_demo_dataset(data, cases=5, seed=3, shape=(40, 36, 20), lesion_fraction=0.8)
    out = tmp_path / "b"
    args = ["benchmark", str(data), "--folds", "2", "--quick", "--bundles", "sss", "--out", str(out)]
    assert main(args) == 0
    records = sorted(read_records(out / "records"), key=lambda r: r["split"])
    assert [r["split"] for r in records] == ["cv2-s0-f0", "cv2-s0-f1"]
    tested = [c for r in records for c in r["test_patients"]]
    assert sorted(tested) == sorted(p.name for p in data.iterdir() if p.is_dir())  # each patient once
    for r in records:
        assert not set(r["test_patients"]) & set(r["validation_patients"])
        assert 0 <= value(r, "pro") <= 1 and 0 <= value(r, "pro", "FLAIR") <= 1  # PRO beside AUROC
        assert (out / f"fold{r['split'][-1]}" / "results.md").is_file()
    summary = json.loads((out / "cv_results.json").read_text(encoding="utf-8"))["sss"]
    mean = float(np.mean([value(r, "auprc") for r in records]))
    assert summary["auprc_mean_sd"][0] == pytest.approx(mean)
    # a per-patient AUPRC for every tested patient with tumour (a tumour-free patient has none)
    with_tumour = {
        p.name for p in data.iterdir() if p.is_dir() and nib.load(p / f"{p.name}_seg.nii.gz").get_fdata().any()
    }
    assert with_tumour and sorted(summary["per_patient"]) == sorted(with_tumour)
    assert (out / "patient_scatter.png").stat().st_size > 0 and "| sss |" in (out / "cv_results.md").read_text(
        encoding="utf-8"
    )
    # a rerun skips every finished step
    assert main(args) == 0
    # an inference option measured on the same fold models: no training, the models' version, the override recorded
    variant = tmp_path / "gate"
    args = [*args[:-1], str(variant), "--checkpoints", f"sss={out}", "--set", "sss:map_hyperintensity_prior=gate"]
    assert main(args) == 0
    gated = sorted(read_records(variant / "records"), key=lambda r: r["split"])
    assert [r["split"] for r in gated] == ["cv2-s0-f0", "cv2-s0-f1"]
    for r, g in zip(records, gated):
        assert g["version"] == r["version"] and g["overrides"] == {"map_hyperintensity_prior": "gate"}
        assert "--checkpoints sss=MODELS" in g["command"] and "trained_version" not in g  # the quick recipe
        # the models' own training minutes and validation patients, read from their folders
        assert g["training_minutes"] == r["training_minutes"] and g["validation_patients"] == r["validation_patients"]
        assert value(g, "auprc", "FLAIR") == pytest.approx(value(r, "auprc", "FLAIR"))  # same slices, same baseline
    assert not (variant / "fold0" / "sss" / "model" / "summary.json").exists()
    # folds run apart (--fold K, 1-based), their records meeting in one store and one report
    apart, store = tmp_path / "apart", tmp_path / "store"
    base = [*args[:-5], str(apart), "--checkpoints", f"sss={out}", "--store", str(store)]
    assert main([*base, "--fold", "2"]) == 0
    assert [r["split"] for r in read_records(store)] == ["cv2-s0-f1"] and not (apart / "fold0").exists()
    assert list(json.loads((apart / "cv_results.json").read_text(encoding="utf-8"))["sss"]["folds"]) == ["cv2-s0-f1"]
    assert main([*base, "--fold", "1"]) == 0
    assert sorted(r["split"] for r in read_records(store)) == ["cv2-s0-f0", "cv2-s0-f1"]
    both = json.loads((apart / "cv_results.json").read_text(encoding="utf-8"))["sss"]
    assert sorted(both["per_patient"]) == sorted(summary["per_patient"])
    assert main([*base, "--fold", "3"]) == 1  # one line: folds are numbered 1 to 2
    from monai_adiff.benchmark import run_benchmark

    with pytest.raises(InputError, match="no --set variants"):
        run_benchmark(data, tmp_path / "c", "sss", folds=2, quick=True, overrides={"sss": {"x": 1}}, store=tmp_path)
