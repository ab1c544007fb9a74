# SPDX-License-Identifier: Apache-2.0
import pytest
import torch

from monai_adiff.data import class_balanced_sampler


def test_each_class_drawn_equally_often():
    labels = torch.tensor([0] * 90 + [1] * 10)
    sampler = class_balanced_sampler(labels, num_samples=20000, seed=3)
    drawn = labels[torch.tensor(list(sampler))]
    # binomial(20000, 0.5): sd 0.0035, so 0.02 is ~6 sd; the unweighted share would be 0.1
    assert abs(drawn.float().mean().item() - 0.5) < 0.02


def test_weights_sum_to_one_per_class_and_epoch_length_kept():
    labels = [2, 0, 0, 1, 1, 1, 0, 0]
    sampler = class_balanced_sampler(labels)
    w = sampler.weights
    for c, n in ((0, 4), (1, 3), (2, 1)):
        sel = torch.tensor(labels) == c
        assert torch.allclose(w[sel], torch.full((n,), 1.0 / n, dtype=w.dtype))
    assert len(sampler) == len(labels)


def test_seeded_draws_repeat():
    labels = [0, 1, 1, 1, 1]
    assert list(class_balanced_sampler(labels, seed=1)) == list(class_balanced_sampler(labels, seed=1))


def test_empty_labels_refused():
    with pytest.raises(ValueError, match="empty"):
        class_balanced_sampler([])
