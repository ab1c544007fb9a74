# SPDX-License-Identifier: Apache-2.0
"""Bundles composed from ``bundles/_base`` and a method fragment: override semantics, the committed bundles in sync
with their fragments, workflows found from the files, and a throw-away bundle made from a fragment alone running
through the contract (train, resume, infer, evaluate)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from monai_adiff.bundle import (
    BASE_DIR,
    BUNDLES_DIR,
    FRAGMENT,
    apply_overrides,
    bundle_workflows,
    check_bundle,
    cpu_overrides,
    list_bundles,
    run_bundle,
    write_bundle,
)
from monai_adiff.bundle.compose import coerce_flag_references
from monai_adiff.bundle.compose import main as compose_main
from monai_adiff.bundle.recipes import SHARED_CPU_TRAINING
from monai_adiff.data import scan_brats_folder, write_datalist
from monai_adiff.data.synthetic import make_demo_dataset


def test_apply_overrides():
    base = {"a": 1, "net": {"channels": [8, 16], "act": "relu"}, "list": [{"k": 1}, {"k": 2}], "z": 0}
    out = apply_overrides(base, {"net#channels": [4], "list#1#k": 5, "new": True, "a": 2, "_remove_": ["z"]})
    assert out == {"a": 2, "net": {"channels": [4], "act": "relu"}, "list": [{"k": 1}, {"k": 5}], "new": True}
    assert list(out) == ["a", "net", "list", "new"]  # existing keys keep their place, new ones go last
    assert base["net"]["channels"] == [8, 16] and "z" in base  # the input is not modified
    with pytest.raises(KeyError):
        apply_overrides(base, {"missing#x": 1})
    assert apply_overrides(base, {"list#2": {"k": 3}})["list"] == [{"k": 1}, {"k": 2}, {"k": 3}]  # one past: append
    with pytest.raises(IndexError):
        apply_overrides(base, {"list#3": {"k": 3}})


def test_flag_references_read_through_str2bool():
    cfg = {
        "x.json": {
            "resume": True,
            "resume_ckpt": "$f(@ckpt) if @resume else None",
            "net": {"flag": "@resume", "other": "@resume_ckpt", "nested": "@resume#a"},
            "off": "$not @resume",
            "text": "see @resume",
        }
    }
    out = coerce_flag_references(cfg, ["resume"])["x.json"]
    assert out["resume"] is True
    assert out["resume_ckpt"] == "$f(@ckpt) if monai.utils.str2bool(@resume) else None"
    assert out["net"] == {"flag": "$monai.utils.str2bool(@resume)", "other": "@resume_ckpt", "nested": "@resume#a"}
    assert out["off"] == "$not monai.utils.str2bool(@resume)"
    assert out["text"] == "see @resume"  # not a reference MONAI resolves
    assert cfg["x.json"]["net"]["flag"] == "@resume"  # the input is not modified


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("False", False), ("true", True), (False, False)])
def test_a_boolean_override_from_the_command_line_is_honoured(value, expected):
    """``--dynamic false`` reaches the inferer as False (MONAI's CLI passes the string 'false', which is truthy)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLES_DIR / "d3ad" / "configs" / "inference.json"))
    parser["dynamic"] = value
    parser["save_overlay"] = value
    assert parser.get_parsed_content("inferer").dynamic is expected
    assert parser.get_parsed_content("save_transforms#0#_disabled_") is (not expected)


def test_a_boolean_override_that_is_no_boolean_is_refused():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLES_DIR / "d3ad" / "configs" / "inference.json"))
    parser["dynamic"] = "maybe"
    with pytest.raises(RuntimeError, match="dynamic") as err:
        parser.get_parsed_content("inferer")
    assert "maybe" in str(err.value.__cause__)  # MONAI names the expression, str2bool the value


@pytest.mark.parametrize("name", [b for b in list_bundles() if (BUNDLES_DIR / b / FRAGMENT).is_file()])
def test_committed_bundles_are_in_sync(name):
    stale = check_bundle(BUNDLES_DIR / name)
    assert not stale, f"{name}: {stale} differ from {FRAGMENT} + bundles/_base; run python -m monai_adiff.bundle"


def test_every_bundle_has_a_fragment():
    assert list_bundles() and all((BUNDLES_DIR / b / FRAGMENT).is_file() for b in list_bundles())


def test_workflows_are_found_from_the_files():
    base = {"training", "run", "inference", "evaluate", "healthy_threshold"}
    base |= {"multi_gpu_training", "multi_gpu_inference", "multi_gpu_evaluate"}
    assert set(bundle_workflows("sss")) == base
    assert set(bundle_workflows("anofpdm")) == base | {"calibrate"}
    assert bundle_workflows("anofpdm")["calibrate"] == ["inference.json", "calibrate.json"]
    assert bundle_workflows("sss")["multi_gpu_training"] == ["train.json", "multi_gpu_train.json"]
    assert bundle_workflows("sss")["healthy_threshold"] == ["inference.json", "healthy_threshold.json"]
    assert bundle_workflows("sss")["multi_gpu_inference"] == ["inference.json", "multi_gpu_inference.json"]
    assert bundle_workflows("sss")["multi_gpu_evaluate"] == [
        "inference.json",
        "evaluate.json",
        "multi_gpu_evaluate.json",
    ]


def test_cpu_args_hold_the_one_small_network():
    for name in list_bundles():
        args = json.loads((BUNDLES_DIR / name / "configs" / "cpu_args.json").read_text(encoding="utf-8"))
        network = json.loads((BUNDLES_DIR / name / "configs" / "train.json").read_text(encoding="utf-8"))["network_def"]
        # the one small UNet wherever the network is a diffusion UNet; every recipe has the CPU slice size
        diffusion_unet = "attention_levels" in network  # not DTU-Net's transformer, not the DAE's plain UNet
        expected = cpu_overrides() if diffusion_unet else {"spatial_size": cpu_overrides()["spatial_size"]}
        assert {k: args[k] for k in expected} == expected
        assert all(k.split("#")[1] in network for k in args if k.startswith("network_def#")), name


def _flat(config, prefix=""):
    """``{"a#b#0": value}`` of a config's leaves (lists of objects indexed, lists of values kept whole)."""
    if isinstance(config, dict):
        return {k2: v for k, sub in config.items() for k2, v in _flat(sub, f"{prefix}#{k}" if prefix else k).items()}
    if isinstance(config, list) and config and all(isinstance(x, (dict, list)) for x in config):
        return {k2: v for i, sub in enumerate(config) for k2, v in _flat(sub, f"{prefix}#{i}").items()}
    return {prefix: config}


#: ids only inference reads (the scheduler's variance type only shapes the reverse steps; recipe_config lists the
#: recipe ids each bundle records, its inference settings among them)
_INFERENCE_ONLY = ("sss_timesteps", "vote_threshold", "mask_dilation", "largest_components", "noise_level",
                   "inference_steps", "threshold", "map_", "scheduler#variance_type", "recipe_config")  # fmt: skip


@pytest.mark.parametrize("bundle, trainer", sorted(SHARED_CPU_TRAINING.items()))
def test_bundles_that_share_a_cpu_training_train_the_same(bundle, trainer):
    """A bundle that scores another's CPU-recipe models (AnoDDPM on SSS's) trains exactly what that one trains with
    the CPU recipe: its training config and args file differ from the other's only in ids inference reads."""
    recipes = {}
    for name in (bundle, trainer):
        configs = BUNDLES_DIR / name / "configs"
        train = json.loads((configs / "train.json").read_text(encoding="utf-8"))
        recipes[name] = {**_flat(train), **json.loads((configs / "cpu_args.json").read_text(encoding="utf-8"))}
    a, b = recipes[bundle], recipes[trainer]
    differ = {k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>")}
    assert {k for k in differ if not k.startswith(_INFERENCE_ONLY)} == set()
    assert a["train_max_timestep"] == b["train_max_timestep"] == 1000


#: a method that is only a fragment: SSS's inferer with Gaussian noise at t = 200 and a plain threshold
TOY_FRAGMENT = {
    "metadata": {
        "version": "0.0.1",
        "changelog": {"0.0.1": "throw-away test bundle"},
        "name": "toy",
        "task": "test",
        "description": "test",
        "data_source": "phantoms",
        "image_classes": "FLAIR",
        "pred_classes": "anomaly map",
        "references": [],
    },
    "common": {"noise#noise_type": "gaussian"},
    "inference": {
        "threshold": 0.2,
        "inferer": {
            "_target_": "monai_adiff.methods.sss.SingleStepInferer",
            "scheduler": "@scheduler",
            "timesteps": 200,
            "noise": "@noise",
            "seed": 0,
        },
    },
    "evaluate": {"metrics_handler#method": "toy"},
}


@pytest.mark.slow
def test_a_new_bundle_from_a_fragment_runs_the_contract(tmp_path):
    bundle = tmp_path / "bundles" / "toy"
    bundle.mkdir(parents=True)
    (bundle / FRAGMENT).write_text(json.dumps(TOY_FRAGMENT, indent=4), encoding="utf-8")
    assert compose_main([str(bundle), "--base", str(BASE_DIR)]) == 0
    assert check_bundle(bundle) == [] and write_bundle(bundle) == []  # composing twice changes nothing
    assert list_bundles(tmp_path / "bundles") == ["toy"]
    assert {"training", "inference", "evaluate"} <= set(bundle_workflows(bundle))

    make_demo_dataset(tmp_path / "data", cases=3, seed=5, shape=(32, 32, 16), lesion_fraction=0.67)
    items, _ = scan_brats_folder(tmp_path / "data", ("flair",))
    datalist = write_datalist(
        tmp_path / "datalist.json",
        {"training": items[:2], "validation": items[:1], "test": items[2:]},
        modalities=["flair"],
    )
    common = {
        **cpu_overrides(spatial_size=32, channels=(8, 16, 16)),
        "batch_size": 8,
        "num_workers": 0,
        "datalist": str(datalist),
        "ckpt_dir": str(tmp_path / "models"),
        "output_dir": str(tmp_path / "logs"),
    }
    run_bundle(bundle, "training", {**common, "max_epochs": 1}, logging_file=False)
    run_bundle(bundle, "training", {**common, "max_epochs": 2}, logging_file=False)  # resumes
    assert (tmp_path / "models" / "checkpoint_epoch=2.pt").is_file()
    ckpt = str(tmp_path / "models" / "model.pt")
    run_bundle(
        bundle, "inference", {**common, "ckpt_path": ckpt, "output_dir": str(tmp_path / "pred")}, logging_file=False
    )
    case = items[2]["case"]
    ref = nib.load(items[2]["flair"])
    mask = nib.load(tmp_path / "pred" / f"{case}_anomaly_mask.nii.gz")
    assert mask.shape == ref.shape and set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
    run_bundle(
        bundle, "evaluate", {**common, "ckpt_path": ckpt, "output_dir": str(tmp_path / "eval")}, logging_file=False
    )
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert set(report) == {"toy", "flair_baseline"} and report["toy"]["mixed"]["auroc"] is not None


def test_a_fragment_with_an_unknown_section_is_refused(tmp_path):
    (tmp_path / FRAGMENT).write_text(json.dumps({"trian": {}}), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown section"):
        check_bundle(tmp_path)
