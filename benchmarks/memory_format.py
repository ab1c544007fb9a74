# SPDX-License-Identifier: Apache-2.0
"""Channels-last against the default memory format: each bundle's CPU-recipe network, training and inference.

For each bundle whose training is one network's forward and backward (the diffusion UNets of SSS/AnoDDPM and
AnoFPDM, DTU-Net, the DAE's UNet), with random weights and slices at the CPU recipe's slice size:

* a training step on a batch of the recipe's size: forward, mean squared error, backward, AdamW step;
* an inference pass (no gradients) on the slices the inferers pass at once on a CPU (``CPU_NETWORK_BATCH``).

Each is timed with the network and its input in the default format and in channels-last, alternately (so drift in
the machine's load hits both alike), median of ``--repeats``. Printed: seconds each way, their ratio, and the largest
difference of the outputs (the same weights and batch). ``inference_floor.py --channels-last`` measures the
inference passes a real ``monai-adiff infer`` makes, D3AD's included.

    python benchmarks/memory_format.py                       # every such bundle, 2 threads
    python benchmarks/memory_format.py --bundles sss --repeats 9
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_utils import cpu_training_parser  # noqa: E402
from monai_adiff.inferers.base import CPU_NETWORK_BATCH  # noqa: E402

#: bundles whose training step is one network's forward and backward (D3AD trains several parts in stages)
BUNDLES = ("sss", "anofpdm", "dtunet", "dae")


def _network(bundle: str) -> tuple[torch.nn.Module, int, int, int]:
    """(network, batch size, slice size, channels) of ``bundle``'s CPU recipe, random weights."""
    parser = cpu_training_parser(bundle)
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    size, batch = int(parser.get_parsed_content("spatial_size")), int(parser.get_parsed_content("batch_size"))
    return network, batch, size, int(network.in_channels)


def _step(network: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, kwargs: dict) -> torch.Tensor:
    optimizer.zero_grad(set_to_none=True)
    out = network(x, **kwargs)
    loss = torch.nn.functional.mse_loss(out, torch.zeros_like(out))
    loss.backward()
    optimizer.step()
    return out.detach()


def _inputs(network: torch.nn.Module, n: int, channels: int, size: int, seed: int) -> tuple[torch.Tensor, dict]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size, size, generator=g) * 2 - 1
    kwargs: dict = {}
    if "timesteps" in network.forward.__code__.co_varnames:
        kwargs["timesteps"] = torch.randint(0, 1000, (n,), generator=g)
    if getattr(network, "num_class_embeds", None):
        kwargs["class_labels"] = torch.randint(0, int(network.num_class_embeds), (n,), generator=g)
    return x, kwargs


def _alternate(calls: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each call, the calls alternated ``repeats`` times after one warm-up each."""
    for fn in calls.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeats):
        for k, fn in calls.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _measure(bundle: str, repeats: int) -> tuple[int, dict[str, float], dict[str, float], float]:
    """(training batch, training seconds, inference seconds, max abs output difference) of ``bundle``."""
    network, batch, size, channels = _network(bundle)
    fast = copy.deepcopy(network).to(memory_format=torch.channels_last)
    # training: the same weights and batch each way; the outputs of the first step compared
    x, kwargs = _inputs(network, batch, channels, size, seed=0)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(network.parameters(), lr=1e-4)
    opt_cl = torch.optim.AdamW(fast.parameters(), lr=1e-4)
    diff = float((_step(network, opt, x, kwargs) - _step(fast, opt_cl, x_cl, kwargs)).abs().max())
    train = _alternate(
        {"default": lambda: _step(network, opt, x, kwargs), "cl": lambda: _step(fast, opt_cl, x_cl, kwargs)}, repeats
    )
    # inference: one CPU pass of the inferers
    network.eval()
    fast.eval()
    y, ykw = _inputs(network, CPU_NETWORK_BATCH, channels, size, seed=1)
    y_cl = y.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        diff = max(diff, float((network(y, **ykw) - fast(y_cl, **ykw)).abs().max()))
        infer = _alternate({"default": lambda: network(y, **ykw), "cl": lambda: fast(y_cl, **ykw)}, repeats)
    return batch, train, infer, diff


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundles", nargs="+", default=list(BUNDLES))
    p.add_argument("--repeats", type=int, default=5, help="timed calls per format (median)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for bundle in args.bundles:
        batch, train, infer, diff = _measure(bundle, args.repeats)
        rows.append((bundle, batch, train, infer, diff))
        print(f"{bundle}: training {train}, inference {infer}, max abs difference {diff:.1e}", flush=True)
    print()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; seconds, median of {args.repeats}")
    print(
        "| bundle | training step (batch) | channels-last | speed-up | inference pass (batch "
        f"{CPU_NETWORK_BATCH}) | channels-last | speed-up | max abs output difference |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for bundle, batch, train, infer, diff in rows:
        t, i = train["default"] / train["cl"], infer["default"] / infer["cl"]
        print(
            f"| {bundle} | {train['default']:.3f} ({batch}) | {train['cl']:.3f} | {t:.2f} | {infer['default']:.3f} | "
            f"{infer['cl']:.3f} | {i:.2f} | {diff:.1e} |"
        )


if __name__ == "__main__":
    main()
