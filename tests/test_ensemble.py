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


def _member(tmp_path, name: str, brain: np.ndarray, threshold: float):
    work = tmp_path / name
    (work / "eval").mkdir(parents=True)
    (work / "model").mkdir()
    target = np.zeros_like(brain)
    np.savez(work / "eval" / MAPS_FILE, **{"c1/target": target, "c1/brain": brain, f"c1/{name}": brain * 1.0})
    (work / "model" / "healthy_threshold.json").write_text(json.dumps({"threshold": threshold}), encoding="utf-8")
    return SimpleNamespace(bundle=name, work=work, model_dir=work / "model")


def test_members_on_different_pixels_are_refused(tmp_path):
    brain = np.ones((2, 4, 4), dtype=bool)
    other = brain.copy()
    other[0, 0, 0] = False
    run = EnsembleRun([_member(tmp_path, "a", brain, 1.0), _member(tmp_path, "b", other, 1.0)], tmp_path / "e", 10)
    with pytest.raises(InputError, match="a and b evaluate different slices or pixels"):
        run.run()
    run = EnsembleRun(
        [_member(tmp_path / "x", "a", brain, 1.0), _member(tmp_path / "x", "b", brain, -1.0)], tmp_path, 10
    )
    with pytest.raises(ValueError, match="positive"):
        run.run()
