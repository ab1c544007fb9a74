# SPDX-License-Identifier: Apache-2.0
"""Peak memory of ``monai-adiff infer`` over 1 vs N volumes: inference must stream (one volume in memory at a time).

Each run is a fresh ``monai-adiff infer sss`` process (a tiny random-weight SSS network saved as training saves one,
phantom volumes of the demo generator); its peak resident memory comes from ``getrusage(RUSAGE_CHILDREN)`` after it
exits. Prints one row per volume count and the ratio against one volume; a streaming pipeline stays near 1.0.

    python benchmarks/streaming.py [--volumes 1,20] [--shape 96 96 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _peak_rss_mib(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` in a fresh process (forked from a fresh helper, so earlier runs do not count); its peak RSS."""
    probe = (
        "import resource, subprocess, sys, json, time; t = time.perf_counter(); "
        f"r = subprocess.run({cmd!r}, stdout=subprocess.DEVNULL); "
        "print(json.dumps([r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "
        "time.perf_counter() - t]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, encoding="utf-8", check=True)
    code, mib, seconds = json.loads(out.stdout.strip().splitlines()[-1])
    if code != 0:
        raise SystemExit(f"infer failed (exit {code}): {' '.join(cmd)}")
    return mib, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volumes", default="1,20", help="volume counts, comma-separated")
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 96, 64), help="phantom volume shape")
    args = parser.parse_args()
    from monai_adiff.data.synthetic import make_demo_dataset
    from tests.reliability.conftest import FAST, TINY_NET, save_checkpoint

    counts = [int(c) for c in args.volumes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        make_demo_dataset(tmp_path / "data", cases=max(counts), seed=0, shape=tuple(args.shape))
        flairs = sorted(str(p) for p in (tmp_path / "data").glob("*/*_flair.nii.gz"))
        ckpt = save_checkpoint(tmp_path / "model.pt", "sss", TINY_NET)
        rows = []
        for n in counts:
            cmd = [sys.executable, "-m", "monai_adiff.cli", "infer", "sss", *flairs[:n], "--checkpoint", str(ckpt)]
            cmd += ["--out", str(tmp_path / f"out{n}"), "--no-overlay"] + [f"--set={k}={v}" for k, v in FAST.items()]
            mib, seconds = _peak_rss_mib(cmd)
            rows.append((n, mib, seconds))
    base = rows[0][1]
    print(f"monai-adiff infer sss, tiny network, phantom volumes {tuple(args.shape)}, torch threads {os.cpu_count()}")
    print(f"{'volumes':>8} {'peak RSS MiB':>13} {'x 1 volume':>11} {'seconds':>8}")
    for n, mib, seconds in rows:
        print(f"{n:>8} {mib:>13.0f} {mib / base:>11.2f} {seconds:>8.1f}")


if __name__ == "__main__":
    main()
