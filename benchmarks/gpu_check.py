# SPDX-License-Identifier: Apache-2.0
"""One prepared run on a machine with a GPU: speed rows, then a short paper-size SSS training and its evaluation.

Fits in 8 minutes on one H100/H200 and prints each result as soon as it has it (a JSON line per stage), writing
``<out>/gpu_check.json`` after every stage, so a run cut short still reports what it finished:

1. ``env``: torch, CUDA, the device;
2. ``speed``: ``benchmarks/speed.py`` (SSS vs iterative AnoDDPM on the paper-size UNet) in fp32, then bf16 autocast
   with ``torch.compile``;
3. ``noise``: ``benchmarks/noise_speed.py`` on the GPU (ours eager and compiled vs ``torch.randn``, and opensimplex on
   the CPU when it is installed);
4. ``anofpdm``: AnoFPDM's seconds per 155-slice volume (paper-size network, random weights, bf16);
5. ``sss_training``: the ``sss`` bundle's paper-size UNet trained for ``--train-seconds`` by the bundle's own trainer
   on the tumour-free slices of the training patients of a compact cached copy of the dev slices, then scored (the
   bundle's SSS inferer) on the held-out patients beside the FLAIR-intensity baseline, the mask threshold from the
   validation patient's tumour-free slices.

The data cannot be read there (only the working tree travels), so make the cache here first (uint8 images; 5.6 MB
for the 12 dev patients):

    python benchmarks/gpu_check.py --make-cache $BRATS_DEV --cache .gpu/dev_slices.npz

and run it there from the repository root (``benchmarks/gpu_check.sh`` installs carried wheels of the packages the
GPU image lacks: monai, pytorch-ignite, nibabel, opensimplex):

    bash benchmarks/gpu_check.sh --out $OUT --cache .gpu/dev_slices.npz

``--dry`` runs every stage on the CPU at a tiny size (the test suite does); without ``--cache`` it makes a tiny one
from demo phantoms in the output folder. The exit status is 1 when any stage failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
#: the cache's slice size (the sss bundle's paper configuration)
CACHE_SIZE = 128


# -- the cache ---------------------------------------------------------------------------------------------------
def make_cache(data: str, path: str, size: int = CACHE_SIZE, split_seed: int = 0) -> dict[str, Any]:
    """Write the brain slices of ``data`` at ``size`` px, by section of the benchmark split, into ``path``.

    Training patients keep their tumour-free slices only (what SSS trains on); validation and test patients keep
    every brain slice with its brain mask, label and FLAIR-intensity map. Images are stored as uint8 of [-1, 1].
    """
    from ablation import bundle_parser, load_volumes

    split = {"split_seed": split_seed, "val_fraction": 0.1, "test_fraction": 0.25, "spatial_size": size}
    parser = bundle_parser("sss", str(Path(data).resolve()), None, split)
    vols = load_volumes(parser, ["training", "validation", "test"])
    arrays: dict[str, np.ndarray] = {}

    def u8(x: torch.Tensor) -> np.ndarray:
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()

    train = [v["x"][~v["label"].flatten(1).any(1)] for v in vols["training"]]
    arrays["train/x"] = u8(torch.cat(train))
    for section in ("validation", "test"):
        for v in vols[section]:
            pre = f"{section}/{v['case']}"
            arrays[f"{pre}/x"] = u8(v["x"])
            arrays[f"{pre}/brain"] = v["brain"].numpy()
            arrays[f"{pre}/label"] = v["label"].numpy()
            arrays[f"{pre}/flair"] = v["flair"].numpy().astype(np.float16)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    info = {
        "path": path,
        "megabytes": round(os.path.getsize(path) / 2**20, 1),
        "train_slices": int(arrays["train/x"].shape[0]),
        "validation": [v["case"] for v in vols["validation"]],
        "test": [v["case"] for v in vols["test"]],
    }
    print(json.dumps(info))
    return info


def read_cache(path: str) -> dict[str, Any]:
    """``{"train": (N, 1, H, W) float in [-1, 1], "validation"/"test": [{case, x, brain, label, flair}]}``."""
    out: dict[str, Any] = {"validation": {}, "test": {}}
    with np.load(path) as z:
        for key in z.files:
            arr = torch.from_numpy(z[key])
            if key == "train/x":
                out["train"] = arr.float() / 127.5 - 1
                continue
            section, case, name = key.split("/")
            out[section].setdefault(case, {"case": case})[name] = arr.float() / 127.5 - 1 if name == "x" else arr
    for section in ("validation", "test"):
        out[section] = [out[section][c] for c in sorted(out[section])]
    return out


# -- stages ------------------------------------------------------------------------------------------------------
class Check:
    """Stages run in order within a time budget; each result is printed and the JSON rewritten at once."""

    def __init__(self, out: Path, budget: float) -> None:
        self.out, self.budget, self.t0 = out, budget, time.perf_counter()
        self.results: dict[str, Any] = {}
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def stage(self, name: str, fn, *args, **kwargs) -> None:
        t = time.perf_counter()
        try:
            res = fn(*args, **kwargs)
            res = {"status": "ok", **res}
        except Exception as e:  # a failed stage is reported and the next one still runs
            res = {"status": "error", "error": f"{type(e).__name__}: {e}"[:500]}
        res["stage_seconds"] = round(time.perf_counter() - t, 1)
        self.results[name] = res
        print(json.dumps({name: res}), flush=True)
        tmp = self.out / ".gpu_check.json.tmp"
        tmp.write_text(json.dumps(self.results, indent=1, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.out / "gpu_check.json")


def env_stage(device: torch.device) -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "capability": list(torch.cuda.get_device_capability(device)) if device.type == "cuda" else None,
        "cpus": os.cpu_count(),
    }


def script_stage(args: list[str], timeout: float, json_file: Path | None = None) -> dict[str, Any]:
    """Run one of the benchmark scripts, echoing its output; its JSON file (if any) becomes the result."""
    proc = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=max(10.0, timeout),
        cwd=HERE.parent,
    )
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
    res: dict[str, Any] = {"stdout_tail": proc.stdout[-3000:]}
    if json_file is not None and json_file.is_file():
        res.update(json.loads(json_file.read_text(encoding="utf-8")))
    return res


def anofpdm_stage(device: torch.device, dry: bool) -> dict[str, Any]:
    from bench_utils import inference_parts, random_slices, timed

    from monai_adiff.bundle import quick_overrides

    slices = 4 if dry else 155
    overrides: dict[str, Any] = {"slice_batch_size": slices, "autocast_dtype": "bfloat16"}
    if dry:
        overrides.update({**quick_overrides("anofpdm"), "network_def#use_flash_attention": False})
    parser, network, inferer = inference_parts("anofpdm", overrides, device, recipe="paper")
    size = int(parser.get_parsed_content("spatial_size"))
    x = random_slices(slices, len(parser.get_parsed_content("modalities")), size, device)
    with torch.no_grad():
        first = timed(lambda: inferer.infer(x, network), device)
        seconds = timed(lambda: inferer.infer(x, network), device)
    return {
        "size": size,
        "slices": slices,
        "first_call_s": round(first, 2),
        "seconds_per_volume": round(seconds * 155 / slices, 2),
        "parameters_M": round(sum(p.numel() for p in network.parameters()) / 1e6, 2),
    }


def sss_training_stage(cache: str, out: Path, seconds: float, dry: bool) -> dict[str, Any]:
    """The sss bundle's trainer on the cached training slices for ``seconds``, then SSS on the test patients."""
    from ignite.engine import Events
    from monai.data import Dataset

    from monai_adiff.bundle import quick_overrides, run_bundle
    from monai_adiff.engines import load_network_weights
    from monai_adiff.metrics import AnomalyEvaluation, healthy_quantile

    data = read_cache(cache)
    size = int(data["train"].shape[-1])
    train = Dataset([{"image": x} for x in data["train"]])
    overrides: dict[str, Any] = {
        "spatial_size": size,
        "cases": {"training": [], "validation": []},  # no volumes to read: no validation during the run
        "train#dataset": train,
        "max_epochs": 10**6,
        "val_interval": 10**6,
        "batch_size": 4 if dry else 32,
        "num_workers": 0,
        "ckpt_dir": str(out / "sss_models"),
        "output_dir": str(out / "sss_logs"),
        "resume": False,
        "dataset_dir": None,
    }
    if dry:
        overrides.update({**quick_overrides("sss", size), "network_def#use_flash_attention": False})
    state: dict[str, Any] = {}

    def stop_after_budget(wf: Any) -> None:
        trainer = wf.parser.get_parsed_content("train#trainer")
        start = time.perf_counter()

        def check(engine) -> None:
            state["iterations"] = engine.state.iteration
            if time.perf_counter() - start > seconds:
                engine.terminate()

        trainer.add_event_handler(Events.ITERATION_COMPLETED, check)

    t = time.perf_counter()
    wf = run_bundle("sss", "training", overrides, before_run=stop_after_budget, logging_file=False)
    train_s = time.perf_counter() - t
    parameters = sum(p.numel() for p in wf.parser.get_parsed_content("network").parameters())
    device = wf.parser.get_parsed_content("device")

    from monai.bundle import ConfigParser

    from monai_adiff.bundle import find_bundle

    parser = ConfigParser()
    parser.read_config(str(find_bundle("sss") / "configs" / "inference.json"))
    for k, v in overrides.items():
        if k.startswith("network_def#") or k == "spatial_size":
            parser[k] = v
    parser["threshold_file"] = None
    network = load_network_weights(parser.get_parsed_content("network_def"), str(out / "sss_models" / "model.pt"))
    network = network.to(device).eval()
    inferer = parser.get_parsed_content("inferer")

    def maps(section: str) -> list[torch.Tensor]:
        with torch.no_grad():
            return [inferer.infer(v["x"].to(device), network).anomaly_map[:, 0].cpu() for v in data[section]]

    t = time.perf_counter()
    test_maps = maps("test")
    infer_s = (time.perf_counter() - t) / max(1, len(data["test"]))
    val_maps = maps("validation")

    def healthy(ms, vols) -> torch.Tensor:
        vals = [m[~v["label"].flatten(1).any(1)][v["brain"][~v["label"].flatten(1).any(1)]] for m, v in zip(ms, vols)]
        return torch.cat(vals)

    res: dict[str, Any] = {
        "train_seconds": round(train_s, 1),
        "iterations": state.get("iterations"),
        "parameters_M": round(parameters / 1e6, 2),
        "size": size,
        "test_patients": [v["case"] for v in data["test"]],
        "infer_seconds_per_volume": round(infer_s, 2),
    }
    for name, test_m, val_m in (
        ("sss", test_maps, val_maps),
        ("flair_baseline", [v["flair"].float() * v["brain"] for v in data["test"]], None),
    ):
        if val_m is None:
            val_m = [v["flair"].float() * v["brain"] for v in data["validation"]]
        thr = healthy_quantile(healthy(val_m, data["validation"]).numpy(), 0.99)
        ev = AnomalyEvaluation()
        for m, v in zip(test_m, data["test"]):
            ev.add_volume(v["case"], m, m > thr, v["label"], v["brain"])
        r = ev.compute()
        res[name] = {
            s: {k: r[s][k] for k in ("auprc", "auroc", "dice_pooled", "best_dice")} for s in ("unhealthy", "mixed")
        }
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="output folder (gpu_check.json)")
    p.add_argument("--cache", help="compact dev slices (--make-cache; default .gpu/dev_slices.npz)")
    p.add_argument("--make-cache", metavar="DATA", help="write the cache from a BraTS-style folder and stop")
    p.add_argument("--budget", type=float, default=450, help="seconds for all stages (default 450)")
    p.add_argument("--train-seconds", type=float, default=150, help="SSS training time (default 150)")
    p.add_argument("--dry", action="store_true", help="every stage on the CPU at a tiny size")
    a = p.parse_args()
    if a.make_cache:
        make_cache(a.make_cache, a.cache or ".gpu/dev_slices.npz", size=32 if a.dry else CACHE_SIZE)
        return
    if not a.out:
        p.error("--out is required")
    device = torch.device("cpu" if a.dry or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not a.dry:
        p.error("no CUDA device: this is a GPU check (use --dry to try it on the CPU)")
    out = Path(a.out)
    cache = a.cache or ".gpu/dev_slices.npz"
    if a.dry and not a.cache:  # a self-contained dry run: phantoms -> a 32 px cache
        from monai_adiff.data.synthetic import make_demo_dataset

        make_demo_dataset(out / "phantoms", cases=5, seed=3, shape=(40, 36, 20), lesion_fraction=0.8, overwrite=True)
        cache = str(out / "phantom_cache.npz")
        make_cache(str(out / "phantoms"), cache, size=32)
    check = Check(out, a.budget)
    check.stage("env", env_stage, device)
    if a.dry:
        speed = ["--device", "cpu", "--network", "cpu", "--size", "32", "--slices", "4", "--batch", "4", "--steps", "3"]
        check.stage("speed_fp32", script_stage, ["benchmarks/speed.py", *speed, "--repeats", "1"], check.left())
        noise = ["--device", "cpu", "--batch", "2", "--size", "32", "--repeats", "1", "--no-compile"]
        check.stage("noise", script_stage, ["benchmarks/noise_speed.py", *noise], check.left())
    else:
        for name, extra in (("speed_fp32", []), ("speed_bf16_compile", ["--bf16", "--compile"])):
            js = out / f"{name}.json"
            args = ["benchmarks/speed.py", "--device", "cuda", *extra, "--json", str(js)]
            check.stage(name, script_stage, args, min(check.left(), 150), js)
        check.stage("noise", script_stage, ["benchmarks/noise_speed.py", "--device", "all", "--repeats", "5"], 90)
    check.stage("anofpdm", anofpdm_stage, device, a.dry)
    train_s = 5 if a.dry else max(30.0, min(a.train_seconds, check.left() - 90))
    check.stage("sss_training", sss_training_stage, cache, out, train_s, a.dry)
    failed = [k for k, r in check.results.items() if r["status"] != "ok"]
    print(
        f"done in {time.perf_counter() - check.t0:.0f} s -> {out / 'gpu_check.json'}; failed stages: {failed or 'none'}"
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
