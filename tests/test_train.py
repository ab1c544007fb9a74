# SPDX-License-Identifier: Apache-2.0
"""``monai-adiff train``: from a BraTS-style folder to a model folder in one command, a model that describes its own
inference, fitted files tied to their checkpoint, and the one-line refusals before any training.

Oracles: the CPU recipe's args file (what a user had to pass before): a model trained with the recipe gives the same
map with and without it; the SHA-256 of the files themselves; the config files' own values.
"""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_adiff.bundle import BUNDLES_DIR, resolved_value, run_bundle
from monai_adiff.cli import main
from monai_adiff.data import write_datalist
from monai_adiff.data.synthetic import make_demo_dataset

SHAPE = (40, 36, 20)
CPU_ARGS = BUNDLES_DIR / "sss" / "configs" / "cpu_args.json"


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("ph")
    make_demo_dataset(root, cases=6, seed=0, shape=SHAPE)
    return root


@pytest.fixture(scope="module")
def model(phantoms, tmp_path_factory):
    """``monai-adiff train sss ph --recipe cpu --out m --set max_epochs=1``: the acceptance command."""
    out = tmp_path_factory.mktemp("m") / "m"
    assert main(["train", "sss", str(phantoms), "--recipe", "cpu", "--out", str(out), "--set", "max_epochs=1"]) == 0
    return out


def _map(folder, case):
    return np.asarray(nib.load(folder / f"{case}_anomaly_map.nii.gz").dataobj)


@pytest.mark.slow
def test_train_leaves_a_self_describing_model_folder(model, phantoms, tmp_path, capsys):
    names = {p.name for p in model.iterdir()}
    assert {"model.pt", "healthy_threshold.json", "summary.json", "train.log", "training"} <= names
    summary = json.loads((model / "summary.json").read_text(encoding="utf-8"))
    assert summary["bundle"] == "sss" and set(summary["stages"]) == {"training", "healthy_threshold"}
    assert summary["config"]["recipe"] == "cpu" and summary["config"]["set"] == {"max_epochs": 1}
    assert summary["command"].startswith("monai-adiff train sss") and summary["stages"]["training"]["minutes"] >= 0
    # the checkpoint records the recipe's inference settings (the values of the CPU recipe's args file)
    recipe = torch.load(model / "model.pt", weights_only=True)["info"]["recipe"]
    cpu = json.loads(CPU_ARGS.read_text(encoding="utf-8"))
    for key in ("sss_timesteps", "num_samples", "aggregate", "positive_residual", "map_median_kernel"):
        assert recipe[key] == cpu[key], key
    assert recipe["recipe_name"] == "cpu" and recipe["use_healthy_threshold"] is True
    # the threshold file names the checkpoint it was fitted on
    threshold = json.loads((model / "healthy_threshold.json").read_text(encoding="utf-8"))
    assert threshold["checkpoint"]["sha256"] == summary["model"]["sha256"]

    # the same map with and without the recipe's args file, and through the model-folder form
    flair = phantoms / "Demo_002" / "Demo_002_flair.nii.gz"
    runs = {
        "plain": ["infer", "sss", str(flair), "--checkpoint", str(model / "model.pt")],
        "args": ["infer", "sss", str(flair), "--checkpoint", str(model / "model.pt"), "--args-file", str(CPU_ARGS)],
        "folder": ["infer", str(model), str(flair)],
    }
    for name, args in runs.items():
        assert main([*args, "--out", str(tmp_path / name), "--no-overlay"]) == 0, name
    ref = _map(tmp_path / "args", "Demo_002")
    assert ref.max() > 0
    for name in ("plain", "folder"):
        np.testing.assert_array_equal(_map(tmp_path / name, "Demo_002"), ref)
        np.testing.assert_array_equal(
            np.asarray(nib.load(tmp_path / name / "Demo_002_anomaly_mask.nii.gz").dataobj),
            np.asarray(nib.load(tmp_path / "args" / "Demo_002_anomaly_mask.nii.gz").dataobj),
        )
    # python -m monai.bundle run inference --ckpt_path model.pt, with no args file: the same map
    item = {"case": "Demo_002", "image": str(flair)}
    overrides = {"data": [item], "ckpt_path": str(model / "model.pt"), "output_dir": str(tmp_path / "bundle")}
    run_bundle("sss", "inference", {**overrides, "save_overlay": False}, logging_file=False)
    np.testing.assert_array_equal(_map(tmp_path / "bundle", "Demo_002"), ref)

    # the same command resumes: every stage is skipped
    capsys.readouterr()
    assert main(["train", "sss", str(phantoms), "--recipe", "cpu", "--out", str(model), "--set", "max_epochs=1"]) == 0
    assert capsys.readouterr().out.count("skipped") == 2
    # another configuration into the same folder is refused before anything runs
    code = main(["train", "sss", str(phantoms), "--out", str(model), "--set", "max_epochs=2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "another configuration" in err[0] and "max_epochs" in err[0]


@pytest.mark.slow
def test_a_threshold_fitted_on_another_checkpoint_is_refused(model, phantoms, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(model, other)
    ckpt = torch.load(other / "model.pt", weights_only=True)
    ckpt["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, other / "model.pt")  # a retrained model beside the first model's threshold file
    flair = phantoms / "Demo_002" / "Demo_002_flair.nii.gz"
    code = main(["infer", str(other), str(flair), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "healthy_threshold.json: was fitted on another checkpoint" in err[0] and str(other / "model.pt") in err[0]
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.nii.gz"))


def test_bad_training_data_is_refused_before_training(tmp_path, capsys):
    def run(data, *extra, bundle="sss"):
        code = main(["train", bundle, str(data), "--out", str(tmp_path / "m"), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1, err
        assert not (tmp_path / "m" / "model.pt").exists()
        return err[0]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no case folders" in run(empty)
    data = tmp_path / "ph"
    make_demo_dataset(data, cases=4, seed=1, shape=(32, 32, 16))
    (data / "Demo_003" / "Demo_003_t1.nii.gz").unlink()
    line = run(data, bundle="anofpdm")  # AnoFPDM needs all four modalities
    assert "Demo_003" in line and "missing modality 't1'" in line
    # no validation patient: the label-free threshold needs one
    assert "no validation case" in run(data, "--val-fraction", "0")
    # a datalist whose training slices all carry tumour labels: nothing to train an unsupervised model on
    cases = [
        {"case": c, "flair": str(data / c / f"{c}_flair.nii.gz"), "slice_labels": [1] * 16}
        for c in ("Demo_000", "Demo_001")
    ]
    val = [{**cases[0], "case": "v", "slice_labels": [0] * 16}]
    write_datalist(tmp_path / "dl.json", {"training": cases, "validation": val})
    assert "no tumour-free brain slice in the 2 training case(s)" in run(tmp_path / "dl.json")
    # an --out that is a file, or a folder of other files
    (tmp_path / "file").write_text("x", encoding="utf-8")
    code = main(["train", "sss", str(data), "--out", str(tmp_path / "file")])
    assert code == 1 and "not a folder" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep", encoding="utf-8")
    code = main(["train", "sss", str(data), "--out", str(busy)])
    assert code == 1 and "not a monai-adiff model folder" in capsys.readouterr().err
    assert (busy / "notes.txt").read_text(encoding="utf-8") == "keep"


def test_inference_reads_the_record_only_of_its_own_bundle(tmp_path):
    """An SSS checkpoint run by AnoDDPM (they share the network) gets SSS's network, not SSS's recipe."""
    from tests.reliability.conftest import TINY_NET, save_checkpoint

    ckpt = save_checkpoint(tmp_path / "model.pt", "sss", {**TINY_NET, "num_samples": 4})
    assert torch.load(ckpt, weights_only=True)["info"]["recipe"]["num_samples"] == 4
    own = {"ckpt_path": str(ckpt)}
    assert resolved_value("sss", "inference", "num_samples", own) == 4
    assert resolved_value("sss", "inference", "network_def#channels", own) == TINY_NET["network_def#channels"]
    assert resolved_value("anoddpm", "inference", "num_samples", own) == 1  # AnoDDPM's own default
    assert resolved_value("anoddpm", "inference", "network_def#channels", own) == TINY_NET["network_def#channels"]
    # an override wins over the record
    assert resolved_value("sss", "inference", "num_samples", {**own, "num_samples": 2}) == 2


def test_an_interrupted_train_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import monai_adiff.bundle

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(monai_adiff.bundle, "train_model", interrupted)
    assert main(["train", "sss", str(tmp_path), "--out", str(tmp_path / "m")]) == 130
    assert capsys.readouterr().err.strip() == "interrupted: the same command resumes it"


def test_a_resumed_training_counts_the_minutes_of_every_run(phantoms, tmp_path, monkeypatch):
    """Training interrupted after its first epoch, then resumed by the same command: the summary's training minutes
    add the interrupted run's (kept epoch by epoch) to the resumed run's."""
    import json

    from ignite.engine import Events

    import monai_adiff.bundle.model_folder as mf

    real = mf.run_bundle

    def stop_after_one_epoch(*args, before_run=None, **kwargs):
        def hook(wf):
            before_run(wf)  # the minutes tracker first, as in a real run

            def stop(engine):
                raise KeyboardInterrupt

            wf.parser.get_parsed_content("train#trainer").add_event_handler(Events.EPOCH_COMPLETED, stop)

        return real(*args, before_run=hook, **kwargs)

    out = tmp_path / "m"
    argv = ["train", "sss", str(phantoms), "--recipe", "cpu", "--out", str(out), "--set", "max_epochs=2"]
    monkeypatch.setattr(mf, "run_bundle", stop_after_one_epoch)
    assert main(argv) == 130
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert "training" not in summary.get("stages", {}) and summary["partial_minutes"]["training"] >= 0
    summary["partial_minutes"]["training"] = 7.0  # as if the first run had trained 7 minutes
    (out / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    monkeypatch.setattr(mf, "run_bundle", real)
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert 7.0 <= summary["stages"]["training"]["minutes"] < 7.0 + 5 and "partial_minutes" not in summary
