# SPDX-License-Identifier: Apache-2.0
"""``monai-adiff demo`` end to end at a tiny scale: every file it promises, both methods on the same slices, and a
label-free threshold written before inference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monai_adiff.demo import run_demo

pytestmark = pytest.mark.slow


def test_demo_runs_and_reports_method_beside_flair(tmp_path, capsys):
    res = run_demo(tmp_path / "d", cases=4, epochs=1)
    out = capsys.readouterr().out
    for key in ("checkpoint", "threshold", "metrics"):
        assert Path(res[key]).is_file(), key
    thr = json.loads(Path(res["threshold"]).read_text(encoding="utf-8"))
    assert thr["n_pixels"] > 0 and "flair_baseline" in thr["baselines"]
    metrics = res["results"]
    for name in ("sss", "flair_baseline"):
        for setup in ("mixed", "unhealthy"):
            assert metrics[name][setup]["auprc"] is not None and metrics[name][setup]["dice_pooled"] is not None
    assert metrics["sss"]["mixed"]["n_slices"] == metrics["flair_baseline"]["mixed"]["n_slices"]  # same slices
    assert "What this shows" in out and "FLAIR intensity" in out
    assert len(list(Path(res["predictions"]).glob("*_overlay.png"))) == 2
    # the model folder describes itself: the printed command needs no args file, and the record holds the demo's noise
    assert "--args-file" not in res["infer_command"] and res["infer_command"].startswith(
        f"monai-adiff infer {res['model']}"
    )
    import torch

    info = torch.load(res["checkpoint"], weights_only=True)["info"]
    assert info["config"]["noise"]["frequency"] == 12 and info["recipe"]["recipe_name"] == "demo"
