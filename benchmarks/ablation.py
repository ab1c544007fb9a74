# SPDX-License-Identifier: Apache-2.0
"""Ablations of a trained SSS / AnoDDPM / DTU-Net checkpoint on held-out patients, beside the FLAIR-intensity baseline.

One run reconstructs every brain slice of the validation and test patients once per noise level (or step count), then
scores every combination of the map options on the same slices, so rows differ only in the option they name:

- residual: the papers' squared error, or only positive residuals (hyperintense lesions, Baur et al. 2021);
- noise level(s): each t alone and the mean map over all of them; the SSS paper's common-regions vote; for the
  iterative bundles (AnoDDPM, DTU-Net) the reverse-step count or, with ``--lambdas``, lambda;
- map post-processing: median filter (3 / 5 px) and brain-mask erosion (1-3 px), as Baur et al. (2021);
- the FLAIR baseline raw and with the same post-processing.

Label-free masks: the threshold is the ``q``-quantile of the map over the tumour-free brain slices of the validation
patients (:func:`monai_adiff.metrics.healthy_quantile`, the bundles' ``healthy_threshold`` workflow); the
label-chosen best Dice is reported beside it as a ceiling; ``otsu`` holds the metrics of the per-volume Otsu mask
(DTU-Net's public code). ``val_image_auroc`` is the image-level AUROC of the slice
scores (0.99 quantile of the map over the brain) on the validation patients, from slice labels alone: a way to
choose a row without pixel labels. Metrics are pooled over the test patients (unhealthy and
mixed setups) with the per-patient spread. Everything comes from the bundle's own config (preprocessing, split,
network, inferer), so a row can be reproduced with the bundle's workflows and the same overrides.

    python benchmarks/ablation.py --bundle sss --data $BRATS_DEV --checkpoint runs/sss/models/model.pt \\
        --args-file bundles/sss/configs/cpu_args.json --timesteps 250,300,350,400 --out runs/sss/ablation.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser

import monai_adiff.data as mdata
from monai_adiff.bundle import find_bundle
from monai_adiff.engines import load_network_weights
from monai_adiff.metrics import AnomalyEvaluation, healthy_quantile
from monai_adiff.metrics.functional import auroc
from monai_adiff.transforms import BrainErosionMask, Dilate, KeepLargestComponents, MedianFilter, otsu_threshold
from monai_adiff.utils import atomic_write_text


def bundle_parser(bundle: str, data: str, args_file: str | None, overrides: dict[str, Any]) -> ConfigParser:
    root = find_bundle(bundle)
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser["bundle_root"] = str(root)
    parser["dataset_dir"] = data
    parser["baseline_key"] = "flair_intensity"
    if args_file:
        for k, v in json.loads(Path(args_file).read_text(encoding="utf-8")).items():
            parser[k] = v
    parser["threshold_file"] = None  # thresholds are set here, per row, from the validation patients
    for k, v in overrides.items():
        parser[k] = v
    return parser


def load_volumes(parser: ConfigParser, sections: list[str]) -> dict[str, list[dict]]:
    all_cases = mdata.load_cases(
        dataset_dir=parser["dataset_dir"],
        modalities=parser.get_parsed_content("modalities"),
        val_fraction=parser.get_parsed_content("val_fraction"),
        test_fraction=parser.get_parsed_content("test_fraction"),
        seed=parser.get_parsed_content("split_seed"),
    )
    prep = parser.get_parsed_content("preprocessing")
    out: dict[str, list[dict]] = {}
    for section in sections:
        vols = []
        for item in mdata.with_image_key(all_cases[section], parser.get_parsed_content("modalities")):
            d = prep(item)
            keep = torch.as_tensor(d["brain_slices"]).bool()
            sl = lambda v, keep=keep: v[0].as_subclass(torch.Tensor).permute(2, 0, 1)[keep]  # noqa: E731  (S, H, W)
            vols.append(
                {
                    "case": item["case"],
                    "x": d["image"].as_subclass(torch.Tensor).permute(3, 0, 1, 2)[keep],  # (N, C, H, W)
                    "brain": sl(d["brain"]).bool(),
                    "label": sl(d["label"]) > 0,
                    "flair": sl(d["flair_intensity"]).float(),
                }
            )
        out[section] = vols
    return out


def reconstruct(
    inferer, network, x: torch.Tensor, level: int, method: str, batch: int, seed: int, lambda_steps: int | None = None
) -> torch.Tensor:
    """Signed residual (N, H, W) of the channel mean: x - x_hat at one noise level / step count (iterative bundles:
    ``level`` is lambda when ``lambda_steps`` gives the step count)."""
    gen = torch.Generator().manual_seed(seed)
    parts = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            xb = x[i : i + batch]
            if method == "sss":
                xh = inferer.reconstruct(xb, network, level, gen)
            elif lambda_steps is not None:
                inferer.noise_level, inferer.num_inference_steps = level, min(lambda_steps, level)
                xh = inferer.reconstruct(xb, network, gen)
            else:
                inferer.num_inference_steps = level
                xh = inferer.reconstruct(xb, network, gen)
            parts.append((xb - xh).mean(dim=1))
    return torch.cat(parts)


def post(amap: torch.Tensor, brain: torch.Tensor, median: int, erosion: int) -> torch.Tensor:
    """The bundles' map transforms on an (N, H, W) stack (as a (1, H, W, N) image): median, then rim erosion."""
    img = amap.permute(1, 2, 0)[None]
    if median > 1:
        img = MedianFilter(median, slice_axis=-1)(img)
    if erosion:
        img = BrainErosionMask(erosion, slice_axis=-1)(img, brain.permute(1, 2, 0)[None])
    return img[0].permute(2, 0, 1) * brain


def cleanup(mask: torch.Tensor) -> torch.Tensor:
    """SSS's mask post-processing: 3 x 3 dilation, largest component per slice."""
    img = mask.permute(1, 2, 0)[None].float()
    img = KeepLargestComponents(1, slice_axis=-1)(Dilate(3, slice_axis=-1)(img))
    return img[0].permute(2, 0, 1) > 0


def healthy_values(maps: list[torch.Tensor], vols: list[dict]) -> np.ndarray:
    vals = []
    for m, v in zip(maps, vols):
        healthy = ~v["label"].flatten(1).any(1)
        vals.append(m[healthy][v["brain"][healthy]].numpy())
    return np.concatenate(vals)


def evaluate(maps: list[torch.Tensor], masks: list[torch.Tensor] | None, vols: list[dict]) -> dict[str, Any]:
    """Pooled metrics over the test volumes, per-patient values and their spread (AnomalyEvaluation's own)."""
    ev = AnomalyEvaluation()
    for i, v in enumerate(vols):
        ev.add_volume(v["case"], maps[i], None if masks is None else masks[i], v["label"], v["brain"])
    res = ev.compute()
    keys = ("auprc", "auroc", "best_dice", "dice", "dice_pooled", "iou", "precision", "recall")
    out: dict[str, Any] = {s: {k: res[s][k] for k in keys} for s in ("mixed", "unhealthy")}
    out["per_case"], out["spread"] = res["per_case"], res["spread"]
    return out


def image_auroc(maps: list[torch.Tensor], vols: list[dict]) -> float | None:
    """AUROC of per-slice scores (0.99 quantile of the map over the brain) against slice labels (tumour or not)."""
    scores, labels = [], []
    for m, v in zip(maps, vols):
        for k in range(m.shape[0]):
            if v["brain"][k].any():
                scores.append(float(torch.quantile(m[k][v["brain"][k]].float(), 0.99)))
                labels.append(bool(v["label"][k].any()))
    return auroc(scores, labels) if 0 < sum(labels) < len(labels) else None


def score_variant(name: str, val_maps, test_maps, val, test, q: float, do_cleanup: bool) -> dict[str, Any]:
    thr = healthy_quantile(healthy_values(val_maps, val), q)
    masks = [m > thr for m in test_maps]
    row = {"name": name, "threshold": thr, "q": q, **evaluate(test_maps, masks, test)}
    row["val_image_auroc"] = image_auroc(val_maps, val)
    # DTU-Net's public-code mask: Otsu's threshold over each test volume's brain (label-free, per volume)
    row["otsu"] = evaluate(test_maps, [m > otsu_threshold(m[v["brain"]]) for m, v in zip(test_maps, test)], test)
    if do_cleanup:
        row["cleanup"] = evaluate(test_maps, [cleanup(m) for m in masks], test)
    return row


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    """Every row as a README table line: unhealthy setup pooled over the test patients, with the per-patient spread."""
    lines = [
        "| row | AUPRC | AUPRC per patient (mean ± sd) | AUROC | Dice, label-free | Dice per patient (mean ± sd) "
        "| best Dice* | mixed AUPRC | mixed Dice, label-free |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        u, m, sp = r["unhealthy"], r["mixed"], r["spread"]["unhealthy"]

        def spread(key: str, sp=sp) -> str:
            return "-" if sp[key] is None else f"{sp[key]['mean']:.3f} ± {sp[key]['std']:.3f}"

        lines.append(
            f"| {r['name']} | {_fmt(u['auprc'])} | {spread('auprc')} | {_fmt(u['auroc'])} | {_fmt(u['dice_pooled'])} "
            f"| {spread('dice_pooled')} | {_fmt(u['best_dice'])} | {_fmt(m['auprc'])} | {_fmt(m['dice_pooled'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default="sss", choices=("sss", "anoddpm", "dtunet"))
    p.add_argument("--data", required=True, help="BraTS-style folder")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--args-file", default=None, help="the training's args file (e.g. the CPU recipe)")
    p.add_argument("--set", nargs="*", default=[], help="config overrides key=json_value (e.g. test_fraction=0.25)")
    p.add_argument("--timesteps", default="300", help="SSS noise levels t, comma-separated (the mean map of all too)")
    p.add_argument(
        "--steps", default="50", help="AnoDDPM / DTU-Net: reverse-step counts (num_inference_steps), comma-separated"
    )
    p.add_argument(
        "--lambdas", default=None, help="AnoDDPM / DTU-Net: noise levels lambda, comma-separated (steps: --steps)"
    )
    p.add_argument("--q", default="0.99", help="healthy quantile(s) for the label-free threshold, comma-separated")
    p.add_argument("--medians", default="0,3,5")
    p.add_argument("--erosions", default="0,1,2,3")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--samples", type=int, default=1, help="noise draws per level (their maps or reconstructions averaged)"
    )
    p.add_argument(
        "--aggregations",
        default="map",
        help="map (mean of squared residuals) and/or recon (square of the mean residual)",
    )
    p.add_argument("--out", required=True, help="JSON of every row")
    a = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in a.set)}
    parser = bundle_parser(a.bundle, a.data, a.args_file, overrides)
    t0 = time.perf_counter()
    vols = load_volumes(parser, ["validation", "test"])
    val, test = vols["validation"], vols["test"]
    print(
        f"validation {[v['case'] for v in val]}, test {[v['case'] for v in test]}, "
        f"{sum(v['x'].shape[0] for v in test)} test slices ({time.perf_counter() - t0:.0f} s)"
    )
    network = load_network_weights(parser.get_parsed_content("network_def"), a.checkpoint).eval()
    if parser.get("weakly_supervised"):  # DTU-Net's label token: guided towards healthy, as the bundle's evaluator
        network = parser.get_parsed_content("guided_network")
    inferer = parser.get_parsed_content("inferer")
    by_lambda = a.bundle != "sss" and a.lambdas is not None
    lambda_steps = int(a.steps.split(",")[0]) if by_lambda else None
    levels = [int(s) for s in (a.timesteps if a.bundle == "sss" else a.lambdas if by_lambda else a.steps).split(",")]
    batch = int(parser["slice_batch_size"])
    resid: dict[int, dict[str, list[torch.Tensor]]] = {}
    seconds = {}
    for level in levels:
        t1 = time.perf_counter()
        resid[level] = {
            s: [
                torch.stack(
                    [
                        reconstruct(inferer, network, v["x"], level, a.bundle, batch, a.seed + k, lambda_steps)
                        for k in range(a.samples)
                    ]
                )
                for v in vols[s]
            ]
            for s in vols
        }  # (K, N, H, W) signed residuals per volume
        seconds[level] = (time.perf_counter() - t1) / (len(val) + len(test))
        print(f"level {level}: {seconds[level]:.1f} s per volume (reconstruction only)", flush=True)

    def method_maps(level_set: tuple[int, ...], positive: bool, section: str, agg: str = "map") -> list[torch.Tensor]:
        out = []
        for i in range(len(vols[section])):
            r = torch.cat([resid[lv][section][i] for lv in level_set])  # (levels * K, N, H, W)
            if agg == "recon":  # average the reconstructions first (less noise-draw variance), then the error
                r = r.mean(0, keepdim=True)
            out.append(((r.clamp_min(0) if positive else r) ** 2).mean(0))
        return out

    rows = []
    qs = [float(s) for s in a.q.split(",")]
    medians = [int(s) for s in a.medians.split(",")]
    erosions = [int(s) for s in a.erosions.split(",")]
    level_sets = [(lv,) for lv in levels] + ([tuple(levels)] if len(levels) > 1 else [])
    aggs = a.aggregations.split(",")
    grid = itertools.product(level_sets, aggs, (False, True), medians, erosions, qs)
    for level_set, agg, positive, med, ero, q in grid:
        vm = [post(m, v["brain"], med, ero) for m, v in zip(method_maps(level_set, positive, "validation", agg), val)]
        tm = [post(m, v["brain"], med, ero) for m, v in zip(method_maps(level_set, positive, "test", agg), test)]
        name = (
            f"{a.bundle} {'t' if a.bundle == 'sss' else 'lambda' if by_lambda else 'steps'}="
            f"{'+'.join(map(str, level_set))}{f' steps={lambda_steps}' if by_lambda else ''} x{a.samples} "
            f"{agg} {'pos' if positive else 'sq'} med{med} ero{ero} q{q}"
        )
        row = score_variant(name, vm, tm, val, test, q, a.bundle == "sss")
        row.update(
            levels=list(level_set), samples=a.samples, aggregation=agg, positive=positive, median=med, erosion=ero
        )
        row["method"] = a.bundle
        rows.append(row)
        u = row["unhealthy"]
        print(
            f"{name:48s} AUPRC {_fmt(u['auprc'])} AUROC {_fmt(u['auroc'])} Dice(pooled, label-free) "
            f"{_fmt(u['dice_pooled'])} best {_fmt(u['best_dice'])} val image AUROC {_fmt(row['val_image_auroc'])}",
            flush=True,
        )
    if a.bundle == "sss" and len(levels) > 1:  # the paper's common-regions vote (per-t squared maps > 0.3)
        sq = {lv: [(r**2).mean(0) for r in resid[lv]["test"]] for lv in levels}
        votes = [torch.stack([sq[lv][i] > 0.3 for lv in levels]).float().mean(0) for i in range(len(test))]
        vmap = method_maps(tuple(levels), False, "test")
        row = {"name": "sss common regions (paper: t>0.3 vote > 0.5)", **evaluate(vmap, [v > 0.5 for v in votes], test)}
        row["cleanup"] = evaluate(vmap, [cleanup(v > 0.5) for v in votes], test)
        rows.append(row)
    for med, ero, q in itertools.product(medians, erosions, qs):
        vm = [post(v["flair"] * v["brain"], v["brain"], med, ero) for v in val]
        tm = [post(v["flair"] * v["brain"], v["brain"], med, ero) for v in test]
        row = score_variant(f"FLAIR intensity med{med} ero{ero} q{q}", vm, tm, val, test, q, False)
        row.update(method="flair", median=med, erosion=ero)
        rows.append(row)
        u = row["unhealthy"]
        print(
            f"{row['name']:48s} AUPRC {_fmt(u['auprc'])} AUROC {_fmt(u['auroc'])} Dice(pooled, label-free) "
            f"{_fmt(u['dice_pooled'])} best {_fmt(u['best_dice'])}",
            flush=True,
        )
    result = {
        "bundle": a.bundle,
        "checkpoint": a.checkpoint,
        "args_file": a.args_file,
        "overrides": overrides,
        "validation": [v["case"] for v in val],
        "test": [v["case"] for v in test],
        "seconds_per_volume": seconds,
        "rows": rows,
    }
    atomic_write_text(a.out, json.dumps(result, indent=1, default=float) + "\n")
    atomic_write_text(Path(a.out).with_suffix(".md"), markdown(rows) + "\n")
    print(f"{len(rows)} rows -> {a.out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
