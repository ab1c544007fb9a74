# SPDX-License-Identifier: Apache-2.0
"""A setting chosen by nested cross-validation: for each fold, the candidate with the largest mean per-patient AUPRC
gain over FLAIR on the other folds' patients, scored on this fold's patients
(:func:`~monai_adiff.benchmark.crossval.nested_choice`).

Side by side, the fold tables of several settings overstate the best one by the choice itself; this says what choosing
by cross-validation gives. Candidates are records of one cross-validation group in a results store (the project's,
or a run's ``OUT/records``), the paper's setting first (it wins ties):

    python benchmarks/nested_choice.py benchmarks/results:sss@0.6.0 benchmarks/results:sss@0.7.0 --group cv4-s0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monai_adiff.benchmark.crossval import nested_choice  # noqa: E402
from monai_adiff.benchmark.cv_publish import cv_groups  # noqa: E402
from monai_adiff.benchmark.store import read_records  # noqa: E402


def load(spec: str, dataset: str, group: str) -> list[dict]:
    """The fold records (in fold order) of ``STORE:bundle@version``."""
    store, _, name = spec.rpartition(":")
    bundle, _, version = name.partition("@")
    mine = {
        r["split"]: r
        for r in read_records(store or ".")
        if r["dataset"] == dataset and (r["bundle"], r["version"]) == (bundle, version)
    }
    folds = cv_groups(mine).get(group)
    if not folds:
        raise SystemExit(f"{spec}: no records of {group} on {dataset}")
    return folds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("candidates", nargs="+", help="STORE:bundle@version, the paper's setting first")
    parser.add_argument("--dataset", default="brats18-dev")
    parser.add_argument("--group", default="cv4-s0", help="the cross-validation group (cv<K>-s<seed>)")
    args = parser.parse_args(argv)
    try:
        res = nested_choice({c: load(c, args.dataset, args.group) for c in args.candidates})
    except ValueError as e:
        raise SystemExit(str(e)) from None
    gains = res["inner_gain"]
    print("| fold | " + " | ".join(f"inner gain, {c}" for c in gains) + " | chosen | AUPRC (FLAIR) |")
    print("| --- " * (len(gains) + 3) + "|")
    for k, chosen in enumerate(res["chosen"]):
        cells = " | ".join(f"{gains[c][k]:+.3f}" for c in gains)
        print(f"| {k + 1} | {cells} | {chosen} | {res['auprc'][k]:.3f} ({res['flair_auprc'][k]:.3f}) |")
    p, n = res["paired"], len(res["auprc"])
    mean = sum(res["auprc"]) / n
    flair = sum(res["flair_auprc"]) / n
    print(
        f"\nnested choice: fold mean AUPRC {mean:.3f} (FLAIR {flair:.3f}); ahead of FLAIR on {p['wins']} of "
        f"{p['patients']} patients; mean per-patient difference {p['mean_difference']:+.3f} "
        f"[{p['ci_low']:+.3f}, {p['ci_high']:+.3f}], sign test p = {p['sign_p']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
