# SPDX-License-Identifier: Apache-2.0
"""Speed of AnoDDPM simplex noise: opensimplex (the peers' CPU reference) vs ours on CPU / CUDA vs ``torch.randn``.

One batch of ``--batch`` slices of ``--size`` x ``--size`` pixels, ``--octaves`` octaves (AnoDDPM: 6, persistence
0.8, frequency 64), a fresh timestep and seed per slice, as a training step draws it:

* ``opensimplex``: ``opensimplex==0.4.5.1`` (numba, bit-identical to AnoDDPM's code), one ``OpenSimplex(seed)`` and
  an octave loop of ``noise3array`` per slice (AnoDDPM's batch fix from AnoFPDM's ``scripts/noise.py``);
* ``opensimplex, seeds prebuilt``: the same with the ``OpenSimplex`` objects built outside the timing (the fields
  alone; ours always includes building its tables from the seeds);
* ``ours eager``: :func:`monai_adiff.noise.simplex_noise` with its default eager tensor kernels;
* ``ours compiled``: the same after ``use_compiled_kernels()`` (``torch.compile``; compile time reported apart;
  ``--no-compile`` skips it);
* ``torch.randn``: Gaussian noise of the same shape on the same device, the floor.

Prints one table (median of ``--repeats`` timed runs after one warm-up, the rows' runs interleaved round robin so
load changes on a shared machine hit every row alike) and the ratios the targets are stated in: throughput vs
opensimplex, and time vs ``torch.randn`` on the same device. opensimplex's ``noise3array`` parallelises over its
outermost (z) axis only, which has one entry here, so it runs on one core whatever ``--threads`` says; ours uses
every torch thread.

    python benchmarks/noise_speed.py --device cpu
    python benchmarks/noise_speed.py --device all --batch 64 --size 128 --octaves 6 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from monai_adiff.noise import simplex_noise, use_compiled_kernels


class _Row:
    """One timed method: ``fn`` run with compiled noise kernels on or off, on ``device``."""

    def __init__(self, method: str, device: torch.device, fn: Callable[[], object], compiled: bool = False):
        self.method, self.device, self.fn, self.compiled = method, device, fn, compiled
        self.times: list[float] = []

    def run(self) -> float:
        use_compiled_kernels(self.compiled)
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda *_: None)
        sync(self.device)
        start = time.perf_counter()
        self.fn()
        sync(self.device)
        return time.perf_counter() - start


def _time_interleaved(rows: list[_Row], repeats: int) -> dict[str, float]:
    """Time every row ``repeats`` times (into ``row.times``) after one warm-up call each, interleaved round robin so
    that load changes on a shared machine hit every row alike; returns the warm-up times (compilation)."""
    warmup = {f"{r.method} {r.device.type}": r.run() for r in rows}
    for _ in range(repeats):
        for r in rows:
            r.times.append(r.run())
    use_compiled_kernels(False)
    return warmup


def _numba_threads() -> str:
    try:
        import numba

        return str(numba.get_num_threads())
    except ImportError:
        return "no"


def opensimplex_batch(
    batch: int, size: int, octaves: int, rng: np.random.Generator, generators: list | None = None
) -> np.ndarray:
    """The peers' CPU path: a fresh seed per slice, octave loop of ``noise3array`` (AnoDDPM semantics).

    ``generators``: prebuilt ``OpenSimplex`` objects, one per slice, to time the fields alone (building one, a
    pure-Python permutation shuffle, is ~1 ms).
    """
    import opensimplex

    x = np.arange(size)
    out = np.zeros((batch, size, size))
    for b in range(batch):
        if generators is None:
            gen = opensimplex.OpenSimplex(seed=int(rng.integers(-(10**10), 10**10)))
        else:
            gen = generators[b]
        t = float(rng.integers(0, 1000))
        f, amp = 64.0, 1.0
        for _ in range(octaves):
            out[b] += amp * gen.noise3array(x / f, x / f, np.array([t / f]))[0]
            f, amp = f / 2, amp * 0.8
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--octaves", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch and numba alike (default: their defaults)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        try:
            import numba

            numba.set_num_threads(args.threads)
        except ImportError:
            pass

    devices = []
    if args.device in ("cpu", "all"):
        devices.append(torch.device("cpu"))
    if args.device in ("cuda", "all"):
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        elif args.device == "cuda":
            parser.error("--device cuda: no CUDA device available")
        else:
            print("(no CUDA device: CUDA rows skipped)")

    shape = (args.batch, 1, args.size, args.size)
    print(
        f"simplex noise, batch {args.batch} x {args.size} x {args.size}, {args.octaves} octaves; "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, {_numba_threads()} numba threads, "
        f"{os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    )
    rng = np.random.default_rng(0)
    import opensimplex

    prebuilt = [opensimplex.OpenSimplex(seed=int(s)) for s in rng.integers(-(10**10), 10**10, args.batch)]
    cpu = torch.device("cpu")
    timed = [
        _Row("opensimplex 0.4.5.1 (numba)", cpu, lambda: opensimplex_batch(args.batch, args.size, args.octaves, rng)),
        _Row(
            "opensimplex, seeds prebuilt",
            cpu,
            lambda: opensimplex_batch(args.batch, args.size, args.octaves, rng, prebuilt),
        ),
    ]
    for device in devices:
        gen = torch.Generator(device=device).manual_seed(0)

        def ours(gen: torch.Generator = gen, device: torch.device = device) -> torch.Tensor:
            t = torch.randint(0, 1000, (args.batch,), generator=gen, device=device)
            return simplex_noise(shape, t, octaves=args.octaves, generator=gen, device=device)

        timed.append(_Row("ours, eager", device, ours))
        if not args.no_compile:
            timed.append(_Row("ours, torch.compile", device, ours, compiled=True))
        timed.append(
            _Row("torch.randn (floor)", device, lambda g=gen, d=device: torch.randn(shape, generator=g, device=d))
        )
    warmup = _time_interleaved(timed, args.repeats)
    rows = [(r.method, r.device.type, statistics.median(r.times)) for r in timed]
    t_os, t_fields = rows[0][2], rows[1][2]
    randn_time = {dev: sec for method, dev, sec in rows if method.startswith("torch.randn")}
    compile_time = {r.device.type: warmup[f"{r.method} {r.device.type}"] for r in timed if r.compiled}

    print()
    print(f"| {'method':30s} | device | ms / batch | slices / s | x opensimplex | x randn time |")
    print(f"|{'-' * 32}|--------|-----------:|-----------:|--------------:|-------------:|")
    for method, dev, sec in rows:
        speedup = t_os / sec
        vs_randn = sec / randn_time[dev] if dev in randn_time else float("nan")
        print(
            f"| {method:30s} | {dev:6s} | {sec * 1e3:10.2f} | {args.batch / sec:10.1f} | {speedup:13.2f} | "
            f"{vs_randn:12.1f} |"
        )
    for dev, sec in compile_time.items():
        print(f"(first torch.compile call on {dev}, compilation included: {sec:.1f} s)")
    print()
    print("targets: CUDA >= 1000x opensimplex and <= 10x torch.randn time; CPU >= 3x opensimplex at batch 64")
    for method, dev, sec in rows:
        if method.startswith("ours"):
            print(
                f"  {method} on {dev}: {t_os / sec:.2f}x opensimplex ({t_fields / sec:.2f}x its fields alone), "
                f"{sec / randn_time[dev]:.1f}x torch.randn time"
            )


if __name__ == "__main__":
    main()
