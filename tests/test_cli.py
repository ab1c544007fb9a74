# SPDX-License-Identifier: Apache-2.0
"""The command line: make-data -> datalist (the foundation acceptance), and infer's input checks."""

from __future__ import annotations

import json

import numpy as np
import torch

from monai_adiff.cli import EXIT_PARTIAL, main
from tests.conftest import save_nifti


def test_make_data_then_datalist(tmp_path, capsys):
    demo = tmp_path / "demo"
    assert main(["make-data", "--out", str(demo), "--cases", "4", "--seed", "0", "--shape", "48", "48", "32"]) == 0
    assert "wrote 4 cases" in capsys.readouterr().out
    out = demo / "datalist.json"
    assert main(["datalist", str(demo), "--out", str(out), "--summary", "--test-fraction", "0.25"]) == 0
    printed = capsys.readouterr().out
    assert "Demo_000" in printed and "healthy brain" in printed and "total" in printed
    content = json.loads(out.read_text(encoding="utf-8"))
    table = content["slice_table"]
    assert any(r["label"] == 1 for r in table), "no tumour slice"
    assert any(r["brain"] and r["label"] == 0 for r in table), "no healthy brain slice"
    assert len(content["test"]) == 1 and len(content["training"]) == 3
    assert (
        (demo / "datalist_slices.csv")
        .read_text(encoding="utf-8")
        .startswith("case,slice,brain_area,tumour_area,brain,label")
    )
    # a second make-data into the same folder refuses to overwrite
    assert main(["make-data", "--out", str(demo), "--cases", "1"]) == 1
    assert "already exist" in capsys.readouterr().err


def test_datalist_reports_bad_case(tmp_path, capsys):
    demo = tmp_path / "demo"
    main(["make-data", "--out", str(demo), "--cases", "2", "--shape", "32", "32", "16"])
    (demo / "Demo_001" / "Demo_001_t2.nii.gz").write_bytes(b"broken")
    # the good case is summarised, the bad one reported once, and the exit status says a case failed
    assert main(["datalist", str(demo), "--summary"]) == EXIT_PARTIAL
    captured = capsys.readouterr()
    assert "Demo_000" in captured.out and "Demo_001" not in captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Demo_001_t2.nii.gz: cannot be read as NIfTI" in lines[0] and "not a gzip" in lines[0]


def test_infer_rejects_bad_inputs(tmp_path, capsys):
    good_dir = tmp_path / "in"
    bad = save_nifti(good_dir / "flat.nii.gz", np.ones((8, 8), np.float32))
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"")
    # an unreadable checkpoint is refused before any volume is read
    code = main(["infer", "sss", str(bad), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and err.strip() == f"error: {ckpt}: checkpoint file is empty"
    torch.save({"model": {}}, ckpt)
    # every input bad: a clean one-line error naming the file
    code = main(["infer", "sss", str(bad), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and "flat.nii.gz" in err and "expected a 3D volume" in err
    # the output folder may not be an input folder
    vol = save_nifti(good_dir / "vol.nii.gz", np.ones((8, 8, 4), np.float32))
    code = main(["infer", "sss", str(vol), "--checkpoint", str(ckpt), "--out", str(good_dir)])
    assert code == 1 and "output folder is an input folder" in capsys.readouterr().err


def test_datalist_image_labels_only(tmp_path):
    demo = tmp_path / "demo"
    main(["make-data", "--out", str(demo), "--cases", "2", "--shape", "32", "32", "16"])
    out = tmp_path / "weak.json"
    assert main(["datalist", str(demo), "--out", str(out), "--image-labels-only"]) == 0
    content = json.loads(out.read_text(encoding="utf-8"))
    for item in content["training"]:
        assert "label" not in item and len(item["slice_labels"]) == 16
        rows = [r for r in content["slice_table"] if r["case"] == item["case"]]
        assert item["slice_labels"] == [r["label"] for r in sorted(rows, key=lambda r: r["slice"])]
    assert sum(sum(it["slice_labels"]) for it in content["training"]) > 0
