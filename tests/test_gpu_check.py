# SPDX-License-Identifier: Apache-2.0
"""``benchmarks/gpu_check.sh --dry``: every stage of the GPU check runs on the CPU at a tiny size, from a cache made
of phantoms, and reports a JSON result per stage; the exit status says whether every stage passed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry(tmp_path):
    # self-contained: without --cache the dry run makes phantoms and a 32 px cache of them in its output folder;
    # the script's python3 is this interpreter (a venv's python run without activating the venv included)
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((tmp_path / "out" / "gpu_check.json").read_text(encoding="utf-8"))
    assert list(res) == ["env", "speed_fp32", "noise", "anofpdm", "sss_training"]
    assert all(r["status"] == "ok" for r in res.values()), {k: r.get("error") for k, r in res.items()}
    # incremental: one JSON line per stage on stdout, as each finishes
    assert (
        sum(
            line.startswith(('{"env"', '{"speed', '{"noise', '{"anofpdm', '{"sss')) for line in proc.stdout.splitlines()
        )
        == 5
    )
    assert (tmp_path / "out" / "phantom_cache.npz").is_file()
    sss = res["sss_training"]
    assert sss["iterations"] >= 1 and len(sss["test_patients"]) >= 1
    for name in ("sss", "flair_baseline"):
        assert 0 <= sss[name]["unhealthy"]["auprc"] <= 1
    assert res["anofpdm"]["seconds_per_volume"] > 0


def test_gpu_check_refuses_cpu_without_dry(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    if proc.returncode == 0:  # a CUDA machine runs the real check
        pytest.skip("CUDA available")
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
