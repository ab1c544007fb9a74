# SPDX-License-Identifier: Apache-2.0
"""The model zoo's bundle checks (``ci/verify_bundle.py`` of Project-MONAI/model-zoo) that run offline, per bundle.

- ``verify_bundle_directory``: ``LICENSE``, ``configs/metadata.json`` (necessary), ``models/model.pt`` and
  ``configs/inference.json`` (preferred). Our bundles ship no weights (they come from the user's training;
  ``monai-adiff export-bundle`` writes ``models/model.pt``), so the check runs on a copy given weights the way the
  zoo's own CI makes them (``_produce_fake_weights``: the config's ``network_def`` state dict).
- ``verify_version_changes``: the version is in the changelog (the zoo's ``model_info.json`` part needs the zoo).
- ``verify_metadata_format``: the schema is downloaded at check time; its required keys are re-implemented here from
  the MONAI bundle specification.
- ``verify_data_shape``: MONAI's own ``verify_net_in_out`` on ``network_def`` with the diffusion forward's extra
  arguments (timesteps, and the class label where the network is conditioned). The metadata describes what the
  bundle takes and returns (a volume; the uint8 mask ``pred``), while ``network_def`` is the slice-wise noise
  predictor, so the check is told the network's own format (one slice, or one latent for D3AD, with as many output
  channels as input channels); the zoo leaves its own diffusion bundles out of this check.
TorchScript export (``verify_torchscript``) is unsupported for every bundle; each README says why.
"""

from __future__ import annotations

import inspect
import json
import shutil

import pytest
import torch
from monai.bundle import ConfigParser, verify_net_in_out

from monai_adiff.bundle import find_bundle, list_bundles, quick_overrides

pytestmark = pytest.mark.slow  # paper-size networks

BUNDLES = list_bundles()
TENSOR_KEYS = (
    "type",
    "format",
    "num_channels",
    "spatial_shape",
    "dtype",
    "value_range",
    "is_patch_data",
    "channel_def",
)


def _parser(name: str, overrides: dict | None = None) -> ConfigParser:
    bundle = find_bundle(name)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    parser.update({"bundle_root": str(bundle), **(overrides or {})})
    return parser


@pytest.mark.parametrize("name", BUNDLES)
def test_directory_version_and_metadata(name, tmp_path):
    bundle = shutil.copytree(find_bundle(name), tmp_path / name)
    (bundle / "models").mkdir()
    tiny = {k: v for k, v in quick_overrides(name, 32).items() if k.startswith("network_def#")}
    torch.save(_parser(name, tiny).get_parsed_content("network_def").state_dict(), bundle / "models" / "model.pt")
    for f in ("LICENSE", "configs/metadata.json", "models/model.pt", "configs/inference.json"):
        assert (bundle / f).is_file(), f
    assert (bundle / "docs" / "README.md").is_file() and (bundle / "docs" / "data_license.txt").is_file()
    meta = json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))
    assert meta["version"] in meta["changelog"]
    for key in ("version", "monai_version", "pytorch_version", "numpy_version", "required_packages_version"):
        assert key in meta, key
    for key in ("task", "description", "authors", "copyright", "network_data_format", "supported_apps"):
        assert meta.get(key), key
    # the results store's numbers (tests/test_results.py); empty until the current version is measured
    assert isinstance(meta.get("eval_metrics"), dict)
    fmt = meta["network_data_format"]
    for section in ("inputs", "outputs"):
        for tensor in fmt[section].values():
            assert all(k in tensor for k in TENSOR_KEYS), (section, tensor)
            assert len(tensor["spatial_shape"]) in (2, 3) and len(tensor["value_range"]) == 2
    assert "modality" in fmt["inputs"]["image"]


@pytest.mark.parametrize("name", BUNDLES)
def test_verify_net_in_out_with_the_forward_arguments(name):
    bundle = find_bundle(name)
    parser = _parser(name)
    # values that inference reads from a checkpoint first: their defaults here (no model file)
    size = parser.get_parsed_content("spatial_size")
    channels = parser["_meta_#network_data_format#inputs#image#num_channels"]
    net = parser["network_def"]
    if "latent_channels" in net:  # D3AD's denoiser works on the autoencoder's latents
        size //= 2 ** (len(parser.get_parsed_content("network_def#ae_channels")) - 1)
        channels = parser.get_parsed_content("network_def#latent_channels")
    # a diffusion network takes the timestep; the denoising autoencoder's plain UNet takes the image only
    takes = inspect.signature(parser.get_parsed_content("network_def").forward).parameters
    extra = {"timesteps": torch.tensor([10])} if "timesteps" in takes else {}
    if "num_class_embeds" in net and parser.get_parsed_content("network_def#num_class_embeds"):
        extra["class_labels"] = torch.tensor([0])
    fmt = "_meta_#network_data_format"
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(bundle / "configs" / "inference.json"),
        bundle_root=str(bundle),
        device="cpu",
        extra_forward_args=extra,
        **{
            f"{fmt}#inputs#image#num_channels": channels,
            f"{fmt}#inputs#image#spatial_shape": [size, size],
            f"{fmt}#outputs#pred#num_channels": channels,
            f"{fmt}#outputs#pred#dtype": "float32",
        },
    )
