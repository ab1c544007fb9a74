# SPDX-License-Identifier: Apache-2.0
"""``monai-adiff demo``: the whole workflow on built-in synthetic data, on a CPU, in a few minutes.

Writes phantom volumes (their lesions are not the brightest tissue: normal periventricular caps are as bright on
FLAIR), trains a tiny single-step-sampling (SSS) model on the tumour-free brain slices of the training phantoms
through the ``sss`` bundle into a model folder (as ``monai-adiff train`` does: it also sets the mask threshold without
pixel labels, a high quantile of the map on the tumour-free slices of a validation phantom), infers the held-out
phantoms to NIfTI anomaly maps, masks and overlay PNGs, evaluates them beside the FLAIR-intensity baseline
(thresholded by the same label-free rule) and prints both on the same slices, with the ``monai-adiff infer`` command
for the model.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

from monai_adiff.bundle import cpu_overrides, run_bundle, train_model
from monai_adiff.data import scan_brats_folder, split_cases, write_datalist
from monai_adiff.data.synthetic import make_demo_dataset

__all__ = ["run_demo", "DEMO_NETWORK", "DEMO_INFERENCE"]

#: the demo's network and noise: small enough for 2 CPU cores; the simplex noise's first wavelength scaled with the
#: slice size as in the CPU recipe (AnoDDPM's 64 px at 256 px -> 12 px at 48 px), so lesions are hidden by the noise
DEMO_NETWORK = {**cpu_overrides(spatial_size=48), "modalities": ["flair"], "noise#frequency": 12}
#: the demo's map: the CPU recipe's options (mean reconstruction of several noise draws, positive residuals,
#: median filter, brain-rim erosion), sized for 48 px slices
DEMO_INFERENCE = {
    "sss_timesteps": 100,
    "num_samples": 8,
    "aggregate": "reconstruction",
    "positive_residual": True,
    "map_median_kernel": 3,
    "map_brain_erosion": 2,
}


def _summary(metrics: dict[str, Any], method: str) -> str:
    rows = []
    for setup, what in (("mixed", "all brain slices"), ("unhealthy", "slices with lesion")):
        for name, label in ((method, f"{method} (diffusion model)"), ("flair_baseline", "FLAIR intensity")):
            r = metrics[name][setup]
            rows.append(
                f"  {label:<26} {setup:<10} {r['dice_pooled'] or 0:6.3f} {r['auprc'] or 0:7.3f} {r['auroc'] or 0:7.3f}"
                f"   ({r['n_slices']} {what})"
            )
    head = f"  {'':<26} {'setup':<10} {'Dice':>6} {'AUPRC':>7} {'AUROC':>7}"
    return "\n".join([head, *rows])


def run_demo(out: str | os.PathLike, cases: int = 8, seed: int = 0, epochs: int = 60, bundle: str = "sss") -> dict:
    """Run the demo into ``out`` and return the paths it wrote and the metrics.

    Args:
        out: output folder (data, the model folder, predictions, metrics); a rerun reuses a finished model.
        cases: phantom cases (two are held out for testing, one for the threshold, the rest train).
        seed: seed of the phantoms, the split and the training.
        epochs: training epochs over the tumour-free slices of the training cases (60: about 4 minutes in all on 2
            CPU cores, and the map already ranks the lesions above the FLAIR baseline's).
        bundle: the bundle to train (``sss``; ``anoddpm`` trains the same network but needs many network passes
            per slice).
    """
    t0 = time.perf_counter()
    out = Path(out).resolve()
    data_dir = out / "data"
    if not data_dir.is_dir():
        make_demo_dataset(data_dir, cases=cases, seed=seed, lesion_fraction=0.67)
    items, _ = scan_brats_folder(data_dir, ("flair",))
    n = max(len(items), 4)
    split = split_cases(items, val_fraction=1 / n, test_fraction=2 / n, seed=seed)
    datalist = write_datalist(out / "datalist.json", {k: v for k, v in split.items() if v}, modalities=["flair"])
    model, preds = out / "model", out / "predictions"
    options = DEMO_INFERENCE if bundle == "sss" else {k: v for k, v in DEMO_INFERENCE.items() if k != "sss_timesteps"}
    # the model records the demo's network and inference options: nothing else is needed to use it
    settings = {
        **DEMO_NETWORK,
        **options,
        "recipe_name": "demo",
        "use_healthy_threshold": True,
        "max_epochs": epochs,
        "val_interval": epochs,
        "batch_size": 32,
        "num_workers": 0,
        "learning_rate": 1e-3,
        "ema_momentum": 0.02,
        "ema_momentum_warmup": 0.5,
        "ema_warmup_iters": 50,
    }
    print(f"[demo] training a tiny {bundle} model on the tumour-free slices of {len(split['training'])} phantoms ...")
    train_model(bundle, datalist, model, recipe="paper", overrides=settings, say=lambda m: print(f"[demo] {m}"))
    ckpt = model / "model.pt"
    run = {"datalist": datalist, "ckpt_path": str(ckpt)}
    print("[demo] inferring the held-out phantoms ...")
    run_bundle(bundle, "inference", {**run, "output_dir": str(preds)})
    print("[demo] evaluating against the FLAIR-intensity baseline ...")
    run_bundle(bundle, "evaluate", {**run, "output_dir": str(out), "metrics_name": "metrics"})
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    test_volume = split["test"][0]["flair"]
    command = f"monai-adiff infer {shlex.quote(str(model))} {shlex.quote(test_volume)} --out "
    command += shlex.quote(str(out / "infer"))
    paths = {
        "data": str(data_dir),
        "datalist": str(datalist),
        "model": str(model),
        "checkpoint": str(ckpt),
        "threshold": str(model / "healthy_threshold.json"),
        "predictions": str(preds),
        "metrics": str(out / "metrics.json"),
    }
    print(f"\n[demo] done in {time.perf_counter() - t0:.0f} s")
    print(
        "\nWhat this shows: a diffusion model that saw only tumour-free slices finds the lesions of phantoms it has "
        "never seen,\nwith a mask threshold chosen without any pixel label; beside it, the FLAIR intensity itself "
        "thresholded by the\nsame rule. On these phantoms normal periventricular caps are as bright on FLAIR as the "
        "lesions, so the plain\nthreshold flags them too; the model has learnt them as normal anatomy. Held-out "
        f"phantoms {', '.join(c['case'] for c in split['test'])}\n(Dice of the label-free masks, pooled over the "
        "slices; AUPRC and AUROC of the maps over brain pixels):\n"
    )
    print(_summary(metrics, bundle))
    print(f"\n  overlays (image | map | mask, lesion outlined): {preds}/<case>_overlay.png")
    for k, v in paths.items():
        print(f"  {k:<12} {v}")
    print("\nscore any FLAIR volume with this model:\n  " + command)
    return {**paths, "infer_command": command, "results": metrics}
