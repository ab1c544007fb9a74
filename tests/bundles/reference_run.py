# SPDX-License-Identifier: Apache-2.0
"""A fixed-seed run of every bundle (train one tiny epoch, calibrate where the bundle can, infer, evaluate) whose
numbers are stored in ``reference_outputs.json``; ``test_reference_outputs.py`` checks that refactoring leaves them
unchanged.

The reference was first recorded before the configs were layered and the methods moved into ``monai_adiff.methods``
(the refactor reproduced it), re-recorded when the phantoms gained FLAIR-bright normal caps and per-case lesion
contrast (bundles 0.3.0), and when saved maps and masks became zero outside the input's own brain (bundles 0.4.0;
every other number was checked unchanged first), and AnoFPDM's alone when its network gained the public code's
class-conditioning path and brain-pixel error curves (anofpdm 0.5.0; the other bundles then gained only the image
section's brain-area AUROC and score-area correlation, their numbers checked unchanged), and AnoFPDM's alone again when
scale-shift normalisation became its default and calibration chose between two slice scores (anofpdm 0.8.0); D3AD's
was added with its bundle (d3ad 0.1.0), DTU-Net's with its (dtunet 0.1.0); every bundle's when evaluation reports
gained PRO and DTU-Net's default mask became Otsu per slice (dtunet 0.4.0; only PRO and DTU-Net's mask numbers
changed, every other number checked unchanged); D3AD's alone when its feature extractor's BatchNorm statistics came to
be re-estimated on whole slices after the pretext (d3ad 0.6.0). Re-record it (``python -m
tests.bundles.reference_run``) only for a deliberate behaviour change, and say so in the bundle's changelog."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from monai_adiff.bundle import find_bundle, run_bundle
from monai_adiff.data import scan_brats_folder, write_datalist
from monai_adiff.data.synthetic import make_demo_dataset

REFERENCE = Path(__file__).with_name("reference_outputs.json")

#: written out literally (not derived from the package's own "small network") so the scenario cannot drift
OVERRIDES = {
    "spatial_size": 32,
    "network_def#channels": [16, 32, 32],
    "network_def#attention_levels": [False, False, True],
    "network_def#num_head_channels": [0, 0, 16],
    "network_def#num_res_blocks": 1,
    "network_def#norm_num_groups": 8,
    "network_def#use_flash_attention": False,
    "batch_size": 8,
    "num_workers": 0,
    "ema_warmup_iters": 10,
    "max_epochs": 3,
    "val_interval": 1,
    "resume": False,
}

#: per-bundle overrides that shorten the methods' loops
METHOD_OVERRIDES = {
    "anoddpm": {"noise_level": 8},
    "anofpdm": {"num_steps": 6},
    "d3ad": {"ae_epochs": 1, "feature_epochs": 1},
    "dtunet": {"noise_level": 8},
}
#: bundles whose network is not a UNet: their tiny network replaces the UNet keys of OVERRIDES
NETWORK_OVERRIDES = {
    "dtunet": {
        "network_def#patch_size": 4,
        "network_def#embed_dim": 32,
        "network_def#depth": 2,
        "network_def#num_heads": 2,
    }
}
#: what each bundle's calibration file holds (compared with the reference)
CALIBRATION_KEYS = {
    "anofpdm": ("slice_score", "guidance", "score_threshold", "m_max", "accuracy"),
    "d3ad": ("latent_range", "feature_range", "image_range", "guidance", "guidance_auroc"),
}


def make_data(root: Path) -> str:
    """Three phantom cases: training and validation get the healthy case and one lesion case, test the other."""
    make_demo_dataset(root / "data", cases=3, seed=3, shape=(40, 36, 20), lesion_fraction=0.67)
    items, errors = scan_brats_folder(root / "data")
    assert not errors, errors
    healthy = [it for it in items if not np.asarray(nib.load(it["label"]).dataobj).any()]
    lesion = [it for it in items if it not in healthy]
    sections = {"training": healthy + lesion[:1], "validation": healthy + lesion[:1], "test": [lesion[-1]]}
    return str(write_datalist(root / "datalist.json", sections))


def _summary(path: Path) -> dict[str, float]:
    data = np.asarray(nib.load(str(path)).dataobj, dtype=np.float64)
    return {"sum": float(data.sum()), "sum_sq": float((data**2).sum()), "max": float(data.max())}


def run_reference(name: str, work: Path, datalist: str, overrides: dict | None = None) -> dict:
    """Train, (calibrate), infer and evaluate bundle ``name`` in ``work``; return the numbers to compare."""
    torch.set_num_threads(2)
    base = OVERRIDES
    if name in NETWORK_OVERRIDES:
        base = {**{k: v for k, v in OVERRIDES.items() if not k.startswith("network_def#")}, **NETWORK_OVERRIDES[name]}
    common = {
        **base,
        **METHOD_OVERRIDES.get(name, {}),
        **(overrides or {}),
        "datalist": datalist,
        "ckpt_dir": str(work / "models"),
        "output_dir": str(work / "eval"),
        "calibration_file": str(work / "models" / "calibration.json"),
    }
    run_bundle(name, "training", common, logging_file=False)
    ckpt = work / "models" / "model.pt"
    state = torch.load(ckpt, weights_only=True)["model"]  # {"model": weights, "info": record}
    out: dict = {"weights_sum": float(sum(v.double().sum() for v in state.values()))}
    if (find_bundle(name) / "configs" / "calibrate.json").is_file():
        run_bundle(name, "calibrate", {**common, "ckpt_path": str(ckpt)}, logging_file=False)
        cal = json.loads((work / "models" / "calibration.json").read_text(encoding="utf-8"))
        out["calibration"] = {k: cal[k] for k in CALIBRATION_KEYS[name]}
    run_bundle(
        name,
        "inference",
        {**common, "ckpt_path": str(ckpt), "output_dir": str(work / "pred"), "save_overlay": False},
        logging_file=False,
    )
    out["outputs"] = {p.name.split("_", 2)[-1]: _summary(p) for p in sorted((work / "pred").glob("*.nii.gz"))}
    run_bundle(
        name, "evaluate", {**common, "ckpt_path": str(ckpt), "output_dir": str(work / "metrics")}, logging_file=False
    )
    report = json.loads((work / "metrics" / "metrics.json").read_text(encoding="utf-8"))
    out["metrics"] = {
        method: {
            setup: {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for setup, values in res.items()
            if isinstance(values, dict) and setup != "timing"
        }
        for method, res in report.items()
    }
    return out


def main(names: list[str]) -> None:
    import tempfile

    ref = json.loads(REFERENCE.read_text(encoding="utf-8")) if REFERENCE.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        datalist = make_data(Path(tmp))
        for name in names:
            ref[name] = run_reference(name, Path(tmp) / name, datalist)
            print(name, json.dumps(ref[name]["metrics"].get(name, {}).get("mixed", {})))
    REFERENCE.write_text(json.dumps(ref, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:] or ["sss", "anoddpm", "anofpdm", "d3ad", "dtunet"])
