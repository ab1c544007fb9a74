# SPDX-License-Identifier: Apache-2.0
"""Ensembles of anomaly maps from different methods, normalised by their own label-free thresholds.

Two methods' maps live on different scales (a squared reconstruction error, a residual, a cosine distance), so they
cannot be averaged as they are. Each map is divided by its method's label-free threshold, the healthy-slice quantile
that ``healthy_threshold`` fits (``healthy_threshold.json`` beside the model): a normalised value of 1 is as anomalous
as the method's own mask boundary, whatever its units. The ensemble is the weighted mean of the normalised maps
(MONAI's :class:`~monai.transforms.MeanEnsemble`), and its label-free mask is ``ensemble > 1`` (:data:`THRESHOLD`):
a pixel at both methods' thresholds is at the ensemble's, no pixel label is used anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import MeanEnsemble

__all__ = ["THRESHOLD", "ensemble_maps", "ensemble_name", "parse_ensemble", "ensemble_folders", "MAP_SUFFIX"]

#: the map file of a case in a folder written by ``monai-adiff infer``
MAP_SUFFIX = "_anomaly_map.nii.gz"

#: the label-free threshold of a threshold-normalised ensemble map
THRESHOLD = 1.0


def ensemble_maps(
    maps: Sequence[np.ndarray | torch.Tensor], thresholds: Sequence[float], weights: Sequence[float] | None = None
) -> np.ndarray:
    """The weighted mean of ``maps``, each divided by its label-free threshold.

    Args:
        maps: the methods' maps, one shape, on the same pixels.
        thresholds: each method's label-free threshold of its map (positive).
        weights: each method's weight (default equal).

    Raises:
        ValueError: a count, shape or threshold that does not fit.
    """
    if len(maps) < 2 or len(maps) != len(thresholds):
        raise ValueError(f"an ensemble needs two or more maps and one threshold each, got {len(maps)} and "
                         f"{len(thresholds)}")  # fmt: skip
    shapes = {tuple(m.shape) for m in maps}
    if len(shapes) != 1:
        raise ValueError(f"the maps of an ensemble must have one shape, got {sorted(shapes)}")
    bad = [t for t in thresholds if not np.isfinite(t) or t <= 0]
    if bad:
        raise ValueError(f"label-free thresholds must be positive and finite, got {bad[0]}")
    scaled = torch.stack(
        [torch.as_tensor(np.asarray(m), dtype=torch.float64) / float(t) for m, t in zip(maps, thresholds)]
    )
    out = MeanEnsemble(weights=list(weights) if weights is not None else None)(scaled)
    return torch.as_tensor(out).numpy().astype(np.float32)


def parse_ensemble(spec: str, known: Sequence[str]) -> list[str]:
    """The member bundles of an ensemble written ``a+b`` (two or more distinct bundles of ``known``).

    Raises:
        ValueError: fewer than two members, a repeated one or one not in ``known``.
    """
    members = [m.strip() for m in spec.split("+") if m.strip()]
    if len(members) < 2 or len(set(members)) != len(members):
        raise ValueError(f"an ensemble is two or more distinct bundles joined by '+', got {spec!r}")
    unknown = [m for m in members if m not in known]
    if unknown:
        raise ValueError(f"ensemble {spec!r}: {unknown[0]} is not among the benchmarked bundles {list(known)}")
    return members


def ensemble_name(members: Sequence[str]) -> str:
    """The name of an ensemble in tables and records: ``sss+dae``."""
    return "+".join(members)


def ensemble_folders(
    map_dirs: Sequence[str], model_dirs: Sequence[str], out_dir: str, weights: Sequence[float] | None = None
) -> list[str]:
    """The ensemble of every case that ``monai-adiff infer`` wrote into each of ``map_dirs``.

    ``<case>_anomaly_map.nii.gz`` of the first folder is matched by name in the others; the map of folder ``i`` is
    divided by the label-free threshold of model folder ``i`` (its ``healthy_threshold.json``, checked against its
    ``model.pt``). Writes ``<case>_anomaly_map.nii.gz`` (the ensemble, input affine) and ``<case>_anomaly_mask.nii.gz``
    (``map > 1``, uint8) into ``out_dir`` atomically; returns the written paths.

    Raises:
        InputError: a folder count that does not match, no maps, a case missing from a folder, maps of one case with
            different shapes or affines, a model folder without its threshold.
    """
    import os

    from monai.data import MetaTensor

    from monai_adiff.data.io import volume_header
    from monai_adiff.errors import InputError
    from monai_adiff.metrics.threshold import read_threshold
    from monai_adiff.transforms.io.array import SaveNifti

    if len(map_dirs) < 2 or len(map_dirs) != len(model_dirs):
        raise InputError(None, f"an ensemble needs two or more map folders and one model folder each, got "
                               f"{len(map_dirs)} and {len(model_dirs)}")  # fmt: skip
    thresholds = []
    for m in model_dirs:
        value = read_threshold(os.path.join(m, "healthy_threshold.json"), None, checkpoint=os.path.join(m, "model.pt"))
        thresholds.append(float(value))  # type: ignore[arg-type]  # a threshold file holds a number
    cases = sorted(n[: -len(MAP_SUFFIX)] for n in os.listdir(map_dirs[0]) if n.endswith(MAP_SUFFIX))
    if not cases:
        raise InputError(map_dirs[0], f"no *{MAP_SUFFIX} here: write the maps with monai-adiff infer first")
    protect = [os.path.join(d, f"{c}{MAP_SUFFIX}") for d in map_dirs for c in cases]
    save_map = SaveNifti(out_dir, dtype="float32", protect=protect)
    save_mask = SaveNifti(out_dir, dtype="uint8", protect=protect)
    written = []
    for case in cases:
        paths = [os.path.join(d, f"{case}{MAP_SUFFIX}") for d in map_dirs]
        images = []
        for path in paths:
            if not os.path.isfile(path):
                raise InputError(path, f"missing: {map_dirs[0]} has a map of {case}")
            images.append(volume_header(path))
        for path, img in zip(paths[1:], images[1:]):
            if img.shape != images[0].shape or not np.allclose(img.affine, images[0].affine, atol=1e-4):
                raise InputError(path, f"shape or affine differs from {paths[0]}: maps of the same scan are needed")
        amap = ensemble_maps([np.asarray(img.dataobj, dtype=np.float32) for img in images], thresholds, weights)
        affine = torch.as_tensor(images[0].affine, dtype=torch.float64)
        written.append(save_map(MetaTensor(torch.as_tensor(amap)[None], affine=affine), f"{case}_anomaly_map"))
        mask = torch.as_tensor(amap > THRESHOLD, dtype=torch.uint8)[None]
        written.append(save_mask(MetaTensor(mask, affine=affine), f"{case}_anomaly_mask"))
    return written
