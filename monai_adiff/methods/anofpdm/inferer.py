# SPDX-License-Identifier: Apache-2.0
"""AnoFPDM inference (Che et al., WACV-W 2025): the forward sweep per slice, the dynamic noise scale ``t_e``, the
dynamic threshold of Algorithm 1 and the healthy/unhealthy decision of a slice score (the cosine test, eq. 18, or the
relative excess of the guided error)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.networks.schedulers import Scheduler

from monai_adiff.fitted import check_fitted
from monai_adiff.inferers import AnomalyInferer, brain_from_inputs
from monai_adiff.methods.anofpdm.sweep import (
    MAP_RESIDUALS,
    SLICE_SCORES,
    FPDMSweep,
    fpdm_step_grid,
    fpdm_sweep,
    rowwise_quantile,
)
from monai_adiff.methods.anofpdm.threshold import fpdm_quantile
from monai_adiff.output import ANOMALY_MAP, PRED_LABEL, PRED_MASK, PRED_SCORE
from monai_adiff.transforms.postprocessing.array import median_filter_mirror

__all__ = ["FPDMInferer", "CALIBRATED_KEYS", "UNGATED_MASK"]

logger = logging.getLogger(__name__)

#: the values label-free calibration chooses (``run calibrate``, with ``slice_score``); a calibration file's values win
#: over the config's
CALIBRATED_KEYS = ("guidance", "score_threshold", "m_max")
#: recipe settings a calibration file provides itself (not compared with the run's)
FITTED_SETTINGS = ("recipe_name", "slice_score", *CALIBRATED_KEYS)
#: Algorithm 1's mask before the healthy/unhealthy gate (the public code scores this one in the unhealthy setup)
UNGATED_MASK = "ungated_mask"


class FPDMInferer(AnomalyInferer):
    """AnoFPDM inference: forward sweep, dynamic noise scale and threshold, healthy/unhealthy decision.

    The decision: a slice is unhealthy when its score is at least ``score_threshold``. ``slice_score="cosine"`` is
    the paper's test (eq. 18: ``cos <= c`` is ``1 - cos >= 1 - c``); ``"excess"`` scores the relative excess of the
    healthy-guided error over the unguided one (:meth:`FPDMSweep.slice_score`), a departure from the paper for
    models whose guided error curve is the unguided one scaled up, which the cosine cannot see (the CPU recipe's).

    Outputs (:class:`~monai_adiff.output.AnomalyOutput`): ``anomaly_map`` the aggregated map ``H`` (eq. 20,
    median-filtered), ``pred_mask`` the method's own mask (``H >= Q*``, Algorithm 1, empty for slices classified
    healthy), ``ungated_mask`` the same mask without the healthy/unhealthy gate (what the public code scores in the
    unhealthy setup, whose slices are all unhealthy by construction: the paper's 61.5 Dice), per slice ``pred_score``
    (the slice score: ``1 - cos`` or the relative excess), ``pred_label`` (1 = unhealthy), and the extras ``t_e`` (the
    timestep of the divergence peak, eq. 21) and ``m_te`` (the peak divergence ``M_te``).

    Slice score, guidance strength, score threshold and ``M_max`` come from label-free calibration
    (:func:`~monai_adiff.methods.anofpdm.calibrate_fpdm`, ``run calibrate``). Precedence: when ``calibration_file``
    names an existing file, its values replace the ``slice_score``, ``guidance``, ``score_threshold`` and ``m_max``
    arguments (logged; a file with a ``cos_threshold`` instead, from bundle versions before 0.8.0, means the cosine
    score with ``score_threshold = 1 - cos_threshold``); pass ``calibration_file=None`` to use the arguments.

    Args:
        scheduler: the training scheduler (its ``clip_sample`` clamps the x0 predictions, as the public code does).
        num_steps, stride, start: the step grid (:func:`fpdm_step_grid`; code: 600 steps, stride 1).
        guidance: w (BraTS: 2).
        slice_score: ``"cosine"`` (the paper's) or ``"excess"`` (see above).
        score_threshold: slices whose score is ``>= score_threshold`` are unhealthy.
        m_max: the largest validation ``M_te`` (Algorithm 1's scale).
        calibration_file: JSON written by calibration (see the precedence above); ``None`` for none.
        quantile_range: Algorithm 1's (a, b).
        mode, unguided, channels, healthy_label, null_label: see :func:`fpdm_sweep`.
        median_kernel: median filter of the map before thresholding (5 x 5, mirror padding); None to skip.
        patience: early stop (see :func:`fpdm_sweep`); None sweeps every step.
        brain_means: error curves and divergence as means over brain pixels (:func:`fpdm_sweep`'s ``brain``)
            instead of the whole slice (the public code's).
        map_residual: ``"squared"`` (the paper's) or ``"positive"`` (:func:`fpdm_sweep`'s ``residual``).
        slice_batch_size, autocast_dtype, brain_tol, seed, progress, network_batch_size: see
            :class:`AnomalyInferer`.
        checkpoint: the run's checkpoint: a calibration file fitted on another one is refused.
        settings: the run's recipe settings (``[[id, value], ...]``); those the calibration file was fitted with
            otherwise are warned about.
    """

    map_names = (PRED_MASK, UNGATED_MASK)
    value_names = (PRED_SCORE, PRED_LABEL, "t_e", "m_te")

    def __init__(
        self,
        scheduler: Scheduler,
        num_steps: int = 600,
        stride: int = 1,
        start: int = 0,
        guidance: float = 2.0,
        slice_score: str = "cosine",
        score_threshold: float = 0.005,
        m_max: float = 0.05,
        calibration_file: str | None = None,
        quantile_range: Sequence[float] = (0.90, 0.98),
        mode: str = "ddim",
        unguided: str = "null",
        channels: Sequence[int] | None = (0, 3),
        healthy_label: int = 0,
        null_label: int = 2,
        median_kernel: int | None = 5,
        patience: int | None = None,
        brain_means: bool = False,
        map_residual: str = "squared",
        slice_batch_size: int = 64,
        autocast_dtype: str | None = None,
        brain_tol: float = 1e-3,
        seed: int | None = 0,
        progress: bool = False,
        network_batch_size: int | None = None,
        checkpoint: str | None = None,
        settings: Any = None,
    ) -> None:
        super().__init__("gaussian", slice_batch_size, autocast_dtype, brain_tol, seed, progress, network_batch_size)
        self.checkpoint, self.settings = checkpoint, settings
        self.scheduler = scheduler
        self.timesteps = fpdm_step_grid(num_steps, stride, start)
        if self.timesteps[-1] >= scheduler.num_train_timesteps:
            raise ValueError(f"the step grid reaches {self.timesteps[-1]} >= T = {scheduler.num_train_timesteps}")
        if slice_score not in SLICE_SCORES:
            raise ValueError(f"slice_score must be one of {SLICE_SCORES}, got {slice_score!r}")
        self.slice_score = slice_score
        self.guidance, self.score_threshold, self.m_max = float(guidance), float(score_threshold), float(m_max)
        if calibration_file and os.path.isfile(calibration_file):
            self.load_calibration(calibration_file)
        elif calibration_file:
            logger.warning(
                "calibration file %s not found: using slice_score=%s, guidance=%s, score_threshold=%s, m_max=%s "
                "(run calibrate first)",
                calibration_file,
                self.slice_score,
                self.guidance,
                self.score_threshold,
                self.m_max,
            )
        self.quantile_range = (float(quantile_range[0]), float(quantile_range[1]))
        self.mode, self.unguided = mode, unguided
        self.channels = None if channels is None else [int(c) for c in channels]
        self.healthy_label, self.null_label = int(healthy_label), int(null_label)
        self.median_kernel = median_kernel
        self.patience = patience
        self.brain_means = bool(brain_means)
        if map_residual not in MAP_RESIDUALS:
            raise ValueError(f"map_residual must be one of {MAP_RESIDUALS}, got {map_residual!r}")
        self.map_residual = map_residual

    def load_calibration(self, path: str) -> None:
        """Replace ``slice_score``, ``guidance``, ``score_threshold`` and ``m_max`` by the values of a calibration
        JSON."""
        with open(path, encoding="utf-8") as f:
            cal = json.load(f)
        check_fitted(path, cal, self.checkpoint, self.settings, ignore=FITTED_SETTINGS)
        if "score_threshold" not in cal and "cos_threshold" in cal:  # written before 0.8.0: the cosine test
            cal = {**cal, "slice_score": "cosine", "score_threshold": 1.0 - float(cal["cos_threshold"])}
        missing = [k for k in CALIBRATED_KEYS if k not in cal]
        if missing or cal.get("slice_score", self.slice_score) not in SLICE_SCORES:
            raise ValueError(f"{path}: not an AnoFPDM calibration file (missing {missing or 'a known slice_score'})")
        keys = ("slice_score", *CALIBRATED_KEYS)
        before = {k: getattr(self, k) for k in keys}
        self.slice_score = str(cal.get("slice_score", self.slice_score))
        for k in CALIBRATED_KEYS:
            setattr(self, k, float(cal[k]))
        logger.info("AnoFPDM: %s from %s (config values were %s)", {k: getattr(self, k) for k in keys}, path, before)

    def sweep(
        self,
        x: torch.Tensor,
        network: Callable[..., torch.Tensor],
        generator: torch.Generator | None,
        guidance: float | Sequence[float] | None = None,
        keep_map: bool = True,
    ) -> FPDMSweep:
        """The forward sweep of slices ``x`` (N, C, H, W) with this inferer's settings."""
        return fpdm_sweep(
            network,
            self.scheduler,
            x,
            self.timesteps,
            self.guidance if guidance is None else guidance,
            self.mode,
            self.unguided,
            self.channels,
            self.healthy_label,
            self.null_label,
            keep_map,
            self.patience,
            generator,
            network_call=lambda xx, **kw: self.network_call(network, xx, **kw),
            brain=brain_from_inputs(x, tol=self.brain_tol) if self.brain_means else None,
            residual=self.map_residual,
        )

    def score_slices(
        self, x: torch.Tensor, network: Callable[..., torch.Tensor], generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        res = self.sweep(x, network, generator)
        amap = res.amap  # (N, H, W)
        assert amap is not None  # keep_map=True
        score = res.slice_score(self.slice_score)[0]
        unhealthy = score >= self.score_threshold
        # Algorithm 1 on the aggregated map, then the mask from the median-filtered map (as the public code)
        q = torch.tensor([fpdm_quantile(m, self.m_max, *self.quantile_range) for m in res.m_end[0].tolist()])
        thr = rowwise_quantile(amap.flatten(1), q)
        if self.median_kernel:
            amap = median_filter_mirror(amap, self.median_kernel)
        ungated = amap >= thr.reshape(-1, 1, 1)
        return {
            ANOMALY_MAP: amap,
            PRED_MASK: (ungated & unhealthy.reshape(-1, 1, 1)).float(),
            UNGATED_MASK: ungated.float(),
            PRED_SCORE: score,
            PRED_LABEL: unhealthy.float(),
            "t_e": res.timesteps.to(x.device)[res.t_end[0]].float(),
            "m_te": res.m_end[0],
        }
