# SPDX-License-Identifier: Apache-2.0
"""How MONAI Label 0.8.5 runs a bundle's inference, re-implemented without MONAI Label for the fast tests.

Steps of ``monailabel/tasks/infer/bundle.py`` (``BundleInferTask``) and ``basic_infer.py`` that decide whether a
bundle can be served: ``configs/inference.json`` parsed with ``bundle_root`` forced; ``network_def`` built and
``models/model.pt`` loaded non-strict (the ``model`` entry of a dict checkpoint); the first input/output keys of
``network_data_format`` as image/pred keys and the dimension as ``len(spatial_shape)``; ``preprocessing`` with every
``LoadImaged`` replaced by a loader that needs all its keys; ``inferer(image[None], network)``; ``postprocessing``
without ``SaveImaged`` instances; the result is ``data[pred]``. The real server is exercised by
``tests/label/test_server.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose, LoadImaged, SaveImaged


def export_for_serving(name: str, checkpoint: str | Path, out: str | Path) -> Path:
    """``export_bundle`` of a contract-test checkpoint, with no overrides: its record says how it was trained."""
    from monai_adiff.bundle.export import export_bundle

    return export_bundle(name, checkpoint, out)


def client_image(name: str, item: dict, folder: str | Path) -> Path:
    """The one file a MONAI Label client sends for a case: the modality itself, or the bundle's modalities stacked as
    one NIfTI with channels on the last axis (AnoFPDM's four)."""
    from monai_adiff.bundle import resolved_value

    modalities = resolved_value(name, "inference", "modalities")
    if len(modalities) == 1:
        return Path(item[modalities[0]])
    ref = nib.load(item[modalities[0]])
    stacked = np.stack([np.asarray(nib.load(item[m]).dataobj) for m in modalities], axis=-1)
    path = Path(folder) / f"{item['case']}_{len(modalities)}ch.nii.gz"
    nib.save(nib.Nifti1Image(stacked.astype(np.float32), ref.affine), str(path))
    return path


def served_dimension(bundle_dir: str | Path) -> int:
    """The dimension MONAI Label's ``/info`` reports for a bundle."""
    meta = json.loads((Path(bundle_dir) / "configs" / "metadata.json").read_text(encoding="utf-8"))
    image = next(iter(meta["network_data_format"]["inputs"].values()))
    return len(image["spatial_shape"]) if image.get("spatial_shape") else 3


def infer_like_monai_label(bundle_dir: str | Path, image: str | Path) -> dict[str, Any]:
    """Run ``bundle_dir`` on one image file as MONAI Label's bundle task does; returns the final data dict."""
    bundle_dir = Path(bundle_dir)
    parser = ConfigParser()
    parser.read_config(str(bundle_dir / "configs" / "inference.json"))
    parser.config.update({"bundle_root": str(bundle_dir)})  # type: ignore[union-attr]
    meta = json.loads((bundle_dir / "configs" / "metadata.json").read_text(encoding="utf-8"))
    key_image = next(iter(meta["network_data_format"]["inputs"]))
    key_pred = next(iter(meta["network_data_format"]["outputs"]))

    network = parser.get_parsed_content("network_def", instantiate=True)
    ckpt = torch.load(bundle_dir / "models" / "model.pt", map_location="cpu", weights_only=True)
    network.load_state_dict(ckpt.get("model", ckpt), strict=False)
    network.eval()

    pre = parser.get_parsed_content("preprocessing", instantiate=True)
    pre = list(pre.transforms) if isinstance(pre, Compose) else list(pre)
    pre = [
        LoadImaged(keys=t.keys, ensure_channel_first=True, image_only=False) if isinstance(t, LoadImaged) else t
        for t in pre
    ]
    post = parser.get_parsed_content("postprocessing", instantiate=True)
    post = list(post.transforms) if isinstance(post, Compose) else list(post)
    post = [t for t in post if not isinstance(t, SaveImaged)]
    inferer = parser.get_parsed_content("inferer", instantiate=True)

    data: dict[str, Any] = {key_image: str(image)}
    for t in pre:
        data = t(data)
    with torch.no_grad():
        data[key_pred] = inferer(data[key_image][None], network)[0]
    for t in post:
        data = t(data)
    data["_pred_key"] = key_pred
    return data
