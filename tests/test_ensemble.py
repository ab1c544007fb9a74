# SPDX-License-Identifier: Apache-2.0
"""Map ensembles: threshold-normalised weighted means, checked against the arithmetic written out."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from monai_adiff.benchmark.ensemble_run import MAPS_FILE, EnsembleRun
from monai_adiff.ensemble import THRESHOLD, ensemble_maps, ensemble_name, parse_ensemble
from monai_adiff.errors import InputError


def test_threshold_normalised_mean():
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 4, 5)), 10 * rng.random((3, 4, 5))
    np.testing.assert_allclose(ensemble_maps([a, b], [0.5, 4.0]), (a / 0.5 + b / 4.0) / 2, rtol=1e-6)
    np.testing.assert_allclose(
        ensemble_maps([a, b], [0.5, 4.0], weights=[3, 1]), (3 * a / 0.5 + b / 4.0) / 4, rtol=1e-6
    )
    # a pixel at both methods' own thresholds is at the ensemble's
    assert ensemble_maps([np.full(2, 0.5), np.full(2, 4.0)], [0.5, 4.0]) == pytest.approx([THRESHOLD] * 2)


@pytest.mark.parametrize(
    "maps,thresholds,match",
    [
        ([np.ones(3)], [1.0], "two or more"),
        ([np.ones(3), np.ones(4)], [1.0, 1.0], "one shape"),
        ([np.ones(3), np.ones(3)], [1.0, 0.0], "positive"),
        ([np.ones(3), np.ones(3)], [1.0], "one threshold each"),
    ],
)
def test_bad_ensembles(maps, thresholds, match):
    with pytest.raises(ValueError, match=match):
        ensemble_maps(maps, thresholds)


def test_parse_ensemble():
    assert parse_ensemble("sss+dae", ["sss", "dae", "d3ad"]) == ["sss", "dae"]
    assert ensemble_name(["sss", "dae"]) == "sss+dae"
    for spec, match in (("sss", "two or more"), ("sss+sss", "distinct"), ("sss+x", "x is not among")):
        with pytest.raises(ValueError, match=match):
            parse_ensemble(spec, ["sss", "dae"])


def _member(tmp_path, name: str, brain: np.ndarray, threshold: float, target: np.ndarray | None = None):
    work = tmp_path / name
    (work / "eval").mkdir(parents=True)
    (work / "model").mkdir()
    target = np.zeros_like(brain) if target is None else target
    rng = np.random.default_rng(len(name))
    arrays = {"c1/target": target, "c1/brain": brain, f"c1/{name}": brain * rng.random(brain.shape)}
    arrays["c1/flair_baseline"] = rng.random(brain.shape)
    np.savez(work / "eval" / MAPS_FILE, **arrays)
    record = {"threshold": threshold, "baselines": {"flair_baseline": 0.5}}
    (work / "model" / "healthy_threshold.json").write_text(json.dumps(record), encoding="utf-8")
    return SimpleNamespace(
        bundle=name,
        work=work,
        model_dir=work / "model",
        metrics=lambda: {name: {"timing": {"seconds_per_volume": 1.0}}},
        snapshots=dict,
    )


def test_members_scored_on_the_pixels_both_scored(tmp_path):
    brain = np.ones((3, 4, 4), dtype=bool)
    other = brain.copy()
    other[0, 0, :] = False  # a 4-modality bundle's brain may differ at the rim
    target = np.zeros_like(brain)
    target[1, 1:3, 1:3] = True
    run = EnsembleRun(
        [_member(tmp_path, "a", brain, 0.5, target), _member(tmp_path, "b", other, 2.0, target)], tmp_path / "e", 10
    )
    run.run()
    ens, flair = run.metrics()["a+b"], run.metrics()["flair_baseline"]
    assert ens["mixed"]["n_pixels"] == flair["mixed"]["n_pixels"] == int(other.sum())  # the pixels both scored
    assert ens["timing"]["seconds_per_volume"] == 2.0  # both members' inference
    # another target, or another grid: refused
    wrong = target.copy()
    wrong[2, 0, 0] = True
    pair = [_member(tmp_path / "x", "a", brain, 1.0, target), _member(tmp_path / "x", "b", brain, 1.0, wrong)]
    run = EnsembleRun(pair, tmp_path, 10)
    with pytest.raises(InputError, match="a and b evaluate other slices or grids"):
        run.run()
    run = EnsembleRun(
        [_member(tmp_path / "y", "a", brain, 1.0), _member(tmp_path / "y", "b", brain[:2], 1.0)], tmp_path, 10
    )
    with pytest.raises(InputError, match="other slices or grids"):
        run.run()
    run = EnsembleRun(
        [_member(tmp_path / "z", "a", brain, 1.0), _member(tmp_path / "z", "b", brain, -1.0)], tmp_path, 10
    )
    with pytest.raises(ValueError, match="positive"):
        run.run()


def _model_and_maps(root, name: str, threshold: float, maps: dict, affine: np.ndarray):
    import nibabel as nib

    from monai_adiff.fitted import fitted_on

    model, out = root / f"{name}_model", root / f"{name}_maps"
    model.mkdir()
    out.mkdir()
    (model / "model.pt").write_bytes(name.encode())  # any file: the threshold records its fingerprint
    record = {"threshold": threshold, **fitted_on(model / "model.pt")}
    (model / "healthy_threshold.json").write_text(json.dumps(record), encoding="utf-8")
    for case, data in maps.items():
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(out / f"{case}_anomaly_map.nii.gz"))
    return model, out


def test_cli_ensemble_of_two_models_maps(tmp_path, capsys):
    import nibabel as nib

    from monai_adiff.cli import main

    rng = np.random.default_rng(1)
    affine = np.diag([1.0, 1.2, 2.0, 1.0])
    affine[:3, 3] = [-10, 4, 7]
    a = {c: rng.random((6, 5, 4)) for c in ("case1", "case2")}
    b = {c: 3 * rng.random((6, 5, 4)) for c in ("case1", "case2")}
    ma, pa = _model_and_maps(tmp_path, "a", 0.8, a, affine)
    mb, pb = _model_and_maps(tmp_path, "b", 2.0, b, affine)
    out = tmp_path / "ens"
    assert main(["ensemble", str(pa), str(pb), "--models", str(ma), str(mb), "--out", str(out)]) == 0
    assert "2 case(s)" in capsys.readouterr().out
    for c in a:
        amap, mask = nib.load(out / f"{c}_anomaly_map.nii.gz"), nib.load(out / f"{c}_anomaly_mask.nii.gz")
        want = (a[c].astype(np.float32) / 0.8 + b[c].astype(np.float32) / 2.0) / 2
        np.testing.assert_allclose(np.asarray(amap.dataobj), want, rtol=1e-5)
        np.testing.assert_array_equal(np.asarray(mask.dataobj), (want > 1).astype(np.uint8))
        np.testing.assert_allclose(amap.affine, affine)
        np.testing.assert_allclose(mask.affine, affine)
    # one line each: another grid, a case missing in the second folder, a threshold fitted on another model
    _, pc = _model_and_maps(tmp_path, "c", 1.0, {c: rng.random((6, 5, 3)) for c in a}, affine)
    assert main(["ensemble", str(pa), str(pc), "--models", str(ma), str(mb), "--out", str(out)]) == 1
    assert "shape or affine differs" in capsys.readouterr().err
    (pb / "case2_anomaly_map.nii.gz").unlink()
    assert main(["ensemble", str(pa), str(pb), "--models", str(ma), str(mb), "--out", str(out)]) == 1
    assert "case2_anomaly_map.nii.gz: missing" in capsys.readouterr().err
    assert main(["ensemble", str(pa), str(pa), "--models", str(ma), str(mb), "--out", str(out)]) == 0
    (mb / "model.pt").write_bytes(b"another model")
    assert main(["ensemble", str(pa), str(pb), "--models", str(ma), str(mb), "--out", str(out)]) == 1
    assert "fitted on another checkpoint" in capsys.readouterr().err
    assert main(["ensemble", str(pa), "--models", str(ma), "--out", str(out)]) == 1
    assert "two or more map folders" in capsys.readouterr().err
