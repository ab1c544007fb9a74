# SPDX-License-Identifier: Apache-2.0
"""4D OpenSimplex noise (``opensimplex==0.4.5.1``) as batched torch tensor code.

The 4D counterpart of :mod:`monai_adiff.noise.lattice3`, used by Tsimplex noise (Annotsim / DTU-Net: ``x, y`` pixels,
channel and timestep as coordinates) and by simplex noise on 3D volumes (``x, y, z`` voxels and the timestep).

The stretched 4D cell splits by ``in_sum`` into the pentachoron at 0 (``<= 1``), the pentachoron at 1 (``>= 3``) and
two rectified pentachora (``<= 2``, else). The reference evaluates the region's 5 or 10 hypercube corners plus
three extra vertices chosen by a cascade of comparisons. Here all 16 corners are evaluated with a per-region mask
(corners with ``k`` ones are used by the regions around ``in_sum = k``), the cascade runs branch-free on float64
exactly as the reference runs it (same operands, operation order and strictness, so ties resolve identically), and
the three extra vertices come from a 2112-row table keyed by the cascade's outcome.

Hash: ``perm[(perm[(perm[(perm[X & 255] + Y) & 255] + Z) & 255] + W) & 255] & 0xFC`` selects one of 64 gradients;
the first two levels come from a per-seed 256x256 table. Contribution ``max(0, 2 - |d|^2)^4 <g, d>``, sum divided
by 30 (``NORM_CONSTANT4``).
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import torch

from monai_adiff.noise.tables import hash2_table
from monai_adiff.noise.tables import take as _take

__all__ = ["Tables4", "gradient_tables4", "opensimplex4"]

_STRETCH = -0.138196601125011  # (1 / sqrt(4 + 1) - 1) / 4, the reference's rounded literal
_SQUISH = 0.309016994374947  # (sqrt(4 + 1) - 1) / 4, likewise
_NORM = 30.0


def _gradients4() -> list[tuple[int, ...]]:
    """The reference's 64 gradients: for each sign pattern (x fastest), the 4 axes taking magnitude 3."""
    grads = []
    for signs in range(16):
        sign = [(-1 if (signs >> a) & 1 else 1) for a in range(4)]
        for big in range(4):
            grads.append(tuple(sign[a] * (3 if a == big else 1) for a in range(4)))
    return grads


# region keys of the extra-vertex table
_P0, _P1, _R1, _R2 = 0, 32, 64, 64 + 1024
_N_KEYS = 64 + 2 * 1024
_BIT = (1, 2, 4, 8)


def _first_set(c: int) -> int:
    return 0 if c & 1 else 1 if c & 2 else 2 if c & 4 else 3


def _first_clear(c: int) -> int:
    return _first_set(~c & 15)


def _unit(axis: int, k: int = 1) -> list[int]:
    return [k if a == axis else 0 for a in range(4)]


def _pair_below(c: int) -> tuple[list[int], list[int]]:
    """Two extra vertices "c with each 0 replaced by -1" spread over two vertices (regions near the origin)."""
    e0, e1 = [0] * 4, [0] * 4
    for a in range(4):
        if c & _BIT[a]:
            e0[a] = e1[a] = 1
    # the reference lowers one coordinate of e0 or e1 per clear bit, in this pattern
    if not c & 1:
        e0[0] = -1
    if not c & 2:
        (e0 if c & 1 else e1)[1] -= 1
    if not c & 4:
        (e0 if c & 3 == 3 else e1)[2] -= 1
    if not c & 8:
        e1[3] -= 1
    return e0, e1


def _pair_above(c: int) -> tuple[list[int], list[int]]:
    """Mirror of :func:`_pair_below` (regions near (1,1,1,1)): "c with each 1 replaced by 2"."""
    e0, e1 = [0] * 4, [0] * 4
    for a in range(4):
        if c & _BIT[a]:
            e0[a] = e1[a] = 1
    if c & 1:
        e0[0] = 2
    if c & 2:
        (e1 if c & 1 else e0)[1] += 1
    if c & 4:
        (e0 if c & 3 == 0 else e1)[2] += 1
    if c & 8:
        e1[3] += 1
    return e0, e1


def _extra_vertices(key: int) -> tuple[list[int], list[int], list[int]]:
    """The three extra vertex offsets for a table key (see :func:`_extra_vertex_key`)."""
    one = [1, 1, 1, 1]
    if key < _P1:  # pentachoron at 0
        c, closest_to_origin = key & 15, key < 16
        e = [[1 if c & _BIT[a] else 0 for a in range(4)] for _ in range(3)]
        if closest_to_origin:  # c = the other closest vertex (one bit)
            if not c & 1:
                e[0][0] = -1
            if not c & 2:
                e[0 if c & 1 else 1][1] -= 1
            if not c & 4:
                e[(0 if c & 3 == 3 else 1) if c & 3 else 2][2] -= 1
            if not c & 8:
                e[2][3] -= 1
        else:  # c = both closest vertices (two bits)
            if not c & 1:
                e[1][0] = -1
            if not c & 2:
                e[1 if c & 1 else 2][1] -= 1
            if not c & 4:
                e[1 if c & 3 == 3 else 2][2] -= 1
            if not c & 8:
                e[2][3] -= 1
        return e[0], e[1], e[2]
    if key < _R1:  # pentachoron at 1
        c, closest_to_far = (key - _P1) & 15, key - _P1 < 16
        e = [[1 if c & _BIT[a] else 0 for a in range(4)] for _ in range(3)]
        if closest_to_far:  # c = the other closest vertex (three bits)
            if c & 1:
                e[0][0] = 2
            if c & 2:
                e[1 if c & 1 else 0][1] += 1
            if c & 4:
                e[(0 if c & 3 == 0 else 1) if c & 3 != 3 else 2][2] += 1
            if c & 8:
                e[2][3] += 1
        else:  # c = common bits of both closest (two bits)
            if c & 1:
                e[1][0] = 2
            if c & 2:
                e[2 if c & 1 else 1][1] += 1
            if c & 4:
                e[2 if c & 3 else 1][2] += 1
            if c & 8:
                e[2][3] += 1
        return e[0], e[1], e[2]
    inner = key - (_R1 if key < _R2 else _R2)
    a_big, b_big, a, b = inner >> 9 & 1, inner >> 8 & 1, inner >> 4 & 15, inner & 15
    if key < _R2:  # first rectified pentachoron (1 < in_sum <= 2)
        if a_big and b_big:
            c1, c2 = a | b, a & b
            e0 = [1 if c1 & _BIT[k] else 0 for k in range(4)]
            e1 = [1 if c1 & _BIT[k] else -1 for k in range(4)]
            return e0, e1, _unit(_first_set(c2), 2)
        if not a_big and not b_big:
            e0, e1 = _pair_below(a | b)
            return e0, e1, [0, 0, 0, 0]
        big, small = (a, b) if a_big else (b, a)
        e0, e1 = _pair_below(big)
        return e0, e1, _unit(_first_set(small), 2)
    # second rectified pentachoron (2 < in_sum < 3)
    if a_big and b_big:
        c1, c2 = a & b, a | b
        k = _first_set(c1)
        return _unit(k), _unit(k, 2), [o - 2 * u for o, u in zip(one, _unit(_first_clear(c2)))]
    if not a_big and not b_big:
        e0, e1 = _pair_above(a & b)
        return e0, e1, one
    big, small = (a, b) if a_big else (b, a)
    e0, e1 = _pair_above(big)
    return e0, e1, [o - 2 * u for o, u in zip(one, _unit(_first_clear(small)))]


def _extra_table() -> tuple[list[list[int]], list[list[float]]]:
    offsets, disps = [], []
    for key in range(_N_KEYS):
        vs = _extra_vertices(key)
        offsets.append([v[a] for v in vs for a in range(4)])
        disps.append([v[a] + sum(v) * _SQUISH for v in vs for a in range(4)])
    return offsets, disps


_EXTRA_OFFSETS, _EXTRA_DISPLACEMENTS = _extra_table()


class Tables4(NamedTuple):
    """Per-seed lookup tables for :func:`opensimplex4` (flat, ``P`` seeds, on the device of the noise)."""

    hash2: torch.Tensor  # uint8 (P * 65536,): perm[(perm[X & 255] + Y) & 255]
    perm: torch.Tensor  # int32 (P * 256,)
    grad: torch.Tensor  # float32 (4, P * 256): gradient for the last hash level, GRADIENTS4[perm[j] & 0xFC :]
    extra: torch.Tensor  # float32 (24, 2112): offsets of the 3 extra vertices (12) then displacements (12)


@cache
def _constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients and the extra-vertex table on ``device``, uploaded once per device."""
    grads = torch.tensor(_gradients4(), dtype=torch.float32)
    extra = torch.cat([torch.tensor(_EXTRA_OFFSETS, dtype=torch.float32), torch.tensor(_EXTRA_DISPLACEMENTS)], 1)
    return grads.to(device), extra.t().contiguous().to(device)


def gradient_tables4(perm: torch.Tensor) -> Tables4:
    """Build the lookup tables of :func:`opensimplex4` from permutations ``(P, 256)`` (on their device)."""
    device = perm.device
    grads, extra = _constants(device)
    hash2 = hash2_table(perm)
    grad = grads[perm.reshape(-1) >> 2].t().contiguous()  # index & 0xFC selects gradient index >> 2
    return Tables4(hash2, perm.reshape(-1).to(torch.int32), grad, extra)


def opensimplex4(
    x: torch.Tensor,
    y: torch.Tensor,
    z: torch.Tensor,
    w: torch.Tensor,
    plane: torch.Tensor,
    tables: Tables4,
    fused: bool = False,
) -> torch.Tensor:
    """4D OpenSimplex noise at ``(x, y, z, w)``, seed ``plane`` (row of the tables), as float32.

    Args:
        x, y, z, w: float64 coordinates, broadcastable to a common shape.
        plane: int32 index of the seed of each point, broadcastable to the same shape.
        tables: from :func:`gradient_tables4`.
        fused: accepted for symmetry with :func:`~monai_adiff.noise.lattice3.opensimplex3`; the 4D kernel has one
            formulation for eager and compiled use.

    Returns:
        float32 tensor of the broadcast shape; equals ``OpenSimplex(seed).noise4(x, y, z, w)`` within ~1e-6.
    """
    i32 = torch.int32
    s = (x + y + z + w) * _STRETCH
    coords = [c + s for c in (x, y, z, w)]
    floors = [torch.floor(c) for c in coords]
    ins = [c - f for c, f in zip(coords, floors)]
    in_sum = ins[0] + ins[1] + ins[2] + ins[3]
    shift = (s + (floors[0] + floors[1] + floors[2] + floors[3]) * _SQUISH).float()
    d0 = [v.float() - shift for v in ins]
    base = [f.to(i32) for f in floors]

    key = _extra_vertex_key(ins, in_sum)
    p0 = (in_sum <= 1).float()
    p1 = (in_sum >= 3).float()
    r1 = (in_sum <= 2).float() - p0
    r2 = 1 - p0 - p1 - r1
    masks = (p0, p0 + r1, r1 + r2, r2 + p1, p1)

    # plane & 0x7FFF (callers keep plane < 32768) lets a compiler prove the table indices non-negative
    plane = plane.to(i32) & 0x7FFF
    base2 = plane * 65536
    base1 = plane * 256
    grad = tables.grad

    def contribution(h3, wv, d, mask=None):
        h = base1 + ((h3 + wv) & 255)
        q = d[0] * d[0]
        for a in range(1, 4):
            q = torch.addcmul(q, d[a], d[a])
        attn = 2 - q
        if mask is not None:
            attn = attn * mask
        attn = attn.clamp_(min=0).square_().square_()
        dot = _take(grad[0], h) * d[0]
        for a in range(1, 4):
            dot = torch.addcmul(dot, _take(grad[a], h), d[a])
        return attn * dot

    xi, yi, zi, wi = base
    row = [(xi & 255) << 8, ((xi + 1) & 255) << 8]
    col = [base2 + (yi & 255), base2 + ((yi + 1) & 255)]
    value: torch.Tensor | None = None
    for ox in (0, 1):
        for oy in (0, 1):
            h2 = _take(tables.hash2, row[ox] + col[oy]).to(i32)
            for oz in (0, 1):
                h3 = _take(tables.perm, base1 + ((h2 + zi + oz) & 255))
                for ow in (0, 1):
                    o = (ox, oy, oz, ow)
                    n = sum(o)
                    d = [d0[a] - (o[a] + n * _SQUISH) for a in range(4)]
                    c = contribution(h3, wi + ow, d, masks[n])
                    value = c if value is None else value + c
    assert value is not None  # the corner loops always run
    ext = tables.extra
    for k in range(3):
        off = [_take(ext[4 * k + a], key).to(i32) for a in range(4)]
        d = [d0[a] - _take(ext[12 + 4 * k + a], key) for a in range(4)]
        v = [b + o for b, o in zip(base, off)]
        h2 = _take(tables.hash2, ((v[0] & 255) << 8) + base2 + (v[1] & 255)).to(i32)
        h3 = _take(tables.perm, base1 + ((h2 + v[2]) & 255))
        value = value + contribution(h3, v[3], d)
    return value / _NORM


def _extra_vertex_key(ins: list[torch.Tensor], in_sum: torch.Tensor) -> torch.Tensor:
    """Row of the extra-vertex table for every point (int32): the reference's cascade, emulated with selects.

    Each step keeps the two best-scored candidate vertices ``a`` and ``b`` (bit masks ``*_po``) exactly as the
    reference does, with the same float64 operands and strict/non-strict comparisons.
    """
    i32 = torch.int32
    xins, yins, zins, wins = ins
    where = torch.where

    def keep_best(a_s, a_po, b_s, b_po, score, po, higher=True, a_big=None, b_big=None, big=None):
        # reference: if a >= b and s > b: b := s  elif a < b and s > a: a := s  (mirrored for "lower is better")
        if higher:
            a_first = a_s >= b_s
            rep_b = a_first & (score > b_s)
            rep_a = (score > a_s) > a_first
        else:
            a_first = a_s <= b_s
            rep_b = a_first & (score < b_s)
            rep_a = (score < a_s) > a_first
        out = [where(rep_a, score, a_s), where(rep_a, po, a_po), where(rep_b, score, b_s), where(rep_b, po, b_po)]
        if a_big is not None:
            out += [a_big & ~rep_a if not big else a_big | rep_a, b_big & ~rep_b if not big else b_big | rep_b]
        return out

    def const(v):
        return torch.full_like(xins, v, dtype=i32)

    # pentachoron at 0: the two closest of e_x, e_y, e_z, e_w (scored by the in-cell coordinates)
    a_s, a_po, b_s, b_po = keep_best(xins, const(1), yins, const(2), zins, const(4))
    a_s, a_po, b_s, b_po = keep_best(a_s, a_po, b_s, b_po, wins, const(8))
    uins = 1 - in_sum
    origin = (uins > a_s) | (uins > b_s)
    key_p0 = where(origin, where(b_s > a_s, b_po, a_po), 16 + (a_po | b_po))

    # pentachoron at 1: the two closest of 1 - e_a
    a_s, a_po, b_s, b_po = keep_best(xins, const(14), yins, const(13), zins, const(11), higher=False)
    a_s, a_po, b_s, b_po = keep_best(a_s, a_po, b_s, b_po, wins, const(7), higher=False)
    uins = 4 - in_sum
    far = (uins < a_s) | (uins < b_s)
    key_p1 = _P1 + where(far, where(b_s < a_s, b_po, a_po), 16 + (a_po & b_po))

    def rectified(higher: bool, base_key: int, p_base: torch.Tensor, singles: tuple[int, ...]):
        xy, zw, xz, yw, xw, yz = xins + yins, zins + wins, xins + zins, yins + wins, xins + wins, yins + zins
        cmp = torch.gt if higher else torch.lt
        c = cmp(xy, zw)
        a_s, a_po = where(c, xy, zw), where(c, 3, 12).to(i32) if higher else where(c, 12, 3).to(i32)
        c = cmp(xz, yw)
        b_s, b_po = where(c, xz, yw), where(c, 5, 10).to(i32) if higher else where(c, 10, 5).to(i32)
        c = cmp(xw, yz)
        score, po = where(c, xw, yz), where(c, 9, 6).to(i32) if higher else where(c, 6, 9).to(i32)
        a_s, a_po, b_s, b_po = keep_best(a_s, a_po, b_s, b_po, score, po, higher)
        a_big = torch.ones_like(c)
        b_big = torch.ones_like(c)
        for ins_a, single in zip(ins, singles):
            p = p_base + ins_a
            a_s, a_po, b_s, b_po, a_big, b_big = keep_best(
                a_s, a_po, b_s, b_po, p, const(single), higher, a_big, b_big, big=False
            )
        return base_key + (a_big.to(i32) << 9) + (b_big.to(i32) << 8) + (a_po << 4) + b_po

    key_r1 = rectified(True, _R1, 2 - in_sum, (1, 2, 4, 8))
    key_r2 = rectified(False, _R2, 3 - in_sum, (14, 13, 11, 7))
    return where(in_sum <= 1, key_p0, where(in_sum >= 3, key_p1, where(in_sum <= 2, key_r1, key_r2)))
