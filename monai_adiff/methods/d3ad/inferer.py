# SPDX-License-Identifier: Apache-2.0
"""D3AD inference (Tebbe & Tayyub 2024, section 4): dynamic noise level, noiseless latent reconstruction with the
DDAD correction, and the fused latent + feature anomaly map (eq. 10)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from monai.networks.layers import GaussianFilter
from monai.networks.schedulers import Scheduler

from monai_adiff.fitted import check_fitted
from monai_adiff.inferers import AnomalyInferer, brain_from_inputs
from monai_adiff.methods.d3ad.dynamic import dynamic_timesteps, knn_mean_distance
from monai_adiff.methods.d3ad.network import D3ADModel
from monai_adiff.methods.d3ad.reconstruction import ddad_reconstruct
from monai_adiff.output import ANOMALY_MAP

__all__ = ["D3ADInferer", "CALIBRATED_RANGES"]

logger = logging.getLogger(__name__)

#: the calibration file's keys: the healthy validation ranges that normalise the map terms
CALIBRATED_RANGES = ("latent_range", "feature_range", "image_range")


class D3ADInferer(AnomalyInferer):
    """D3AD on brain slices.

    Per slice: latents ``z0`` (posterior mean); the noise level ``T_hat`` from the slice's mean KNN distance to the
    healthy feature bank (:func:`~monai_adiff.methods.d3ad.dynamic_timesteps`) or one static level; the
    reconstruction ``z0_hat`` (:func:`~monai_adiff.methods.d3ad.ddad_reconstruct`) decoded to ``x_hat``; the map
    ``latent_weight * l + (1 - latent_weight) * f`` with ``l`` the channel-mean ``|z0 - z0_hat|`` and ``f`` the sum
    over the map blocks of ``1 - cos(phi_j(x), phi_j(x_hat))``, each upsampled to the slice and normalised by
    ``(v - lo) / (hi - lo)`` with ``(lo, hi)`` from healthy validation slices (the public code min-max scales over
    the whole test set, which needs every test image at once), then a Gaussian blur. Slice score: the map's maximum
    over the brain.

    Outputs: ``anomaly_map``; per slice ``pred_score`` and ``t_hat``.

    Args:
        scheduler: the denoiser's training scheduler (D3AD: linear betas 0.0015 -> 0.0195, T = 1000).
        t_max: the largest dynamic level (paper: 80).
        min_bin: smallest bin used (paper: 2).
        num_steps: reconstruction steps per slice (``skip = T_hat // num_steps``; paper: 10).
        k: neighbours of the KNN (paper: 20).
        dynamic: choose ``T_hat`` per slice (True) or use ``static_t`` for all.
        static_t: the static level (default ``t_max``), with stride ``static_t // num_steps``.
        guidance: ``w`` of the DDAD correction (code: 4).
        noise_fraction: noise added at the start (0: noiseless scaling; see eq. 12).
        latent_weight: ``lambda`` of eq. 10 (paper: 0.85).
        blur_sigma: Gaussian blur of the map in pixels (paper: 4 at 256 px); 0 to skip.
        image_weight: weight of the image-space term (0: the paper's map).
        positive_residual: the image term counts only voxels where the decoded input is brighter.
        feature_reference: ``"input"`` (the paper's: features of the slice) or ``"decoded"`` (of ``D(z0)``).
        latent_range, feature_range, image_range: ``(lo, hi)`` of each term on healthy slices.
        calibration_file: a JSON with the ranges (``run calibrate``); when it exists its values replace the
            arguments, and so does its ``guidance`` when calibration chose ``w`` from a grid.
        slice_batch_size, autocast_dtype, brain_tol, seed, progress, network_batch_size: see
            :class:`AnomalyInferer`.
        checkpoint: the run's checkpoint: a calibration file fitted on another one is refused.
        settings: the run's recipe settings (``[[id, value], ...]``); those the calibration file was fitted with
            otherwise are warned about.
    """

    value_names = ("pred_score", "t_hat")

    def __init__(
        self,
        scheduler: Scheduler,
        t_max: int = 80,
        min_bin: int = 2,
        num_steps: int = 10,
        k: int = 20,
        dynamic: bool = True,
        static_t: int | None = None,
        guidance: float = 4.0,
        noise_fraction: float = 0.0,
        latent_weight: float = 0.85,
        blur_sigma: float = 4.0,
        image_weight: float = 0.0,
        positive_residual: bool = False,
        feature_reference: str = "input",
        latent_range: Sequence[float] = (0.0, 1.0),
        feature_range: Sequence[float] = (0.0, 1.0),
        image_range: Sequence[float] = (0.0, 1.0),
        calibration_file: str | None = None,
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
        self.scheduler = scheduler
        self.t_max, self.min_bin, self.num_steps, self.k = int(t_max), int(min_bin), int(num_steps), int(k)
        self.dynamic = bool(dynamic)
        self.static_t = int(t_max if static_t is None else static_t)
        if (
            not 1 <= self.static_t < scheduler.num_train_timesteps
            or not 1 <= self.t_max < scheduler.num_train_timesteps
        ):
            raise ValueError(f"t_max and static_t must lie in [1, {scheduler.num_train_timesteps})")
        self.guidance = float(guidance)
        self.noise_fraction = float(noise_fraction)
        if not 0.0 <= latent_weight <= 1.0:
            raise ValueError(f"latent_weight must lie in [0, 1], got {latent_weight}")
        self.latent_weight = float(latent_weight)
        if not 0.0 <= image_weight <= 1.0:
            raise ValueError(f"image_weight must lie in [0, 1], got {image_weight}")
        self.image_weight = float(image_weight)
        self.positive_residual = bool(positive_residual)
        if feature_reference not in ("input", "decoded"):
            raise ValueError(f"feature_reference must be 'input' or 'decoded', got {feature_reference!r}")
        self.feature_reference = feature_reference
        self.blur = GaussianFilter(2, float(blur_sigma)) if blur_sigma > 0 else None
        self.latent_range = (float(latent_range[0]), float(latent_range[1]))
        self.feature_range = (float(feature_range[0]), float(feature_range[1]))
        self.image_range = (float(image_range[0]), float(image_range[1]))
        if calibration_file and os.path.isfile(calibration_file):
            with open(calibration_file, encoding="utf-8") as f:
                cal = json.load(f)
            check_fitted(calibration_file, cal, checkpoint, settings, ignore=("recipe_name", "guidance"))
            for key in CALIBRATED_RANGES:
                if key in cal:
                    setattr(self, key, tuple(float(v) for v in cal[key]))
            if cal.get("guidance") is not None:  # chosen by calibration from the validation image labels
                self.guidance = float(cal["guidance"])
            logger.info(
                "D3AD: map ranges %s, w %s from %s",
                {k: getattr(self, k) for k in CALIBRATED_RANGES},
                self.guidance,
                calibration_file,
            )
        elif calibration_file:
            logger.warning(
                "calibration file %s not found: the map terms are not normalised (run calibrate)", calibration_file
            )

    def noise_levels(
        self, x: torch.Tensor, model: D3ADModel, feats: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(T_hat, skip)`` per slice: dynamic from the feature bank, or the static level."""
        n = x.shape[0]
        if not self.dynamic:
            t = torch.full((n,), self.static_t, dtype=torch.long, device=x.device)
            return t, (t // self.num_steps).clamp(min=1)
        if model.bank.numel() == 0 or model.bin_edges.numel() < 2:  # D3ADModel.fitted, also on a TorchScript model
            raise ValueError(
                "the model's feature bank is not fitted: train to the end (the last stage fits it) or set dynamic=False"
            )
        dist = knn_mean_distance(model.knn_features(x, feats), model.bank, k=self.k)
        return dynamic_timesteps(dist, model.bin_edges, self.t_max, self.min_bin, self.num_steps)

    def terms(
        self, x: torch.Tensor, model: D3ADModel, generator: torch.Generator | None, all_terms: bool = False
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The unnormalised map terms ``{"latent", "feature"[, "image"]}``, each (N, H, W), and ``T_hat`` (N,) for
        slices ``x`` (N, C, H, W). The image term (one more decoder pass) only when the map uses it or
        ``all_terms`` (calibration, so one calibration file serves every ``image_weight``)."""
        with self._autocast(x.device):
            feats = model.features(x)
            z0 = model.encode(x).float()
        t_hat, skip = self.noise_levels(x, model, feats)
        z0_hat = ddad_reconstruct(
            lambda z, t: self.network_call(model, z, timesteps=t),
            self.scheduler.alphas_cumprod,
            z0,
            t_hat,
            skip,
            guidance=self.guidance,
            noise_fraction=self.noise_fraction,
            generator=generator,
        )
        with self._autocast(x.device):
            x_hat = model.decode(z0_hat).float()
            feats_hat = model.features(x_hat)
            need_ae = all_terms or self.image_weight > 0 or self.feature_reference == "decoded"
            x_ae = model.decode(z0).float() if need_ae else None
            feats_ref = model.features(x_ae) if x_ae is not None and self.feature_reference == "decoded" else feats
        size = x.shape[-2:]
        lat = F.interpolate((z0 - z0_hat).abs().mean(1, keepdim=True), size=size, mode="bilinear", align_corners=False)
        feat = torch.zeros_like(lat)
        for j in model.map_layers:
            cos = F.cosine_similarity(feats_ref[j].float(), feats_hat[j].float(), dim=1)[:, None]
            feat += F.interpolate(1 - cos, size=size, mode="bilinear", align_corners=False)
        out = {"latent": lat[:, 0], "feature": feat[:, 0]}
        if x_ae is not None:
            residual = x_ae - x_hat
            if self.positive_residual:
                residual = residual.clamp_min(0)
            out["image"] = residual.square().mean(1)
        return out, t_hat

    @staticmethod
    def _normalise(v: torch.Tensor, rng: tuple[float, float]) -> torch.Tensor:
        return (v - rng[0]) / max(rng[1] - rng[0], 1e-12)

    def score_slices(
        self, x: torch.Tensor, network: Callable[..., torch.Tensor], generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        terms, t_hat = self.terms(x, cast(D3ADModel, network), generator)
        amap, score = self.combine(terms, x)
        return {ANOMALY_MAP: amap, "pred_score": score, "t_hat": t_hat.float()}

    def combine(self, terms: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The map (N, H, W) from the unnormalised ``terms`` of slices ``x`` (normalised, weighted, blurred) and the
        slice score, its maximum over the brain (0 for slices without brain)."""
        amap = self.latent_weight * self._normalise(terms["latent"], self.latent_range)
        amap = amap + (1 - self.latent_weight) * self._normalise(terms["feature"], self.feature_range)
        if self.image_weight > 0:
            amap = (1 - self.image_weight) * amap + self.image_weight * self._normalise(
                terms["image"], self.image_range
            )
        if self.blur is not None:
            amap = self.blur.to(amap.device)(amap[:, None])[:, 0]
        brain = brain_from_inputs(x, tol=self.brain_tol)[:, 0]
        score = amap.masked_fill(~brain, float("-inf")).flatten(1).max(1).values
        score = torch.where(brain.flatten(1).any(1), score, torch.zeros_like(score))
        return amap, score
