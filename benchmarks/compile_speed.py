# SPDX-License-Identifier: Apache-2.0
"""``torch.compile`` of each bundle's CPU-recipe network for inference: compile time against the time it saves.

For each bundle whose inference is one network's passes (the diffusion UNets of SSS/AnoDDPM and AnoFPDM, DTU-Net,
the DAE's UNet), random weights, the slices the inferers pass at once on a CPU (``CPU_NETWORK_BATCH``):

* the first call of ``torch.compile(network)`` (Inductor, the default mode): the compile time, and the first call at
  another batch size (a volume's last part is smaller: Dynamo compiles again, with dynamic shapes);
* one pass eager and compiled, alternately, median of ``--repeats``; the largest difference of the outputs;
* break-even: how many passes the compile time buys back, against the passes of one 155-slice volume
  (``--passes``, from ``inference_floor.py``).

    python benchmarks/compile_speed.py                       # every such bundle, 2 threads
    python benchmarks/compile_speed.py --bundles sss --repeats 9
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.memory_format import _inputs, _network  # noqa: E402
from monai_adiff.inferers.base import CPU_NETWORK_BATCH  # noqa: E402

#: network passes of one 155-slice BraTS volume with the CPU recipe (``inference_floor.py``'s speed records)
PASSES = {"sss": 40, "anoddpm": 185, "anofpdm": 60, "dtunet": 185, "dae": 5}
BUNDLES = ("sss", "anofpdm", "dtunet", "dae")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(bundle: str, repeats: int) -> dict[str, float]:
    """Seconds: ``compile`` (first call), ``recompile`` (first call at another batch), ``eager`` and ``compiled``
    (one pass, median), and ``diff`` (max abs output difference)."""
    import torch._dynamo

    torch._dynamo.reset()
    network, _, size, channels = _network(bundle)
    network.eval()
    x, kw = _inputs(network, CPU_NETWORK_BATCH, channels, size, seed=1)
    y, ykw = _inputs(network, CPU_NETWORK_BATCH // 2 + 1, channels, size, seed=2)
    compiled = torch.compile(network)
    with torch.no_grad():
        first = _timed(lambda: compiled(x, **kw))
        second = _timed(lambda: compiled(y, **ykw))
        diff = float((compiled(x, **kw) - network(x, **kw)).abs().max())
        network(x, **kw)
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        for _ in range(repeats):
            times["eager"].append(_timed(lambda: network(x, **kw)))
            times["compiled"].append(_timed(lambda: compiled(x, **kw)))
    return {
        "compile": first,
        "recompile": second,
        "eager": statistics.median(times["eager"]),
        "compiled": statistics.median(times["compiled"]),
        "diff": diff,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundles", nargs="+", default=list(BUNDLES))
    p.add_argument("--repeats", type=int, default=5, help="timed passes each way (median)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for bundle in args.bundles:
        r = measure(bundle, args.repeats)
        rows.append((bundle, r))
        print(bundle, {k: round(v, 4) for k, v in r.items()}, flush=True)
    print()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; one pass of {CPU_NETWORK_BATCH} slices")
    print(
        "| bundle | eager pass (s) | compiled pass (s) | speed-up | compile (s) | again, other batch (s) | "
        "break-even passes | passes per volume | max abs difference |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for bundle, r in rows:
        saved = r["eager"] - r["compiled"]
        cost = r["compile"] + r["recompile"]
        even = f"{cost / saved:.0f}" if saved > 0 else "never"
        print(
            f"| {bundle} | {r['eager']:.3f} | {r['compiled']:.3f} | {r['eager'] / r['compiled']:.2f} | "
            f"{r['compile']:.1f} | {r['recompile']:.1f} | {even} | {PASSES.get(bundle, '-')} | {r['diff']:.1e} |"
        )


if __name__ == "__main__":
    main()
