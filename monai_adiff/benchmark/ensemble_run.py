# SPDX-License-Identifier: Apache-2.0
"""A map ensemble of benchmarked bundles, scored like a bundle of its own (``monai-adiff benchmark --ensemble a+b``).

Each member bundle's evaluation saves its maps on the evaluated slices (``metrics_maps.npz``); the ensemble is their
threshold-normalised mean (:mod:`monai_adiff.ensemble`, each member's label-free threshold from its model folder's
``healthy_threshold.json``) with the label-free mask ``ensemble > 1``, scored by the same evaluation on the pixels
every member scored, with the FLAIR baseline beside it on those pixels (its label-free threshold from the first
member). Its record has the members' versions joined by ``+``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_adiff.benchmark.results import FLAIR
from monai_adiff.ensemble import THRESHOLD, ensemble_maps, ensemble_name
from monai_adiff.errors import InputError
from monai_adiff.metrics.evaluation import SETUPS, AnomalyEvaluation
from monai_adiff.metrics.report import write_report
from monai_adiff.metrics.threshold import read_threshold
from monai_adiff.transforms.postprocessing.array import AnomalyScore

__all__ = ["EnsembleRun", "MAPS_FILE"]

#: the file of maps each member's evaluation writes (``metrics_handler#save_maps``)
MAPS_FILE = "metrics_maps.npz"
#: each member's label-free threshold, in its model folder
HEALTHY_THRESHOLD = "healthy_threshold.json"


def _slice_scores(amap: torch.Tensor, brain: torch.Tensor) -> torch.Tensor:
    """Per-slice scores of a ``(S, H, W)`` map as the bundles make them (the 0.99 quantile over each slice's brain)."""
    cube, inside = amap.permute(1, 2, 0)[None], brain.permute(1, 2, 0)[None]  # (1, H, W, S), slices last
    return torch.as_tensor(AnomalyScore()(cube, inside)).flatten()


class EnsembleRun:
    """The ensemble of the member runs (``_BundleRun`` objects that have run), with a bundle run's interface for
    the benchmark's report: ``bundle``, ``state``, ``metrics()``, ``snapshots()``, ``extra()``, ``record()``."""

    def __init__(self, members: Sequence[Any], work: Path, curve_points: int) -> None:
        self.members = list(members)
        self.bundle = ensemble_name([m.bundle for m in self.members])
        self.work = work
        self.curve_points = curve_points
        self.state = {"config": {"ensemble": [m.bundle for m in self.members]}}
        self._metrics: dict[str, Any] | None = None
        self._snapshots: dict[str, np.ndarray] = {}

    def thresholds(self) -> list[float]:
        """Each member's label-free threshold of its map."""
        out = []
        for m in self.members:
            value = read_threshold(m.model_dir / HEALTHY_THRESHOLD, None)
            if not isinstance(value, float):
                raise InputError(str(m.model_dir / HEALTHY_THRESHOLD), "holds no numeric threshold for an ensemble")
            out.append(value)
        return out

    def _maps(self) -> list[dict[str, np.ndarray]]:
        out = []
        for m in self.members:
            path = m.work / "eval" / MAPS_FILE
            if not path.is_file():
                raise InputError(str(path), "no saved maps: this evaluation ran without them; use a new --out folder")
            with np.load(path) as f:
                out.append({k: f[k] for k in f.files})
        return out

    def run(self) -> None:
        maps, thresholds = self._maps(), self.thresholds()
        first = maps[0]
        cases = sorted({k.rsplit("/", 1)[0] for k in first})
        for m, other in zip(self.members[1:], maps[1:]):
            same = sorted({k.rsplit("/", 1)[0] for k in other}) == cases and all(
                other[f"{c}/{a}"].shape == first[f"{c}/{a}"].shape for c in cases for a in ("target", "brain")
            )
            if not same or not all(np.array_equal(other[f"{c}/target"], first[f"{c}/target"]) for c in cases):
                raise InputError(
                    None,
                    f"ensemble {self.bundle}: {self.members[0].bundle} and {m.bundle} evaluate other slices or grids; "
                    "an ensemble needs one grid (the same spatial_size and slice selection)",
                )
        flair_threshold = self._flair_threshold()
        evaluation = AnomalyEvaluation(SETUPS, curve_points=self.curve_points)
        flair = AnomalyEvaluation(SETUPS, curve_points=self.curve_points)
        for c in cases:
            target = torch.as_tensor(first[f"{c}/target"])
            # the pixels every member scored (a 4-modality bundle's brain may differ at the rim from a FLAIR one's)
            brain = torch.as_tensor(np.logical_and.reduce([mp[f"{c}/brain"] for mp in maps]))
            amap = torch.as_tensor(
                ensemble_maps([mp[f"{c}/{m.bundle}"] for m, mp in zip(self.members, maps)], thresholds)
            )
            amap = amap * brain
            mask = amap > THRESHOLD
            evaluation.add_volume(c, amap, mask, target, brain, slice_scores=_slice_scores(amap, brain))
            # FLAIR beside it on the same pixels, by the first member's label-free rule
            fmap = torch.as_tensor(first[f"{c}/{FLAIR}"]) * brain
            flair.add_volume(c, fmap, None if flair_threshold is None else fmap > flair_threshold, target, brain)
            self._snapshot(c, amap, mask)
        results = evaluation.compute()
        seconds = [(m.metrics()[m.bundle].get("timing") or {}).get("seconds_per_volume") for m in self.members]
        results["timing"] = {
            "seconds_per_volume": sum(seconds) if all(s is not None for s in seconds) else None,
            "note": "the members' inference and post-processing added; the ensemble's own arithmetic excluded",
        }
        self._metrics = {self.bundle: results, FLAIR: flair.compute()}
        write_report(self._metrics, str(self.work / "eval"), "metrics")
        (self.work / "ensemble.json").write_text(
            json.dumps({"members": [m.bundle for m in self.members], "thresholds": thresholds}, indent=1) + "\n",
            encoding="utf-8",
        )

    def _flair_threshold(self) -> float | None:
        """The FLAIR baseline's label-free threshold fitted beside the first member (``None``: maps only)."""
        path = self.members[0].model_dir / HEALTHY_THRESHOLD
        try:
            value = read_threshold(path, None, FLAIR)
        except InputError:  # no baseline threshold in the file
            return None
        return value if isinstance(value, float) else None

    def _snapshot(self, case: str, amap: torch.Tensor, mask: torch.Tensor) -> None:
        """The first member's snapshot slices of ``case`` with the ensemble's map and mask on them."""
        raw = self.members[0].snapshots()
        prefix = f"{case}/"
        if f"{prefix}slices" not in raw:
            return
        keep = torch.as_tensor(raw[f"{prefix}slices"]).long()
        own = f"{prefix}{self.members[0].bundle}/"
        self._snapshots.update({k: v for k, v in raw.items() if k.startswith(prefix) and not k.startswith(own)})
        self._snapshots[f"{prefix}{self.bundle}/map"] = amap[keep].float().numpy()
        self._snapshots[f"{prefix}{self.bundle}/mask"] = mask[keep].numpy()

    def metrics(self) -> dict[str, Any]:
        if self._metrics is None:
            raise RuntimeError("EnsembleRun.run() first")
        return self._metrics

    def snapshots(self) -> dict[str, np.ndarray]:
        return self._snapshots

    def extra(self) -> dict[str, Any]:
        parts = [m.extra() for m in self.members]

        def total(key: str) -> Any:
            values = [p.get(key) for p in parts]
            return sum(values) if all(v is not None for v in values) else None

        return {"training_minutes": total("training_minutes"), "parameters": total("parameters")}

    def record(self, rows: Sequence[Mapping[str, Any]], info: Mapping[str, Any]) -> dict[str, Any]:
        """The result record: the split and patients of the members' records, the members' versions joined by ``+``
        (each member's own version fields under ``members``)."""
        from monai_adiff.benchmark.results import method_rows
        from monai_adiff.benchmark.store import make_record

        parts = [m.record(method_rows(m.bundle, m.metrics()[m.bundle], m.bundle), info) for m in self.members]
        own = ("bundle", "version", "trained_version", "trained_by", "overrides")
        shared = ("dataset", "split", "package_version", "recipe", "split_seed", "val_fraction", "test_fraction",
                  "test_patients", "validation_patients")  # fmt: skip
        names = [p["bundle"] for p in parts]
        command = parts[0]["command"].replace(f"--bundles {names[0]}", f"--bundles {','.join(names)}")
        return make_record(
            self.bundle,
            rows,
            method_rows(FLAIR, self.metrics()[FLAIR], self.bundle),
            {
                **{k: parts[0][k] for k in shared if k in parts[0]},
                "version": "+".join(p["version"] for p in parts),
                "members": [{k: p[k] for k in own if k in p} for p in parts],
                "command": command.replace(" --out OUT", f" --ensemble {self.bundle} --out OUT"),
            },
        )
