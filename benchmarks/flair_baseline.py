# SPDX-License-Identifier: Apache-2.0
"""The FLAIR-intensity baseline (design section 6) on a BraTS-style folder: the number every method must beat.

Runs the bundles' own volume preprocessing (RAS, in-plane resize) and scores the FLAIR intensity divided by its 99th
foreground percentile (clipped) as the anomaly map, exactly as the bundles' ``evaluate`` does beside each method.

    python benchmarks/flair_baseline.py --data ../shared/data/brats18-dev --size 128 [--test-fraction 0.2]
"""

from __future__ import annotations

import argparse
import time

import torch
from monai.transforms import Compose

from monai_adiff.data import scan_brats_folder, split_cases, with_image_key
from monai_adiff.metrics import AnomalyEvaluation, format_table
from monai_adiff.transforms import volume_preprocessing


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/brats18-dev", help="BraTS-style folder")
    p.add_argument("--size", type=int, default=128, help="in-plane size (default 128)")
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.0,
        help="evaluate only the test split of the bundles' patient split (0: all cases)",
    )
    p.add_argument("--seed", type=int, default=0, help="split seed (the bundles' split_seed)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="the bundles' val_fraction (for the split)")
    args = p.parse_args()

    items, errors = scan_brats_folder(args.data, ("flair",))
    if args.test_fraction > 0:
        items = split_cases(items, args.val_fraction, args.test_fraction, args.seed)["test"]
    chain = Compose(volume_preprocessing(spatial_size=args.size, num_channels=1, baseline_key="baseline"))
    ev = AnomalyEvaluation()
    t0 = time.perf_counter()
    for item in with_image_key(items, ["flair"]):
        d = chain(item)
        amap = d["baseline"][0].as_subclass(torch.Tensor)
        brain = d["brain"][0].permute(2, 0, 1) & d["brain_slices"][:, None, None]  # brain slices, as the bundles
        ev.add_volume(item["case"], amap.permute(2, 0, 1), None, d["label"][0].permute(2, 0, 1) > 0, brain)
    res = ev.compute()
    print(f"{len(items)} cases from {args.data} at {args.size} px, " f"{time.perf_counter() - t0:.1f} s")
    print(format_table({"flair_baseline": res}))
    for setup in ("mixed", "unhealthy"):
        r = res[setup]
        print(
            f"{setup}: AUPRC {r['auprc']:.3f}  AUROC {r['auroc']:.3f}  best pooled Dice {r['best_dice']:.3f} "
            f"at {r['best_threshold']:.3f}  ({r['n_slices']} slices)"
        )


if __name__ == "__main__":
    main()
