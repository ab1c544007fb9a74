# SPDX-License-Identifier: Apache-2.0
"""Seconds per 155-slice volume for single-step sampling (SSS) and iterative AnoDDPM on the same network.

Both inferers score the same volume with the same network (the bundle's ``network_def``, paper size by default),
so the printed ratio is the speed-up of SSS over AnoDDPM measured in one run; slices/s is the throughput of the
network pass that SSS makes once per slice.

    python benchmarks/speed.py --device cuda --bf16 --compile          # the lent H100: paper-size UNet, 128 px
    python benchmarks/speed.py --device cpu --network cpu --slices 64  # a CPU: the network of configs/cpu_args.json

``--checkpoint`` loads trained weights (a bundle ``model.pt``); timings do not depend on them, but the row is then
literally "the same trained network".
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from monai.bundle import ConfigParser

from monai_adiff.bundle import find_bundle
from monai_adiff.engines import load_network_weights
from monai_adiff.methods.anoddpm import IterativeReconstructionInferer
from monai_adiff.methods.sss import SingleStepInferer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--network",
        choices=("paper", "cpu"),
        default="paper",
        help="the bundle's paper-size UNet or the CPU-sized one of configs/cpu_args.json",
    )
    p.add_argument("--checkpoint", help="trained weights to load (a bundle model.pt); optional")
    p.add_argument("--size", type=int, help="slice size (default: the bundle's, 128; 64 for --network cpu)")
    p.add_argument("--slices", type=int, default=155, help="slices per volume (default 155, BraTS)")
    p.add_argument("--batch", type=int, default=155, help="slices per network call (default: the whole volume)")
    p.add_argument("--steps", type=int, default=250, help="AnoDDPM lambda (default 250)")
    p.add_argument("--sss-t", type=int, default=300, help="SSS noise level (default 300)")
    p.add_argument("--noise", default="simplex", help="noise type (default simplex)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--flash", action="store_true", help="use_flash_attention in the UNet")
    p.add_argument("--repeats", type=int, default=3, help="SSS timing repeats (best of)")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args()

    device = torch.device(args.device)
    configs = find_bundle("sss") / "configs"
    parser = ConfigParser()
    parser.read_config(str(configs / "inference.json"))
    if args.network == "cpu":
        for k, v in ConfigParser.load_config_file(str(configs / "cpu_args.json")).items():
            if k.startswith("network_def#") or k == "spatial_size":
                parser[k] = v
    if args.size is not None:
        parser["spatial_size"] = args.size
    args.size = int(parser.get_parsed_content("spatial_size"))
    parser["network_def#use_flash_attention"] = args.flash
    network = parser.get_parsed_content("network_def")
    if args.checkpoint:
        load_network_weights(network, args.checkpoint)
    network = network.to(device).eval()
    scheduler = parser.get_parsed_content("scheduler").to(device)
    n_params = sum(q.numel() for q in network.parameters())
    if args.compile:
        network = torch.compile(network)
    kw = {"slice_batch_size": args.batch, "autocast_dtype": "bfloat16" if args.bf16 else None, "noise": args.noise}
    sss = SingleStepInferer(scheduler, timesteps=args.sss_t, **kw)
    ano = IterativeReconstructionInferer(scheduler, noise_level=args.steps, **kw)

    g = torch.Generator().manual_seed(0)
    volume = (torch.rand(1, 1, args.size, args.size, args.slices, generator=g) * 2 - 1).to(device)  # all brain

    with torch.inference_mode():
        t_warm = _time(lambda: sss(volume, network), device, 1)  # compiles, allocates, JIT-builds noise tables
        t_sss = _time(lambda: sss(volume, network), device, args.repeats)
        t_ano = _time(lambda: ano(volume, network), device, 1)
    res = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "network": args.network,
        "checkpoint": args.checkpoint,
        "parameters_M": round(n_params / 1e6, 2),
        "size": args.size,
        "slices": args.slices,
        "batch": args.batch,
        "precision": "bf16 autocast" if args.bf16 else "fp32",
        "compile": args.compile,
        "flash_attention": args.flash,
        "first_call_s": round(t_warm, 3),
        "sss_s_per_volume": round(t_sss, 4),
        "anoddpm_s_per_volume": round(t_ano, 2),
        "anoddpm_steps": args.steps,
        "speedup_sss_over_anoddpm": round(t_ano / t_sss, 1),
        "sss_slices_per_s": round(args.slices / t_sss, 1),
        "anoddpm_slices_per_s": round(args.slices / t_ano, 3),
    }
    print(f"{'':24}{'s/volume':>12}{'slices/s':>12}")
    print(f"{f'SSS (1 pass, t={args.sss_t})':24}{t_sss:>12.3f}{args.slices / t_sss:>12.1f}")
    print(f"{f'AnoDDPM ({args.steps} steps)':24}{t_ano:>12.2f}{args.slices / t_ano:>12.3f}")
    print(f"speed-up SSS / AnoDDPM: {t_ano / t_sss:.1f}x   ({json.dumps({k: res[k] for k in list(res)[:9]})})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=4)


if __name__ == "__main__":
    main()
