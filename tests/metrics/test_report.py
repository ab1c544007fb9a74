# SPDX-License-Identifier: Apache-2.0
"""Tests of the JSON/CSV report writer and the comparison table."""

from __future__ import annotations

import csv
import json
import os
import tempfile
import unittest
from unittest import mock

import numpy as np
import torch
from parameterized import parameterized

from monai_adiff.metrics.report import flatten_results, format_table, to_jsonable, write_report


def _result(dice, auroc=0.9):
    return {
        "mixed": {"dice": dice, "iou": 0.5, "precision": float("nan"), "recall": None, "auprc": 0.25,
                  "auroc": auroc, "best_dice": 0.6, "best_threshold": float("inf"), "n_slices": 4},
        "unhealthy": {"dice": 0.125, "n_slices": 0, "auroc": None},
        "volume": {"dice_mean": 0.45, "per_case": {"A": 0.5, "B": np.float32(0.25)}},
        "image": {"auroc": torch.tensor(0.75), "n_slices": np.int64(4)},
    }  # fmt: skip


class TestJsonable(unittest.TestCase):
    @parameterized.expand(
        [
            ("nan", float("nan"), None),
            ("inf", float("-inf"), None),
            ("np_float", np.float32(0.5), 0.5),
            ("np_int", np.int64(3), 3),
            ("tensor_0d", torch.tensor(2), 2),
            ("tensor_1d", torch.tensor([1.0, float("nan")]), [1.0, None]),
            ("tuple", (1, "a"), [1, "a"]),
            ("keys", {1: True}, {"1": True}),
        ]
    )
    def test_convert(self, _, value, expected):
        self.assertEqual(to_jsonable(value), expected)

    def test_unknown_type(self):
        with self.assertRaises(TypeError):
            to_jsonable(object())


class TestWriteReport(unittest.TestCase):
    def test_round_trip_single(self):
        res = dict(_result(0.1 + 0.2), method="sss")
        with tempfile.TemporaryDirectory() as d:
            paths = write_report(res, os.path.join(d, "sub"), name="eval")
            sub = os.path.join(d, "sub")
            self.assertEqual(paths, {"json": os.path.join(sub, "eval.json"), "csv": os.path.join(sub, "eval.csv")})
            self.assertEqual(sorted(os.listdir(os.path.join(d, "sub"))), ["eval.csv", "eval.json"])  # no temp left
            with open(paths["json"], encoding="utf-8") as f:
                text = f.read()
            self.assertIn('\n    "mixed": {\n        "dice"', text)  # indent 4
            self.assertNotIn("NaN", text)
            self.assertNotIn("Infinity", text)
            data = json.loads(text)
            self.assertEqual(data["mixed"]["dice"], 0.1 + 0.2)  # exact float round trip
            self.assertIsNone(data["mixed"]["precision"])  # NaN -> null
            self.assertIsNone(data["mixed"]["best_threshold"])  # inf -> null
            self.assertEqual(data["volume"]["per_case"], {"A": 0.5, "B": 0.25})
            self.assertEqual(data["image"], {"auroc": 0.75, "n_slices": 4})
            self.assertEqual(data["method"], "sss")
            with open(paths["csv"], encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f))
        self.assertEqual(list(rows[0]), ["method", "setup", "metric", "value"])
        table = {(r["method"], r["setup"], r["metric"]): r["value"] for r in rows}
        self.assertEqual(len(table), len(rows))  # one row per (method, setup, metric)
        self.assertEqual(float(table[("sss", "mixed", "dice")]), 0.1 + 0.2)
        self.assertEqual(table[("sss", "mixed", "precision")], "")
        self.assertEqual(table[("sss", "unhealthy", "auroc")], "")
        self.assertEqual(int(table[("sss", "mixed", "n_slices")]), 4)
        self.assertEqual(float(table[("sss", "volume", "per_case.B")]), 0.25)
        self.assertNotIn(("sss", "", "method"), table)
        # every number in the JSON appears in the CSV
        self.assertEqual(len(rows), 9 + 3 + 3 + 2)

    def test_by_method(self):
        res = {"sss": _result(0.5), "flair_baseline": _result(0.25)}
        with tempfile.TemporaryDirectory() as d:
            paths = write_report(res, d)
            self.assertEqual(sorted(os.listdir(d)), ["metrics.csv", "metrics.json"])
            with open(paths["csv"], encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f))
            with open(paths["json"], encoding="utf-8") as f:
                self.assertEqual(json.load(f)["flair_baseline"]["mixed"]["dice"], 0.25)
        dice = {r["method"]: float(r["value"]) for r in rows if (r["setup"], r["metric"]) == ("mixed", "dice")}
        self.assertEqual(dice, {"sss": 0.5, "flair_baseline": 0.25})
        self.assertEqual({r["method"] for r in rows}, {"sss", "flair_baseline"})

    def test_no_method_column_value(self):
        rows = flatten_results(_result(0.5))
        self.assertTrue(all(r["method"] == "" for r in rows))
        self.assertIn({"method": "", "setup": "mixed", "metric": "dice", "value": 0.5}, rows)

    def test_atomic_overwrite_and_failure(self):
        with tempfile.TemporaryDirectory() as d:
            write_report(_result(0.5), d)
            with open(os.path.join(d, "metrics.json"), encoding="utf-8") as f:
                before = f.read()
            # unserialisable input: nothing is written, the old report survives, no temp file appears
            with self.assertRaises(TypeError):
                write_report({"mixed": {"dice": object()}}, d)
            # a failure during the rename leaves the old file and removes the temp file
            with mock.patch("monai_adiff.metrics.report.os.replace", side_effect=OSError("disk full")):
                with self.assertRaises(OSError):
                    write_report(_result(0.75), d)
            self.assertEqual(sorted(os.listdir(d)), ["metrics.csv", "metrics.json"])
            with open(os.path.join(d, "metrics.json"), encoding="utf-8") as f:
                self.assertEqual(f.read(), before)
            write_report(_result(0.75), d)
            with open(os.path.join(d, "metrics.json"), encoding="utf-8") as f:
                self.assertEqual(json.load(f)["mixed"]["dice"], 0.75)
            self.assertEqual(sorted(os.listdir(d)), ["metrics.csv", "metrics.json"])

    @parameterized.expand([("empty", ""), ("sep", "a/b"), ("dots", "..")])
    def test_bad_name(self, _, name):
        with tempfile.TemporaryDirectory() as d, self.assertRaises(ValueError):
            write_report(_result(0.5), d, name=name)


class TestFormatTable(unittest.TestCase):
    def test_table(self):
        res = {"sss": _result(0.5), "flair_baseline": _result(0.123456, auroc=None)}
        res["sss"]["unhealthy"]["dice_pooled"] = 0.875
        text = format_table(res)
        lines = text.split("\n")
        self.assertIn("mixed", lines[0])
        self.assertIn("unhealthy", lines[0])
        for h in ("Dice", "IoU", "Prec", "Rec", "AUPRC", "AUROC", "PRO", "best-Dice*"):
            self.assertEqual(lines[1].count(h), 2 if h != "Dice" else 4)  # "Dice" also inside "best-Dice*"
        sss = next(line for line in lines if line.startswith("sss "))
        base = next(line for line in lines if line.startswith("flair_baseline "))
        self.assertIn("0.500", sss)
        self.assertIn("0.123", base)
        self.assertNotIn("0.1234", base)  # 3 decimals
        # missing / NaN / None -> "-"
        self.assertEqual(base.split("|")[1].split()[2:4], ["-", "-"])  # precision NaN, recall None
        # columns align: the separators sit at the same offsets on header and rows
        offsets = {tuple(i for i, c in enumerate(line) if c == "|") for line in (lines[1], sss, base)}
        self.assertEqual(len(offsets), 1)
        # the label-chosen threshold is marked as a ceiling
        self.assertIn("pixel labels", lines[-1])
        # pooled switch reads the *_pooled keys
        pooled = format_table(res, pooled=True)
        sss_pooled = next(line for line in pooled.split("\n") if line.startswith("sss "))
        self.assertEqual(sss_pooled.split("|")[2].split()[0], "0.875")

    def test_values_column_by_column(self):
        r = {"mixed": {"dice": 0.1, "iou": 0.2, "precision": 0.3, "recall": 0.4, "auprc": 0.5, "auroc": 0.6,
                       "pro": 0.65, "best_dice": 0.7}}  # fmt: skip
        row = next(line for line in format_table({"m": r}, setups=("mixed",)).split("\n") if line.startswith("m "))
        expected = ["0.100", "0.200", "0.300", "0.400", "0.500", "0.600", "0.650", "0.700"]
        self.assertEqual(row.split("|")[1].split(), expected)


if __name__ == "__main__":
    unittest.main()
