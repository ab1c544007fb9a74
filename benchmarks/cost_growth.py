# SPDX-License-Identifier: Apache-2.0
"""How inference cost grows with slice size and batch: seconds per volume and peak memory of every method on CPU.

For each bundle (its CPU recipe's network and inference options, random weights: timings do not depend on them),
slice size (64 / 128 / 256 px) and slices per network call (``slice_batch_size`` 1 / 16 / 64), one fresh process
scores one batch of that many slices and reports the wall time and its peak resident memory. Seconds per volume =
seconds per slice x ``--volume-slices`` (125: the mean brain-slice count of the dev test volumes). Each
configuration runs in its own process (a clean peak-memory reading) under a time limit and a memory cap; one that
runs out is reported as a lower bound, and the larger batches / sizes after it are skipped. Ratios are against SSS
at the same size and batch, all from one run of the script.

    python benchmarks/cost_growth.py --out runs/cost_growth.json        # ~20-30 min on 2 cores
    python benchmarks/cost_growth.py --bundles sss,dtunet --sizes 32 --batches 1,2 --timeout 30   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: the mean number of brain slices of a dev test volume (the evaluations' ``n_slices`` / volumes)
VOLUME_SLICES = 125


def _one(bundle: str, size: int, batch: int, mem_gib: float) -> dict:
    """Run in the child: build, warm up on one slice, then time one call on ``batch`` slices (a line on stdout
    when the timed call starts, so a parent that stops it at the time limit knows how long it had run)."""
    start = time.perf_counter()
    if mem_gib > 0:  # a clean MemoryError instead of the whole machine swapping or the OOM killer
        cap = int(mem_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import torch

    sys.path.insert(0, str(HERE))
    from bench_utils import inference_parts, random_slices, timed

    device = torch.device("cpu")
    parser, network, inferer = inference_parts(bundle, {"spatial_size": size, "slice_batch_size": batch}, device)
    channels = len(parser.get_parsed_content("modalities"))
    x = random_slices(batch, channels, size, device)
    with torch.no_grad():
        inferer.infer(x[:1], network)  # noise tables, lazy allocations
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"call_starts_at": time.perf_counter() - start}), flush=True)
        seconds = timed(lambda: inferer.infer(x, network), device)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "seconds_per_call": seconds,
        "seconds_per_slice": seconds / batch,
        "peak_rss_mib": peak / 1024,
        "peak_rss_growth_mib": (peak - base) / 1024,
        "parameters": int(sum(p.numel() for p in network.parameters())),
        "threads": torch.get_num_threads(),
    }


def _run_child(bundle: str, size: int, batch: int, timeout: float, mem_gib: float) -> dict:
    cmd = [sys.executable, __file__, "--one", bundle, str(size), str(batch), "--mem-gib", str(mem_gib)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
        lines = [json.loads(x) for x in out.splitlines() if x.startswith('{"call_starts_at"')]
        if not lines:  # stopped before the timed call: no bound
            return {"status": "timeout"}
        ran = time.perf_counter() - t0 - lines[0]["call_starts_at"]  # the call ran at least this long
        return {"status": "timeout", "seconds_per_slice_at_least": ran / batch}
    if proc.returncode != 0:
        memory = "MemoryError" in proc.stderr or "can't allocate memory" in proc.stderr or proc.returncode == -9
        tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
        return {"status": "memory" if memory else "error", "error": tail[0][:200]}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["status"] = "ok"
    res["process_seconds"] = time.perf_counter() - t0
    return res


def _cell(r: dict | None, key: str, fmt: str) -> str:
    if r is None:
        return "skipped"
    if r["status"] == "ok":
        return format(r[key], fmt)
    if r["status"] == "timeout":
        bound = r.get("seconds_per_slice_at_least")
        if key != "s_vol" or bound is None:
            return "time limit"
        return f"> {bound * VOLUME_SLICES:.0f} (time limit)"
    return r["status"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundles", default="sss,anoddpm,dtunet,d3ad,anofpdm")
    p.add_argument("--sizes", default="64,128,256")
    p.add_argument("--batches", default="1,16,64")
    p.add_argument("--timeout", type=float, default=90, help="seconds per configuration (its process)")
    p.add_argument("--mem-gib", type=float, default=12, help="address-space cap per configuration (0: none)")
    p.add_argument("--out", help="JSON of every configuration")
    p.add_argument("--table-from", help="print the table of an earlier run's JSON (its --out) and stop")
    p.add_argument("--one", nargs=3, metavar=("BUNDLE", "SIZE", "BATCH"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        res = _one(a.one[0], int(a.one[1]), int(a.one[2]), a.mem_gib)
        print(json.dumps(res))
        return
    bundles = a.bundles.split(",")
    sizes = [int(s) for s in a.sizes.split(",")]
    batches = [int(b) for b in a.batches.split(",")]
    if a.table_from:
        print(_table(json.loads(Path(a.table_from).read_text(encoding="utf-8"))["results"], bundles, sizes, batches, a))
        return
    results: dict[str, dict | None] = {}
    for bundle in bundles:
        stop: set[tuple[int, int]] = set()  # (size, batch) beyond which the method ran out of time or memory
        for size in sizes:
            for batch in batches:
                key = f"{bundle} {size} {batch}"
                if any(size >= s and batch >= b for s, b in stop):
                    results[key] = None
                    continue
                r = _run_child(bundle, size, batch, a.timeout, a.mem_gib)
                results[key] = r
                if r["status"] != "ok":
                    stop.add((size, batch))
                else:
                    r["s_vol"] = r["seconds_per_slice"] * VOLUME_SLICES
                shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
                print(f"{key}: {json.dumps(shown)}", flush=True)
    table = _table(results, bundles, sizes, batches, a)
    print("\n" + table)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({"results": results, "table": table}, indent=1) + "\n", encoding="utf-8")


def _table(results: dict, bundles: list[str], sizes: list[int], batches: list[int], a: argparse.Namespace) -> str:
    lines = [
        f"CPU: {os.cpu_count()} cores; each cell: one process, random weights, the CPU recipe's inference options; "
        f"seconds per volume = seconds per slice x {VOLUME_SLICES} brain slices; time limit {a.timeout:.0f} s and "
        f"address-space cap {a.mem_gib:g} GiB per configuration",
        "",
        "| method | px | slices / call | s / volume | x SSS | peak RSS MiB | RSS growth in the call MiB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for bundle in bundles:
        for size in sizes:
            for batch in batches:
                r = results[f"{bundle} {size} {batch}"]
                ref = results.get(f"sss {size} {batch}")
                ratio = (
                    f"{r['s_vol'] / ref['s_vol']:.1f}"
                    if r and ref and r["status"] == "ok" and ref["status"] == "ok"
                    else "-"
                )
                lines.append(
                    f"| {bundle} | {size} | {batch} | {_cell(r, 's_vol', '.1f')} | {ratio} "
                    f"| {_cell(r, 'peak_rss_mib', '.0f')} | {_cell(r, 'peak_rss_growth_mib', '.0f')} |"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
