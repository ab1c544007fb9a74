# SPDX-License-Identifier: Apache-2.0
"""Seed -> permutation tables of OpenSimplex (``opensimplex==0.4.5.1``), batched and on any device.

OpenSimplex turns a 64-bit seed into a permutation of 0..255 with a linear congruential generator (LCG, Knuth's
MMIX constants, wrapping int64 arithmetic) that drives a Fisher-Yates shuffle: three warm-up steps, then for
``i = 255 .. 0`` one LCG step, ``r_i = (state + 31) mod (i + 1)``, ``perm[i] = source[r_i]``,
``source[r_i] = source[i]``.

The shuffle is sequential, so here it is rewritten without a loop over ``i``:

* all 256 LCG states of every seed come from one multiply-add with precomputed jump-ahead constants
  ``s_n = A^n s_0 + C (A^{n-1} + ... + 1)  (mod 2^64)``;
* the value at a position just before step ``i`` is the value that the most recent earlier step (the smallest
  ``k > i`` with ``r_k = position``) moved there, or the position itself. Those "most recent writer" links are
  neighbours in one sort of the keys ``r_k * 256 + k``, and are followed to their ends by pointer jumping
  (8 gathers for chains of up to 256 links).

Every step is a batched tensor op (about 25 of them whatever the batch size), so the tables are built on the
device of the seeds without any device-to-host transfer; the jump-ahead constants are uploaded once per device.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import torch

__all__ = ["hash2_table", "normalize_seeds", "permutation_tables", "take"]

_MULT = 6364136223846793005
_INC = 1442695040888963407
_MASK64 = (1 << 64) - 1
_WARMUP = 3
_SIZE = 256


def _to_int64(value: int) -> int:
    """Two's-complement wrap of a Python integer to the signed 64-bit range (what ``ctypes.c_int64`` does)."""
    value &= _MASK64
    return value - (1 << 64) if value >= (1 << 63) else value


def _jump_constants() -> tuple[list[int], list[int]]:
    """``(A_n, C_n)`` with ``s_n = A_n * s_0 + C_n`` for the 256 states used by the shuffle (n = 4 .. 259)."""
    mults, incs = [], []
    a, c = 1, 0
    for n in range(1, _WARMUP + _SIZE + 1):
        a, c = (a * _MULT) & _MASK64, (c * _MULT + _INC) & _MASK64
        if n > _WARMUP:
            mults.append(_to_int64(a))
            incs.append(_to_int64(c))
    return mults, incs


_JUMP_MULT, _JUMP_INC = _jump_constants()


@cache
def _jump_tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The jump-ahead constants on ``device``, uploaded once (later calls copy nothing host-to-device)."""
    return (
        torch.tensor(_JUMP_MULT, dtype=torch.int64, device=device),
        torch.tensor(_JUMP_INC, dtype=torch.int64, device=device),
    )


def normalize_seeds(seeds: Sequence[int] | torch.Tensor) -> list[int]:
    """Python integers of any size -> the signed 64-bit values OpenSimplex actually uses (wrap-around)."""
    if isinstance(seeds, torch.Tensor):
        seeds = seeds.reshape(-1).tolist()
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) and not hasattr(s, "__index__"):
            raise TypeError(f"seeds must be integers, got {type(s).__name__}: {s!r}")
        out.append(_to_int64(int(s)))
    return out


def permutation_tables(seeds: torch.Tensor) -> torch.Tensor:
    """OpenSimplex permutations for a batch of seeds, computed on ``seeds.device``.

    Args:
        seeds: int64 tensor of shape ``(P,)`` (signed 64-bit seeds; larger Python seeds must be wrapped first, see
            :func:`normalize_seeds`).

    Returns:
        int64 tensor ``(P, 256)``: row ``p`` equals ``opensimplex.OpenSimplex(seeds[p])._perm``.
    """
    if seeds.dtype != torch.int64 or seeds.dim() != 1:
        raise ValueError(f"seeds must be a 1-D int64 tensor, got {tuple(seeds.shape)} {seeds.dtype}")
    device = seeds.device
    n_seeds = seeds.shape[0]
    mult, inc = _jump_tables(device)
    # state used at position i (i = 255 first): index 255 - i in the jump tables; int64 multiply wraps mod 2^64
    states = (seeds[:, None] * mult + inc).flip(-1)  # (P, 256), column i <-> step i
    pos = torch.arange(_SIZE, dtype=torch.int64, device=device)
    modulus = pos + 1
    # (s + 31) mod (i+1) without overflowing s + 31: reduce first (floor mod, non-negative like Python's %)
    r = torch.remainder(torch.remainder(states, modulus) + 31, modulus)  # (P, 256), r_i in [0, i]

    # Sorted keys r_k * 256 + k (unique per row) list, for every target position v, the steps that wrote there in
    # increasing k. "The smallest k > i with r_k == v" is then a neighbour lookup, no search needed.
    keys, order = torch.sort(r * _SIZE + pos)
    counts = torch.zeros_like(r).scatter_add_(1, r, torch.ones_like(r))
    starts = torch.cumsum(counts, 1) - counts  # first sorted slot of each target group

    def group_entry(slot: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Step stored at sorted ``slot`` if that slot still belongs to target ``value``, else -1."""
        hit = torch.gather(keys, 1, slot.clamp(max=_SIZE - 1))
        return torch.where((slot < _SIZE) & (hit >> 8 == value), hit & (_SIZE - 1), -1)

    # value at position j just before step j: the last earlier step (smallest k > j) that wrote to j, followed to
    # the end of the chain. Group j holds steps k >= j; skip k == j itself when r_j == j.
    own = (r == pos).long()
    nxt = group_entry(starts + own, pos)
    pos_b = pos.expand(n_seeds, _SIZE)
    chain = torch.where(nxt < 0, pos_b, nxt)
    for _ in range(8):  # links only go up (k > j), so 2^8 = 256 links are enough
        chain = torch.gather(chain, 1, chain)
    # perm[i] = value at position r_i just before step i: the next entry after step i in group r_i
    slot_of_step = torch.empty_like(order).scatter_(1, order, pos_b)
    writer = group_entry(slot_of_step + 1, r)
    return torch.where(writer < 0, r, torch.gather(chain, 1, writer.clamp(min=0)))


def hash2_table(perm: torch.Tensor) -> torch.Tensor:
    """The first two hash levels ``perm[(perm[X] + Y) & 255]`` for every ``(X, Y)``: uint8 ``(P * 65536,)``.

    Row ``X`` of a plane is ``perm`` rotated left by ``perm[X]``, so the table is a row selection from the 256
    rotations (one ``index_select`` of 256-byte rows instead of gathering its 65536 entries).
    """
    n_planes = perm.shape[0]
    p8 = perm.to(torch.uint8)
    rotations = torch.cat([p8, p8], 1).unfold(1, _SIZE, 1).contiguous().view(-1, _SIZE)  # (P * 257, 256)
    rows = perm + (_SIZE + 1) * torch.arange(n_planes, device=perm.device)[:, None]
    return rotations.index_select(0, rows.reshape(-1)).reshape(-1)


def take(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for a flat table and integer indices known to be in range.

    Flat 1-D indices (the compiled kernels' inputs) go through ``torch.gather``: Inductor lowers it without the
    negative-index wrap-around it adds to ``index_select`` / advanced indexing (a compare and a blend per gather).
    Other shapes use ``index_select``, faster than advanced indexing in eager mode on CPU.
    """
    if index.dim() == 1:
        return torch.gather(table, 0, index.long())
    return table.index_select(0, index.reshape(-1)).view(index.shape)
