# SPDX-License-Identifier: Apache-2.0
"""Dynamic implicit conditioning against independent oracles: the issue's bin -> T_hat table, numpy's histogram and
digitize (the public code's formula), and brute-force KNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_adiff.methods.d3ad import distance_bins, dynamic_timesteps, fit_bin_edges, knn_mean_distance, timestep_table


def test_bin_to_timestep_table():
    assert timestep_table(80) == [20, 20, 20, 20, 30, 40, 50, 60, 60, 70, 80]
    # t_max 40: max(b, 2) * 4 = 8, 8, 8, 12, ..., 40 rounded half-up to tens
    assert timestep_table(40) == [10, 10, 10, 10, 20, 20, 20, 30, 30, 40, 40]


def test_bins_match_the_public_codes_digitize_formula():
    rng = np.random.default_rng(0)
    bank = rng.gamma(2.0, 1.0, 200)
    edges = np.histogram(bank, bins=10)[1]
    queries = np.concatenate([rng.uniform(bank.min() - 1, bank.max() + 1, 500), edges, [edges[0] - 1e-9]])
    expected = np.minimum(np.digitize(queries, edges, right=True) - 1, 9) + 1
    got = distance_bins(torch.as_tensor(queries), fit_bin_edges(torch.as_tensor(bank)))
    np.testing.assert_array_equal(got.numpy(), expected)
    np.testing.assert_allclose(fit_bin_edges(torch.as_tensor(bank)).numpy(), edges)


def test_dynamic_timesteps_and_strides():
    edges = torch.linspace(0.0, 10.0, 11, dtype=torch.float64)
    d = torch.tensor([-1.0, 0.5, 3.5, 5.0, 9.9, 50.0])  # bins 0, 1, 4, 5, 10, 10
    t_hat, skip = dynamic_timesteps(d, edges, t_max=80)
    assert t_hat.tolist() == [20, 20, 30, 40, 80, 80]
    assert skip.tolist() == [2, 2, 3, 4, 8, 8]


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_knn_matches_brute_force(chunk):
    g = torch.Generator().manual_seed(0)
    bank, query = torch.randn(40, 9, generator=g), torch.randn(13, 9, generator=g)
    d = np.abs(query.numpy()[:, None, :] - bank.numpy()[None]).sum(-1)
    expected = np.sort(d, axis=1)[:, :5].mean(1)
    got = knn_mean_distance(query, bank, k=5, chunk_size=chunk)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    # the bank against itself without self-matches: each row's own zero distance is not a neighbour
    dd = np.abs(bank.numpy()[:, None, :] - bank.numpy()[None]).sum(-1)
    np.fill_diagonal(dd, np.inf)
    got_self = knn_mean_distance(bank, bank, k=5, exclude_self=True, chunk_size=chunk)
    np.testing.assert_allclose(got_self.numpy(), np.sort(dd, axis=1)[:, :5].mean(1), rtol=1e-5)


def test_knn_refuses_an_empty_bank_and_mismatched_features():
    with pytest.raises(ValueError, match="empty"):
        knn_mean_distance(torch.zeros(2, 3), torch.zeros(0, 3))
    with pytest.raises(ValueError, match="do not match"):
        knn_mean_distance(torch.zeros(2, 3), torch.zeros(4, 5))
