# SPDX-License-Identifier: Apache-2.0
"""Interrupted work: a training killed with SIGKILL mid-run resumes to the same final iteration; an inference
killed mid-way leaves no half-written output under the final names, and a rerun completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from monai_adiff.bundle import bundle_config_files, cpu_overrides, find_bundle
from monai_adiff.bundle.inference_run import RUN_RECORD
from monai_adiff.data.synthetic import make_demo_dataset
from monai_adiff.engines import latest_checkpoint

pytestmark = pytest.mark.slow

EPOCHS = 4


def _train_cmd(args_file: Path) -> list[str]:
    bundle = find_bundle("sss")
    return [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        str(bundle_config_files("sss", "training")),
        "--meta_file",
        str(bundle / "configs" / "metadata.json"),
        "--logging_file",
        str(bundle / "configs" / "logging.conf"),
        "--args_file",
        str(args_file),
    ]


def test_training_killed_mid_epoch_resumes_to_the_same_final_iteration(tmp_path):
    make_demo_dataset(tmp_path / "data", cases=3, seed=0, shape=(40, 40, 24), lesion_fraction=0.34)
    ckpt_dir = tmp_path / "run" / "models"
    args = {
        **cpu_overrides(spatial_size=32, channels=(8, 16, 16)),
        "bundle_root": str(find_bundle("sss")),
        "dataset_dir": str(tmp_path / "data"),
        "val_fraction": 0.34,
        "test_fraction": 0.0,
        "ckpt_dir": str(ckpt_dir),
        "max_epochs": EPOCHS,
        "val_interval": EPOCHS,
        "batch_size": 2,
        "num_workers": 0,
    }
    (tmp_path / "args.json").write_text(json.dumps(args), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        _train_cmd(tmp_path / "args.json"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 180
    while not (ckpt_dir / "checkpoint_epoch=1.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    time.sleep(0.3)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = latest_checkpoint(str(ckpt_dir))
    assert killed_at is not None and not killed_at.endswith(f"epoch={EPOCHS}.pt")
    # the same command again: resumes from the last checkpoint and finishes the schedule
    done = subprocess.run(
        _train_cmd(tmp_path / "args.json"), env=env, capture_output=True, text=True, encoding="utf-8", timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # the checkpoint is loaded before the run starts, so Ignite's first line already says where it resumes
    resumed_epoch = int(Path(killed_at).stem.split("=")[1])
    assert (
        f"Engine run resuming from iteration {resumed_epoch * 13}, epoch {resumed_epoch}" in done.stdout + done.stderr
    )
    final = torch.load(latest_checkpoint(str(ckpt_dir)), weights_only=True)
    trainer = final["trainer"]
    assert trainer["max_epochs"] == EPOCHS and trainer["iteration"] == EPOCHS * trainer["epoch_length"]
    # a consistent folder: one periodic checkpoint (the last), the final model with its record
    assert sorted(p.name for p in ckpt_dir.glob("*.pt")) == [f"checkpoint_epoch={EPOCHS}.pt", "model.pt"]
    model = torch.load(ckpt_dir / "model.pt", weights_only=True)
    assert set(model["model"]) == set(final["ema"]) and model["info"]["config"]["spatial_size"] == 32
    # TensorBoard logs go beside the checkpoints, not into the bundle
    assert any((tmp_path / "run" / "eval").glob("events.out.tfevents.*"))


def test_inference_killed_mid_way_leaves_no_partial_output(tmp_path):
    from tests.conftest import save_nifti
    from tests.reliability.conftest import FAST, TINY_NET, save_checkpoint
    from tests.reliability.test_corpus import brain_volume

    ckpt = save_checkpoint(tmp_path / "model.pt", "sss", TINY_NET)
    vols = [save_nifti(tmp_path / "in" / f"v{i}.nii.gz", brain_volume(seed=i)[0]) for i in range(6)]
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "monai_adiff.cli", "infer", "sss", *map(str, vols), "--checkpoint", str(ckpt)]
    cmd += ["--out", str(out), "--no-overlay"] + [f"--set={k}={v}" for k, v in FAST.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(out.glob("v*_anomaly_map.nii.gz")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # every file under a final name is complete (loads); temporary files are hidden dot-files
    import nibabel as nib

    for f in out.glob("[!.]*.nii.gz"):
        assert nib.load(f).get_fdata().shape == (28, 28, 12), f
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # the rerun also sweeps the hidden temporaries the killed run left (the folder's run record stays)
    names = sorted(p.name for p in out.iterdir() if p.name != RUN_RECORD)
    assert names == sorted(f"v{i}_{s}.nii.gz" for i in range(6) for s in ("anomaly_map", "anomaly_mask"))


def test_two_processes_writing_one_output_folder(tmp_path):
    """Two ``monai-adiff infer`` runs into one folder at once (one case in both): every file complete, none lost."""
    import nibabel as nib

    from tests.conftest import save_nifti
    from tests.reliability.conftest import FAST, TINY_NET, save_checkpoint
    from tests.reliability.test_corpus import brain_volume

    ckpt = save_checkpoint(tmp_path / "model.pt", "sss", TINY_NET)
    vols = [save_nifti(tmp_path / "in" / f"v{i}.nii.gz", brain_volume(seed=i)[0]) for i in range(5)]
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cmd(paths):
        c = [sys.executable, "-m", "monai_adiff.cli", "infer", "sss", *map(str, paths), "--checkpoint", str(ckpt)]
        return c + ["--out", str(out), "--no-overlay"] + [f"--set={k}={v}" for k, v in FAST.items()]

    procs = [
        subprocess.Popen(cmd(vols[:3]), env=env, stderr=subprocess.PIPE),
        subprocess.Popen(cmd(vols[2:]), env=env, stderr=subprocess.PIPE),
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    names = sorted(p.name for p in out.iterdir() if p.name != RUN_RECORD)
    assert names == sorted(f"v{i}_{s}.nii.gz" for i in range(5) for s in ("anomaly_map", "anomaly_mask"))
    for f in out.glob("*.nii.gz"):
        assert nib.load(f).get_fdata().shape == (28, 28, 12)


def test_ctrl_c_names_what_was_written_and_a_rerun_finishes_the_rest(tmp_path):
    """SIGINT mid-way: exit 130, one line naming the cases written and those left, no traceback; the same command
    then computes only the cases left."""
    from tests.conftest import save_nifti
    from tests.reliability.conftest import TINY_NET, save_checkpoint
    from tests.reliability.test_corpus import brain_volume

    ckpt = save_checkpoint(tmp_path / "model.pt", "sss", TINY_NET)
    n = 6
    vols = [save_nifti(tmp_path / "in" / f"v{i}.nii.gz", brain_volume(seed=i)[0]) for i in range(n)]
    out = tmp_path / "out"
    # the console script a user runs (the one Ctrl-C reaches)
    script = str(Path(sys.executable).with_name("monai-adiff"))
    cmd = [script, "infer", "sss", *map(str, vols), "--checkpoint", str(ckpt), "--out", str(out), "--no-overlay"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # a terminal's foreground process: SIGINT not ignored (a test run started in the background, e.g. `nohup ... &`,
    # passes an ignored SIGINT on, and Python then installs no KeyboardInterrupt handler)
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while not list(out.glob("v*_anomaly_mask.nii.gz")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.strip().splitlines() if line]
    assert proc.returncode == 130 and len(lines) == 1, err[-2000:]  # no traceback, no engine error line
    assert lines[0].startswith("interrupted: ") and "left: " in lines[0]
    written = lines[0].split("written (", 1)[1].split(")", 1)[0].split(", ")
    assert written and all((out / f"{c}_anomaly_map.nii.gz").is_file() for c in written)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(written)} case(s) already written there, skipped" in done.stderr
    assert len(list(out.glob("v*_anomaly_mask.nii.gz"))) == n
