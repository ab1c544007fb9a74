# SPDX-License-Identifier: Apache-2.0
"""``monai-adiff demo``: the whole workflow on built-in synthetic data, on a CPU, in a few minutes.

Writes phantom volumes, trains a tiny single-step-sampling (SSS) model on their tumour-free brain slices through the
``sss`` bundle, infers the held-out volumes to NIfTI anomaly maps and masks, evaluates them beside the
FLAIR-intensity baseline and prints where everything is, with the ``monai-adiff infer`` command for the checkpoint.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path

from monai_adiff.bundle import cpu_overrides, find_bundle, run_bundle
from monai_adiff.data import scan_brats_folder, split_cases, write_datalist
from monai_adiff.data.synthetic import make_demo_dataset
from monai_adiff.utils import atomic_write_text

__all__ = ["run_demo", "DEMO_NETWORK"]

#: the demo's network and schedule: small enough for 2 CPU cores, the paper's SSS in every other respect
DEMO_NETWORK = {**cpu_overrides(spatial_size=48), "modalities": ["flair"]}


def run_demo(out: str | os.PathLike, cases: int = 6, seed: int = 0, epochs: int = 40, bundle: str = "sss") -> dict:
    """Run the demo into ``out`` and return the paths it wrote.

    Args:
        out: output folder (data, checkpoint, predictions, metrics).
        cases: phantom cases (two are held out for testing).
        seed: seed of the phantoms, the split and the training.
        epochs: training epochs over the tumour-free slices of the training cases.
        bundle: the bundle to train (``sss``; ``anoddpm`` trains the same network but needs lambda network passes
            per slice).
    """
    t0 = time.perf_counter()
    out = Path(out).resolve()
    data_dir = out / "data"
    if not data_dir.is_dir():
        make_demo_dataset(data_dir, cases=cases, seed=seed, lesion_fraction=0.67)
    items, _ = scan_brats_folder(data_dir, ("flair",))
    split = split_cases(items, val_fraction=0.0, test_fraction=2 / max(cases, 3), seed=seed)
    datalist = write_datalist(out / "datalist.json", {k: v for k, v in split.items() if v}, modalities=["flair"])
    models, preds = out / "models", out / "predictions"
    common = {**DEMO_NETWORK, "datalist": datalist, "ckpt_dir": str(models), "output_dir": str(out / "logs")}
    train = {
        **common,
        "max_epochs": epochs,
        "batch_size": 32,
        "num_workers": 0,
        "learning_rate": 1e-3,
        "ema_momentum": 0.02,
        "ema_momentum_warmup": 0.5,
        "ema_warmup_iters": 50,
        "resume": False,
    }
    print(f"[demo] training a tiny {bundle} model on {len(split['training'])} phantom volumes ...", flush=True)
    run_bundle(bundle, "training", train)
    ckpt = models / "model.pt"
    # the overrides the tiny network needs, as a monai.bundle args file: usable by `monai-adiff infer` and by
    # `python -m monai.bundle run inference --args_file ...` alike
    args_file = models / "inference_args.json"
    atomic_write_text(args_file, json.dumps({k: v for k, v in DEMO_NETWORK.items()}, indent=4))
    print("[demo] inferring the held-out volumes ...", flush=True)
    infer = {**common, "ckpt_path": str(ckpt), "output_dir": str(preds)}
    run_bundle(bundle, "inference", infer)
    print("[demo] evaluating against the FLAIR-intensity baseline ...", flush=True)
    run_bundle(bundle, "evaluate", {**infer, "output_dir": str(out), "metrics_name": "metrics"})
    test_volume = split["test"][0]["flair"]
    command = (
        f"monai-adiff infer {shlex.quote(str(find_bundle(bundle)))} {shlex.quote(test_volume)} "
        f"--checkpoint {shlex.quote(str(ckpt))} --args-file {shlex.quote(str(args_file))} "
        f"--out {shlex.quote(str(out / 'infer'))}"
    )
    paths = {
        "data": str(data_dir),
        "datalist": str(datalist),
        "checkpoint": str(ckpt),
        "args_file": str(args_file),
        "predictions": str(preds),
        "metrics": str(out / "metrics.json"),
    }
    print(f"\n[demo] done in {time.perf_counter() - t0:.0f} s")
    for k, v in paths.items():
        print(f"  {k:<12} {v}")
    print("\nscore any FLAIR volume with this checkpoint:\n  " + command)
    return {**paths, "infer_command": command}
