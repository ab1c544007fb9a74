# SPDX-License-Identifier: Apache-2.0
"""Atomic writes: the target appears whole or not at all, and temporaries of killed writers are swept."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from monai_adiff.utils import atomic_write, atomic_write_text


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_failed_write_keeps_the_previous_version_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")

    def _fail(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, _fail)
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_next_write_removes_temporaries_of_dead_writers_only(tmp_path):
    host = socket.gethostname()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead_tmp = tmp_path / f".m.nii.gz.{host}.{_dead_pid()}.abc123.tmp.nii.gz"
        live_tmp = tmp_path / f".m.nii.gz.{host}.{live.pid}.def456.tmp.nii.gz"
        other_host = tmp_path / f".m.nii.gz.{host}-elsewhere.{_dead_pid()}.x.tmp.nii.gz"
        other_name = tmp_path / f".n.nii.gz.{host}.{_dead_pid()}.x.tmp.nii.gz"
        for p in (dead_tmp, live_tmp, other_host, other_name):
            p.write_bytes(b"")
        atomic_write(tmp_path / "m.nii.gz", lambda tmp: open(tmp, "wb").close(), suffix=".nii.gz")
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == sorted(["m.nii.gz", live_tmp.name, other_host.name, other_name.name])
    finally:
        live.kill()
        live.wait()
    assert os.path.exists(tmp_path / "m.nii.gz")
