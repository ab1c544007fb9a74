# SPDX-License-Identifier: Apache-2.0
"""Post-processing of anomaly maps: threshold, dilation, connected components, median filter, brain-rim
suppression, slice scores.

Every transform takes a channel-first image, ``(C, H, W, S)`` for a volume whose axial slices run along the last
axis or ``(C, H, W)`` for one slice, and returns the same kind of object it was given (numpy array, tensor on its
device, or :class:`monai.data.MetaTensor` with the input's meta), except :class:`AnomalyScore`, which returns plain
per-slice scores. The 2D methods post-process per slice (``slice_axis``: the spatial axis the slices run along; a 2D
image is one slice), AnoFPDM removes small components in 3D (``slice_axis=None``).

Papers: AnoDDPM (Wyatt et al. 2022) thresholds the squared error at 0.5; single-step sampling (SSS) at 0.3, then a
3 x 3 dilation and the largest component(s); AnoFPDM (Che et al.) applies a 5 x 5 median filter with mirror padding
and removes connected components of <= 40 voxels in 3D. Baur et al. (Medical Image Analysis 69:101952, 2021)
median-filter residual maps and erode the brain mask before thresholding FLAIR anomaly maps
(:class:`MedianFilter`, :class:`BrainErosionMask`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from itertools import product
from typing import cast

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.transforms import Transform
from monai.transforms.utils_morphological_ops import dilate, erode
from monai.utils import TransformBackends, convert_data_type, convert_to_dst_type, convert_to_tensor
from scipy import ndimage

__all__ = [
    "AnomalyThreshold",
    "otsu_threshold",
    "Dilate",
    "KeepLargestComponents",
    "MedianFilter",
    "BrainErosionMask",
    "RemoveSmallComponents",
    "AnomalyScore",
    "volume_score",
    "median_filter_mirror",
]

REDUCTIONS = ("max", "mean", "quantile")


def _check_image(ndim: int, name: str) -> None:
    if ndim < 3:
        raise ValueError(f"{name} expects a channel-first image (C, H, W[, S]), got {ndim} dims")


def _check_odd(kernel_size: int, name: str) -> int:
    if int(kernel_size) != kernel_size or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"{name}: kernel_size must be a positive odd integer, got {kernel_size}")
    return int(kernel_size)


def _op_dims(ndim: int, slice_axis: int | None) -> tuple[int, ...]:
    """Tensor dims a channel-first image is processed over: all spatial dims, or all but the slice axis.

    A 2D image ``(C, H, W)`` is one slice, so it is processed in 2D whatever ``slice_axis`` says.
    """
    spatial = tuple(range(1, ndim))
    if slice_axis is None or len(spatial) <= 2:
        return spatial
    sdim = slice_axis % (ndim - 1) + 1
    return tuple(d for d in spatial if d != sdim)


def _to_batch(x: torch.Tensor, slice_axis: int | None) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """Fold channels (and slices) into one batch dim: ``(B, *op_spatial)``, and the function that undoes it."""
    dims = _op_dims(x.ndim, slice_axis)
    rest = [d for d in range(x.ndim) if d not in dims]  # channel (and slice) dims
    perm = rest + list(dims)
    y = x.permute(perm)
    lead = y.shape[: len(rest)]
    inverse = [int(i) for i in np.argsort(perm)]

    def restore(b: torch.Tensor) -> torch.Tensor:
        return b.reshape(*lead, *b.shape[1:]).permute(inverse)

    return y.reshape(-1, *y.shape[len(rest) :]), restore


def otsu_threshold(values: torch.Tensor, bins: int = 256) -> float:
    """Otsu's threshold of ``values``: the histogram cut that maximises the between-class variance.

    The histogram has ``bins`` equal bins over ``[min, max]`` of the float values (DTU-Net's public code quantises
    ``|error| * 255`` to uint8 first, which wraps errors above 1; here nothing is cast). ``values > threshold`` is
    the upper class.

    Returns:
        the upper edge of the last bin of the lower class; ``inf`` (an empty mask) when there are no finite values
        or they are all equal (Otsu has no cut then; the public code would mark everything).
    """
    v = values.detach().reshape(-1).float()
    v = v[torch.isfinite(v)]
    if v.numel() == 0:
        return float("inf")
    lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        return float("inf")
    idx = ((v - lo) / (hi - lo) * bins).long().clamp_(0, bins - 1)
    counts = torch.bincount(idx, minlength=bins).double()
    centres = lo + (torch.arange(bins, dtype=torch.float64) + 0.5) * (hi - lo) / bins
    w0 = counts.cumsum(0)[:-1]  # lower class = bins 0..i, for i = 0..bins-2
    w1 = counts.sum() - w0
    s0 = (counts * centres).cumsum(0)[:-1]
    s1 = (counts * centres).sum() - s0
    valid = (w0 > 0) & (w1 > 0)
    between = torch.where(valid, w0 * w1 * (s0 / w0.clamp(min=1) - s1 / w1.clamp(min=1)) ** 2, -1.0)
    i = int(torch.argmax(between))
    return lo + (i + 1) * (hi - lo) / bins


class AnomalyThreshold(Transform):
    """Binary mask of an anomaly map: ``pred[channel] > threshold`` (AnoDDPM: 0.5, SSS: 0.3, on the [-1, 1] scale),
    or Otsu's threshold of the map (DTU-Net's public code), one per call (per volume), over the ``mask`` voxels.

    Args:
        threshold: voxels strictly above it are anomalous; ``"otsu"``: :func:`otsu_threshold` of the map's values
            inside ``mask`` (all values without one).
        channel: channel of ``pred`` holding the map (0: the continuous anomaly map; a vote-fraction channel works
            the same way).
        slice_axis: with ``"otsu"``, the spatial axis of the slices to threshold one by one, each by its own Otsu
            cut over its own ``mask`` pixels (DTU-Net's public code thresholds each 2D image); ``None``: one cut per
            call (per volume). Ignored for a number.

    Returns:
        float 0/1 mask shaped ``(1, *spatial)`` (the input's float dtype, else float32), same type, device and meta
        as the input.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, threshold: float | str, channel: int = 0, slice_axis: int | None = None) -> None:
        if isinstance(threshold, str) and threshold.lower() != "otsu":
            raise ValueError(f"threshold must be a number or 'otsu', got {threshold!r}")
        self.threshold: float | str = "otsu" if isinstance(threshold, str) else float(threshold)
        self.channel = channel
        self.slice_axis = slice_axis

    def __call__(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None) -> NdarrayOrTensor:
        x = convert_to_tensor(img, track_meta=False)
        _check_image(x.ndim, type(self).__name__)
        m = x[self.channel]
        if isinstance(self.threshold, str):
            inside = (
                torch.ones_like(m, dtype=torch.bool)
                if mask is None
                else convert_to_tensor(mask, track_meta=False, device=m.device)[0] > 0
            )
            if self.slice_axis is None:
                out = m > otsu_threshold(m[inside])
            else:  # one cut per slice: move the slice axis first, cut each slice over its own region
                axis = self.slice_axis % m.ndim
                ms, ins = m.movedim(axis, 0), inside.movedim(axis, 0)
                cuts = torch.tensor([otsu_threshold(sl[b]) for sl, b in zip(ms, ins)], dtype=torch.float64)
                out = (ms.double() > cuts.to(m.device).view(-1, *[1] * (m.ndim - 1))).movedim(0, axis)
        else:
            out = m > self.threshold
        out = out.unsqueeze(0)
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return convert_to_dst_type(out, dst=img, dtype=dtype)[0]


class Dilate(Transform):
    """Binary dilation with a square (2D) or cube (n-D) structuring element of side ``kernel_size`` (SSS: 3).

    Wraps :func:`monai.transforms.utils_morphological_ops.dilate`, which is 2D/3D only, mixes channels (its kernel
    spans all of them) and has no per-slice mode; here each channel (and each slice) is dilated on its own. Outside
    the image counts as background (zero padding), as in ``scipy.ndimage.binary_dilation``.

    Args:
        kernel_size: odd side of the structuring element.
        slice_axis: spatial axis of the slices to dilate one by one in 2D; ``None``: dilate in n-D (2D or 3D).

    Returns:
        the dilated mask (voxels > 0 are foreground), same shape, dtype, type, device and meta as the input.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, kernel_size: int = 3, slice_axis: int | None = -1) -> None:
        self.kernel_size = _check_odd(kernel_size, type(self).__name__)
        self.slice_axis = slice_axis

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        x = convert_to_tensor(img, track_meta=False)
        _check_image(x.ndim, type(self).__name__)
        b, restore = _to_batch(x > 0, self.slice_axis)
        if b.ndim - 1 not in (2, 3):
            raise ValueError(f"Dilate works in 2D or 3D, got {b.ndim - 1} spatial dims (shape {tuple(x.shape)})")
        # MONAI types dilate as NdarrayOrTensor -> NdarrayOrTensor; a tensor in gives a tensor out
        out = (
            b
            if self.kernel_size == 1 or b.numel() == 0
            else cast(torch.Tensor, dilate(b.unsqueeze(1), self.kernel_size)).squeeze(1)
        )
        return convert_to_dst_type(restore(out > 0), dst=img)[0]


def _label(mask: np.ndarray, slice_axis: int | None, connectivity: int | None) -> tuple[np.ndarray, int]:
    """Label connected components of a channel-first bool mask, each channel (and slice) on its own.

    One ``scipy.ndimage.label`` call: the structuring element connects voxels only along the processed dims.
    ``connectivity`` is the number of orthogonal hops that make neighbours (skimage/MONAI semantics): 1 = faces,
    ``None`` = the number of processed dims (8-neighbourhood in 2D, 26 in 3D).
    """
    dims = _op_dims(mask.ndim, slice_axis)
    conn = len(dims) if connectivity is None else connectivity
    if not 1 <= conn <= len(dims):
        raise ValueError(f"connectivity must be in [1, {len(dims)}] or None, got {connectivity}")
    structure = ndimage.generate_binary_structure(len(dims), conn)
    for d in range(mask.ndim):
        if d not in dims:
            structure = np.expand_dims(structure, d)
    # size 3 with only the centre plane along channel (and slice) dims: no links across them
    structure = np.pad(structure, [(0, 0) if d in dims else (1, 1) for d in range(mask.ndim)])
    return ndimage.label(mask, structure=structure)


def _components_op(
    img: NdarrayOrTensor, slice_axis: int | None, connectivity: int | None, keep_fn: Callable, name: str
) -> NdarrayOrTensor:
    x, *_ = convert_data_type(img, np.ndarray)  # scipy: CPU only, back to the input's device below
    _check_image(x.ndim, name)
    labels, n = _label(x > 0, slice_axis, connectivity)
    keep = np.zeros(n + 1, dtype=bool)
    if n:
        keep[1:] = keep_fn(labels, n)
    return convert_to_dst_type(keep[labels], dst=img)[0]


class KeepLargestComponents(Transform):
    """Keep the ``num_components`` largest connected components of a binary mask, per channel and per slice or n-D.

    MONAI's ``KeepLargestConnectedComponent`` needs scikit-image (or cuCIM on GPU) and has no per-slice mode; this
    uses ``scipy.ndimage.label`` with the same connectivity semantics. Slices without foreground stay empty; among
    equally large components the one met first in C order (scipy's label order) is kept.

    Args:
        num_components: how many components to keep in each channel (and slice).
        slice_axis: spatial axis of the slices to process one by one in 2D; ``None``: n-D components.
        connectivity: orthogonal hops that make neighbours, 1 (faces) to the number of processed dims; ``None``:
            full (8-neighbourhood in 2D, 26 in 3D).

    Returns:
        the filtered mask, same shape, dtype, type, device and meta as the input.
    """

    backend = [TransformBackends.NUMPY]

    def __init__(self, num_components: int = 1, slice_axis: int | None = -1, connectivity: int | None = None) -> None:
        if num_components < 1:
            raise ValueError(f"num_components must be >= 1, got {num_components}")
        self.num_components = int(num_components)
        self.slice_axis = slice_axis
        self.connectivity = connectivity

    def _keep(self, labels: np.ndarray, n: int) -> np.ndarray:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        # group (channel, slice) of each label: labels never cross groups, so any of its voxels tells
        dims = _op_dims(labels.ndim, self.slice_axis)
        gshape = [1 if d in dims else s for d, s in enumerate(labels.shape)]
        group = np.zeros(n + 1, dtype=np.int64)
        group[labels] = np.arange(int(np.prod(gshape))).reshape(gshape)
        group = group[1:]
        order = np.lexsort((np.arange(n), -sizes, group))  # by group, then size descending, then label
        g = group[order]
        starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
        keep = np.zeros(n, dtype=bool)
        keep[order[rank < self.num_components]] = True
        return keep

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        return _components_op(img, self.slice_axis, self.connectivity, self._keep, type(self).__name__)


class RemoveSmallComponents(Transform):
    """Remove connected components of ``<= max_size`` voxels from a binary mask (AnoFPDM: 40, in 3D).

    MONAI has no small-object removal; skimage's ``remove_small_objects`` is not a dependency. Uses
    ``scipy.ndimage.label`` (CPU: the data goes to the CPU and back). The size is the voxel count of the component
    (AnoFPDM's code compares skimage's ``filled_area``, which also counts enclosed holes; for components this small
    the two rarely differ).

    Args:
        max_size: components with at most this many voxels are removed.
        slice_axis: spatial axis of the slices to process one by one in 2D; ``None``: n-D components.
        connectivity: orthogonal hops that make neighbours, 1 (faces) to the number of processed dims; ``None``:
            full (26-neighbourhood in 3D, like skimage's default).

    Returns:
        the filtered mask, same shape, dtype, type, device and meta as the input.
    """

    backend = [TransformBackends.NUMPY]

    def __init__(self, max_size: int = 40, slice_axis: int | None = None, connectivity: int | None = None) -> None:
        if max_size < 0:
            raise ValueError(f"max_size must be >= 0, got {max_size}")
        self.max_size = int(max_size)
        self.slice_axis = slice_axis
        self.connectivity = connectivity

    def _keep(self, labels: np.ndarray, n: int) -> np.ndarray:
        return np.bincount(labels.ravel(), minlength=n + 1)[1:] > self.max_size

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        return _components_op(img, self.slice_axis, self.connectivity, self._keep, type(self).__name__)


@lru_cache(maxsize=16)
def _median_network(n: int) -> tuple[tuple[int, int, int], ...]:
    """Selection network for the median of ``n`` (odd) values: Batcher's merge-exchange sort (Knuth, TAOCP vol. 3,
    5.2.2, Algorithm M) pruned backwards from the middle wire.

    Each op ``(i, j, kind)`` compare-exchanges wires i < j (min to i, max to j); kind 0: both outputs are used,
    1: only the min, 2: only the max. n = 25 (5 x 5) costs 202 elementwise min/max ops.
    """
    pairs = []
    t = max(1, (n - 1).bit_length())
    p = 1 << (t - 1)
    while p > 0:
        q, r, d = 1 << (t - 1), 0, p
        while d > 0:
            pairs += [(i, i + d) for i in range(n - d) if i & p == r]
            d, q, r = q - p, q >> 1, p
        p >>= 1
    needed, ops = {n // 2}, []
    for i, j in reversed(pairs):
        if i in needed or j in needed:
            ops.append((i, j, 0 if (i in needed and j in needed) else (1 if i in needed else 2)))
            needed |= {i, j}
    return tuple(reversed(ops))


def _mirror_index(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Source indices of scipy's "mirror" (torch "reflect") padding: d c b | a b c d | c b a; any pad width."""
    idx = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    idx = idx.remainder(2 * (n - 1))
    return torch.where(idx >= n, 2 * (n - 1) - idx, idx)


def median_filter_mirror(x: torch.Tensor, kernel_size: int, chunk_elements: int | None = None) -> torch.Tensor:
    """Median filter over all dims but the first of ``x`` (``(B, *spatial)``), cube window, mirror padding.

    Equals ``scipy.ndimage.median_filter(x, size=(1,) + (kernel_size,) * d, mode="mirror")``. MONAI's
    ``median_filter`` pads with "replicate" and runs ``torch.median`` on conv-unfolded windows (about 4 s for a
    128 x 128 x 155 volume with a 5 x 5 kernel on 2 CPU cores); this runs a pruned selection network of elementwise
    min/max over shifted views of the padded input, in chunks along the first spatial dim (about 0.15 s).

    Args:
        x: tensor ``(B, *spatial)``, any device.
        kernel_size: odd window side.
        chunk_elements: elements per window wire and chunk; default 2**17 on CPU (cache-sized), 2**23 on GPU.
    """
    k = _check_odd(kernel_size, "median_filter_mirror")
    if k == 1 or x.numel() == 0:
        return x.clone()
    src = x.to(torch.uint8) if x.dtype == torch.bool else x
    p, sp = k // 2, x.shape[1:]
    for d, s in enumerate(sp, start=1):
        src = src.index_select(d, _mirror_index(s, p, x.device))
    ops, offsets = _median_network(k ** len(sp)), list(product(range(k), repeat=len(sp)))
    if chunk_elements is None:
        chunk_elements = 2**17 if x.device.type == "cpu" else 2**23
    rows = max(1, chunk_elements // max(1, x.numel() // sp[0]))
    out = src.new_empty(x.shape)
    for r0 in range(0, sp[0], rows):
        h = min(rows, sp[0] - r0)
        blk = src[:, r0 : r0 + h + 2 * p]
        w = [
            blk[(slice(None), slice(o[0], o[0] + h)) + tuple(slice(a, a + s) for a, s in zip(o[1:], sp[1:]))]
            for o in offsets
        ]
        for i, j, kind in ops:
            if kind == 0:
                w[i], w[j] = torch.minimum(w[i], w[j]), torch.maximum(w[i], w[j])
            elif kind == 1:
                w[i] = torch.minimum(w[i], w[j])
            else:
                w[j] = torch.maximum(w[i], w[j])
        out[:, r0 : r0 + h] = w[len(w) // 2]
    return out.to(x.dtype)


class MedianFilter(Transform):
    """Median filter with mirror padding, per channel, per slice (2D window) or n-D (AnoFPDM: 5 x 5 per slice).

    Mirror padding (scipy ``mode="mirror"``, torch ``F.pad(mode="reflect")``: the edge sample is not repeated) is
    what AnoFPDM's ``median_pool`` uses; MONAI's ``median_filter``/``MedianSmooth`` pad with "replicate", which
    changes the border voxels. See :func:`median_filter_mirror`.

    Args:
        kernel_size: odd side of the window.
        slice_axis: spatial axis of the slices to filter one by one with a 2D window; ``None``: n-D window.

    Returns:
        the filtered image, same shape, dtype, type, device and meta as the input.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, kernel_size: int = 5, slice_axis: int | None = -1) -> None:
        self.kernel_size = _check_odd(kernel_size, type(self).__name__)
        self.slice_axis = slice_axis

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        x = convert_to_tensor(img, track_meta=False)
        _check_image(x.ndim, type(self).__name__)
        b, restore = _to_batch(x, self.slice_axis)
        return convert_to_dst_type(restore(median_filter_mirror(b, self.kernel_size)), dst=img)[0]


class BrainErosionMask(Transform):
    """Zero a map outside the brain mask eroded by ``iterations`` pixels, per slice (Baur et al. 2021).

    Reconstruction maps light up along the brain's rim (skull-stripping leftovers, partial volume, the sharp
    brain/background edge that a diffusion model blurs); eroding the brain mask with a 3 x 3 square ``iterations``
    times before scoring removes that rim. Outside the image counts as background, so a brain touching the border
    is eroded there too. Only the map changes: the brain mask itself (what is evaluated) is left as it is.

    Args:
        iterations: 3 x 3 erosions (0 keeps the map inside the brain mask unchanged, as a plain masking).
        slice_axis: spatial axis of the slices eroded one by one in 2D; ``None``: n-D erosion.

    Returns:
        ``img * eroded(brain)``, same shape, dtype, type, device and meta as ``img``.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, iterations: int = 3, slice_axis: int | None = -1) -> None:
        if int(iterations) != iterations or iterations < 0:
            raise ValueError(f"BrainErosionMask: iterations must be an integer >= 0, got {iterations}")
        self.iterations = int(iterations)
        self.slice_axis = slice_axis

    def eroded(self, brain: NdarrayOrTensor) -> torch.Tensor:
        """The eroded brain mask (bool, the shape of ``brain``, channel-first)."""
        b = convert_to_tensor(brain, track_meta=False) > 0
        _check_image(b.ndim, type(self).__name__)
        if self.iterations == 0:
            return b
        flat, restore = _to_batch(b.float(), self.slice_axis)
        flat = flat[:, None]
        for _ in range(self.iterations):
            flat = cast(torch.Tensor, erode(flat, 3, pad_value=0.0))
        return restore(flat[:, 0]) > 0.5

    def __call__(self, img: NdarrayOrTensor, brain: NdarrayOrTensor | None = None) -> NdarrayOrTensor:
        if brain is None:
            raise ValueError("BrainErosionMask needs the brain mask")
        x = convert_to_tensor(img, track_meta=False)
        _check_image(x.ndim, type(self).__name__)
        keep = self.eroded(brain).to(x.device)
        if keep.shape[1:] != x.shape[1:]:
            raise ValueError(f"brain mask spatial shape {tuple(keep.shape[1:])} != map shape {tuple(x.shape[1:])}")
        keep = keep.any(dim=0, keepdim=True)
        return convert_to_dst_type(torch.where(keep, x, torch.zeros_like(x)), dst=img)[0]


class AnomalyScore(Transform):
    """Per-slice anomaly score: a reduction of the map channel over the slice's brain pixels.

    MONAI has no per-slice image-level score. Slices without brain pixels score 0.

    Args:
        reduction: "max", "mean" or "quantile" (the ``q``-quantile of the brain pixels, linear interpolation, as
            ``numpy.quantile``'s default; robust to single hot pixels).
        q: quantile in [0, 1] for ``reduction="quantile"``.
        slice_axis: spatial axis the slices run along.
        channel: channel of ``pred`` holding the anomaly map.

    Returns:
        float tensor ``(S,)`` for a volume, 0-dim for a 2D slice (plain tensor on the input's device).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, reduction: str = "quantile", q: float = 0.99, slice_axis: int = -1, channel: int = 0) -> None:
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q}")
        self.reduction = reduction
        self.q = float(q)
        self.slice_axis = slice_axis
        self.channel = channel

    def __call__(self, pred: NdarrayOrTensor, brain: NdarrayOrTensor | None = None) -> torch.Tensor:
        x = convert_to_tensor(pred, track_meta=False)
        _check_image(x.ndim, type(self).__name__)
        amap = x[self.channel]
        amap = amap if amap.dtype == torch.float64 else amap.float()
        if brain is None:
            inside = torch.ones_like(amap, dtype=torch.bool)
        else:
            inside = convert_to_tensor(brain, device=x.device, track_meta=False) > 0
            if inside.ndim == x.ndim:
                inside = inside.any(dim=0)
            if inside.shape != amap.shape:
                raise ValueError(f"brain mask spatial shape {tuple(inside.shape)} != map shape {tuple(amap.shape)}")
        if amap.ndim == 2:  # one slice
            amap, inside = amap.reshape(1, -1), inside.reshape(1, -1)
        else:
            sdim = self.slice_axis % amap.ndim
            amap = amap.movedim(sdim, 0).reshape(amap.shape[sdim], -1)
            inside = inside.movedim(sdim, 0).reshape(amap.shape)
        count = inside.sum(dim=1)
        if self.reduction == "max":
            score = torch.where(inside, amap, -torch.inf).amax(dim=1)
        elif self.reduction == "mean":
            score = (amap * inside).sum(dim=1) / count.clamp_min(1)
        else:
            score = torch.nanquantile(torch.where(inside, amap, torch.nan), self.q, dim=1)
        score = torch.where(count > 0, score, torch.zeros_like(score))
        return score[0] if x.ndim == 3 else score


def volume_score(slice_scores: NdarrayOrTensor) -> torch.Tensor:
    """Volume-level score: the maximum of the per-slice scores (0 when there are none). Returns a 0-dim tensor."""
    s = convert_to_tensor(slice_scores, track_meta=False)
    return s.max() if s.numel() else s.new_zeros(())
