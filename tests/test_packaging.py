# SPDX-License-Identifier: Apache-2.0
"""A built wheel ships the bundles: every file a bundle run reads is package data, found with importlib.resources.

Oracle: the checkout's own bundle files, compared with the wheel's listing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest

import monai_adiff
from monai_adiff.bundle import BUNDLES_DIR

pytestmark = pytest.mark.slow


def test_the_wheel_ships_every_bundle_file(tmp_path):
    # built from a clean copy: an in-tree build/ folder could hold files the checkout no longer has
    root = tmp_path / "src"
    skip = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "runs", "*.egg-info", "__pycache__", ".*cache")
    shutil.copytree(BUNDLES_DIR.parent, root, symlinks=True, ignore=skip)
    cmd = [sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--no-build-isolation", "-q", "-w"]
    done = subprocess.run([*cmd, str(tmp_path / "dist")], capture_output=True, text=True, encoding="utf-8")
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("monai_adiff-*.whl")
    assert wheel.name.startswith(f"monai_adiff-{monai_adiff.__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = [
        p
        for p in BUNDLES_DIR.rglob("*")
        if p.is_file() and not {"models", "eval", "runs"} & set(p.relative_to(BUNDLES_DIR).parts)
    ]
    assert wanted
    missing = [
        str(p.relative_to(BUNDLES_DIR))
        for p in wanted
        if f"monai_adiff/bundles/{p.relative_to(BUNDLES_DIR)}" not in names
    ]
    assert not missing, f"not in the wheel: {missing}"
