# SPDX-License-Identifier: Apache-2.0
"""``monai-adiff export-bundle``: a bundle folder that serves one checkpoint with no args file (MONAI Label, zoo).

Oracle: the exported bundle, run with no overrides at all, writes the same map and mask as ``monai-adiff infer`` with
the original bundle, the checkpoint and the same overrides.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_adiff.bundle import run_bundle
from monai_adiff.cli import main
from tests.conftest import save_nifti
from tests.reliability.conftest import FAST, TINY_NET, save_checkpoint
from tests.reliability.test_corpus import brain_volume, infer


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", "sss", TINY_NET)
    (path.parent / "healthy_threshold.json").write_text(json.dumps({"method": {"threshold": 0.5}}), encoding="utf-8")
    return path


def test_export_serves_the_checkpoint_without_overrides(ckpt, tmp_path):
    args = tmp_path / "args.json"
    args.write_text(json.dumps(FAST), encoding="utf-8")
    out = tmp_path / "exported"
    assert main(["export-bundle", "sss", "--checkpoint", str(ckpt), "--out", str(out), "--args-file", str(args)]) == 0
    inf = json.loads((out / "configs" / "inference.json").read_text(encoding="utf-8"))
    # the record (network size, slice size, recipe) and the args file are in the configs, train.json's too
    assert inf["network_def"]["channels"] == list(TINY_NET["network_def#channels"]) and inf["spatial_size"] == 32
    assert inf["sss_timesteps"] == FAST["sss_timesteps"] and inf["threshold"] == FAST["threshold"]
    train = json.loads((out / "configs" / "train.json").read_text(encoding="utf-8"))
    assert train["network_def"]["channels"] == inf["network_def"]["channels"] and train["sss_timesteps"] == 100
    assert not (out / "configs" / "cpu_args.json").exists() and not (out / "method.json").exists()
    saved = torch.load(out / "models" / "model.pt", weights_only=True)
    original = torch.load(ckpt, weights_only=True)
    assert saved["info"] == original["info"]
    assert all(torch.equal(saved["model"][k], v) for k, v in original["model"].items())
    assert (out / "models" / "healthy_threshold.json").is_file()  # the sidecar the recipe's threshold_file reads
    assert json.loads((out / "models" / "export.json").read_text(encoding="utf-8"))["overrides"]["sss_timesteps"] == 100

    vol, _ = brain_volume()
    path = save_nifti(tmp_path / "in" / "plain.nii.gz", vol)
    code, err, ref = infer(tmp_path, ckpt, path)
    assert code == 0, err
    item = {"case": "plain", "image": str(path)}
    run_bundle(out, "inference", {"data": [item], "output_dir": str(tmp_path / "exp_out")}, logging_file=False)
    for suffix in ("anomaly_map", "anomaly_mask"):
        a = nib.load(ref / f"plain_{suffix}.nii.gz")
        b = nib.load(tmp_path / "exp_out" / f"plain_{suffix}.nii.gz")
        np.testing.assert_allclose(np.asarray(b.dataobj), np.asarray(a.dataobj), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b.affine, a.affine)


def test_export_refuses_bad_requests(ckpt, tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("keep", encoding="utf-8")
    assert main(["export-bundle", "sss", "--checkpoint", str(ckpt), "--out", str(busy)]) == 1
    assert "not empty" in capsys.readouterr().err and (busy / "x").read_text(encoding="utf-8") == "keep"
    assert main(["export-bundle", "sss", "--checkpoint", str(ckpt), "--out", str(tmp_path / "a"), "--set", "nope=1"])
    assert "match no config id" in capsys.readouterr().err and not (tmp_path / "a").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert main(["export-bundle", "sss", "--checkpoint", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "b")])
    assert "junk.pt" in capsys.readouterr().err
