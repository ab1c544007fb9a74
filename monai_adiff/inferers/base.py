# SPDX-License-Identifier: Apache-2.0
"""The inferer base every method builds on.

An anomaly inferer is a ``monai.inferers.Inferer``. Its core is :meth:`AnomalyInferer.infer`, which returns the named
:class:`~monai_adiff.output.AnomalyOutput` (the one output contract); ``inferer(inputs, network)`` packs that result
into an image-shaped tensor at the edge (:meth:`~monai_adiff.output.AnomalyOutput.to_image`) for MONAI's
``SupervisedEvaluator`` and MONAI Label; :meth:`AnomalyInferer.predict` completes it for Python users (slice scores
from the map, a mask from a threshold, where the method gives none).

2D methods score 3D volumes slice-wise: the axial slices of a (B, C, H, W, S) volume are gathered into batches of
``slice_batch_size`` and only brain slices go through the network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from monai_adiff.noise import NoiseSpec
from monai_adiff.output import ANOMALY_MAP, AnomalyOutput
from monai_adiff.transforms.postprocessing.array import AnomalyScore

__all__ = [
    "AnomalyInferer",
    "AGGREGATIONS",
    "CPU_NETWORK_BATCH",
    "brain_from_inputs",
    "check_ensemble",
    "device_generator",
    "ensemble_error",
    "reconstruction_error",
]


def brain_from_inputs(x: torch.Tensor, background: float = -1.0, tol: float = 1e-3) -> torch.Tensor:
    """Brain mask (B, 1, *spatial) of images mapped to [-1, 1] whose background sits at ``background``.

    Our preprocessing maps the zero background of skull-stripped MRI to exactly -1, so any channel above
    ``background + tol`` is brain. Works for MONAI Label inputs too, which arrive without a separate mask.
    """
    return (x > background + tol).any(dim=1, keepdim=True)


def reconstruction_error(x: torch.Tensor, x_hat: torch.Tensor, positive: bool = False) -> torch.Tensor:
    """Squared reconstruction error ``(x - x_hat)^2`` averaged over channels: (N, C, H, W) -> (N, H, W).

    With ``positive`` only the part where the input is brighter than its reconstruction counts,
    ``max(x - x_hat, 0)^2`` (Baur et al. 2021: lesions are hyperintense in FLAIR, so darker-than-expected
    residuals are false positives). Squaring keeps the papers' threshold scale.
    """
    r = x - x_hat
    if positive:
        r = r.clamp_min(0)
    return r.square().mean(dim=1)


#: how several reconstructions of a slice (noise levels x noise draws) become one map
AGGREGATIONS = ("map", "reconstruction")
#: slices per network pass on the CPU (see ``AnomalyInferer``'s ``network_batch_size``)
CPU_NETWORK_BATCH = 32


def check_ensemble(num_samples: int, aggregate: str) -> int:
    """Validate the ensemble options of a reconstruction inferer; returns ``num_samples`` as an int.

    Raises:
        ValueError: ``num_samples < 1`` or an unknown ``aggregate``.
    """
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if aggregate not in AGGREGATIONS:
        raise ValueError(f"aggregate must be one of {AGGREGATIONS}, got {aggregate!r}")
    return int(num_samples)


def ensemble_error(
    x: torch.Tensor, recons: list[list[torch.Tensor]], aggregate: str = "map", positive: bool = False
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One anomaly map from several reconstructions of the slices ``x``: ``recons[level][draw]``, each like ``x``.

    ``"map"`` (the SSS paper's common regions): the mean of the per-reconstruction errors. ``"reconstruction"``:
    the error of the mean reconstruction; averaging the reconstructions first cancels the part of each error that
    comes from its random noise draw (not in the papers: an option, measured in the bundles' READMEs).

    Returns:
        ``(map, per-level maps)``, each (N, H, W); a level's map aggregates its draws the same way.
    """
    if aggregate not in AGGREGATIONS:
        raise ValueError(f"aggregate must be one of {AGGREGATIONS}, got {aggregate!r}")
    if aggregate == "map":
        per_level = [torch.stack([reconstruction_error(x, r, positive) for r in draws]).mean(0) for draws in recons]
        return torch.stack(per_level).mean(0), per_level
    per_level = [reconstruction_error(x, torch.stack(draws).mean(0), positive) for draws in recons]
    mean_all = torch.stack([r for draws in recons for r in draws]).mean(0)
    return reconstruction_error(x, mean_all, positive), per_level


def device_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """A generator on ``device`` seeded from the CPU ``generator`` (None stays None): random draws then happen on the
    data's device, with no host-to-device copy of the noise, and stay reproducible from one CPU seed."""
    if generator is None:
        return None
    return torch.Generator(device=device).manual_seed(int(torch.randint(2**62, (1,), generator=generator)))


class AnomalyInferer(Inferer):
    """Base class of the slice-wise anomaly inferers.

    Subclasses implement :meth:`score_slices` for a batch of 2D slices and name what it returns besides the anomaly
    map (:attr:`map_names`, :attr:`value_names`); this class handles 2D batches, 3D volumes (slices batched,
    non-brain slices skipped), the brain mask, mixed precision, the noise and the packing of the result.

    Args:
        noise: the noise the method draws (a :class:`~monai_adiff.noise.NoiseSpec` or a type name); it must be the
            noise the network was trained with.
        slice_batch_size: slices per network call when scoring volumes (all slices of a volume share one call when
            it is at least the number of brain slices).
        autocast_dtype: ``"bfloat16"``/``"float16"`` to run the network under ``torch.autocast`` on CUDA; ignored
            on CPU. ``None`` runs in float32.
        brain_tol: a pixel is brain when any channel exceeds ``-1 + brain_tol``.
        seed: seed of the inferer's random noise; each call restarts from it, so a volume always gets the same map.
            ``None`` draws fresh noise every call.
        progress: show a progress bar over slice batches (and steps, for iterative methods).
        network_batch_size: slices per network pass: a slice batch larger than this goes through the network in
            parts of this size (the noise is still drawn per slice batch, so the result does not change beyond
            float rounding). ``None``: :data:`CPU_NETWORK_BATCH` on the CPU, where a pass over a whole volume's
            slices runs out of cache (measured on 2 cores: about 2x slower per slice than parts of 16-32 for every
            bundle's CPU-recipe network), the whole slice batch elsewhere.
    """

    #: spatial outputs of :meth:`score_slices` besides ``"anomaly_map"`` (``"pred_mask"`` when the method makes its
    #: own mask; extras such as ``"vote"``)
    map_names: tuple[str, ...] = ()
    #: per-slice outputs of :meth:`score_slices` (``"pred_score"``, ``"pred_label"``, extras such as ``"t_e"``)
    value_names: tuple[str, ...] = ()

    def __init__(
        self,
        noise: NoiseSpec | str = "gaussian",
        slice_batch_size: int = 64,
        autocast_dtype: str | None = None,
        brain_tol: float = 1e-3,
        seed: int | None = 0,
        progress: bool = False,
        network_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if slice_batch_size < 1:
            raise ValueError(f"slice_batch_size must be >= 1, got {slice_batch_size}")
        if network_batch_size is not None and network_batch_size < 1:
            raise ValueError(f"network_batch_size must be >= 1, got {network_batch_size}")
        self.network_batch_size = network_batch_size
        self.noise = NoiseSpec.of(noise)
        self.slice_batch_size = slice_batch_size
        self.autocast_dtype = autocast_dtype
        self.brain_tol = brain_tol
        self.seed = seed
        self.progress = progress

    # -- to implement -------------------------------------------------------------------------------------------
    def score_slices(
        self, x: torch.Tensor, network: Callable[..., torch.Tensor], generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        """Score a batch of 2D slices (N, C, H, W) in [-1, 1].

        Returns:
            ``{"anomaly_map": (N, H, W), <each of map_names>: (N, H, W), <each of value_names>: (N,)}``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement score_slices")

    # -- shared machinery ---------------------------------------------------------------------------------------
    def generator(self) -> torch.Generator | None:
        """A fresh CPU generator seeded with :attr:`seed` (``None`` when unseeded): the seeds of the noise are drawn
        on the CPU (a few integers per slice), the noise itself on the data's device."""
        return None if self.seed is None else torch.Generator().manual_seed(int(self.seed))

    def _autocast(self, device: torch.device):
        if self.autocast_dtype and device.type == "cuda":
            return torch.autocast("cuda", dtype=getattr(torch, self.autocast_dtype))
        return torch.autocast(device.type, enabled=False)

    def noise_like(self, x: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Noise of :attr:`noise` for slices ``x`` at timesteps ``t``, made on ``x``'s device (the simplex seeds come
        from ``generator``)."""
        return self.noise(x.shape, t, generator=generator, device=x.device).to(x.dtype)

    def network_call(self, network: Callable[..., torch.Tensor], x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """Call the network (under autocast when asked) and return float32 output, in parts of
        ``network_batch_size`` slices (arguments with one entry per slice, such as timesteps, split alike)."""
        n = x.shape[0]
        step = self.network_batch_size or (CPU_NETWORK_BATCH if x.device.type == "cpu" else n)
        with self._autocast(x.device):
            if step >= n:
                return network(x, *args, **kwargs).float()

            def part(v: Any, s: slice) -> Any:
                return v[s] if isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] == n else v

            return torch.cat(
                [
                    network(x[s], *(part(a, s) for a in args), **{k: part(v, s) for k, v in kwargs.items()}).float()
                    for s in (slice(i, i + step) for i in range(0, n, step))
                ]
            )

    @torch.no_grad()
    def infer(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor]) -> AnomalyOutput:
        """The method's own outputs for a batch of 2D images (B, C, H, W) or volumes (B, C, H, W, S) in [-1, 1].

        Maps are zero outside the brain; per-slice values are zero for slices without brain (not scored).
        """
        x = inputs.as_subclass(torch.Tensor) if isinstance(inputs, MetaTensor) else inputs
        if x.ndim not in (4, 5):
            raise ValueError(f"expected (B, C, H, W) images or (B, C, H, W, S) volumes, got shape {tuple(x.shape)}")
        volume = x.ndim == 5
        if volume:
            b, c, h, w, s = x.shape
            slices = x.permute(0, 4, 1, 2, 3).reshape(b * s, c, h, w)
        else:
            slices = x
        n = slices.shape[0]
        brain = brain_from_inputs(slices, tol=self.brain_tol)[:, 0]
        maps = {
            k: slices.new_zeros((n, *slices.shape[2:]), dtype=torch.float32) for k in (ANOMALY_MAP, *self.map_names)
        }
        values = {k: slices.new_zeros((n,), dtype=torch.float32) for k in self.value_names}
        todo = torch.nonzero(brain.flatten(1).any(1)).flatten()  # the one host sync per call: which slices
        generator = self.generator()
        chunks = todo.split(self.slice_batch_size)
        if self.progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc=type(self).__name__, leave=False)
        for idx in chunks:
            res = self.score_slices(slices[idx], network, generator)
            for k in (*maps, *values):
                (maps if k in maps else values)[k][idx] = res[k].float()
        for m in maps.values():
            m *= brain  # every map is zero outside the brain

        def spatial(m: torch.Tensor) -> torch.Tensor:
            return m.reshape(b, s, 1, h, w).permute(0, 2, 3, 4, 1) if volume else m[:, None]

        def per_slice(v: torch.Tensor) -> torch.Tensor:
            return v.reshape(b, s) if volume else v

        return AnomalyOutput.from_named(
            {k: spatial(m) for k, m in maps.items()}, {k: per_slice(v) for k, v in values.items()}
        )

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        """:meth:`infer`, packed into one image-shaped tensor (:meth:`~monai_adiff.output.AnomalyOutput.to_image`).

        Returns:
            (B, channels, *spatial), a MetaTensor carrying the input's metadata when the input is one (so ``Invertd``
            can map it back to the input's space), its channels named in its metadata.
        """
        return self.infer(inputs, network).to_image(inputs)

    def predict(
        self,
        inputs: torch.Tensor,
        network: Callable[..., torch.Tensor],
        threshold: float | None = None,
        postprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
        score_quantile: float = 0.99,
    ) -> AnomalyOutput:
        """:meth:`infer`, completed the way the bundles complete it, for Python users.

        The method's own mask and slice scores win; where it gives none, the mask is ``anomaly_map > threshold``
        and the slice score is the ``score_quantile`` quantile of the map over brain pixels.

        Args:
            inputs: images (B, C, H, W) or volumes (B, C, H, W, S) in [-1, 1].
            network: the trained network.
            threshold: the map threshold that makes the mask when the method makes none (``None``: no mask).
            postprocess: optional callable on each (1, *spatial) mask (e.g. a ``Compose`` of dilation and
                component filters); applied per batch item.
            score_quantile: the default per-slice score is this quantile of the map over brain pixels.
        """
        out = self.infer(inputs, network)
        x = inputs.as_subclass(torch.Tensor) if isinstance(inputs, MetaTensor) else inputs
        if out.pred_mask is None and threshold is not None:
            out.pred_mask = (out.anomaly_map > threshold).float()
        if out.pred_mask is not None and postprocess is not None:
            out.pred_mask = torch.stack([torch.as_tensor(postprocess(m)).float() for m in out.pred_mask])
        if out.pred_score is None:
            brain = brain_from_inputs(x, tol=self.brain_tol)
            scorer = AnomalyScore(reduction="quantile", q=score_quantile)
            out.pred_score = torch.stack([torch.as_tensor(scorer(m, b)) for m, b in zip(out.anomaly_map, brain)])
        return out
