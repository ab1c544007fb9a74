# SPDX-License-Identifier: Apache-2.0
"""Simplex noise of AnoDDPM and Tsimplex noise of DTU-Net, on any device, one independent field per sample.

* AnoDDPM (Wyatt et al., CVPRW 2022, section 3.3 and its code ``simplex.py::rand_3d_fixed_T_octaves``): sample ``b``,
  channel ``c`` is ``sum_k p^k * simplex3(x / f_k, y / f_k, t_b / f_k)`` with ``x, y`` pixel indices, ``f_0`` the
  frequency (a wavelength in pixels, the paper's "frequency 2^-6" = 64), ``f_{k+1} = f_k / 2`` and the *timestep* as
  third coordinate.
* Tsimplex (DTU-Net, section 3.2 of ``papers/dtunet-tsimplex.txt``; Annotsim's ``rand_4d_fixed_T_octaves``): the same
  octave sum of ``simplex4(x / f, y / f, c / f, t_b / f)``, the channel index being a coordinate, so channels of a
  sample are correlated fields of one 4D noise.

Both equal the ``opensimplex==0.4.5.1`` package (bit-identical to both peers' code) within float32 rounding: the
same seed gives the same field. What differs from the peers, on purpose:

* every sample has its own seed (``seeds[b]``; channel ``c`` of simplex noise uses ``seeds[b] + c``). AnoDDPM repeats
  one field over the batch (and fails for batch > 1); Annotsim gives identical noise to samples with equal ``t``.
  Here two samples get equal fields only when given equal seeds (and equal ``t``);
* the noise is made on the requested device with tensor ops; with ``seeds=None`` the seeds are drawn from
  ``generator`` (or the device's default generator) on that device, so nothing is read back to the host;
* 3D volumes ``(B, C, D, H, W)``: simplex noise uses 4D OpenSimplex with the slice index as third coordinate,
  ``sum_k p^k * simplex4(x / f_k, y / f_k, z / f_k, t_b / f_k)`` (``z = arange(D)``), i.e. the 3D analogue of the
  AnoDDPM field. Tsimplex on volumes would need 5D noise and is refused.

Nothing is normalised (AnoDDPM's 6 octaves, persistence 0.8, frequency 64: std about 0.5, range about +-1.9); the
networks learn that scale.

Host and device: every table is built on the target device with tensor ops (:mod:`monai_adiff.noise.tables`);
nothing is ever read back to the host. Seeds drawn from a generator on the device (``seeds=None``) never touch the
host; explicit Python seeds are copied host-to-device once (``P`` integers) and their tables cached (small LRU); the
constant tables (gradients, vertex offsets) are uploaded once per device. Kernels run eagerly by default;
:func:`use_compiled_kernels` switches to ``torch.compile``-fused kernels (see its docstring).
"""

from __future__ import annotations

import math
import numbers
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx.experimental._config  # use_duck_shape, see _compiled_term

from monai_adiff.noise.lattice3 import Tables3, gradient_tables3, opensimplex3
from monai_adiff.noise.lattice4 import Tables4, gradient_tables4, opensimplex4
from monai_adiff.noise.tables import normalize_seeds, permutation_tables

__all__ = ["clear_noise_cache", "compiled_kernels_enabled", "simplex_noise", "tsimplex_noise", "use_compiled_kernels"]

_SEED_LOW, _SEED_HIGH = -(2**62), 2**62
# points per kernel call: cache-sized on CPU (the eager kernels run ~300 elementwise ops over each chunk); on
# accelerators large enough to fill the device while bounding the ~100 bytes/point of temporaries
_CPU_CHUNK = 1 << 16
_DEVICE_CHUNK = 1 << 21
_CACHE_SIZE = 8
_MAX_PLANES = 1 << 15  # the kernels address tables with a 15-bit plane index

_cache: OrderedDict[tuple, Any] = OrderedDict()
_cache_lock = threading.Lock()
_compiled: dict[tuple[str, bool], Callable] = {}
_use_compiled = os.environ.get("MONAI_ADIFF_NOISE_COMPILE", "0") == "1"
# no fused multiply-add in Triton (the float64 cell logic must round like the reference; Inductor's C++ backend
# already compiles with -ffp-contract=off); indices are in range by construction (masked to the table sizes)
_COMPILE_OPTIONS: dict[str, str | int | bool | Callable[..., Any]] = {
    "emulate_precision_casts": True,
    "assert_indirect_indexing": False,
}


def use_compiled_kernels(enabled: bool = True) -> None:
    """Evaluate the noise with ``torch.compile``-fused kernels (default: eager tensor ops).

    A fused kernel reads the coordinates once and keeps the ~300 intermediate values per point in registers instead
    of writing each to memory (speed and compile times: ``benchmarks/README.md``); on GPUs it replaces ~300 kernel
    launches per octave by one. The first call per kernel type compiles (needs a C++ compiler, or Triton on GPUs;
    cached on disk by Inductor afterwards). The same fields come out:
    Inductor's C++ backend does not contract floating-point operations, and Triton's fused multiply-add is disabled,
    so the float64 cell logic rounds like the reference. If compiling fails, a warning is issued and the eager
    kernels are used. Also set by the environment variable ``MONAI_ADIFF_NOISE_COMPILE=1``.
    """
    global _use_compiled
    _use_compiled = bool(enabled)


def compiled_kernels_enabled() -> bool:
    """Whether :func:`use_compiled_kernels` is on."""
    return _use_compiled


def clear_noise_cache() -> None:
    """Drop cached lookup tables (those built for explicitly given seeds)."""
    with _cache_lock:
        _cache.clear()


def simplex_noise(
    shape: Sequence[int],
    timesteps: torch.Tensor | int | float,
    *,
    octaves: int = 6,
    persistence: float = 0.8,
    frequency: float = 64.0,
    seeds: Sequence[int] | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """AnoDDPM simplex noise, one independent field per sample and channel.

    Sample ``b``, channel ``c`` equals ``sum_k persistence**k * OpenSimplex(seeds[b] + c).noise3array(x / f_k,
    y / f_k, [t_b / f_k])[0]`` with ``x = arange(W)``, ``y = arange(H)``, ``f_0 = frequency``, ``f_{k+1} = f_k / 2``
    (``opensimplex==0.4.5.1``). For volumes ``(B, C, D, H, W)``: ``noise4array(x / f_k, y / f_k, z / f_k,
    [t_b / f_k])[0]`` with ``z = arange(D)``.

    Args:
        shape: ``(B, C, H, W)`` or ``(B, C, D, H, W)``.
        timesteps: ``(B,)`` tensor (integer or float) of the samples' timesteps, or one number for all samples.
        octaves: number of octaves (AnoDDPM: 6).
        persistence: amplitude ratio between successive octaves (AnoDDPM: 0.8).
        frequency: wavelength of the first octave in pixels (AnoDDPM: 64).
        seeds: ``B`` integer seeds (any size; wrapped to int64 like OpenSimplex does), a list or an int64 tensor.
            ``None``: drawn from ``generator``, independent per sample.
        generator: ``torch.Generator`` for the seeds when ``seeds`` is ``None`` (default: the device's global one).
            A generator on the target device keeps everything on the device.
        device: device of the noise (default: that of ``timesteps`` if a tensor, else of ``generator``, else CPU).
        dtype: floating dtype of the result (computed in float32, within ~1e-6 of the float64 reference).

    Returns:
        tensor of ``shape`` on ``device``.

    Raises:
        ValueError: bad shape, timesteps, seeds or octave parameters.
    """
    shape = _check_shape(shape, "simplex_noise", (4, 5))
    _check_octaves(octaves, persistence, frequency)
    _check_dtype(dtype)
    n_batch, n_chan = shape[0], shape[1]
    device = _resolve_device(device, timesteps, generator)
    t = _check_timesteps(timesteps, n_batch, device)
    sample_seeds = _sample_seeds(seeds, generator, n_batch, device)
    volume = len(shape) == 5
    kind = "noise4" if volume else "noise3"
    # channel c of sample b uses seed seeds[b] + c (AnoDDPM's per-channel fields), planes ordered (b, c)
    tables = _tables(kind, sample_seeds, n_chan, device)
    lead = shape[:-1]  # (B, C, H) or (B, C, D, H): rows of W points

    def row_coords(idx: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        b, c, h = idx[0], idx[1], idx[-1]
        coords = [h.double()] + ([idx[2].double()] if volume else []) + [t[b]]
        return coords, b * n_chan + c

    out = _octave_sum(kind, tables, lead, shape[-1], row_coords, octaves, persistence, frequency, device)
    return out.view(shape).to(dtype)


def tsimplex_noise(
    shape: Sequence[int],
    timesteps: torch.Tensor | int | float,
    *,
    octaves: int = 6,
    persistence: float = 0.9,
    frequency: float = 64.0,
    seeds: Sequence[int] | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Tsimplex noise of DTU-Net: 4D simplex with the channel index as a coordinate, one seed per sample.

    Sample ``b`` equals ``sum_k persistence**k * OpenSimplex(seeds[b]).noise4array(x / f_k, y / f_k, c / f_k,
    [t_b / f_k])[0]`` with ``c = arange(C)`` (channels of a sample are correlated, about 0.94 between neighbours at
    frequency 64). Unlike Annotsim, two samples with equal ``t`` get different noise unless given equal seeds.

    Args:
        shape: ``(B, C, H, W)``; volumes are refused (they would need 5D noise).
        timesteps, octaves, seeds, generator, device, dtype: as :func:`simplex_noise`.
        persistence: amplitude ratio between octaves (DTU-Net: 0.9).
        frequency: wavelength of the first octave in pixels (DTU-Net: 64).

    Returns:
        tensor of ``shape`` on ``device``.

    Raises:
        ValueError: a volume shape, or bad shape, timesteps, seeds or octave parameters.
    """
    if isinstance(shape, (Sequence, torch.Size)) and len(shape) == 5:
        raise ValueError(
            f"tsimplex_noise: shape {tuple(shape)} is a volume; Tsimplex uses the channel as a noise coordinate, so a "
            "volume (x, y, z, channel, timestep) would need 5D simplex noise, which OpenSimplex does not provide. "
            "Use simplex_noise for volumes (4D noise over x, y, z and the timestep)."
        )
    shape = _check_shape(shape, "tsimplex_noise", (4,))
    _check_octaves(octaves, persistence, frequency)
    _check_dtype(dtype)
    n_batch = shape[0]
    device = _resolve_device(device, timesteps, generator)
    t = _check_timesteps(timesteps, n_batch, device)
    sample_seeds = _sample_seeds(seeds, generator, n_batch, device)
    tables = _tables("noise4", sample_seeds, 1, device)

    def row_coords(idx: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        b, c, h = idx
        return [h.double(), c.double(), t[b]], b

    out = _octave_sum("noise4", tables, shape[:-1], shape[-1], row_coords, octaves, persistence, frequency, device)
    return out.view(shape).to(dtype)


# ----------------------------------------------------------------------------------------------------------------
# validation


def _check_shape(shape: Sequence[int], name: str, ndims: tuple[int, ...]) -> tuple[int, ...]:
    if not isinstance(shape, (Sequence, torch.Size)) or isinstance(shape, str):
        raise ValueError(f"{name}: shape must be a sequence of ints, got {shape!r}")
    if len(shape) not in ndims:
        want = " or ".join({4: "(B, C, H, W)", 5: "(B, C, D, H, W)"}[n] for n in ndims)
        raise ValueError(f"{name}: shape must be {want}, got {tuple(shape)} ({len(shape)} dims)")
    out: list[int] = []
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or int(s) < 1:
            raise ValueError(f"{name}: shape entries must be positive ints, got {tuple(shape)}")
        out.append(int(s))
    return tuple(out)


def _check_dtype(dtype: torch.dtype) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")


def _check_octaves(octaves: int, persistence: float, frequency: float) -> None:
    if isinstance(octaves, bool) or not isinstance(octaves, numbers.Integral) or octaves < 1:
        raise ValueError(f"octaves must be a positive int, got {octaves!r}")
    if not isinstance(persistence, numbers.Real) or not math.isfinite(persistence):
        raise ValueError(f"persistence must be a finite number, got {persistence!r}")
    if not isinstance(frequency, numbers.Real) or not math.isfinite(frequency) or frequency <= 0:
        raise ValueError(f"frequency must be a positive number (a wavelength in pixels), got {frequency!r}")


def _resolve_device(device, timesteps, generator) -> torch.device:
    if device is not None:
        return torch.device(device)
    if isinstance(timesteps, torch.Tensor):
        return timesteps.device
    if generator is not None:
        return generator.device
    return torch.device("cpu")


def _check_timesteps(timesteps, n_batch: int, device: torch.device) -> torch.Tensor:
    """float64 ``(B,)`` timesteps on ``device`` (metadata checks only: no device-to-host read)."""
    if isinstance(timesteps, torch.Tensor):
        if timesteps.dtype == torch.bool or timesteps.is_complex():
            raise ValueError(f"timesteps must be integer or real, got dtype {timesteps.dtype}")
        if timesteps.dim() == 0:
            timesteps = timesteps.reshape(1).expand(n_batch)
        elif timesteps.dim() != 1 or timesteps.shape[0] != n_batch:
            raise ValueError(
                f"timesteps must be a scalar or have shape ({n_batch},) (one per sample), got {tuple(timesteps.shape)}"
            )
        return timesteps.to(device=device, dtype=torch.float64, non_blocking=True)
    if isinstance(timesteps, bool) or not isinstance(timesteps, numbers.Real) or not math.isfinite(timesteps):
        raise ValueError(f"timesteps must be a (B,) tensor or a finite number, got {timesteps!r}")
    return torch.full((n_batch,), float(timesteps), dtype=torch.float64, device=device)


def _sample_seeds(seeds, generator, n_batch: int, device: torch.device) -> list[int] | torch.Tensor:
    """``B`` seeds: Python ints (explicit, cacheable) or an int64 tensor on ``device``."""
    if seeds is None:
        gen_device = generator.device if generator is not None else device
        drawn = torch.randint(_SEED_LOW, _SEED_HIGH, (n_batch,), generator=generator, device=gen_device)
        return drawn.to(device, non_blocking=True)
    if isinstance(seeds, torch.Tensor):
        if seeds.dim() != 1 or seeds.shape[0] != n_batch:
            raise ValueError(f"seeds must have shape ({n_batch},) (one per sample), got {tuple(seeds.shape)}")
        if seeds.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise ValueError(f"seeds must be an integer tensor, got dtype {seeds.dtype}")
        return seeds.to(device=device, dtype=torch.int64, non_blocking=True)
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
        raise ValueError(f"seeds must be a sequence of {n_batch} ints or an int tensor, got {seeds!r}")
    if len(seeds) != n_batch:
        raise ValueError(f"seeds must give one seed per sample: expected {n_batch}, got {len(seeds)}")
    try:
        return normalize_seeds(seeds)
    except TypeError as err:
        raise ValueError(str(err)) from None


# ----------------------------------------------------------------------------------------------------------------
# tables and evaluation


def _tables(kind: str, sample_seeds: list[int] | torch.Tensor, n_chan: int, device: torch.device) -> Tables3 | Tables4:
    """Lookup tables for planes ``(b, c)`` with seeds ``seeds[b] + c`` (cached when the seeds are Python ints)."""
    build = gradient_tables3 if kind == "noise3" else gradient_tables4
    n_planes = (sample_seeds.shape[0] if isinstance(sample_seeds, torch.Tensor) else len(sample_seeds)) * n_chan
    if n_planes > _MAX_PLANES:
        raise ValueError(f"{n_planes} seeded fields (samples x channels) in one call; at most {_MAX_PLANES}: split it")
    if isinstance(sample_seeds, torch.Tensor):
        offsets = torch.arange(n_chan, dtype=torch.int64, device=device)
        return build(permutation_tables((sample_seeds[:, None] + offsets).reshape(-1)))  # int64 add wraps
    plane_seeds = normalize_seeds([s + c for s in sample_seeds for c in range(n_chan)])
    key = (kind, tuple(plane_seeds), str(device))
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    tables = build(permutation_tables(torch.tensor(plane_seeds, dtype=torch.int64).to(device)))
    with _cache_lock:
        _cache[key] = tables
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return tables


def _octave_term(kind: str, pow2: bool) -> Callable:
    """The body of a compiled kernel: ``acc + amp * noise(coords / f)`` for flat pixel-unit coordinates (``f``,
    ``amp``: 0-d tensors, so one compilation serves every octave). For a power-of-two ``f`` the caller passes
    ``1 / f`` and the body multiplies: bit-identical to dividing, and a float64 multiply is several times cheaper
    than a division (~6 % of the fused 3D kernel)."""
    kernel = opensimplex3 if kind == "noise3" else opensimplex4

    def term(acc, *args):
        *coords, plane, tables, f, amp = args
        coords = [c * f for c in coords] if pow2 else [c / f for c in coords]
        return acc + amp * kernel(*coords, plane, tables, True)

    return term


def _compiled_term(kind: tuple[str, bool]) -> Callable:
    fn = _compiled.get(kind)
    if fn is None:
        # flat 1-D inputs with dynamic sizes: one compilation per kernel serves every shape and batch size
        body = _octave_term(*kind)
        compiled = torch.compile(body, dynamic=True, options=_COMPILE_OPTIONS)

        def fn(*args, **kwargs):
            # no "duck" size equalities between unrelated tables (they would force recompiles for other shapes)
            with torch.fx.experimental._config.patch(use_duck_shape=False):
                return compiled(*args, **kwargs)

        _compiled[kind] = fn
    return fn


def _run_compiled(kind: tuple[str, bool], *args) -> torch.Tensor | None:
    """The compiled kernel's result, or ``None`` (with a warning, compiled kernels switched off) if it fails."""
    global _use_compiled
    try:
        return _compiled_term(kind)(*args)
    except Exception as err:  # a missing compiler / Triton, or an Inductor limitation: fall back, do not fail
        _use_compiled = False
        warnings.warn(
            f"compiled noise kernels failed ({type(err).__name__}: {err}); using the eager kernels", stacklevel=2
        )
        return None


def _octave_sum(
    kind: str,
    tables: Tables3 | Tables4,
    lead: tuple[int, ...],
    width: int,
    row_coords: Callable[[list[torch.Tensor]], tuple[list[torch.Tensor], torch.Tensor]],
    octaves: int,
    persistence: float,
    frequency: float,
    device: torch.device,
) -> torch.Tensor:
    """``sum_k persistence**k * noise(x / f_k, row coordinates / f_k)`` over a field of ``prod(lead)`` rows of
    ``width`` points, in chunks of rows; ``row_coords`` maps the rows' multi-indices to their coordinates other than
    ``x`` (pixel units) and their seed planes."""
    n_rows = math.prod(lead)
    out = torch.empty((n_rows, width), dtype=torch.float32, device=device)
    chunk = _CPU_CHUNK if device.type == "cpu" else _DEVICE_CHUNK
    if _use_compiled:
        # the fused kernel keeps no temporaries in memory, only the flat inputs (~32 bytes/point): on CPU fewer,
        # larger calls save Dynamo's ~0.3 ms per call (32 MB of inputs); on devices 256 MB of inputs is plenty
        chunk *= 16 if device.type == "cpu" else 4
    rows_per_chunk = max(1, chunk // width)
    kernel: Callable[..., torch.Tensor] = opensimplex3 if kind == "noise3" else opensimplex4
    columns = torch.arange(width, dtype=torch.float64, device=device)
    for start in range(0, n_rows, rows_per_chunk):
        stop = min(n_rows, start + rows_per_chunk)
        rows = torch.arange(start, stop, device=device)
        idx = []
        for size in reversed(lead):  # unravel the row index into (b, c, [d,] h)
            idx.append(rows % size)
            rows = rows // size
        coords, plane = row_coords(idx[::-1])
        plane = plane.to(torch.int32)
        if _use_compiled:  # flat, materialised inputs
            shape2 = (stop - start, width)
            flat = [columns[None].expand(shape2)] + [c[:, None].expand(shape2) for c in coords + [plane]]
            flat = [a.reshape(-1) for a in flat]
            acc: torch.Tensor | None = torch.zeros(flat[0].shape, dtype=torch.float32, device=device)
            f, amp = float(frequency), 1.0
            for _ in range(octaves):
                pow2 = math.frexp(f)[0] == 0.5 and 2.0**-1000 < f < 2.0**1000  # 1 / f exact and finite
                # CPU scalars: passed to the kernel, not copied
                f_t = torch.tensor(1 / f if pow2 else f, dtype=torch.float64)
                amp_t = torch.tensor(amp, dtype=torch.float32)
                acc = _run_compiled((kind, pow2), acc, *flat, tables, f_t, amp_t)
                if acc is None:
                    break
                f, amp = f / 2, amp * persistence
            if acc is not None:
                out[start:stop] = acc.view(shape2)
                continue
        acc, f, amp = None, float(frequency), 1.0
        for _ in range(octaves):
            value = kernel((columns / f)[None], *[(c / f)[:, None] for c in coords], plane[:, None], tables)
            acc = value if acc is None else acc.add_(value, alpha=amp)
            f, amp = f / 2, amp * persistence
        assert acc is not None  # octaves >= 1
        out[start:stop] = acc
    return out
