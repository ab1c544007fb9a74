# SPDX-License-Identifier: Apache-2.0
"""A label-free mask threshold: a high quantile of the anomaly map over healthy validation slices.

A method's mask needs a threshold on its map. Choosing it with pixel labels (the best-Dice threshold) is an oracle;
the papers' constants (SSS 0.3, AnoDDPM 0.5) were tuned on their data and model size. The healthy-quantile rule
needs no pixel labels: run the method on the tumour-free brain slices of the validation patients (slice-level labels,
as the training data already needs) and take a high quantile ``q`` of the map over their brain pixels, i.e. accept a
false-positive rate of ``1 - q`` on healthy tissue. MONAI has no such handler; this one feeds on the post-processed
outputs of a ``SupervisedEvaluator`` (the same map the mask is cut from: after median filter and rim erosion) and
writes the threshold to a small JSON file that inference reads (:func:`read_threshold`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_adiff.errors import InputError
from monai_adiff.fitted import check_fitted, fitted_on
from monai_adiff.metrics.handler import _slices_first, engine_items
from monai_adiff.utils import atomic_write_text

__all__ = ["HealthyQuantileHandler", "healthy_quantile", "read_threshold"]

logger = logging.getLogger(__name__)


def healthy_quantile(values: Any, q: float) -> float:
    """The ``q``-quantile of map values (numpy's linear interpolation), as a float.

    Raises:
        ValueError: ``q`` outside [0, 1], no values, or values that are not finite.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("no healthy brain pixels to take a quantile of")
    if not np.isfinite(v).all():
        raise ValueError("the map holds NaN or Inf on healthy brain pixels")
    return float(np.quantile(v, q))


#: recipe settings a threshold file does not depend on (the threshold rule itself)
_NOT_MAP_SETTINGS = ("recipe_name", "threshold", "use_healthy_threshold")


def read_threshold(
    path: str | os.PathLike | None,
    default: float | str | None,
    baseline: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    settings: Any = None,
) -> float | str | None:
    """The threshold stored by :class:`HealthyQuantileHandler` at ``path``, or ``default`` (a number, a rule such
    as ``"otsu"``, or None) when ``path`` is None.

    Args:
        path: the threshold file, or None.
        default: the value without a file.
        baseline: read the threshold of that baseline map instead of the method's.
        checkpoint: the run's checkpoint: a file fitted on another one is refused.
        settings: the run's recipe settings (``[[id, value], ...]``): those that differ from the file's are warned
            about.

    Raises:
        InputError: ``path`` is given but missing or unreadable (run the bundle's ``healthy_threshold`` workflow
            first), or fitted on another checkpoint, naming the file.
    """
    if path is None:
        return default
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "no threshold file: run the bundle's healthy_threshold workflow first")
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        value = float(record["threshold"] if baseline is None else record["baselines"][baseline])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(path, f"not a threshold file ({type(e).__name__}: {e})") from e
    check_fitted(path, record, checkpoint, settings, ignore=_NOT_MAP_SETTINGS)
    if not np.isfinite(value):
        raise InputError(path, f"threshold is {value}")
    return value


class HealthyQuantileHandler:
    """Collect map values over the brain pixels of tumour-free brain slices; write their ``q``-quantile when done.

    A slice counts when it is a brain slice (``brain_slices_key``, the training selection rule, when present) and
    its label has no tumour pixel. Attach to an evaluator over the validation patients.

    Args:
        output_file: JSON written atomically: ``threshold``, ``q``, ``n_pixels``, ``n_slices``, ``cases``, and
            ``baselines`` (``{name: threshold}``, the same rule on each baseline map).
        q: the quantile (0.99: 1 % of healthy brain pixels above the threshold).
        map_key, label_key, brain_key, brain_slices_key, case_key: keys of the post-processed data.
        baselines: reference maps to threshold by the same rule, ``{name: data key}`` (e.g. ``{"flair_baseline":
            "flair_intensity"}``), so that they are compared with the method at a label-free threshold too.
        checkpoint: the checkpoint the maps come from; the file records its SHA-256 so that inference refuses it
            for another checkpoint.
        settings: the run's recipe settings (``[[id, value], ...]``), recorded as the settings the threshold assumes.
    """

    def __init__(
        self,
        output_file: str,
        q: float = 0.99,
        map_key: str = "pred",
        label_key: str = "label",
        brain_key: str = "brain",
        brain_slices_key: str = "brain_slices",
        case_key: str = "case",
        baselines: Mapping[str, str] | None = None,
        checkpoint: str | os.PathLike | None = None,
        settings: Any = None,
    ) -> None:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q}")
        self.output_file = output_file
        self.q = float(q)
        self.map_key, self.label_key, self.brain_key = map_key, label_key, brain_key
        self.brain_slices_key, self.case_key = brain_slices_key, case_key
        self.baselines = dict(baselines or {})
        self.checkpoint, self.settings = checkpoint, settings
        self.threshold: float | None = None
        self._reset()

    def _reset(self) -> None:
        self.values: dict[str, list[torch.Tensor]] = {k: [] for k in (self.map_key, *self.baselines.values())}
        self.n_slices = 0
        self.cases: list[str] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda e: self._reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def add(
        self,
        maps: Mapping[str, torch.Tensor],
        label: torch.Tensor,
        brain: torch.Tensor,
        keep: torch.Tensor | None = None,
    ) -> None:
        """Add one volume given as (S, H, W) stacks, ``{key: map}`` (``keep``: optional (S,) brain-slice flags)."""
        healthy = ~(label > 0).flatten(1).any(dim=1)
        if keep is not None:
            healthy &= keep.bool()
        inside = (brain > 0) & healthy[:, None, None]
        for key, amap in maps.items():
            self.values[key].append(amap[inside].float())
        self.n_slices += int((healthy & inside.flatten(1).any(dim=1)).sum())

    def _iteration(self, engine: Engine) -> None:
        for d in engine_items(engine):
            case = str(d.get(self.case_key, f"case_{len(self.cases)}"))
            if self.label_key not in d:
                raise KeyError(f"case {case}: no '{self.label_key}': healthy slices need slice labels")
            keep = d.get(self.brain_slices_key)
            keep = None if keep is None else torch.as_tensor(keep).as_subclass(torch.Tensor).cpu().flatten()
            missing = [k for k in self.values if k not in d]
            if missing:
                raise KeyError(
                    f"case {case}: no {missing} in the data (a baseline needs the preprocessing's baseline_key)"
                )
            maps = {k: _slices_first(d[k]) for k in self.values}
            self.add(maps, _slices_first(d[self.label_key]), _slices_first(d[self.brain_key]), keep)
            self.cases.append(case)

    def _completed(self, engine: Engine) -> None:
        cat = {k: (torch.cat(v) if v else torch.zeros(0)).numpy() for k, v in self.values.items()}
        values = cat[self.map_key]
        self.threshold = healthy_quantile(values, self.q)
        record = {
            "threshold": self.threshold,
            "q": self.q,
            "n_pixels": int(values.size),
            "n_slices": self.n_slices,
            "cases": self.cases,
            "baselines": {name: healthy_quantile(cat[key], self.q) for name, key in self.baselines.items()},
            "rule": "q-quantile of the post-processed anomaly map over brain pixels of tumour-free validation slices",
            **fitted_on(self.checkpoint, self.settings),
        }
        atomic_write_text(self.output_file, json.dumps(record, indent=2) + "\n")
        print(
            f"healthy-quantile threshold {self.threshold:.6g} (q = {self.q}, {values.size} pixels of "
            f"{self.n_slices} tumour-free slices, {len(self.cases)} case(s)) -> {self.output_file}"
        )
        logger.info("threshold %s written to %s", self.threshold, self.output_file)
