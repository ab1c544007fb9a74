# SPDX-License-Identifier: Apache-2.0
"""End-to-end ``monai-adiff infer`` seconds per 155-slice volume against the network's own floor, per bundle.

For each bundle, one run of ``monai-adiff infer`` (the CPU recipe's model, one BraTS-sized volume, reading, writing
and the overlay included) is timed in a warm process (a first call pays the imports and is reported apart). During
that run a forward hook records every call of the bundle's network(s) (the diffusion UNet, DTU-Net, the DAE's UNet,
D3AD's encoder, decoder, denoiser and feature extractor) with its input shapes. The floor is then the sum, over the
distinct calls, of their count times one call timed alone on the same inputs (median of ``--repeats``). The ratio
end-to-end / floor is what the rest of the pipeline (noise, resampling, post-processing, I/O) costs on top; the time
spent drawing noise (simplex, Tsimplex) in the same run is reported apart, with the ratio to network + noise.

    python benchmarks/inference_floor.py                                   # every bundle, random CPU-recipe weights
    python benchmarks/inference_floor.py --bundles sss anofpdm --model sss=MODEL_DIR --model anofpdm=MODEL_DIR
    python benchmarks/inference_floor.py --bundles sss --model sss=MODEL_DIR --store benchmarks/results

``--store`` writes each row as the bundle's speed record in the results store (the BraTS volume only), from which
the READMEs' seconds per volume are rendered (``python -m monai_adiff.benchmark.publish``).

Random weights give the same work as trained ones except where the weights choose it: AnoFPDM's forward sweep stops
early per slice and D3AD picks its noise level (so its step count) from its feature bank. Give those a trained model
folder (``monai-adiff train``) with ``--model``; rows from random weights say so.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monai_adiff.bundle import find_bundle, list_bundles  # noqa: E402
from monai_adiff.bundle.model_folder import MODEL  # noqa: E402
from monai_adiff.cli import main as cli_main  # noqa: E402

#: the modules whose calls make the floor: a method's networks, not the layers inside them
NETWORK_CLASSES = ("DiffusionModelUNet", "CFGDiffusionModelUNet", "DTUNet", "UNet", "Encoder", "Decoder",
                   "ResNetFeatures")  # fmt: skip
DEV_DATA = REPO.parent / "shared" / "data" / "brats18-dev"


def _volume(folder: Path) -> Path:
    """A BraTS case folder with 155 axial slices: the first dev case when the data are here, else a phantom."""
    if DEV_DATA.is_dir():
        cases = sorted(p for p in DEV_DATA.iterdir() if p.is_dir())
        if cases:
            return cases[0]
    from monai_adiff.data.synthetic import make_demo_dataset

    make_demo_dataset(folder / "phantom", cases=1, seed=0, shape=(240, 240, 155), lesion_fraction=1.0)
    return next(p for p in sorted((folder / "phantom").iterdir()) if p.is_dir())


def _random_model(bundle: str, folder: Path) -> Path:
    """A CPU-recipe checkpoint with random weights, recorded as training records it (D3AD: a bank of random
    slices, as ``bench_utils`` fits it)."""
    from benchmarks.bench_utils import cpu_training_parser
    from monai_adiff.engines.checkpoint import CheckpointInfo

    root = find_bundle(bundle)
    parser = cpu_training_parser(bundle)
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    if bundle == "d3ad":
        from benchmarks.bench_utils import BANK_SLICES, random_slices
        from monai_adiff.methods.d3ad.fitting import fit_feature_bank

        size, c = int(parser.get_parsed_content("spatial_size")), len(parser.get_parsed_content("modalities"))
        cpu = torch.device("cpu")
        batches = [{"image": random_slices(64, c, size, cpu, seed=i)} for i in range(BANK_SLICES // 64)]
        with torch.no_grad():
            fit_feature_bank(network, batches, torch.device("cpu"))
    info = CheckpointInfo(
        root, parser.get_parsed_content("checkpoint_config"), parser.get_parsed_content("recipe_config")
    )
    path = folder / bundle / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": network.state_dict(), "info": info.state_dict()}, path)
    return path


def _clone(x: Any) -> Any:
    return x.detach().clone() if isinstance(x, torch.Tensor) else x


def _signature(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple:
    shapes = [tuple(a.shape) if isinstance(a, torch.Tensor) else repr(a) for a in args]
    shapes += [(k, tuple(v.shape) if isinstance(v, torch.Tensor) else repr(v)) for k, v in sorted(kwargs.items())]
    return (type(module).__name__, id(module), tuple(shapes))


class PassRecorder:
    """Counts the calls of the network modules while active, keeping the first call's inputs of each kind."""

    def __init__(self) -> None:
        self.calls: dict[tuple, dict[str, Any]] = {}
        self._depth = 0

    def __enter__(self) -> PassRecorder:
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

        def pre(module, args):
            if type(module).__name__ in NETWORK_CLASSES:
                self._depth += 1

        def post(module, args, kwargs, output):
            if type(module).__name__ not in NETWORK_CLASSES:
                return
            self._depth -= 1
            if self._depth:  # a network inside a counted one (none today): its time is in the outer call
                return
            key = _signature(module, args, kwargs)
            inputs = {"args": tuple(map(_clone, args)), "kwargs": {k: _clone(v) for k, v in kwargs.items()}}
            entry = self.calls.setdefault(key, {"module": module, **inputs, "n": 0})
            entry["n"] += 1

        self._handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post, with_kwargs=True)]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()

    def floor(self, repeats: int) -> tuple[float, int, list[str]]:
        """(seconds, passes, a description per kind of call) of the recorded calls, each timed alone."""
        total, passes, kinds = 0.0, 0, []
        for (name, _, shapes), e in self.calls.items():
            one = _median_call(e["module"], e["args"], e["kwargs"], repeats)
            total += e["n"] * one
            passes += e["n"]
            batch = shapes[0][0] if shapes and isinstance(shapes[0], tuple) else "?"
            kinds.append(f"{e['n']} x {name}(batch {batch}) {one * 1000:.0f} ms")
        return total, passes, kinds

    def channels_last_floor(self, repeats: int) -> tuple[float, float]:
        """(seconds, max abs difference of the outputs) of the recorded calls with each network and its 4D inputs
        in channels-last memory format, timed round robin with the default format so both see the same load."""
        total, diff = 0.0, 0.0
        for e in self.calls.values():
            module, args, kwargs = e["module"], e["args"], e["kwargs"]
            fast = copy.deepcopy(module).to(memory_format=torch.channels_last)
            cl_args, cl_kwargs = _channels_last(args), {k: _channels_last(v) for k, v in kwargs.items()}
            times = []
            for _ in range(repeats):  # alternate, so drift in the machine's load hits both alike
                _median_call(module, args, kwargs, 1)
                times.append(_median_call(fast, cl_args, cl_kwargs, 1))
            total += e["n"] * statistics.median(times)
            with torch.no_grad():
                a, b = module(*args, **kwargs), fast(*cl_args, **cl_kwargs)
            diff = max(diff, _max_abs_diff(a, b))
        return total, diff


class NoiseTimer:
    """Seconds spent drawing noise (every :class:`~monai_adiff.noise.NoiseSpec` call) while active: the simplex and
    Tsimplex fields of SSS, AnoDDPM and DTU-Net are part of the method, not overhead, yet not network passes."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> NoiseTimer:
        from monai_adiff.noise.spec import NoiseSpec

        self._original = original = NoiseSpec.__call__
        timer = self

        def timed(spec, *args, **kwargs):
            t = time.perf_counter()
            try:
                return original(spec, *args, **kwargs)
            finally:
                timer.seconds += time.perf_counter() - t

        NoiseSpec.__call__ = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        from monai_adiff.noise.spec import NoiseSpec

        NoiseSpec.__call__ = self._original  # type: ignore[method-assign]


def _median_call(module: torch.nn.Module, args: tuple, kwargs: dict, repeats: int) -> float:
    """Median seconds of ``module(*args, **kwargs)`` over ``repeats`` calls after one warm-up call."""
    with torch.no_grad():
        module(*args, **kwargs)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            module(*args, **kwargs)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def _channels_last(x: Any) -> Any:
    if isinstance(x, torch.Tensor) and x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    if isinstance(x, tuple):
        return tuple(map(_channels_last, x))
    return x


def _max_abs_diff(a: Any, b: Any) -> float:
    if isinstance(a, torch.Tensor):
        return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0
    if isinstance(a, (tuple, list)):
        return max((_max_abs_diff(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, dict):
        return max((_max_abs_diff(a[k], b[k]) for k in a), default=0.0)
    return 0.0


def _timed_infer(argv: list[str]) -> float:
    """Seconds of one in-process ``monai-adiff infer`` call."""
    t = time.perf_counter()
    code = cli_main(argv)
    if code != 0:
        raise SystemExit(f"monai-adiff infer failed with exit code {code}")
    return time.perf_counter() - t


def _store(store: str, row: dict[str, Any], trained: bool, settings: list[str]) -> None:
    """The row as ``<store>/brats18-dev/speed/<bundle>@<version>.json``."""
    import os
    from datetime import date

    from monai_adiff.benchmark.store import write_speed_record

    bundle = row["bundle"]
    meta = json.loads((find_bundle(bundle) / "configs" / "metadata.json").read_text(encoding="utf-8"))
    model = f" --model {bundle}=MODEL_DIR" if trained else ""
    sets = "".join(f" --set {s}" for s in settings if s.startswith(f"{bundle}:"))
    record = {
        **{k: v for k, v in row.items() if k != "calls"},
        "version": meta["version"],
        "dataset": DEV_DATA.name,
        "recipe": "cpu",
        "machine": f"{os.cpu_count()} CPU cores (torch {torch.__version__}, {row['threads']} threads)",
        "calls": row["calls"],
        "date": date.today().isoformat(),
        "command": f"python benchmarks/inference_floor.py --bundles {bundle}{model}{sets} --store benchmarks/results",
    }
    print(f"speed record: {write_speed_record(store, record)}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundles", nargs="+", default=list_bundles(), help="default: every bundle")
    p.add_argument("--model", action="append", default=[], metavar="BUNDLE=MODEL", help="a trained model folder")
    p.add_argument("--repeats", type=int, default=3, help="timings per network call kind (median)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--json", help="also write the rows here")
    p.add_argument("--store", help="write each row as the bundle's speed record into this results store")
    p.add_argument(
        "--channels-last", action="store_true", help="also time the floor with the networks in channels-last format"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="BUNDLE:KEY=VALUE",
        help="a config override for one bundle's infer (a model an earlier version trained, run as the current recipe)",
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models = dict(m.split("=", 1) for m in args.model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        case = _volume(tmp_path)
        if args.store and not case.is_relative_to(DEV_DATA):
            raise SystemExit("--store: the reference volume (brats18-dev) is not here; a phantom is not stored")
        for bundle in args.bundles:
            if bundle in models:
                src = Path(models[bundle])
                ckpt = src / MODEL if src.is_dir() else src
                weights = "trained"
            else:
                ckpt, weights = _random_model(bundle, tmp_path / "models"), "random"
            # random weights have no label-free threshold fitted: the config's fixed threshold instead
            extra = [] if weights == "trained" else ["--set", "use_healthy_threshold=false"]
            for item in args.set:
                name, _, setting = item.partition(":")
                extra += ["--set", setting] if name == bundle else []
            argv = ["infer", bundle, str(case), "--checkpoint", str(ckpt), *extra, "--out"]
            first = _timed_infer([*argv, str(tmp_path / f"{bundle}_cold")])
            with PassRecorder() as rec, NoiseTimer() as noise:
                e2e = _timed_infer([*argv, str(tmp_path / f"{bundle}_warm")])
            floor, passes, kinds = rec.floor(args.repeats)
            if args.channels_last:
                cl_floor, cl_diff = rec.channels_last_floor(args.repeats)
                print(
                    f"{bundle}: floor {floor:.2f} s, channels-last {cl_floor:.2f} s ({floor / cl_floor:.2f}x), "
                    f"max abs output difference {cl_diff:.2e}",
                    flush=True,
                )
            row = {
                "bundle": bundle,
                "weights": weights,
                "seconds_per_volume": round(e2e, 2),
                "first_call_seconds": round(first, 2),
                "network_passes": passes,
                "floor_seconds": round(floor, 2),
                "ratio": round(e2e / floor, 2) if floor else None,
                "noise_seconds": round(noise.seconds, 2),
                "ratio_with_noise": round(e2e / (floor + noise.seconds), 2) if floor else None,
                "calls": kinds,
                "threads": torch.get_num_threads(),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.store:
                _store(args.store, row, bundle in models, args.set)
    print()
    print(f"one {case.name} volume (155 slices), torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| bundle | weights | passes | floor (s) | noise (s) | infer (s) | infer / floor | infer / (floor + noise) "
          "| first call (s) |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['bundle']} | {r['weights']} | {r['network_passes']} | {r['floor_seconds']:.2f} | "
              f"{r['noise_seconds']:.2f} | {r['seconds_per_volume']:.2f} | {r['ratio']} | {r['ratio_with_noise']} | "
              f"{r['first_call_seconds']:.2f} |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
