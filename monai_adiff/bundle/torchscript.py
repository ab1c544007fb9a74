# SPDX-License-Identifier: Apache-2.0
"""A bundle network as TorchScript (``models/model.ts``, the model zoo's file for MONAI Deploy and Triton), checked
against the eager network.

MONAI's ``ckpt_export`` scripts a network, or traces it with one random tensor of ``input_shape``. Our diffusion
networks cannot be scripted (MONAI 1.6's ``DiffusionModelUNet`` attention unpacks a shape with ``*``, DTU-Net's
attention unpacks q, k, v from one tensor) and take timesteps, and class labels by keyword, besides the image. So
:func:`network_to_torchscript` scripts where TorchScript can (the DAE's UNet) and otherwise traces with example
inputs of the right kinds passed by name (``torch.jit.trace(example_kwarg_inputs=...)``, which keeps the keyword
names the inferers call with); D3AD's three-part model has its own converter
(:func:`~monai_adiff.methods.d3ad.torchscript.d3ad_to_torchscript`). :func:`torchscript_difference` then compares
the result with the eager network on other inputs (another batch size, other timesteps and labels), and
:func:`save_torchscript` saves with MONAI's ``save_net_with_metadata`` (the bundle's metadata and configs inside).
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import nn

__all__ = ["example_inputs", "network_to_torchscript", "save_torchscript", "torchscript_difference", "TS_ATOL"]

#: the largest difference between TorchScript and eager outputs an export accepts
TS_ATOL = 1e-5
#: timesteps of the examples are drawn below this (any value the time embedding takes)
_MAX_T = 1000


def _is_d3ad(network: nn.Module) -> bool:
    from monai_adiff.methods.d3ad.network import D3ADModel

    return isinstance(network, D3ADModel)


def example_inputs(network: nn.Module, batch_size: int, spatial_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Keyword inputs for ``network.forward`` on ``batch_size`` slices of ``spatial_size`` px: the image ``x``, per
    slice ``timesteps`` when it takes them, and ``class_labels`` (any real or null class) when it has a class table.
    D3AD's model takes images (its converter traces each part from them)."""
    g = torch.Generator().manual_seed(seed)
    device = next(network.parameters()).device
    x = torch.randn(batch_size, int(cast(int, network.in_channels)), spatial_size, spatial_size, generator=g)
    inputs = {"x": x}
    params = inspect.signature(network.forward).parameters
    if "timesteps" in params and not _is_d3ad(network):
        inputs["timesteps"] = torch.randint(0, _MAX_T, (batch_size,), generator=g)
    if "class_labels" in params and getattr(network, "num_class_embeds", None):
        inputs["class_labels"] = torch.randint(0, int(cast(int, network.num_class_embeds)), (batch_size,), generator=g)
    return {k: v.to(device) for k, v in inputs.items()}


def network_to_torchscript(
    network: nn.Module, spatial_size: int, batch_size: int = 2
) -> tuple[torch.jit.ScriptModule, str]:
    """TorchScript of ``network`` (in eval mode) and how it was made (``"script"``, ``"trace"``, or D3AD's
    ``"traced parts"``): scripted where TorchScript compiles it, else traced on :func:`example_inputs` (check the
    result with :func:`torchscript_difference`)."""
    network = network.eval()
    example = example_inputs(network, batch_size, spatial_size)
    if _is_d3ad(network):
        from monai_adiff.methods.d3ad.network import D3ADModel
        from monai_adiff.methods.d3ad.torchscript import d3ad_to_torchscript

        return d3ad_to_torchscript(cast(D3ADModel, network), example["x"]), "traced parts"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing warns about Python booleans of tensors and its own deprecation
        try:
            return torch.jit.script(network), "script"
        except Exception:  # noqa: BLE001 (TorchScript raises many kinds for what it cannot compile)
            return torch.jit.trace(network, example_kwarg_inputs=example), "trace"


def _outputs(module: Any, network: nn.Module, inputs: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    """What the inferers use of ``module`` (eager or TorchScript) on ``inputs``, as a flat list of tensors."""
    if not _is_d3ad(network):
        return [module(**inputs)]
    x = inputs["x"]
    z = module.encode(x)
    t = torch.randint(0, _MAX_T, (x.shape[0],), generator=torch.Generator().manual_seed(1)).to(x.device)
    return [z, module.decode(z), module(z, timesteps=t), module.knn_features(x), *module.features(x)]


def torchscript_difference(
    scripted: Any, network: nn.Module, spatial_size: int, batch_size: int = 3, seed: int = 1
) -> float:
    """The largest absolute difference between ``scripted`` and the eager ``network`` over all their outputs, on
    :func:`example_inputs` of ``batch_size`` slices (another size and other draws than the trace's)."""
    network = network.eval()
    inputs = example_inputs(network, batch_size, spatial_size, seed=seed)
    with torch.no_grad():
        ref = _outputs(network, network, inputs)
        got = _outputs(scripted, network, inputs)
    if len(ref) != len(got) or any(a.shape != b.shape for a, b in zip(ref, got)):
        return float("inf")
    return max(float((a.float() - b.float()).abs().max()) for a, b in zip(ref, got))


def save_torchscript(
    scripted: torch.jit.ScriptModule,
    path: str | os.PathLike,
    metadata: Mapping[str, Any],
    configs: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Save ``scripted`` to ``path`` with MONAI's ``save_net_with_metadata`` (``metadata.json`` inside, as
    ``ckpt_export`` writes it) and ``configs`` (``{file name: config}``) as further extra files."""
    from monai.data import save_net_with_metadata

    extra = {name: json.dumps(cfg).encode() for name, cfg in (configs or {}).items()}
    save_net_with_metadata(
        scripted, os.fspath(path), include_config_vals=True, meta_values=dict(metadata), more_extra_files=extra
    )
