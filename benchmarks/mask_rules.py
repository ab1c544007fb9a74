# SPDX-License-Identifier: Apache-2.0
"""Label-free mask rules compared on the same maps: Otsu per 2D slice, Otsu per volume, the healthy quantile.

The maps are the ones a benchmark evaluation saved (``<bundle>/eval/metrics_maps.npz``, written by every
``monai-adiff benchmark`` run); each rule makes a mask from the map alone, with the bundle's own transform
(:class:`~monai_adiff.transforms.AnomalyThreshold`, over the brain pixels; per slice or over the volume's evaluated
slices) or the model's ``healthy_threshold.json``, and the evaluation module scores them on the tumour slices. The
map, so its AUPRC, is the same for every rule: only the masks differ.

    python benchmarks/mask_rules.py OUT/fold0/dtunet OUT/fold1/dtunet ...   # a benchmark run's bundle folders
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monai_adiff.metrics.evaluation import AnomalyEvaluation  # noqa: E402
from monai_adiff.transforms import AnomalyThreshold  # noqa: E402

RULES = ("otsu per slice", "otsu per volume", "healthy quantile")


def masks(amap: torch.Tensor, brain: torch.Tensor, healthy: float) -> dict[str, torch.Tensor]:
    """The rules' masks of one volume's map ``(S, H, W)`` (slices first, as saved)."""
    img, inside = amap.permute(1, 2, 0)[None], brain.permute(1, 2, 0)[None]  # (1, H, W, S): the bundles' layout
    out = {
        "otsu per slice": AnomalyThreshold("otsu", slice_axis=-1)(img, inside),
        "otsu per volume": AnomalyThreshold("otsu", slice_axis=None)(img, inside),
    }
    out = {k: torch.as_tensor(v)[0].permute(2, 0, 1) > 0 for k, v in out.items()}
    out["healthy quantile"] = amap > healthy
    return {k: v & brain for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="a benchmark run's bundle folders (<out>/fold<k>/<bundle>)")
    args = parser.parse_args(argv)
    evals = {r: AnomalyEvaluation(("unhealthy",)) for r in RULES}
    for run in map(Path, args.runs):
        bundle = run.name
        healthy = float(json.loads((run / "model" / "healthy_threshold.json").read_text(encoding="utf-8"))["threshold"])
        with np.load(run / "eval" / "metrics_maps.npz") as f:
            saved = {k: f[k] for k in f.files}
        for case in sorted({k.split("/")[0] for k in saved}):
            amap = torch.as_tensor(saved[f"{case}/{bundle}"])
            target, brain = torch.as_tensor(saved[f"{case}/target"]) > 0, torch.as_tensor(saved[f"{case}/brain"])
            for rule, mask in masks(amap, brain, healthy).items():
                evals[rule].add_volume(case, amap, mask.float(), target, brain)
    print("| rule | Dice pooled | Dice per patient, mean ± sd | precision | recall | best Dice* (ceiling) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for rule, ev in evals.items():
        res = ev.compute()
        r, spread = res["unhealthy"], res["spread"]["unhealthy"]["dice_pooled"]
        print(
            f"| {rule} | {r['dice_pooled']:.3f} | {spread['mean']:.3f} ± {spread['std']:.3f} | "
            f"{r['precision_pooled']:.3f} | {r['recall_pooled']:.3f} | {r['best_dice']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
