# SPDX-License-Identifier: Apache-2.0
"""The contract every bundle passes: metadata, the config keys MONAI tools and MONAI Label read, then train one tiny
epoch, resume, infer NIfTI volumes and evaluate, on synthetic NIfTI through the ``monai.bundle`` API.

Every bundle folder of ``bundles/`` (one with ``configs/metadata.json``) is found and tested; a new bundle joins by
existing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

import monai_adiff
from monai_adiff.bundle import (
    bundle_config_files,
    find_bundle,
    list_bundles,
    quick_overrides,
    resolved_value,
    run_bundle,
)
from monai_adiff.data import case_slice_table, scan_brats_folder, write_datalist
from monai_adiff.data.synthetic import make_demo_dataset
from monai_adiff.engines import latest_checkpoint
from monai_adiff.errors import find_input_error

# every train / infer / evaluate cycle here is a slow test (the fast tier is `pytest -m "not slow"`)
pytestmark = pytest.mark.slow

BUNDLES = list_bundles()
SIZE = 32
# tiny network and short schedules so a whole train/infer/evaluate cycle takes seconds on 2 CPU cores
TINY = quick_overrides("sss", SIZE)
#: bundles whose network is not a UNet: their own tiny network instead of the UNet's keys
TINY_NETWORKS = {"dtunet": {k: v for k, v in quick_overrides("dtunet", SIZE).items() if k.startswith("network_def#")}}


def tiny(name: str) -> dict:
    """The tiny overrides of bundle ``name``."""
    return quick_overrides(name, SIZE)


def _semver(v: str) -> bool:
    return re.fullmatch(r"\d+\.\d+\.\d+([a-z0-9.+-]*)?", v) is not None


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    """Three phantom cases (one healthy, two with lesions) plus one test volume stored with permuted axes."""
    root = tmp_path_factory.mktemp("phantoms")
    make_demo_dataset(root / "data", cases=3, seed=3, shape=(40, 36, 20), lesion_fraction=0.67)
    items, errors = scan_brats_folder(root / "data")
    assert not errors
    healthy = [it for it in items if not np.asarray(nib.load(it["label"]).dataobj).any()]
    lesion = [it for it in items if it not in healthy]
    # an odd-orientation copy of a lesion case: axes stored (z, x, y), so axial slices are not the last file axis
    odd_dir = root / "odd" / "Odd_000"
    odd_dir.mkdir(parents=True)
    odd = {"case": "Odd_000"}
    for key in ("flair", "t1", "t1ce", "t2", "label"):
        img = nib.load(lesion[-1][key])
        data = np.asarray(img.dataobj).transpose(2, 0, 1)
        perm = np.eye(4)[[2, 0, 1, 3]].T  # voxel (k, i, j) -> old voxel (i, j, k)
        affine = img.affine @ perm
        name = "seg" if key == "label" else key
        path = odd_dir / f"Odd_000_{name}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), str(path))
        odd[key] = str(path)
    sections = {"training": healthy + lesion[:1], "validation": healthy + lesion[:1], "test": [lesion[-1], odd]}
    datalist = write_datalist(root / "datalist.json", sections)
    # the same cases with image-level labels only (no segmentation): what weakly supervised calibration gets
    weak = {
        k: [
            {
                **{m: v for m, v in it.items() if m != "label"},
                "slice_labels": [r["label"] for r in case_slice_table(it, ["flair"])],
            }
            for it in items_
        ]
        for k, items_ in sections.items()
    }
    weak_datalist = write_datalist(root / "weak_datalist.json", weak)
    return {"root": root, "datalist": datalist, "weak_datalist": weak_datalist, "test": [lesion[-1], odd]}


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory) -> dict:
    """Each bundle trained for one epoch (then resumed for a second), keyed by bundle name."""
    out = {}
    for name in BUNDLES:
        work = tmp_path_factory.mktemp(f"{name}_work")
        common = {
            **tiny(name),
            "datalist": dataset["datalist"],
            "ckpt_dir": str(work / "models"),
            "output_dir": str(work / "eval"),
            "calibration_file": str(work / "models" / "calibration.json"),
        }
        run_bundle(name, "training", {**common, "max_epochs": 1, "val_interval": 1}, logging_file=False)
        first = sorted(p.name for p in (work / "models").iterdir())
        run_bundle(name, "training", {**common, "max_epochs": 2, "val_interval": 1}, logging_file=False)
        if (find_bundle(name) / "configs" / "calibrate.json").is_file():
            # label-free calibration on a datalist without any segmentation
            run_bundle(
                name,
                "calibrate",
                {**common, "datalist": dataset["weak_datalist"], "ckpt_path": str(work / "models" / "model.pt")},
                logging_file=False,
            )
        out[name] = {"work": work, "common": common, "first": first}
    return out


@pytest.mark.parametrize("name", BUNDLES)
def test_bundle_files_and_metadata(name):
    bundle = find_bundle(name)
    for f in (
        "LICENSE",
        "docs/README.md",
        "configs/metadata.json",
        "configs/train.json",
        "configs/inference.json",
        "configs/evaluate.json",
        "configs/multi_gpu_train.json",
        "configs/logging.conf",
    ):
        assert (bundle / f).is_file(), f"{name}: missing {f}"
    meta = json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))
    for key in (
        "schema",
        "version",
        "changelog",
        "monai_version",
        "pytorch_version",
        "numpy_version",
        "required_packages_version",
        "task",
        "description",
        "authors",
        "copyright",
        "network_data_format",
    ):
        assert key in meta, f"{name}: metadata lacks {key}"
    assert _semver(meta["version"]) and meta["version"] in meta["changelog"]
    import monai

    assert meta["monai_version"] == monai.__version__.split("+")[0]
    assert meta["pytorch_version"] == torch.__version__.split("+")[0]
    assert _semver(meta["numpy_version"])
    for pkg in ("monai_adiff", "einops", "nibabel"):
        assert _semver(meta["required_packages_version"][pkg]), pkg
    # the package's one version source, followed by every bundle's pin
    assert meta["required_packages_version"]["monai_adiff"] == monai_adiff.__version__
    fmt = meta["network_data_format"]
    image = fmt["inputs"]["image"]
    # the volume the inferer takes (MONAI Label's /info reports len(spatial_shape) as the dimension: 3)
    size = resolved_value(bundle, "inference", "spatial_size")  # the default: no checkpoint to read it from
    assert image["spatial_shape"] == [size] * 2 + ["*"]
    modalities = resolved_value(bundle, "inference", "modalities")
    assert image["num_channels"] == len(modalities) and image["value_range"] == [-1, 1]
    # MONAI Label returns the first output: the binary mask; the map has its own key
    assert list(fmt["outputs"]) == ["pred", "anomaly_map"]
    pred, amap = fmt["outputs"]["pred"], fmt["outputs"]["anomaly_map"]
    assert (pred["format"], pred["dtype"], pred["num_channels"]) == ("segmentation", "uint8", 1)
    assert pred["channel_def"] == {"0": "background", "1": "anomaly"}
    assert (amap["format"], amap["dtype"], amap["num_channels"]) == ("magnitude", "float32", 1)
    assert meta["supported_apps"] == {"monai-label": "0.8.5"}
    # JSON style of the model zoo: 4-space indent
    for f in (bundle / "configs").glob("*.json"):
        text = f.read_text(encoding="utf-8")
        assert json.dumps(json.loads(text), indent=4) == text.rstrip("\n"), f"{f} is not 4-space indented JSON"


@pytest.mark.parametrize("name", BUNDLES)
@pytest.mark.parametrize("workflow,kind", [("training", "train"), ("inference", "infer")])
def test_bundle_properties(name, workflow, kind, dataset, tmp_path):
    """The keys MONAI's TrainProperties/InferProperties require (checked by MONAI itself, after ``initialize`` as
    the model-zoo CI does), and those MONAI Label reads."""
    bundle = find_bundle(name)
    wf = ConfigWorkflow(
        config_file=bundle_config_files(name, workflow),
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type=kind,
        **{
            **tiny(name),
            "datalist": dataset["datalist"],
            "bundle_root": str(bundle),
            "ckpt_dir": str(tmp_path),
            "output_dir": str(tmp_path),
        },
    )
    wf.initialize()
    assert wf.check_properties() == []
    keys = (
        ("network_def", "network", "run", "training", "train#dataset#data", "validate#evaluator", "val_interval")
        if kind == "train"
        else ("network_def", "preprocessing", "postprocessing", "inferer", "output_dir", "inference")
    )
    for key in keys:
        assert key in wf.parser, f"{name}/{workflow}: missing {key}"


@pytest.mark.parametrize("name", BUNDLES)
def test_train_writes_resumable_checkpoints(name, trained):
    work = trained[name]["work"]
    assert "model.pt" in trained[name]["first"] and "checkpoint_epoch=1.pt" in trained[name]["first"]
    latest = latest_checkpoint(str(work / "models"))
    assert latest is not None and latest.endswith("checkpoint_epoch=2.pt")
    state = torch.load(latest, weights_only=True)  # the second run resumed from epoch 1 and stopped after epoch 2
    trainer = state["trainer"]  # Ignite's state: iteration counts every epoch, the resumed one included
    assert trainer["iteration"] == 2 * trainer["epoch_length"] and {"model", "ema", "optimizer"} <= set(state)
    # model.pt holds the EMA weights under "model" (what MONAI's CheckpointLoader and MONAI Label load) and the
    # record that rebuilds the network (bundle, version, network arguments, data settings)
    saved = torch.load(work / "models" / "model.pt", weights_only=True)
    model, info = saved["model"], saved["info"]
    # the denoiser's first layer (diffusion UNet or DTU-Net; the autoencoder's plain UNet: its first convolution)
    firsts = [k for k in model if k.endswith(("conv_in.conv.weight", "patch_embed.proj.weight"))]
    conv_in = (firsts or [k for k in model if model[k].ndim == 4])[0]
    assert set(model) == set(state["ema"])
    assert (
        info["bundle"] == name
        and info["version"]
        == json.loads((find_bundle(name) / "configs" / "metadata.json").read_text(encoding="utf-8"))["version"]
    )
    net_args = {k: v for k, v in tiny(name).items() if k.startswith("network_def#") and k in info["config"]}
    assert net_args and all(info["config"][k] == v for k, v in net_args.items())
    assert info["config"]["spatial_size"] == SIZE
    assert state["info"] == info
    assert not torch.equal(model[conv_in], state["model"][conv_in])  # EMA != online


@pytest.mark.parametrize("name", BUNDLES)
def test_infer_writes_nifti_in_input_space(name, trained, dataset, tmp_path):
    common = trained[name]["common"]
    out = tmp_path / "pred"
    run_bundle(
        name,
        "inference",
        {**common, "output_dir": str(out), "ckpt_path": str(trained[name]["work"] / "models" / "model.pt")},
        logging_file=False,
    )
    for item in dataset["test"]:
        ref = nib.load(item["flair"])
        assert not (out / f"{item['case']}_vote.nii.gz").exists()
        for suffix, dtype in (("anomaly_map", np.float32), ("anomaly_mask", np.uint8)):
            img = nib.load(out / f"{item['case']}_{suffix}.nii.gz")
            assert img.shape == ref.shape, (suffix, img.shape, ref.shape)
            np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)
            data = np.asarray(img.dataobj)
            assert data.dtype == dtype and np.isfinite(data).all()
            if suffix == "anomaly_mask":
                assert set(np.unique(data)) <= {0, 1}
        assert (out / f"{item['case']}_overlay.png").is_file()
    # outputs leave the inputs alone and no temporary files behind
    assert not list(out.glob(".*"))


@pytest.mark.parametrize("name", BUNDLES)
def test_served_as_monai_label_serves_a_bundle(name, trained, dataset, tmp_path):
    """An exported bundle run the way MONAI Label 0.8.5 runs it (see ``tests/label/host.py``): ``pred`` is the
    uint8 {0, 1} mask on the input's grid, the map has its own key, /info says 3D and no file is written."""
    from tests.label.host import client_image, export_for_serving, infer_like_monai_label, served_dimension

    item = dataset["test"][0]
    ref = nib.load(item["flair"])
    image = client_image(name, item, tmp_path)
    exported = export_for_serving(name, trained[name]["work"] / "models" / "model.pt", tmp_path / "served")
    assert served_dimension(exported) == 3
    before = sorted(p.relative_to(exported) for p in exported.rglob("*"))
    d = infer_like_monai_label(exported, image)
    pred = d[d["_pred_key"]]
    assert d["_pred_key"] == "pred" and pred.dtype == torch.uint8
    assert tuple(pred.shape) == (1, *ref.shape) and set(torch.unique(pred).tolist()) <= {0, 1}
    assert d["anomaly_map"].dtype == torch.float32 and d["anomaly_map"].shape == pred.shape
    assert "pred_mask" not in d
    assert sorted(p.relative_to(exported) for p in exported.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("name", BUNDLES)
def test_evaluate_writes_mixed_and_unhealthy(name, trained, tmp_path, capsys):
    common = trained[name]["common"]
    run_bundle(
        name,
        "evaluate",
        {**common, "output_dir": str(tmp_path), "ckpt_path": str(trained[name]["work"] / "models" / "model.pt")},
        logging_file=False,
    )
    report = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert set(report) == {name, "flair_baseline"}
    assert report[name]["image"]["n_slices"] > 0 and report[name]["image"]["auroc"] is not None  # slice scores
    for setup in ("mixed", "unhealthy"):
        assert report[name][setup]["n_slices"] > 0
        assert report[name][setup]["auroc"] is not None
        assert report["flair_baseline"][setup]["auprc"] is not None
    assert report[name]["volume"]["n_volumes"] == 2
    assert (tmp_path / "metrics.csv").is_file()
    assert "flair_baseline" in capsys.readouterr().out


def _ts_outputs(module, d3ad: bool, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> list:
    """What the inferers call of ``module`` (eager or TorchScript), on slices ``x``, timesteps ``t``, labels."""
    with torch.no_grad():
        if d3ad:
            z = module.encode(x)
            return [z, module.decode(z), module(z, timesteps=t), *module.features(x), module.knn_features(x)]
        kwargs = {} if labels is None else {"class_labels": labels}
        return [module(x) if t is None else module(x, timesteps=t, **kwargs)]


@pytest.mark.parametrize("name", BUNDLES)
def test_torchscript_export_matches_eager_and_serves(name, trained, dataset, tmp_path):
    """``export-bundle --torchscript``: ``models/model.ts`` loads alone, equals the eager network within 1e-5 on
    another batch size, other timesteps and every class label, and the inference config run from it
    (``torchscript_path``) writes the files the eager network writes."""
    from monai_adiff.cli import main

    ckpt = trained[name]["work"] / "models" / "model.pt"
    out = tmp_path / "exported"
    assert main(["export-bundle", name, "--checkpoint", str(ckpt), "--out", str(out), "--torchscript"]) == 0
    record = json.loads((out / "models" / "export.json").read_text(encoding="utf-8"))["torchscript"]
    assert record["file"] == "model.ts" and record["max_abs_difference"] <= 1e-5
    ts = torch.jit.load(str(out / "models" / "model.ts"), _extra_files={"metadata.json": "", "inference.json": ""})
    eager = resolved_value(out, "inference", "network_def", {"device": "$torch.device('cpu')"}).eval()
    eager.load_state_dict(torch.load(ckpt, weights_only=True)["model"])
    d3ad = name == "d3ad"
    n = 3  # the export traces 2 slices
    x = torch.randn(n, int(eager.in_channels), SIZE, SIZE, generator=torch.Generator().manual_seed(7))
    takes_t = d3ad or "timesteps" in eager.forward.__code__.co_varnames
    t = torch.tensor([0, 417, 999]) if takes_t else None
    classes = getattr(eager, "num_class_embeds", None)
    for label in range(classes) if classes and not d3ad else [None]:
        labels = None if label is None else torch.full((n,), label)
        for a, b in zip(_ts_outputs(eager, d3ad, x, t, labels), _ts_outputs(ts, d3ad, x, t, labels), strict=True):
            assert a.shape == b.shape
            torch.testing.assert_close(b, a, rtol=0, atol=1e-5)

    if name == "dae":  # a one-input network: MONAI's own ckpt_export applies too
        from monai.bundle import ckpt_export

        configs = out / "configs"
        ckpt_export(
            net_id="network_def",
            filepath=str(tmp_path / "zoo.ts"),
            ckpt_file=str(out / "models" / "model.pt"),
            meta_file=str(configs / "metadata.json"),
            config_file=str(configs / "inference.json"),
            key_in_ckpt="model",
            bundle_root=str(out),
        )
        with torch.no_grad():
            torch.testing.assert_close(torch.jit.load(str(tmp_path / "zoo.ts"))(x), eager(x), rtol=0, atol=1e-5)
    served = resolved_value(out, "inference", "network", {"torchscript_path": str(out / "models" / "model.ts")})
    assert isinstance(served, torch.jit.ScriptModule)
    for kind, extra in (("eager", {}), ("ts", {"torchscript_path": str(out / "models" / "model.ts")})):
        run_bundle(
            out,
            "inference",
            {"datalist": dataset["datalist"], "output_dir": str(tmp_path / kind), **extra},
            logging_file=False,
        )
    case = dataset["test"][0]["case"]
    for suffix in ("anomaly_map", "anomaly_mask"):
        a = np.asarray(nib.load(tmp_path / "eager" / f"{case}_{suffix}.nii.gz").dataobj)
        b = np.asarray(nib.load(tmp_path / "ts" / f"{case}_{suffix}.nii.gz").dataobj)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", BUNDLES)
def test_channels_last_network_computes_the_same(name):
    """``channels_last``: the training and inference networks keep their 4D weights in channels-last format (faster
    on CPUs: ``benchmarks/memory_format.py``) and compute what the default format computes, within float rounding."""
    d3ad = name == "d3ad"
    nets = {}
    for fmt in (False, True):
        over = {**tiny(name), "channels_last": fmt, "device": "$torch.device('cpu')"}
        torch.manual_seed(0)
        nets[fmt] = resolved_value(name, "inference", "network", over).eval()
        train_net = resolved_value(name, "training", "network", over)
        # 4D weights whose two formats differ (a 1 x 1 kernel, or one on a single input channel, is both at once)
        weights = [
            p
            for net in (nets[fmt], train_net)
            for p in net.parameters()
            if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1
        ]
        assert weights or name == "dtunet"  # DTU-Net's two convolutions read one channel each
        assert all(p.is_contiguous(memory_format=torch.channels_last) == fmt for p in weights)
    nets[True].load_state_dict(nets[False].state_dict())
    x = torch.rand(3, int(nets[False].in_channels), SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
    takes_t = d3ad or "timesteps" in nets[False].forward.__code__.co_varnames
    t = torch.tensor([0, 417, 999]) if takes_t else None
    labels = torch.tensor([0, 1, 0]) if getattr(nets[False], "num_class_embeds", None) and not d3ad else None
    for a, b in zip(_ts_outputs(nets[False], d3ad, x, t, labels), _ts_outputs(nets[True], d3ad, x, t, labels)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", BUNDLES)
def test_multi_gpu_config_under_torchrun(name, dataset, tmp_path):
    """multi_gpu_train.json through torchrun with 2 CPU processes (gloo): DDP, distributed samplers, rank-0 handlers."""
    import os
    import subprocess
    import sys

    bundle = find_bundle(name)
    args = {
        **tiny(name),
        "datalist": dataset["datalist"],
        "ckpt_dir": str(tmp_path / "m"),
        "output_dir": str(tmp_path / "e"),
        "max_epochs": 1,
        "val_interval": 1,
        "bundle_root": str(bundle),
        "batch_size": 4,
    }
    (tmp_path / "args.json").write_text(json.dumps(args), encoding="utf-8")
    files = bundle_config_files(name, "multi_gpu_training")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        "--nproc_per_node=2",
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        str(files),
        "--meta_file",
        str(bundle / "configs" / "metadata.json"),
        "--logging_file",
        "False",
        "--args_file",
        str(tmp_path / "args.json"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "m" / "model.pt").is_file() and (tmp_path / "m" / "checkpoint_epoch=1.pt").is_file()


def _torchrun(bundle: Path, workflow: str, run_id: str, args: dict, folder: Path, nproc: int = 2) -> str:
    """``torchrun --nproc_per_node=nproc -m monai.bundle run RUN_ID`` of ``workflow``'s configs, gloo on the CPU;
    returns its standard output."""
    import os
    import subprocess
    import sys

    args_file = folder / f"args_{workflow}.json"
    args_file.write_text(json.dumps(args), encoding="utf-8")
    cmd = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", f"--nproc_per_node={nproc}"),
        *("-m", "monai.bundle", "run", run_id, "--config_file", str(bundle_config_files(bundle, workflow))),
        *("--meta_file", str(bundle / "configs" / "metadata.json"), "--logging_file", "False"),
        *("--args_file", str(args_file)),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize(
    "name", ["anofpdm"]
)  # every bundle's multi-GPU configs come from one base; AnoFPDM: 4 inputs, 2 reports
def test_distributed_inference_and_evaluation_equal_one_process(name, trained, dataset, tmp_path):
    """multi_gpu_inference.json / multi_gpu_evaluate.json under torchrun, 2 CPU processes (gloo): the same files and
    the same metrics as one process, every case scored by exactly one rank; a restarted inference scores only the
    cases whose files are missing."""
    bundle = find_bundle(name)
    sections = json.loads(Path(dataset["datalist"]).read_text(encoding="utf-8"))
    cases = list({it["case"]: it for s in ("training", "test") for it in sections[s]}.values())  # 4, one healthy
    datalist = Path(dataset["datalist"]).with_name(f"datalist_all_{name}.json")  # paths relative to its folder
    datalist.write_text(json.dumps({**sections, "test": cases}), encoding="utf-8")
    common = {
        "datalist": str(datalist),
        "ckpt_path": str(trained[name]["work"] / "models" / "model.pt"),
        "bundle_root": str(bundle),
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank runs: the same floating-point sums
    try:
        run_bundle(name, "inference", {**common, "output_dir": str(tmp_path / "one")}, logging_file=False)
        run_bundle(name, "evaluate", {**common, "output_dir": str(tmp_path / "one_eval")}, logging_file=False)
    finally:
        torch.set_num_threads(threads)

    out = tmp_path / "two"
    log = _torchrun(bundle, "multi_gpu_inference", "inference", {**common, "output_dir": str(out)}, tmp_path)
    counts = sorted(int(n) for n in re.findall(r"rank \d+ scored (\d+) case", log))
    assert counts == [2, 2]  # 4 cases, each on one rank
    names = sorted(p.name for p in (tmp_path / "one").glob("*.nii.gz"))
    assert names and names == sorted(p.name for p in out.glob("*.nii.gz"))
    assert {n.split("_anomaly")[0] for n in names} == {c["case"] for c in cases}
    for n in names:
        a, b = nib.load(tmp_path / "one" / n), nib.load(out / n)
        np.testing.assert_array_equal(np.asarray(b.dataobj), np.asarray(a.dataobj))
        np.testing.assert_array_equal(b.affine, a.affine)

    # a restart after an interruption: the cases with both files are left alone, the others scored
    kept = out / f"{cases[0]['case']}_anomaly_map.nii.gz"
    stamp = kept.stat().st_mtime_ns
    for c in cases[1:3]:
        (out / f"{c['case']}_anomaly_mask.nii.gz").unlink()
    log = _torchrun(bundle, "multi_gpu_inference", "inference", {**common, "output_dir": str(out)}, tmp_path)
    assert sorted(int(n) for n in re.findall(r"rank \d+ scored (\d+) case", log)) == [1, 1]
    assert kept.stat().st_mtime_ns == stamp and names == sorted(p.name for p in out.glob("*.nii.gz"))

    _torchrun(bundle, "multi_gpu_evaluate", "evaluate", {**common, "output_dir": str(tmp_path / "two_eval")}, tmp_path)
    for report in sorted(p.name for p in (tmp_path / "one_eval").glob("metrics*.json")):
        one = json.loads((tmp_path / "one_eval" / report).read_text(encoding="utf-8"))
        two = json.loads((tmp_path / "two_eval" / report).read_text(encoding="utf-8"))
        for r in (one, two):
            for v in r.values():
                v.pop("timing", None)
        assert two == one, report
        assert one[next(iter(one))]["volume"]["n_volumes"] == 4


def test_anofpdm_training_records_the_conditioning_gap(trained):
    """The learning curve of the conditioning gap: measured before training and after each validation interval,
    a resumed run continuing the same file."""
    import csv

    rows = list(csv.DictReader((trained["anofpdm"]["work"] / "eval" / "conditioning_gap.csv").open(encoding="utf-8")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert all(int(r["slices"]) > 0 and float(r["noise_mse_null"]) > 0 for r in rows)


def test_anofpdm_ungated_mask_is_written_and_scored(trained, dataset, tmp_path):
    """AnoFPDM's mask before the healthy/unhealthy gate: saved beside the gated one, never smaller, and scored by
    the evaluation beside it (``metrics_ungated.json``); small components removed per slice on request."""
    common = {**trained["anofpdm"]["common"], "ckpt_path": str(trained["anofpdm"]["work"] / "models" / "model.pt")}
    out = tmp_path / "pred"
    run_bundle(
        "anofpdm", "inference", {**common, "output_dir": str(out), "component_slice_axis": -1}, logging_file=False
    )
    for item in dataset["test"]:
        gated = np.asarray(nib.load(out / f"{item['case']}_anomaly_mask.nii.gz").dataobj)
        ungated = np.asarray(nib.load(out / f"{item['case']}_anomaly_mask_ungated.nii.gz").dataobj)
        assert ungated.shape == gated.shape and not (gated & ~ungated).any()
    run_bundle("anofpdm", "evaluate", {**common, "output_dir": str(tmp_path / "ev")}, logging_file=False)
    gated = json.loads((tmp_path / "ev" / "metrics.json").read_text(encoding="utf-8"))["anofpdm"]["unhealthy"]
    ungated = json.loads((tmp_path / "ev" / "metrics_ungated.json").read_text(encoding="utf-8"))["anofpdm_ungated"][
        "unhealthy"
    ]
    assert ungated["n_slices"] == gated["n_slices"] > 0
    # the ungated mask contains the gated one: it can only find more tumour
    assert ungated["recall_pooled"] >= gated["recall_pooled"]
    assert ungated["auprc"] == gated["auprc"]  # the same map


@pytest.mark.parametrize("name", [b for b in BUNDLES if (find_bundle(b) / "configs" / "calibrate.json").is_file()])
def test_calibration_without_pixel_labels(name, trained, dataset):
    weak = json.loads(Path(dataset["weak_datalist"]).read_text(encoding="utf-8"))
    assert all(
        "label" not in it and "slice_labels" in it for sec in weak.values() if isinstance(sec, list) for it in sec
    )
    cal = json.loads((trained[name]["work"] / "models" / "calibration.json").read_text(encoding="utf-8"))
    if name == "anofpdm":
        assert {"slice_score", "guidance", "score_threshold", "m_max", "grid"} <= set(cal)
        assert cal["guidance"] in [g["guidance"] for g in cal["grid"]] and cal["n_unhealthy"] > 0
    if name == "d3ad":  # the map terms' ranges on healthy validation slices
        for key in ("latent_range", "feature_range"):
            lo, hi = cal[key]
            assert np.isfinite([lo, hi]).all() and 0 <= lo < hi
        assert cal["slices"] > 0


def test_cli_infer_on_a_real_brats_volume(trained, tmp_path, capsys):
    """`monai-adiff infer` with a tiny checkpoint on a real BraTS FLAIR volume (240 x 240 x 155, LPS)."""
    from monai_adiff.cli import main
    from tests.conftest import brats_dir

    root = brats_dir()
    if root is None:
        pytest.skip("real BraTS data not present")
    flair = sorted(root.glob("*/*_flair.nii.gz"))[0]
    args = tmp_path / "args.json"
    args.write_text(
        json.dumps({k: v for k, v in TINY.items() if k.startswith("network_def") or k == "spatial_size"}),
        encoding="utf-8",
    )
    ckpt = trained["sss"]["work"] / "models" / "model.pt"
    code = main(
        [
            "infer",
            "sss",
            str(flair),
            "--checkpoint",
            str(ckpt),
            "--args-file",
            str(args),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    case = flair.name.replace("_flair.nii.gz", "")
    ref = nib.load(str(flair))
    for suffix in ("anomaly_map", "anomaly_mask"):
        img = nib.load(tmp_path / "out" / f"{case}_{suffix}.nii.gz")
        assert img.shape == ref.shape == (240, 240, 155)
        np.testing.assert_allclose(img.affine, ref.affine)
    assert f"{case}_anomaly_mask.nii.gz" in capsys.readouterr().out


@pytest.mark.parametrize("name", BUNDLES)
def test_healthy_threshold_then_map_options(name, trained, tmp_path):
    """Label-free threshold from healthy validation slices, read back by inference with the map options on."""
    common = trained[name]["common"]
    ckpt = str(trained[name]["work"] / "models" / "model.pt")
    thr_file = tmp_path / "thr.json"
    run_bundle(
        name, "healthy_threshold", {**common, "ckpt_path": ckpt, "threshold_file": str(thr_file)}, logging_file=False
    )
    rec = json.loads(thr_file.read_text(encoding="utf-8"))
    assert rec["n_pixels"] > 0 and np.isfinite(rec["threshold"]) and rec["q"] == 0.99
    options = {
        "map_median_kernel": 3,
        "map_brain_erosion": 1,
        "positive_residual": True,
        "map_hyperintensity_prior": "gate" if name == "sss" else "weight",
    }
    run_bundle(
        name,
        "evaluate",
        {**common, **options, "output_dir": str(tmp_path), "ckpt_path": ckpt, "threshold_file": str(thr_file)},
        logging_file=False,
    )
    report = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert report[name]["unhealthy"]["auprc"] is not None and report[name]["spread"]["unhealthy"]["auprc"]
    # a missing threshold file is an InputError naming it (behind MONAI's ConfigExpression wrapper; the CLI prints it)
    missing = tmp_path / "missing.json"
    with pytest.raises(Exception) as raised:
        run_bundle(
            name,
            "inference",
            {**common, "ckpt_path": ckpt, "threshold_file": str(missing), "output_dir": str(tmp_path)},
            logging_file=False,
        )
    err = find_input_error(raised.value)
    assert err is not None and err.path.endswith("missing.json") and "healthy_threshold" in err.problem


def test_d3ad_model_holds_a_working_bank_and_the_stages_run_alone(trained, tmp_path):
    """model.pt holds the fitted state (latent scale, a bank of distinct healthy-slice features, 11 bin edges); the
    stage ids run on their own; ``fit_bank`` refits the same bank from the saved model."""
    import shutil

    work, common = trained["d3ad"]["work"], trained["d3ad"]["common"]
    saved = torch.load(work / "models" / "model.pt", weights_only=True)
    model = saved["model"]
    bank, edges = model["bank"], model["bin_edges"]
    assert bank.ndim == 2 and bank.shape[0] > 2 and edges.shape == (11,) and float(model["latent_scale"]) > 0
    assert torch.cdist(bank[None], bank[None], p=1)[0].triu(1).max() > 0  # features differ between slices
    assert (work / "models" / "autoencoder").is_dir() and (work / "models" / "features").is_dir()
    copy = tmp_path / "models"
    shutil.copytree(work / "models", copy)
    run_bundle("d3ad", "fit_bank", {**common, "ckpt_dir": str(copy)}, workflow="training", logging_file=False)
    refit = torch.load(copy / "model.pt", weights_only=True)
    # fit_bank re-estimates the BatchNorm statistics from the saved (EMA) weights, which differ from the ones training
    # estimated them with by the EMA's float rounding only: the same bank up to that
    torch.testing.assert_close(refit["model"]["bank"], bank, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(refit["model"]["bin_edges"], edges, atol=1e-4, rtol=1e-3)
    assert refit["info"] == saved["info"]
    # a finished stage returns at once when rerun on its own
    run_bundle("d3ad", "train_autoencoder", {**common, "ckpt_dir": str(copy)}, workflow="training", logging_file=False)


def test_dtunet_weakly_supervised_variant_trains_on_labels_and_guides(dataset, tmp_path):
    """``weakly_supervised``: a label token trained on every brain slice's image-level label (label dropout), then
    inference guided towards healthy; the checkpoint records the variant, so a plain run guides too."""
    common = {
        **tiny("dtunet"),
        "datalist": dataset["datalist"],
        "ckpt_dir": str(tmp_path / "models"),
        "output_dir": str(tmp_path / "eval"),
        "weakly_supervised": True,
    }
    run_bundle("dtunet", "training", {**common, "max_epochs": 1, "val_interval": 1}, logging_file=False)
    saved = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert saved["model"]["label_embed.weight"].shape == (3, TINY_NETWORKS["dtunet"]["network_def#embed_dim"])
    assert saved["info"]["config"]["network_def#num_class_embeds"] == 3
    ckpt = str(tmp_path / "models" / "model.pt")
    out = tmp_path / "pred"
    run_bundle(
        "dtunet",
        "inference",
        {**common, "ckpt_path": ckpt, "output_dir": str(out), "guidance_scale": 2.0},
        logging_file=False,
    )
    assert len(list(out.glob("*_anomaly_mask.nii.gz"))) == len(dataset["test"])
    # the checkpoint records the variant: a run with no override rebuilds the label token and guides
    plain = {"ckpt_path": ckpt, "datalist": dataset["datalist"]}
    assert resolved_value("dtunet", "inference", "weakly_supervised", plain) is True
    assert resolved_value("dtunet", "inference", "network_def#num_class_embeds", plain) == 3
    # the CLI with no args file: the record rebuilds the network, label token included, and guides it
    from monai_adiff.cli import main

    flair = dataset["test"][0]["flair"]
    cli = ["infer", "dtunet", flair, "--checkpoint", ckpt, "--out", str(tmp_path / "cli")]
    assert main(cli) == 0
    assert (tmp_path / "cli" / f"{dataset['test'][0]['case']}_anomaly_mask.nii.gz").is_file()
