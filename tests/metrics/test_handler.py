# SPDX-License-Identifier: Apache-2.0
"""AnomalyMetricsHandler's plot data: thinned PR curves in the JSON report only, and the largest-tumour slice
snapshots, checked against hand-built volumes."""

from __future__ import annotations

import json

import numpy as np
import torch
from ignite.engine import Engine

from monai_adiff.metrics import AnomalyMetricsHandler, average_precision


def _volume(case: str, areas: list[int], seed: int) -> dict:
    """(1, 8, 8, S) label with ``areas[k]`` tumour pixels in slice k, all-brain, a noisy map that ranks them high."""
    g = torch.Generator().manual_seed(seed)
    s = len(areas)
    label = torch.zeros(1, 8, 8, s)
    for k, a in enumerate(areas):
        label[0].permute(2, 0, 1)[k].view(-1)[:a] = 1
    pred = label + 0.8 * torch.rand(1, 8, 8, s, generator=g)
    flair = torch.rand(1, 8, 8, s, generator=g) + 0.5 * label
    return {
        "case": case,
        "label": label,
        "brain": torch.ones(1, 8, 8, s),
        "pred": pred,
        "pred_mask": (pred > 1.0).float(),
        "flair_intensity": flair,
    }


def test_curves_and_snapshots(tmp_path):
    vols = [_volume("a", [0, 5, 20, 3, 12], 0), _volume("b", [0, 0, 0, 0, 0], 1), _volume("c", [7, 0, 0, 9, 0], 2)]
    handler = AnomalyMetricsHandler(
        str(tmp_path),
        method="m",
        baselines={"flair_baseline": "flair_intensity"},
        baseline_thresholds={"flair_baseline": 1.2},
        curve_points=50,
        snapshot_slices=2,
        print_table=False,
    )
    engine = Engine(lambda e, batch: batch)
    handler.attach(engine)
    engine.run([[v] for v in vols], max_epochs=1)

    report = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    curve = report["m"]["unhealthy"]["pr_curve"]
    assert curve["recall"][-1] == 1.0
    # unhealthy slices: a's 1-4 and c's 0 and 3; with fewer positives than points the curve is exact
    unhealthy = [(vols[0], [1, 2, 3, 4]), (vols[2], [0, 3])]
    scores = torch.cat([v["pred"][0][..., ks].flatten() for v, ks in unhealthy])
    labels = torch.cat([v["label"][0][..., ks].flatten() for v, ks in unhealthy])
    area = float(np.sum(np.diff([0.0, *curve["recall"]]) * np.asarray(curve["precision"])))
    assert abs(area - average_precision(scores, labels)) < 1e-9
    assert abs(report["m"]["unhealthy"]["auprc"] - average_precision(scores, labels)) < 1e-9
    assert "pr_curve" not in (tmp_path / "metrics.csv").read_text(encoding="utf-8")

    with np.load(tmp_path / "metrics_snapshots.npz") as z:
        snaps = {k: z[k] for k in z.files}
    assert snaps["a/slices"].tolist() == [2, 4]  # the two largest tumour areas, in slice order
    assert snaps["c/slices"].tolist() == [0, 3]
    assert not any(k.startswith("b/") for k in snaps)  # no tumour, no snapshot
    np.testing.assert_array_equal(snaps["a/label"], vols[0]["label"][0].permute(2, 0, 1)[[2, 4]].bool().numpy())
    np.testing.assert_allclose(snaps["a/m/map"], vols[0]["pred"][0].permute(2, 0, 1)[[2, 4]].numpy())
    np.testing.assert_allclose(snaps["a/image"], vols[0]["flair_intensity"][0].permute(2, 0, 1)[[2, 4]].numpy())
    flair = vols[2]["flair_intensity"][0].permute(2, 0, 1)[[0, 3]]
    np.testing.assert_array_equal(snaps["c/flair_baseline/mask"], (flair > 1.2).numpy())
    assert snaps["c/m/mask"].dtype == bool
