# SPDX-License-Identifier: Apache-2.0
"""Tests of AnomalyEvaluation on a hand-computed two-volume example and random volumes with brute-force oracles."""

from __future__ import annotations

import math
import unittest

import numpy as np
import torch
from parameterized import parameterized

from monai_adiff.errors import InputError
from monai_adiff.metrics.evaluation import ORACLE_KEYS, AnomalyEvaluation


def _stack(slices, dtype):
    """(S, 2, 2) array from per-slice row-major lists of 4 values."""
    return np.array(slices, dtype=dtype).reshape(len(slices), 2, 2)


# Two volumes of 2 x 2 slices; per slice the four pixels in row-major order.
# Volume A (3 slices):
#   A0: no brain at all -> ignored (its prediction, map and slice score must not count)
#   A1: brain 1111, target 1100, pred 1010, map .9 .4 .6 .1 -> tp 1 fp 1 fn 1: dice 1/2 iou 1/3 prec 1/2 rec 1/2
#   A2: brain 1110, target 0000, pred 0001 (outside the brain) -> both empty in brain: all 1
# Volume B (2 slices):
#   B0: brain 1111, target 1000, pred 1100, map .8 .7 .3 .2 -> tp 1 fp 1 fn 0: dice 2/3 iou 1/2 prec 1/2 rec 1
#   B1: brain 1111, target 0000, pred 0011, map .1 .2 .4 .6 -> tp 0 fp 2 fn 0: all 0 (false alarm)
VOL_A = dict(
    case_id="A",
    anomaly_map=_stack([[0.99] * 4, [0.9, 0.4, 0.6, 0.1], [0.2, 0.3, 0.5, 0.95]], np.float32),
    pred_mask=_stack([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 1]], bool),
    target=_stack([[0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], np.uint8),
    brain_mask=_stack([[0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]], bool),
    slice_scores=np.array([0.99, 0.7, 0.8]),
    slice_labels_pred=np.array([1, 1, 1]),
)
VOL_B = dict(
    case_id="B",
    anomaly_map=torch.tensor(_stack([[0.8, 0.7, 0.3, 0.2], [0.1, 0.2, 0.4, 0.6]], np.float32)),
    pred_mask=torch.tensor(_stack([[1, 1, 0, 0], [0, 0, 1, 1]], np.float32)),
    target=torch.tensor(_stack([[1, 0, 0, 0], [0, 0, 0, 0]], np.int64) * 2),  # BraTS-like label value
    brain_mask=torch.ones(2, 2, 2, dtype=torch.bool),
    slice_scores=torch.tensor([0.9, 0.5]),
    slice_labels_pred=torch.tensor([1, 0]),
)

EXPECTED = {
    "mixed": {  # slices A1 A2 B0 B1
        "dice": (1 / 2 + 1 + 2 / 3 + 0) / 4,
        "iou": (1 / 3 + 1 + 1 / 2 + 0) / 4,
        "precision": (1 / 2 + 1 + 1 / 2 + 0) / 4,
        "recall": (1 / 2 + 1 + 1 + 0) / 4,
        # pooled tp 1+0+1+0 = 2, fp 1+0+1+2 = 4, fn 1: dice 4/9, iou 2/7, prec 2/6, rec 2/3
        "dice_pooled": 4 / 9,
        "iou_pooled": 2 / 7,
        "precision_pooled": 2 / 6,
        "recall_pooled": 2 / 3,
        # positives .9 .4 .8; 12 negatives .6 .1 | .2 .3 .5 | .7 .3 .2 | .1 .2 .4 .6
        # .9 and .8 beat all 12; .4 beats 7 and ties 1 -> (12 + 12 + 7.5) / 36
        "auroc": 31.5 / 36,
        # thr .9: P 1 R 1/3; .8: P 1 R 2/3; .4: tp 3 fp 5 (.7 .6 .6 .5 .4): P 3/8 R 1 -> 1/3 + 1/3 + 1/8
        "auprc": 1 / 3 + 1 / 3 + 1 / 3 * 3 / 8,
        # thr .9: 2/(1+3); .8: 4/(2+3) = 0.8; .7: 4/6; ...; .4: 6/(8+3) -> 0.8 at .8, IoU 2/(2+0+1)
        "best_dice": 0.8,
        "best_threshold": 0.8,
        "iou_at_best": 2 / 3,
        "n_slices": 4,
        "n_volumes": 2,
        "n_pixels": 4 + 3 + 4 + 4,
        "tumour_fraction": 3 / 15,
    },
    "unhealthy": {  # slices A1 B0
        "dice": (1 / 2 + 2 / 3) / 2,
        "iou": (1 / 3 + 1 / 2) / 2,
        "precision": (1 / 2 + 1 / 2) / 2,
        "recall": (1 / 2 + 1) / 2,
        # pooled tp 2, fp 2, fn 1
        "dice_pooled": 4 / 7,
        "iou_pooled": 2 / 5,
        "precision_pooled": 2 / 4,
        "recall_pooled": 2 / 3,
        # positives .9 .4 .8, negatives .6 .1 .7 .3 .2: 5 + 5 + 3 of 15 pairs
        "auroc": 13 / 15,
        # thr .9: P 1 R 1/3; .8: P 1 R 2/3; .4: tp 3 fp 2, P 3/5 R 1 -> 1/3 + 1/3 + 1/5
        "auprc": 1 / 3 + 1 / 3 + 1 / 3 * 3 / 5,
        "best_dice": 0.8,  # thr .8: tp 2, 2 predicted: 4/(2+3); thr .4: 6/(5+3) = 0.75
        "best_threshold": 0.8,
        "iou_at_best": 2 / 3,
        "n_slices": 2,
        "n_volumes": 2,
        "n_pixels": 8,
        "tumour_fraction": 3 / 8,
    },
}


def _evaluate(*volumes, **kwargs):
    ev = AnomalyEvaluation(**kwargs)
    for v in volumes:
        ev.add_volume(**v)
    return ev.compute()


class TestHandExample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.res = _evaluate(VOL_A, VOL_B)

    def test_per_case_and_spread(self):
        # unhealthy, case A (slice A1): positives .9 .4, negatives .6 .1 -> AUROC 3/4; thr .9: P 1 R 1/2, .4: P 2/3
        # R 1 -> AP 1/2 + 1/2 * 2/3; pred 1010: tp 1 fp 1 fn 1 -> Dice 1/2. Case B (slice B0): perfect ranking,
        # pred 1100: tp 1 fp 1 fn 0 -> Dice 2/3.
        a, b = self.res["per_case"]["A"]["unhealthy"], self.res["per_case"]["B"]["unhealthy"]
        self.assertAlmostEqual(a["auroc"], 3 / 4)
        self.assertAlmostEqual(a["auprc"], 1 / 2 + 1 / 3)
        self.assertAlmostEqual(a["dice_pooled"], 1 / 2)
        self.assertEqual(a["n_slices"], 1)
        self.assertAlmostEqual(b["auprc"], 1.0)
        self.assertAlmostEqual(b["dice_pooled"], 2 / 3)
        spread = self.res["spread"]["unhealthy"]["auprc"]
        self.assertAlmostEqual(spread["mean"], 11 / 12)
        self.assertAlmostEqual(spread["std"], 1 / 12)
        self.assertAlmostEqual(spread["min"], 5 / 6)

    @parameterized.expand([(s, k) for s in EXPECTED for k in EXPECTED[s]])
    def test_setup_metric(self, setup, key):
        got, expected = self.res[setup][key], EXPECTED[setup][key]
        if isinstance(expected, int):
            self.assertEqual(got, expected)
        else:  # maps are stored as float32: thresholds compare to float32 precision
            self.assertAlmostEqual(got, expected, places=6)

    def test_volume_section(self):
        vol = self.res["volume"]
        # A: tp 1, fp 1 (+ A2's prediction is outside the brain, A0 is not a brain slice), fn 1 -> 2/4
        # B: tp 1, fp 1 + 2, fn 0 -> 2/5
        self.assertEqual(set(vol["per_case"]), {"A", "B"})
        self.assertAlmostEqual(vol["per_case"]["A"], 0.5)
        self.assertAlmostEqual(vol["per_case"]["B"], 0.4)
        self.assertAlmostEqual(vol["dice_mean"], 0.45)
        self.assertAlmostEqual(vol["dice_std"], 0.05)  # population std of {0.5, 0.4}
        self.assertEqual(vol["n_volumes"], 2)

    def test_image_section(self):
        img = self.res["image"]
        # brain slices: A1 (label 1, score .7, pred 1), A2 (0, .8, 1), B0 (1, .9, 1), B1 (0, .5, 0)
        # AUROC: .7>.8 no, .7>.5 yes, .9 beats both -> 3/4; AP: .9 (P 1, R 1/2), .7 (P 2/3, R 1) -> 1/2 + 1/3
        self.assertAlmostEqual(img["auroc"], 3 / 4)
        self.assertAlmostEqual(img["auprc"], 1 / 2 + 1 / 2 * 2 / 3)
        self.assertAlmostEqual(img["accuracy"], 3 / 4)  # TP A1, FP A2, TP B0, TN B1
        self.assertAlmostEqual(img["sensitivity"], 1.0)
        self.assertAlmostEqual(img["specificity"], 1 / 2)
        self.assertEqual((img["n_slices"], img["n_unhealthy"]), (4, 2))
        # brain areas A1 4 (unhealthy), A2 3, B0 4 (unhealthy), B1 4: positives beat 3 twice and tie 4 twice -> 3/4
        self.assertAlmostEqual(img["brain_area_auroc"], 3 / 4)
        # ranks: scores .7 .8 .9 .5 -> 2 3 4 1; areas 4 3 4 4 -> 3 1 3 3 (ties averaged): centred products sum to
        # -1, norms sqrt(5) and sqrt(3)
        self.assertAlmostEqual(img["score_area_spearman"], -1 / 15**0.5)

    def test_section_keys_and_oracle_names(self):
        self.assertEqual(list(self.res), ["mixed", "unhealthy", "volume", "image", "per_case", "spread"])
        self.assertEqual(ORACLE_KEYS, ("best_dice", "best_threshold", "iou_at_best"))

    def test_compute_is_repeatable_and_order_free(self):
        ev = AnomalyEvaluation()
        ev.add_volume(**VOL_B)
        ev.add_volume(**VOL_A)
        self.assertEqual(len(ev), 2)
        first = ev.compute()
        self.assertEqual(first, ev.compute())
        for setup in EXPECTED:
            for k, v in EXPECTED[setup].items():
                self.assertAlmostEqual(first[setup][k], v, places=6)
        ev.reset()
        self.assertEqual(ev.compute()["mixed"]["n_slices"], 0)


class TestMissingPieces(unittest.TestCase):
    def test_no_tumour_anywhere(self):
        healthy = dict(VOL_A, target=np.zeros((3, 2, 2), dtype=bool))
        res = _evaluate(healthy)
        un = res["unhealthy"]
        self.assertEqual((un["n_slices"], un["n_volumes"], un["n_pixels"]), (0, 0, 0))
        for k in ("dice", "dice_pooled", "precision", "recall", "auprc", "auroc", "best_dice", "tumour_fraction"):
            self.assertIsNone(un[k], k)
        mixed = res["mixed"]
        # A1 now: pred 1010 with no tumour -> all 0; A2 -> all 1
        self.assertAlmostEqual(mixed["dice"], 0.5)
        self.assertAlmostEqual(mixed["precision_pooled"], 0.0)  # tp 0, fp 2
        self.assertAlmostEqual(mixed["recall_pooled"], 0.0)  # no tumour, false alarms -> 0 by convention
        self.assertEqual(mixed["tumour_fraction"], 0.0)
        for k in ("auprc", "auroc", "best_dice", "best_threshold", "iou_at_best"):
            self.assertIsNone(mixed[k], k)
        self.assertIsNone(res["image"]["auroc"])
        self.assertIsNone(res["image"]["sensitivity"])
        self.assertAlmostEqual(res["image"]["specificity"], 0.0)  # both brain slices called unhealthy

    def test_empty_evaluation(self):
        res = AnomalyEvaluation().compute()
        self.assertEqual(res["mixed"]["n_slices"], 0)
        self.assertIsNone(res["mixed"]["dice"])
        self.assertIsNone(res["volume"]["dice_mean"])
        self.assertEqual(res["volume"]["per_case"], {})
        self.assertIsNone(res["image"]["auroc"])

    def test_keep_maps_false(self):
        res = _evaluate(VOL_A, VOL_B, keep_maps=False)
        for setup in ("mixed", "unhealthy"):
            for k in ("auprc", "auroc", "best_dice", "best_threshold", "iou_at_best"):
                self.assertIsNone(res[setup][k])
            self.assertAlmostEqual(res[setup]["dice"], EXPECTED[setup]["dice"])

    def test_missing_map_mask_and_slice_outputs(self):
        a = dict(VOL_A, anomaly_map=None, slice_scores=None, slice_labels_pred=None)
        res = _evaluate(a, VOL_B)
        self.assertIsNone(res["mixed"]["auroc"])  # not every volume has a map
        self.assertAlmostEqual(res["mixed"]["dice"], EXPECTED["mixed"]["dice"])
        self.assertIsNone(res["image"]["auroc"])
        self.assertIsNone(res["image"]["accuracy"])
        b = dict(VOL_B, pred_mask=None)
        res = _evaluate(VOL_A, b)
        self.assertIsNone(res["mixed"]["dice"])
        self.assertIsNone(res["unhealthy"]["recall_pooled"])
        self.assertIsNone(res["volume"]["dice_mean"])
        self.assertAlmostEqual(res["mixed"]["auroc"], EXPECTED["mixed"]["auroc"])

    def test_single_setup(self):
        res = _evaluate(VOL_A, VOL_B, setups=("unhealthy",))
        self.assertEqual(list(res), ["unhealthy", "volume", "image", "per_case", "spread"])
        with self.assertRaises(ValueError):
            AnomalyEvaluation(setups=("healthy",))

    @parameterized.expand(
        [
            ("duplicate", None, "already"),
            ("bad_shape", dict(pred_mask=np.zeros((3, 2, 3), dtype=bool)), "shape"),
            ("not_3d", dict(target=np.zeros((2, 2))), r"\(S, H, W\)"),
            ("nan_map", dict(anomaly_map=np.full((3, 2, 2), np.nan, dtype=np.float32)), "NaN"),
            ("slice_scores_len", dict(slice_scores=np.zeros(2)), "3 slices"),
            ("float_mask", dict(pred_mask=np.full((3, 2, 2), 0.5)), "binary"),
        ]
    )
    def test_bad_input(self, _, change, message):
        ev = AnomalyEvaluation()
        if change is None:
            ev.add_volume(**VOL_A)
            vol = VOL_A
        else:
            vol = dict(VOL_A, **change)
        with self.assertRaisesRegex(InputError, message):
            ev.add_volume(**vol)


def brute_auroc(pos, neg):
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))


class TestRandomVolumes(unittest.TestCase):
    def test_against_brute_force(self):
        rng = np.random.default_rng(0)
        vols = []
        for i in range(3):
            target = np.zeros((5, 8, 8), dtype=bool)
            target[1:3, 2:5, 3:6] = rng.random((2, 3, 3)) < 0.8
            brain = np.zeros((5, 8, 8), dtype=bool)
            brain[:4, 1:7, 1:7] = True  # slice 4 has no brain
            amap = (rng.integers(0, 10, target.shape) / 10 + 0.3 * target).astype(np.float32)
            pred = rng.random(target.shape) < 0.15
            vols.append(dict(case_id=f"c{i}", anomaly_map=amap, pred_mask=pred, target=target, brain_mask=brain))
        res = _evaluate(*vols)
        for setup in ("mixed", "unhealthy"):
            pos, neg, counts, per_slice_dice = [], [], [0, 0, 0], []
            for v in vols:
                for s in range(4):  # brain slices
                    if setup == "unhealthy" and not v["target"][s].any():
                        continue
                    tp = fp = fn = 0
                    for y in range(8):
                        for x in range(8):
                            if not v["brain_mask"][s, y, x]:
                                continue
                            t, p, m = v["target"][s, y, x], v["pred_mask"][s, y, x], v["anomaly_map"][s, y, x]
                            (pos if t else neg).append(float(m))
                            tp += bool(p and t)
                            fp += bool(p and not t)
                            fn += bool(t and not p)
                    counts = [counts[0] + tp, counts[1] + fp, counts[2] + fn]
                    per_slice_dice.append(1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
            tp, fp, fn = counts
            self.assertAlmostEqual(res[setup]["auroc"], brute_auroc(pos, neg), places=12)
            self.assertAlmostEqual(res[setup]["dice_pooled"], 2 * tp / (2 * tp + fp + fn), places=12)
            self.assertAlmostEqual(res[setup]["dice"], float(np.mean(per_slice_dice)), places=12)
            self.assertEqual(res[setup]["n_pixels"], len(pos) + len(neg))
            self.assertAlmostEqual(res[setup]["tumour_fraction"], len(pos) / (len(pos) + len(neg)))
        self.assertEqual(res["mixed"]["n_slices"], 12)
        self.assertEqual(res["unhealthy"]["n_slices"], 6)

    def test_only_brain_pixels_kept(self):
        ev = AnomalyEvaluation()
        ev.add_volume(**VOL_A)
        values = ev._map_values[0] + ev._map_values[1]
        targets = ev._map_targets[0] + ev._map_targets[1]
        self.assertEqual(sum(v.numel() for v in values), 4 + 3)  # A1 and A2 brain pixels
        self.assertTrue(all(v.dtype == torch.float32 for v in values))
        self.assertTrue(all(t.dtype == torch.bool for t in targets))
        self.assertFalse(math.isnan(ev.compute()["unhealthy"]["auroc"]))


if __name__ == "__main__":
    unittest.main()


class TestPRO(unittest.TestCase):
    """PRO of an evaluation against the curve worked out by hand (MVTec AD's definition, FPR limit 0.3)."""

    def _volume(self):
        # slice 0 (4 x 4, all brain): region A = 2 pixels (score .9), region B = 2 pixels apart from it (score .5),
        # one normal pixel at .7, the 11 others at .1; slice 1: healthy, every pixel .1
        target = np.zeros((2, 4, 4), bool)
        target[0, 0, 0:2] = True  # A
        target[0, 3, 2:4] = True  # B
        amap = np.full((2, 4, 4), 0.1, np.float32)
        amap[0, 0, 0:2], amap[0, 3, 2:4], amap[0, 2, 0] = 0.9, 0.5, 0.7
        return amap, target, np.ones((2, 4, 4), bool)

    def test_pro_by_hand(self):
        amap, target, brain = self._volume()
        ev = AnomalyEvaluation()
        ev.add_volume("v", amap, None, target, brain)
        res = ev.compute()
        # unhealthy slice: 12 normal pixels. (FPR, PRO): (0, .5) at .9, (1/12, .5) at .7, (1/12, 1) at .5, (1, 1);
        # area up to .3: .5 / 12 + (.3 - 1/12), over .3
        self.assertAlmostEqual(res["unhealthy"]["pro"], (0.5 / 12 + 0.3 - 1 / 12) / 0.3, places=6)
        # mixed: 28 normal pixels (the healthy slice's 16 all at .1)
        self.assertAlmostEqual(res["mixed"]["pro"], (0.5 / 28 + 0.3 - 1 / 28) / 0.3, places=6)

    def test_regions_are_counted_per_volume_and_slice(self):
        # volume b: the same without region B (its pixels normal, at .1). Three regions of 2 pixels, 26 normal
        # pixels: (FPR, PRO) = (0, 2/3) at .9, (2/26, 2/3) at .7 (both volumes' bright normal pixel), (2/26, 1) at .5;
        # regions shared across volumes would give 1/2 at .9 instead
        amap, target, brain = self._volume()
        amap_b, target_b = amap.copy(), target.copy()
        target_b[0, 3, 2:4], amap_b[0, 3, 2:4] = False, 0.1
        ev = AnomalyEvaluation(setups=("unhealthy",))
        ev.add_volume("a", amap, None, target, brain)
        ev.add_volume("b", amap_b, None, target_b, brain)
        expected = ((2 / 3) * (2 / 26) + 0.3 - 2 / 26) / 0.3
        self.assertAlmostEqual(ev.compute()["unhealthy"]["pro"], expected, places=6)
        no_map = AnomalyEvaluation(keep_maps=False)
        no_map.add_volume("a", amap, None, target, brain)
        self.assertIsNone(no_map.compute()["unhealthy"]["pro"])
