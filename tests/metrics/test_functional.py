# SPDX-License-Identifier: Apache-2.0
"""Tests of monai_adiff.metrics.functional against hand-computed values and brute-force oracles."""

from __future__ import annotations

import math
import unittest

import numpy as np
import torch
from parameterized import parameterized
from scipy.stats import rankdata, spearmanr

from monai_adiff.metrics.functional import (
    auroc,
    average_precision,
    best_dice_threshold,
    binary_clf_curve,
    confusion_counts,
    dice_score,
    iou_score,
    per_slice_scores,
    precision_score,
    pro_score,
    ranking_metrics,
    recall_score,
    scores_from_counts,
    spearman,
)

# ---------------------------------------------------------------- brute-force oracles (pure Python)


def brute_auroc(scores, labels):
    """P(s_pos > s_neg) + 0.5 P(s_pos == s_neg) over all pairs: O(P N)."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = 0.0
    for p in pos:
        for n in neg:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(pos) * len(neg))


def brute_ap(scores, labels):
    """sum over distinct thresholds (descending) of (R_n - R_{n-1}) * P_n, pred = score >= threshold."""
    n_pos = sum(labels)
    ap, prev_recall = 0.0, 0.0
    for thr in sorted(set(scores), reverse=True):
        tp = sum(1 for s, y in zip(scores, labels) if s >= thr and y)
        fp = sum(1 for s, y in zip(scores, labels) if s >= thr and not y)
        recall = tp / n_pos
        ap += (recall - prev_recall) * tp / (tp + fp)
        prev_recall = recall
    return ap


def brute_best_dice(scores, labels):
    """Loop over every distinct threshold; keep the first (highest) threshold reaching the best Dice."""
    best, best_thr = -1.0, None
    for thr in sorted(set(scores), reverse=True):
        tp = sum(1 for s, y in zip(scores, labels) if s >= thr and y)
        fp = sum(1 for s, y in zip(scores, labels) if s >= thr and not y)
        fn = sum(1 for s, y in zip(scores, labels) if s < thr and y)
        d = 2 * tp / (2 * tp + fp + fn)
        if d > best:
            best, best_thr = d, thr
    return best, best_thr


def flood_regions(img, diagonal=True):
    """Connected components of a 2D list-of-lists of 0/1 by breadth-first flood fill."""
    h, w = len(img), len(img[0])
    seen = [[False] * w for _ in range(h)]
    steps = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    if not diagonal:
        steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    regions = []
    for y0 in range(h):
        for x0 in range(w):
            if img[y0][x0] and not seen[y0][x0]:
                seen[y0][x0] = True
                queue, region = [(y0, x0)], []
                while queue:
                    y, x = queue.pop()
                    region.append((y, x))
                    for dy, dx in steps:
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < h and 0 <= xx < w and img[yy][xx] and not seen[yy][xx]:
                            seen[yy][xx] = True
                            queue.append((yy, xx))
                regions.append(region)
    return regions


def brute_pro(scores, labels, max_fpr, diagonal=True):
    """Per-region overlap curve by looping over thresholds, trapezoids up to max_fpr, normalised."""
    regions = []  # (image index, pixel list)
    for i, img in enumerate(labels):
        regions += [(i, r) for r in flood_regions(img, diagonal)]
    negatives = [
        scores[i][y][x]
        for i in range(len(labels))
        for y in range(len(labels[i]))
        for x in range(len(labels[i][0]))
        if not labels[i][y][x]
    ]
    all_scores = sorted({v for img in scores for row in img for v in row}, reverse=True)
    pts = [(0.0, 0.0)]
    for thr in all_scores:
        fpr = sum(1 for v in negatives if v >= thr) / len(negatives)
        pro = sum(sum(1 for y, x in r if scores[i][y][x] >= thr) / len(r) for i, r in regions) / len(regions)
        pts.append((fpr, pro))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        if x0 >= max_fpr:
            break
        if x1 > max_fpr:  # cut the last segment at max_fpr
            y1 = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
            x1 = max_fpr
        area += (x1 - x0) * (y0 + y1) / 2
    return area / max_fpr


def random_scores(seed, n, levels, pos_rate, dtype):
    """Scores with many ties (``levels`` distinct values) and random labels with both classes."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < pos_rate
    labels[0], labels[1] = True, False
    scores = (rng.integers(0, levels, n) + 0.6 * labels) / levels  # a weak signal, plenty of ties
    return scores.astype(dtype), labels


# ---------------------------------------------------------------- overlap scores

# pred      target      per pixel (row-major):
# 1 1 0     1 0 0       TP FP TN
# 0 1 0     1 1 0       FN TP TN     -> tp 2, fp 1, fn 1, tn 2
PRED = [[1, 1, 0], [0, 1, 0]]
TARGET = [[1, 0, 0], [1, 1, 0]]


class TestOverlapScores(unittest.TestCase):
    def test_confusion_counts_hand(self):
        self.assertEqual(confusion_counts(PRED, TARGET), (2, 1, 1, 2))

    @parameterized.expand(
        [
            ("dice", dice_score, 2 * 2 / (2 * 2 + 1 + 1)),  # 4/6
            ("iou", iou_score, 2 / (2 + 1 + 1)),  # 2/4
            ("precision", precision_score, 2 / (2 + 1)),  # tp / (tp + fp)
            ("recall", recall_score, 2 / (2 + 1)),  # tp / (tp + fn)
        ]
    )
    def test_scores_hand(self, _, fn, expected):
        self.assertAlmostEqual(fn(PRED, TARGET), expected, places=12)

    def test_mask_restriction(self):
        # mask drops the FP pixel (0, 1) and the TN pixel (0, 2): tp 2, fp 0, fn 1, tn 1
        mask = [[1, 0, 0], [1, 1, 1]]
        self.assertEqual(confusion_counts(PRED, TARGET, mask), (2, 0, 1, 1))
        self.assertAlmostEqual(dice_score(PRED, TARGET, mask), 4 / 5)  # 2*2 / (2*2 + 0 + 1)
        self.assertAlmostEqual(iou_score(PRED, TARGET, mask), 2 / 3)  # 2 / (2 + 0 + 1)
        self.assertAlmostEqual(precision_score(PRED, TARGET, mask), 1.0)  # 2 / (2 + 0)
        self.assertAlmostEqual(recall_score(PRED, TARGET, mask), 2 / 3)  # 2 / (2 + 1)

    def test_precision_recall_orientation(self):
        # predicts 3 pixels, 1 of which is the single tumour pixel: precision 1/3 (tp/(tp+fp)), recall 1
        pred = [1, 1, 1, 0, 0]
        target = [1, 0, 0, 0, 0]
        self.assertAlmostEqual(precision_score(pred, target), 1 / 3)
        self.assertAlmostEqual(recall_score(pred, target), 1.0)
        # and the other way round: predicts 1 of 3 tumour pixels -> precision 1, recall 1/3
        self.assertAlmostEqual(precision_score(target, pred), 1.0)
        self.assertAlmostEqual(recall_score(target, pred), 1 / 3)

    @parameterized.expand(
        [
            # name, pred, target, smooth, (dice, iou, precision, recall)
            ("both_empty", [0, 0, 0], [0, 0, 0], 0.0, (1.0, 1.0, 1.0, 1.0)),
            ("missed_tumour", [0, 0, 0], [1, 1, 0], 0.0, (0.0, 0.0, 0.0, 0.0)),
            ("false_alarm", [1, 0, 0], [0, 0, 0], 0.0, (0.0, 0.0, 0.0, 0.0)),
            ("empty_input", [], [], 0.0, (1.0, 1.0, 1.0, 1.0)),
            # smooth=1, tp 0 fp 0 fn 2: dice (0+1)/(0+0+2+1), iou (0+1)/(2+1), prec (0+1)/(0+1), rec (0+1)/(2+1)
            ("missed_smooth", [0, 0, 0], [1, 1, 0], 1.0, (1 / 3, 1 / 3, 1.0, 1 / 3)),
            # smooth=1, tp 0 fp 1 fn 0: dice 1/2, iou 1/2, prec 1/2, rec 1/1
            ("false_alarm_smooth", [1, 0, 0], [0, 0, 0], 1.0, (0.5, 0.5, 0.5, 1.0)),
            ("both_empty_smooth", [0, 0], [0, 0], 1.0, (1.0, 1.0, 1.0, 1.0)),
        ]
    )
    def test_empty_conventions(self, _, pred, target, smooth, expected):
        pred = np.array(pred, dtype=bool)
        target = np.array(target, dtype=bool)
        got = tuple(fn(pred, target, smooth=smooth) for fn in (dice_score, iou_score, precision_score, recall_score))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        self.assertFalse(any(math.isnan(g) for g in got))

    def test_scores_from_counts_broadcast(self):
        s = scores_from_counts(torch.tensor([0, 2, 0]), torch.tensor([0, 1, 3]), 1)
        # (tp, fp, fn) = (0,0,1): missed -> 0; (2,1,1): 4/6; (0,3,1): 0
        np.testing.assert_allclose(s["dice"].numpy(), [0.0, 4 / 6, 0.0])
        np.testing.assert_allclose(s["precision"].numpy(), [0.0, 2 / 3, 0.0])
        with self.assertRaises(ValueError):
            scores_from_counts(1, 1, 1, smooth=-1)

    @parameterized.expand(
        [
            ("numpy_bool", lambda a: np.array(a, dtype=bool)),
            ("numpy_float", lambda a: np.array(a, dtype=np.float32)),
            ("torch_uint8", lambda a: torch.tensor(a, dtype=torch.uint8)),
            ("torch_float64", lambda a: torch.tensor(a, dtype=torch.float64)),
            ("labels_2_4", lambda a: np.array(a) * 4 - np.array(a) * 2),  # BraTS-like labels: non-zero is tumour
            ("list", lambda a: a),
        ]
    )
    def test_input_types(self, _, convert):
        self.assertEqual(confusion_counts(convert(PRED), convert(TARGET)), (2, 1, 1, 2))

    def test_bad_inputs(self):
        with self.assertRaisesRegex(ValueError, "binary"):
            dice_score(np.array([0.2, 0.9]), np.array([0, 1]))
        with self.assertRaisesRegex(ValueError, "shape"):
            dice_score(np.zeros(3), np.zeros(4))
        with self.assertRaisesRegex(ValueError, "shape"):
            dice_score(np.zeros(3), np.zeros(3), mask=np.ones(2, dtype=bool))
        with self.assertRaises(TypeError):
            dice_score("abc", "abc")

    def test_per_slice_hand(self):
        # slice 0: tp 1 fp 1 fn 0 -> dice 2/3, iou 1/2, prec 1/2, rec 1
        # slice 1: both empty -> all 1
        # slice 2: tp 0 fp 0 fn 2 (missed) -> all 0
        # slice 3: target pixel outside the mask, prediction inside the mask -> tp 0 fp 1 fn 0 -> all 0
        pred = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]], [[0, 0], [0, 0]], [[1, 0], [0, 0]]], dtype=bool)
        target = np.array([[[1, 0], [0, 0]], [[0, 0], [0, 0]], [[1, 1], [0, 0]], [[0, 0], [0, 1]]], dtype=bool)
        mask = np.ones_like(pred)
        mask[3, 1, 1] = False
        s = per_slice_scores(pred, target, mask)
        np.testing.assert_allclose(s["dice"].numpy(), [2 / 3, 1, 0, 0])
        np.testing.assert_allclose(s["iou"].numpy(), [1 / 2, 1, 0, 0])
        np.testing.assert_allclose(s["precision"].numpy(), [1 / 2, 1, 0, 0])
        np.testing.assert_allclose(s["recall"].numpy(), [1, 1, 0, 0])
        for v in s.values():
            self.assertEqual(v.dtype, torch.float64)
            self.assertEqual(tuple(v.shape), (4,))
        with self.assertRaises(ValueError):
            per_slice_scores(np.zeros(3), np.zeros(3))


# ---------------------------------------------------------------- ranking scores


class TestRanking(unittest.TestCase):
    def test_hand_example(self):
        # scores 0.1 0.4 0.35 0.8, labels 0 0 1 1
        # AUROC: pairs (pos, neg): 0.35>0.1 yes, 0.35>0.4 no, 0.8>0.1 yes, 0.8>0.4 yes -> 3/4
        # AP: thr 0.8 (tp1 fp0, R 1/2, P 1), 0.4 (tp1 fp1), 0.35 (tp2 fp1, R 1, P 2/3), 0.1 (R 1)
        #     = 1/2 * 1 + 1/2 * 2/3 = 5/6
        # best Dice: thr 0.8: 2*1/(2+0+1)=2/3; 0.4: 2/(2+1+1)=1/2; 0.35: 4/(4+1+0)=4/5; 0.1: 4/6 -> 0.8 @ 0.35
        s = [0.1, 0.4, 0.35, 0.8]
        y = [0, 0, 1, 1]
        self.assertAlmostEqual(auroc(s, y), 0.75)
        self.assertAlmostEqual(average_precision(s, y), 5 / 6)
        best, thr = best_dice_threshold(s, y)
        self.assertAlmostEqual(best, 0.8)
        self.assertAlmostEqual(thr, 0.35)

    def test_best_dice_tie_takes_highest_threshold(self):
        # scores 4(+) 3(-) 2(-) 1(+), P = 2: Dice = 2 tp / (k + P) with k pixels predicted
        # thr 4: 2/(1+2) = 2/3; thr 3: 2/4; thr 2: 2/5; thr 1: 4/(4+2) = 2/3 -> tie, keep the highest (4)
        self.assertEqual(best_dice_threshold([4.0, 3.0, 2.0, 1.0], [1, 0, 0, 1]), (2 / 3, 4.0))

    def test_hand_ties(self):
        # scores 1 1 1 0, labels 1 0 1 0: pos {1, 1}, neg {1, 0}
        # AUROC: (1 vs 1: tie 0.5, 1 vs 0: 1) * 2 positives = 3 / 4
        # AP: one group at 1 (tp 2, fp 1: R 1, P 2/3), then 0 adds no recall -> 2/3
        s, y = [1.0, 1.0, 1.0, 0.0], [1, 0, 1, 0]
        self.assertAlmostEqual(auroc(s, y), 0.75)
        self.assertAlmostEqual(average_precision(s, y), 2 / 3)
        fps, tps, thr = binary_clf_curve(s, y)
        self.assertEqual(fps.tolist(), [1, 2])
        self.assertEqual(tps.tolist(), [2, 2])
        self.assertEqual(thr.tolist(), [1.0, 0.0])

    @parameterized.expand(
        [
            ("small_float32", 0, 60, 5, 0.3, np.float32),
            ("ties_float64", 1, 150, 4, 0.5, np.float64),
            ("rare_pos", 2, 200, 20, 0.05, np.float32),
            ("many_levels", 3, 180, 1000, 0.4, np.float64),
            ("mostly_pos", 4, 120, 3, 0.9, np.float32),
        ]
    )
    def test_against_brute_force(self, _, seed, n, levels, pos_rate, dtype):
        s, y = random_scores(seed, n, levels, pos_rate, dtype)
        s_list, y_list = [float(v) for v in s], [bool(v) for v in y]
        self.assertAlmostEqual(auroc(torch.from_numpy(s), torch.from_numpy(y)), brute_auroc(s_list, y_list), places=12)
        self.assertAlmostEqual(average_precision(s, y), brute_ap(s_list, y_list), places=12)
        best, thr = best_dice_threshold(s, y)
        b_best, b_thr = brute_best_dice(s_list, y_list)
        self.assertAlmostEqual(best, b_best, places=12)
        self.assertEqual(thr, b_thr)
        # the threshold reproduces the Dice when applied as pred = scores >= threshold
        self.assertAlmostEqual(dice_score(s >= thr, y), best, places=12)
        r = ranking_metrics(s, y)
        self.assertAlmostEqual(r["auroc"], brute_auroc(s_list, y_list), places=12)
        self.assertAlmostEqual(r["auprc"], brute_ap(s_list, y_list), places=12)
        self.assertAlmostEqual(r["iou_at_best"], iou_score(s >= thr, y), places=12)

    def test_mann_whitney_large(self):
        # 200k scores with heavy ties against the mid-rank Mann-Whitney formula (scipy.stats.rankdata)
        s, y = random_scores(7, 200_000, 50, 0.1, np.float32)
        ranks = rankdata(s.astype(np.float64))  # mid-ranks for ties
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
        self.assertAlmostEqual(auroc(s, y), u / (n_pos * n_neg), places=10)

    def test_undefined_cases(self):
        self.assertTrue(math.isnan(auroc([0.1, 0.2], [1, 1])))
        self.assertTrue(math.isnan(auroc([0.1, 0.2], [0, 0])))
        self.assertTrue(math.isnan(auroc([], [])))
        self.assertTrue(math.isnan(average_precision([0.1, 0.2], [0, 0])))
        self.assertAlmostEqual(average_precision([0.1, 0.2], [1, 1]), 1.0)  # every threshold has precision 1
        self.assertEqual(best_dice_threshold([0.1, 0.2], [0, 0]), (1.0, math.inf))  # predict nothing
        self.assertTrue(all(math.isnan(v) for v in best_dice_threshold([], [])))
        with self.assertRaisesRegex(ValueError, "NaN"):
            auroc([0.1, float("nan")], [0, 1])
        with self.assertRaisesRegex(ValueError, "shape"):
            auroc([0.1, 0.2], [0, 1, 1])

    def test_2d_input_and_int_scores(self):
        s = np.array([[3, 1], [2, 2]])
        y = np.array([[1, 0], [1, 0]])
        # pos {3, 2}, neg {1, 2}: 3>1, 3>2, 2>1, 2=2 (0.5) -> 3.5 / 4
        self.assertAlmostEqual(auroc(s, y), 3.5 / 4)


# ---------------------------------------------------------------- PRO


class TestPro(unittest.TestCase):
    # one 1 x 6 image: labels 1 1 0 0 1 0 -> regions {0, 1} and {4}; negatives at 2 (0.8), 3 (0.1), 5 (0.3)
    # scores 0.9 0.2 0.8 0.1 0.7 0.3; per threshold (FPR, PRO = mean of the two region overlaps):
    #   0.9: (0, (1/2 + 0)/2 = 1/4)  0.8: (1/3, 1/4)  0.7: (1/3, (1/2 + 1)/2 = 3/4)
    #   0.3: (2/3, 3/4)  0.2: (2/3, 1)  0.1: (1, 1); plus the origin (0, 0)
    S = [[[0.9, 0.2, 0.8, 0.1, 0.7, 0.3]]]
    L = [[[1, 1, 0, 0, 1, 0]]]

    @parameterized.expand(
        [
            ("fpr_0.3", 0.3, 0.25),  # area 0.3 * 1/4 = 0.075, / 0.3
            ("fpr_0.5", 0.5, (1 / 3 * 1 / 4 + (0.5 - 1 / 3) * 3 / 4) / 0.5),  # 0.0833 + 0.125 = 0.2083, / 0.5
            ("fpr_1", 1.0, 1 / 3 * 1 / 4 + 1 / 3 * 3 / 4 + 1 / 3 * 1),  # 2/3
        ]
    )
    def test_hand(self, _, max_fpr, expected):
        self.assertAlmostEqual(pro_score(np.array(self.S), np.array(self.L), max_fpr=max_fpr), expected, places=12)

    def test_connectivity(self):
        # labels a b . / . . c / . . .  : b-c touch diagonally
        # 8-connected: one region {a, b, c}; 4-connected: {a, b} and {c}
        labels = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]])
        scores = np.array([[0.9, 0.0, 0.5], [0.5, 0.5, 0.9], [0.5, 0.5, 0.5]])
        # a, c score 0.9, b 0.0, all negatives 0.5:
        # 8-conn: thr 0.9 -> PRO 2/3 at FPR 0; thr 0.5 -> FPR 1, PRO 2/3; thr 0 -> (1, 1): area 1 * 2/3 = 2/3
        # 4-conn: thr 0.9 -> PRO (1/2 + 1)/2 = 3/4 at FPR 0, flat to FPR 1: area 3/4
        self.assertAlmostEqual(pro_score(scores, labels, max_fpr=1.0), 2 / 3)
        self.assertAlmostEqual(pro_score(scores, labels, max_fpr=1.0, connectivity=1), 3 / 4)

    @parameterized.expand([("s0", 0, 0.3, True), ("s1", 1, 0.3, False), ("s2", 2, 0.05, True), ("s3", 3, 1.0, True)])
    def test_against_brute_force(self, _, seed, max_fpr, diagonal):
        rng = np.random.default_rng(seed)
        labels = np.zeros((3, 6, 7), dtype=bool)
        labels[0, 1:3, 1:4] = True
        labels[0, 4, 5] = True
        labels[1, 3:6, 0:2] = True
        labels[1, 2, 2] = True  # diagonal neighbour of (3, 1)
        scores = (rng.integers(0, 6, labels.shape) + 2.0 * labels * rng.random(labels.shape)).round(1)
        expected = brute_pro(scores.tolist(), labels.astype(int).tolist(), max_fpr, diagonal)
        got = pro_score(torch.from_numpy(scores), torch.from_numpy(labels), max_fpr, connectivity=2 if diagonal else 1)
        self.assertAlmostEqual(got, expected, places=12)

    def test_perfect_random_and_grid(self):
        rng = np.random.default_rng(5)
        labels = np.zeros((4, 64, 64), dtype=bool)
        labels[:, 10:40, 10:40] = True
        labels[2, 45:60, 3:30] = True
        self.assertAlmostEqual(pro_score(labels.astype(np.float32) + 1, labels), 1.0)
        noise = rng.random(labels.shape)
        # random map: PRO(FPR) ~ FPR, so the area is 0.3^2 / 2 and normalised 0.15 (seed spread about +-0.01)
        self.assertAlmostEqual(pro_score(noise, labels), 0.15, delta=0.02)
        scores = noise + labels * 0.5
        exact = pro_score(scores, labels)
        self.assertAlmostEqual(pro_score(scores, labels, num_thresholds=2000), exact, delta=0.01)

    def test_undefined_and_errors(self):
        self.assertTrue(math.isnan(pro_score(np.ones((2, 2)), np.zeros((2, 2)))))
        self.assertTrue(math.isnan(pro_score(np.ones((2, 2)), np.ones((2, 2)))))
        with self.assertRaises(ValueError):
            pro_score(np.ones((2, 2)), np.zeros((2, 2)), max_fpr=0)
        with self.assertRaises(ValueError):
            pro_score(np.ones(4), np.zeros(4))
        with self.assertRaises(ValueError):
            pro_score(np.ones((2, 2)), np.zeros((2, 3)))
        with self.assertRaises(ValueError):
            pro_score(np.ones((2, 2)), np.zeros((2, 2)), connectivity=3)


class TestSpearman(unittest.TestCase):
    def test_against_scipy(self):
        rng = np.random.default_rng(0)
        for n in (2, 5, 40):
            a = rng.integers(0, 4, n).astype(float)  # many ties
            b = a * 0.5 + rng.normal(size=n)
            if np.ptp(a) == 0:
                continue
            self.assertAlmostEqual(spearman(a, b), spearmanr(a, b).statistic, places=12)
        self.assertAlmostEqual(spearman([1, 2, 3], [30, 20, 10]), -1.0)
        self.assertTrue(math.isnan(spearman([1, 1, 1], [1, 2, 3])) and math.isnan(spearman([1], [2])))
        with self.assertRaises(ValueError):
            spearman([1, 2], [1, 2, 3])


if __name__ == "__main__":
    unittest.main()


class TestPRCurve(unittest.TestCase):
    """The thinned precision-recall curve against hand-computed points."""

    def test_hand_computed(self):
        from monai_adiff.metrics.functional import pr_curve

        # thresholds 0.9 (tp 1, fp 0), 0.8 (1, 1), 0.7 (2, 1), 0.6 (2, 2): recall reaches 1/2 then 1
        curve = pr_curve([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])
        self.assertEqual(curve["recall"], [0.5, 1.0])
        np.testing.assert_allclose(curve["precision"], [1.0, 2 / 3])

    def test_thinned_keeps_shape_and_area(self):
        from monai_adiff.metrics.functional import pr_curve

        rng = np.random.default_rng(0)
        labels = rng.random(20000) < 0.1
        scores = rng.normal(size=20000) + 1.5 * labels
        curve = pr_curve(scores, labels, points=100)
        self.assertLessEqual(len(curve["recall"]), 100)
        self.assertEqual(curve["recall"][-1], 1.0)
        self.assertTrue(np.all(np.diff(curve["recall"]) > 0))
        # the step area of the thinned curve is the average precision up to the thinning
        r = np.concatenate([[0.0], curve["recall"]])
        area = float(np.sum(np.diff(r) * np.asarray(curve["precision"])))
        self.assertAlmostEqual(area, average_precision(scores, labels), delta=0.01)
        # with as many points as positives the curve is exact: its area is the average precision
        few = labels.copy()
        few[np.flatnonzero(labels)[50:]] = False
        exact = pr_curve(scores, few, points=50)
        r = np.concatenate([[0.0], exact["recall"]])
        self.assertAlmostEqual(float(np.sum(np.diff(r) * exact["precision"])), average_precision(scores, few), 12)

    def test_no_positive(self):
        from monai_adiff.metrics.functional import pr_curve

        self.assertIsNone(pr_curve([0.1, 0.2], [0, 0]))
        self.assertIsNone(ranking_metrics([0.1, 0.2], [0, 0], curve_points=10)["pr_curve"])
