# SPDX-License-Identifier: Apache-2.0
"""Intensity normalisation of brain MRI as the papers do it, and background handling for scans that need it.

MONAI's ``ScaleIntensityRangePercentiles`` takes percentiles over *all* voxels and maps them to a range; brain MRI
papers divide each volume and modality by a percentile of the *foreground* (non-zero, skull-stripped) voxels, with or
without clipping, and some map each axial slice to [-1, 1] by its own min-max. Neither exists in MONAI.
"""

from __future__ import annotations

import logging

import torch
from monai.config import DtypeLike, NdarrayOrTensor
from monai.transforms import ScaleIntensity, Transform
from monai.utils import TransformBackends, convert_to_tensor
from monai.utils.type_conversion import convert_to_dst_type

from monai_adiff.errors import InputError

__all__ = ["ScaleByPercentile", "ScaleToSymmetricRange", "StandardizeBackground", "source_name"]

logger = logging.getLogger(__name__)

#: what to tell a user whose volume has no constant background
BRAINMASK_HINT = (
    "give a skull-stripped volume with a constant background, or a brain mask "
    "(<case>_brainmask.nii.gz beside the volume, or a 'brainmask' datalist key)"
)


def source_name(img) -> str | None:
    """The file an image came from, when it is a MetaTensor loaded by ``LoadImage`` (for error messages)."""
    meta = getattr(img, "meta", None)
    if not meta:
        return None
    name = meta.get("filename_or_obj")
    if isinstance(name, (list, tuple)):
        name = ", ".join(map(str, name))
    return None if name is None else str(name)


def _percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """numpy's default (linear) percentile of a flat tensor; ``torch.quantile`` refuses inputs over 16 M elements."""
    pos = q / 100.0 * (values.numel() - 1)
    lo = int(pos)
    v_lo = values.kthvalue(lo + 1).values
    if pos == lo:
        return v_lo
    v_hi = values.kthvalue(lo + 2).values
    return v_lo + (v_hi - v_lo) * (pos - lo)


class ScaleByPercentile(Transform):
    """Divide each channel by a percentile of its foreground voxels (optionally clipping at it first).

    AnoFPDM divides by the 99th percentile of non-zero voxels with no clipping; the UPD benchmark clips at that
    percentile first (so the result is in [0, 1] for non-negative MRI).

    Args:
        percentile: the percentile in [0, 100].
        clip: clip each channel at its percentile before dividing.
        nonzero: take the percentile over non-zero voxels only (the skull-stripped brain).
        channel_wise: one percentile per channel (per modality); otherwise one over all channels.
        dtype: output dtype.

    Raises:
        InputError: a channel with no foreground voxel (names the source file when known).
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        percentile: float = 99.0,
        clip: bool = False,
        nonzero: bool = True,
        channel_wise: bool = True,
        dtype: DtypeLike | torch.dtype = torch.float32,
    ) -> None:
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {percentile}")
        self.percentile = percentile
        self.clip = clip
        self.nonzero = nonzero
        self.channel_wise = channel_wise
        self.dtype = dtype

    def _scale(self, x: torch.Tensor, src) -> torch.Tensor:
        values = x[x != 0] if self.nonzero else x.reshape(-1)
        if values.numel() == 0:
            raise InputError(source_name(src), "has an empty foreground (every voxel is 0), cannot normalise")
        values = values.float()
        p = _percentile(values, self.percentile)
        top = values.max()
        if p == top and p > 0:
            # a plateau at the maximum (a saturated int16 region, a clipped scanner range) would set the scale and
            # black out the rest of the brain: scale by the percentile of the other voxels, clip the plateau
            rest = values[values < top]
            if rest.numel() > 0:
                logger.warning(
                    "%s: %d voxels (%.1f%% of the foreground) sit at the maximum %g (saturated?); scaling by the "
                    "%gth percentile of the other voxels",
                    source_name(src) or "image",
                    values.numel() - rest.numel(),
                    100.0 * (values.numel() - rest.numel()) / values.numel(),
                    float(top),
                    self.percentile,
                )
                p = _percentile(rest, self.percentile)
                x = torch.clamp(x, max=p)
        if p <= 0:
            raise InputError(source_name(src), f"{self.percentile}th foreground percentile is {float(p)}, not > 0")
        if self.clip:
            x = torch.clamp(x, max=p)
        return x / p

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        x = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        if self.channel_wise:
            out = torch.stack([self._scale(c, img) for c in x])
        else:
            out = self._scale(x, img)
        return convert_to_dst_type(out, img, dtype=self.dtype)[0]


class ScaleToSymmetricRange(Transform):
    """Map intensities to [-1, 1], the range the diffusion models work in.

    Args:
        mode: ``"global"``: one linear map per channel over the whole image; ``"slice"``: a min-max per channel and
            per slice along ``slice_axis`` (AnoFPDM's loader, which MONAI lacks).
        vmin: with ``"global"``, the value that maps to -1 (default: the channel minimum).
        vmax: with ``"global"``, the value that maps to +1 (default: the channel maximum). With fixed ``vmin`` and
            ``vmax`` (e.g. 0 and 1 after clipped percentile scaling) the map does not depend on the image content.
        slice_axis: spatial axis of the slices for ``"slice"`` mode (-1: the last, axial in RAS); ignored for 2D
            images, which are one slice.
        eps: added to the range of ``"slice"`` mode (AnoFPDM: 1e-5) so constant slices stay finite.
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        mode: str = "global",
        vmin: float | None = None,
        vmax: float | None = None,
        slice_axis: int = -1,
        eps: float = 1e-5,
    ) -> None:
        if mode not in ("global", "slice"):
            raise ValueError(f"mode must be 'global' or 'slice', got {mode!r}")
        if (vmin is None) != (vmax is None):
            raise ValueError("give both vmin and vmax, or neither")
        if vmin is not None and vmax is not None and vmax <= vmin:
            raise ValueError(f"vmax ({vmax}) must be > vmin ({vmin})")
        self.mode = mode
        self.vmin = vmin
        self.vmax = vmax
        self.slice_axis = slice_axis
        self.eps = eps

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        x = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        if self.mode == "global":
            if self.vmin is not None:
                assert self.vmax is not None  # given together with vmin
                out = (x - self.vmin) / (self.vmax - self.vmin) * 2.0 - 1.0
            else:
                out = ScaleIntensity(minv=-1.0, maxv=1.0, channel_wise=True)(x)
        else:
            dims: tuple[int, ...]
            if x.ndim == 3:  # (C, H, W): the image is one slice
                dims = (1, 2)
            else:
                axis = self.slice_axis % (x.ndim - 1) + 1
                dims = tuple(d for d in range(1, x.ndim) if d != axis)
            lo = x.amin(dim=dims, keepdim=True)
            hi = x.amax(dim=dims, keepdim=True)
            out = (x - lo) / (hi - lo + self.eps) * 2.0 - 1.0
        return convert_to_dst_type(out, img, dtype=torch.float32)[0]


def _border_values(x: torch.Tensor) -> torch.Tensor:
    """The voxels on the outer faces of a spatial grid ``x`` (no channel axis), flattened."""
    faces = []
    for d in range(x.ndim):
        faces += [x.select(d, 0).reshape(-1), x.select(d, x.shape[d] - 1).reshape(-1)]
    return torch.cat(faces)


class StandardizeBackground(Transform):
    """Find the background of a skull-stripped scan, set it to 0 and make every brain voxel positive.

    The pipeline, like the papers' loaders, takes non-zero voxels as the brain. That holds for BraTS-style files
    (background 0) but not for the many scans a pipeline has already standardised: z-scored brains with a constant
    negative background (e.g. -1.5), min-max scaled volumes, int16 volumes with an offset. This transform finds the
    background as the most frequent value on the volume border (per channel), or takes an explicit brain mask, and
    maps each channel so the background is exactly 0 and the brain lies above it:

    - background 0 and a positive brain (BraTS): unchanged;
    - a brain entirely above its background value ``b`` (offsets): ``x - b``, exactly the 0-background original;
    - otherwise (z-scored, brain values at or below the background): ``x - (min_brain - delta)`` with
      ``delta = 1e-3 * (max_brain - min_brain)``, which differs from the 0-background original only by its brain
      minimum (well under 1 % of the 99th percentile on BraTS FLAIR).

    MONAI's ``CropForeground``/``ForegroundMask`` select by thresholds or Otsu; none of them finds a constant
    background value or re-bases intensities on it, which is what the percentile scaling downstream needs.

    Args:
        min_border_fraction: the border's most frequent value is the background only when it covers at least this
            fraction of the border voxels; otherwise (noise, no skull stripping) a brain mask is required.

    Raises:
        InputError: no constant background and no mask, or a mask whose shape differs from the image's (naming the
            file).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, min_border_fraction: float = 0.5) -> None:
        if not 0.0 < min_border_fraction <= 1.0:
            raise ValueError(f"min_border_fraction must be in (0, 1], got {min_border_fraction}")
        self.min_border_fraction = min_border_fraction

    def foreground(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None) -> torch.Tensor:
        """The brain (foreground) of a channel-first image: the mask where given, else any channel off its
        background. Returns a bool tensor shaped (1, *spatial)."""
        return self._foreground(img, mask)[0][None]

    def _foreground(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None) -> tuple[torch.Tensor, list[float]]:
        """``(foreground (*spatial), background value per channel)``; 0 for every channel with a mask."""
        x = convert_to_tensor(img, track_meta=False)
        if mask is not None:
            m = convert_to_tensor(mask, track_meta=False) > 0
            if m.ndim == x.ndim:  # channel-first, as LoadImaged(ensure_channel_first=True) gives it
                m = m.any(dim=0)
            if tuple(m.shape) != tuple(x.shape[1:]):
                raise InputError(
                    source_name(mask) or source_name(img),
                    f"brain mask shape {tuple(m.shape)} does not match the image's {tuple(x.shape[1:])}",
                )
            return m, [0.0] * x.shape[0]
        backgrounds = [self.background(x[c], img) for c in range(x.shape[0])]
        fg = torch.zeros(x.shape[1:], dtype=torch.bool)
        for c, bg in enumerate(backgrounds):
            fg |= x[c] != bg
        return fg, backgrounds

    def background(self, channel: torch.Tensor, src=None) -> float:
        """The background value of one channel: the border's most frequent value (see the class doc)."""
        border = _border_values(channel)
        values, counts = torch.unique(border, return_counts=True)
        i = int(counts.argmax())
        share = float(counts[i]) / border.numel()
        if share < self.min_border_fraction:
            raise InputError(
                source_name(src),
                f"has no constant background (its most frequent border value {float(values[i]):g} covers "
                f"{share:.0%} of the border): {BRAINMASK_HINT}",
            )
        return float(values[i])

    def __call__(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None) -> NdarrayOrTensor:
        """Standardise ``img`` (C, *spatial); ``mask`` (any shape holding the spatial grid) marks the brain."""
        return self.standardize(img, mask)[0]

    def standardize(
        self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None
    ) -> tuple[NdarrayOrTensor, torch.Tensor]:
        """``(standardised image, foreground (1, *spatial) bool)``: :meth:`__call__` and :meth:`foreground` at once."""
        x = convert_to_tensor(img, track_meta=False)
        fg, backgrounds = self._foreground(img, mask)
        if not bool(fg.any()):
            raise InputError(source_name(img), "has an empty foreground (no voxel differs from the background)")
        channels, changed = [], mask is not None
        for c in range(x.shape[0]):
            xc = x[c].float()
            brain = xc[fg]
            lo, hi = float(brain.min()), float(brain.max())
            bg = backgrounds[c]
            if bg == 0.0 and lo > 0.0:
                shift = 0.0
            elif lo > bg:
                shift = bg
            else:
                shift = lo - 1e-3 * max(hi - lo, 1e-6)
            if shift != 0.0:
                changed = True
                logger.info("%s: channel %d rebased by %g (background %g)", source_name(img) or "image", c, shift, bg)
            channels.append(torch.where(fg, xc - shift, torch.zeros_like(xc)))
        if not changed:
            return img, fg[None]
        return convert_to_dst_type(torch.stack(channels), img, dtype=torch.float32)[0], fg[None]
