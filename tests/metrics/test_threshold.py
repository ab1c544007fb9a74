# SPDX-License-Identifier: Apache-2.0
"""The healthy-quantile threshold against hand-computed quantiles (numpy's linear interpolation, by hand)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from monai_adiff.errors import InputError
from monai_adiff.metrics import HealthyQuantileHandler, healthy_quantile, read_threshold


def test_healthy_quantile_by_hand():
    # 5 sorted values, q = 0.9: position 0.9 * 4 = 3.6 -> 4 + 0.6 * (10 - 4) = 7.6
    assert healthy_quantile([10.0, 1.0, 2.0, 4.0, 3.0], 0.9) == pytest.approx(7.6)
    assert healthy_quantile([3.0], 0.99) == 3.0
    with pytest.raises(ValueError, match="no healthy"):
        healthy_quantile([], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        healthy_quantile([1.0, float("nan")], 0.5)
    with pytest.raises(ValueError, match="q must"):
        healthy_quantile([1.0], 1.5)


def test_handler_uses_only_healthy_brain_slices(tmp_path):
    # volume (1, H=2, W=2, S=3): slice 0 healthy, slice 1 tumour, slice 2 healthy but not a brain slice
    amap = torch.zeros(1, 2, 2, 3)
    amap[..., 0] = torch.tensor([[1.0, 2.0], [3.0, 100.0]])  # 100 lies outside the brain
    amap[..., 1] = 50.0
    amap[..., 2] = 70.0
    brain = torch.ones(1, 2, 2, 3, dtype=torch.bool)
    brain[0, 1, 1, 0] = False
    label = torch.zeros(1, 2, 2, 3)
    label[0, 0, 0, 1] = 1
    data = {
        "pred": amap,
        "label": label,
        "brain": brain,
        "brain_slices": torch.tensor([True, True, False]),
        "case": "a",
    }
    data["flair"] = amap * 10
    out = tmp_path / "thr.json"
    handler = HealthyQuantileHandler(str(out), q=0.5, baselines={"flair_baseline": "flair"})
    engine = Engine(lambda e, b: [data])
    handler.attach(engine)
    engine.run([0], max_epochs=1)
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert rec["threshold"] == pytest.approx(2.0)  # median of {1, 2, 3}
    assert rec["n_pixels"] == 3 and rec["n_slices"] == 1 and rec["cases"] == ["a"]
    assert read_threshold(out, None) == pytest.approx(2.0)
    assert read_threshold(out, None, baseline="flair_baseline") == pytest.approx(20.0)


def test_read_threshold_errors_name_the_file(tmp_path):
    assert read_threshold(None, 0.3) == 0.3
    missing = tmp_path / "none.json"
    with pytest.raises(InputError, match="none.json.*healthy_threshold"):
        read_threshold(missing, 0.3)
    bad = tmp_path / "bad.json"
    bad.write_text("{}", encoding="utf-8")
    with pytest.raises(InputError, match="bad.json"):
        read_threshold(bad, 0.3)
    nan = tmp_path / "nan.json"
    nan.write_text(json.dumps({"threshold": float("nan")}), encoding="utf-8")
    with pytest.raises(InputError, match="nan.json"):
        read_threshold(nan, 0.3)
    assert np.isfinite(read_threshold(None, 1.0))
