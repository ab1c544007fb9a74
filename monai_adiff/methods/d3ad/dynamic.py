# SPDX-License-Identifier: Apache-2.0
"""D3AD's dynamic implicit conditioning (Tebbe & Tayyub 2024, section 4.1, Algorithm 2).

A slice's noise level is chosen from how far its features lie from healthy training slices: the mean L1 distance to
its K nearest neighbours in a bank of healthy-slice features is placed in one of 10 equal-width bins of the bank's
own mean distances, and the bin sets ``T_hat``. Our own code: neither MONAI nor PyTorch has a chunked KNN or the
paper's bin-to-step mapping.
"""

from __future__ import annotations

import torch

__all__ = ["knn_mean_distance", "fit_bin_edges", "distance_bins", "dynamic_timesteps", "timestep_table"]


def knn_mean_distance(
    query: torch.Tensor, bank: torch.Tensor, k: int = 20, exclude_self: bool = False, chunk_size: int = 256
) -> torch.Tensor:
    """Mean L1 distance of each query row to its ``k`` nearest bank rows.

    Args:
        query: (N, D) features.
        bank: (M, D) features of healthy training slices.
        k: neighbours (paper: 20); capped at the number of candidates.
        exclude_self: ``query`` is ``bank`` (fitting the bins): a row is not its own neighbour. The public code keeps
            the self-match (distance 0), which pulls the bank's distances, and so the bin edges, down.
        chunk_size: query rows per distance block (memory ~ chunk_size x M).

    Returns:
        (N,) mean distances.

    Raises:
        ValueError: empty bank, mismatched feature sizes.
    """
    if bank.ndim != 2 or bank.shape[0] == 0:
        raise ValueError("the feature bank is empty: fit it on healthy training slices first")
    if query.ndim != 2 or query.shape[1] != bank.shape[1]:
        raise ValueError(f"query features {tuple(query.shape)} do not match the bank's {tuple(bank.shape)}")
    if exclude_self and query.shape[0] != bank.shape[0]:
        raise ValueError("exclude_self needs the bank itself as the query")
    bank = bank.to(query.dtype)
    out = []
    for start in range(0, query.shape[0], chunk_size):
        q = query[start : start + chunk_size]
        d = torch.cdist(q.unsqueeze(0), bank.unsqueeze(0), p=1.0)[0]
        if exclude_self:
            rows = torch.arange(q.shape[0], device=d.device)
            d[rows, rows + start] = float("inf")
        kk = min(int(k), d.shape[1] - int(exclude_self))
        if kk < 1:
            raise ValueError("the bank needs at least two rows to exclude self-matches")
        out.append(d.topk(kk, dim=1, largest=False).values.mean(1))
    return torch.cat(out)


def fit_bin_edges(mean_distances: torch.Tensor, num_bins: int = 10) -> torch.Tensor:
    """``num_bins + 1`` equally spaced edges from the smallest to the largest bank distance (``np.histogram``'s)."""
    lo, hi = float(mean_distances.min()), float(mean_distances.max())
    return torch.linspace(lo, hi, int(num_bins) + 1, dtype=torch.float64)


def distance_bins(mean_distances: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Bin ``b`` in ``0..num_bins`` of each distance: 0 at or below the first edge, ``i`` in ``(e[i-1], e[i]]``,
    ``num_bins`` above the last edge (the code's ``min(digitize(d, edges, right=True) - 1, num_bins - 1) + 1``)."""
    edges = edges.to(mean_distances.device, torch.float64)
    num_bins = edges.numel() - 1
    b = torch.bucketize(mean_distances.to(torch.float64), edges, right=False)  # e[i-1] < d <= e[i] -> i
    return b.clamp(max=num_bins)


def timestep_table(t_max: int = 80, num_bins: int = 10, min_bin: int = 2) -> list[int]:
    """``T_hat`` for bins ``0..num_bins``: ``max(b, min_bin) / num_bins * t_max`` rounded half-up to a multiple of 10
    (``t_max`` 80 -> 20, 20, 20, 20, 30, 40, 50, 60, 60, 70, 80)."""
    out = []
    for b in range(num_bins + 1):
        raw = max(b, min_bin) * t_max / num_bins
        out.append(int((raw / 10.0 + 0.5) // 1) * 10)
    return out


def dynamic_timesteps(
    mean_distances: torch.Tensor, edges: torch.Tensor, t_max: int = 80, min_bin: int = 2, num_steps: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each slice's noise level ``T_hat`` and DDIM stride ``skip = max(T_hat // num_steps, 1)`` (about
    ``num_steps`` reconstruction steps whatever the level).

    Returns:
        ``(t_hat, skip)``, (N,) long tensors.
    """
    table = torch.tensor(timestep_table(t_max, edges.numel() - 1, min_bin), device=mean_distances.device)
    t_hat = table[distance_bins(mean_distances, edges)]
    return t_hat, (t_hat // int(num_steps)).clamp(min=1)
