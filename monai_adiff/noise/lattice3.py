# SPDX-License-Identifier: Apache-2.0
"""3D OpenSimplex noise (``opensimplex==0.4.5.1``, K. Spencer's 2014 algorithm) as batched torch tensor code.

Same lattice, gradients, permutation hashing and vertex-selection ("region") logic as the reference, reformulated
without per-point branches so it runs as a fixed sequence of tensor ops on any device:

* The stretched lattice cell of a point splits into three regions by ``in_sum`` = sum of the in-cell coordinates:
  the tetrahedron at (0,0,0), the octahedron, the tetrahedron at (1,1,1). The reference evaluates the region's
  4 or 6 cube corners plus two "extra" vertices chosen by a cascade of comparisons. Here all 8 cube corners are
  evaluated with a per-region mask (the fused formulation: the region's corners in 6 slots,
  :func:`_region_corners`), and the two extra vertices come from a 27-row table indexed by a case code
  that reproduces the comparison cascade (including its tie-breaking) in closed form (:func:`_extra_vertex_code`);
  the fused (compiled) formulation gets the same code from the cascade's comparison bits and a 128-row table
  (:func:`_extra_vertex_index`), which compiles to much cheaper vector code.
* Cell indices, in-cell coordinates and every comparison of the cascade use float64 exactly as the reference
  does, so points that sit on region boundaries (common on pixel grids) choose the same vertices. The
  contributions themselves are float32 from small offsets, within ~1e-6 of the reference.
* The permutation hash ``perm[(perm[(perm[X & 255] + Y) & 255] + Z) & 255]`` uses a per-seed 256x256 table of the
  first two levels (:func:`~monai_adiff.noise.tables.hash2_table`) so one vertex costs two gathers plus three for
  its gradient (one, packed, in the fused formulation).

The vertex contribution is ``max(0, 2 - |d|^2)^4 * <g, d>`` summed and divided by 103 (the reference's
``NORM_CONSTANT3``).
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import torch

from monai_adiff.noise.tables import hash2_table
from monai_adiff.noise.tables import take as _take

__all__ = ["Tables3", "gradient_tables3", "opensimplex3"]

_STRETCH = -1.0 / 6  # (1 / sqrt(3 + 1) - 1) / 3
_SQUISH = 1.0 / 3  # (sqrt(3 + 1) - 1) / 3
_NORM = 103.0

# Directions to the vertices of a rhombicuboctahedron (reference GRADIENTS3), one row per gradient.
_GRADIENTS = (
    (-11, 4, 4), (-4, 11, 4), (-4, 4, 11), (11, 4, 4), (4, 11, 4), (4, 4, 11),
    (-11, -4, 4), (-4, -11, 4), (-4, -4, 11), (11, -4, 4), (4, -11, 4), (4, -4, 11),
    (-11, 4, -4), (-4, 11, -4), (-4, 4, -11), (11, 4, -4), (4, 11, -4), (4, 4, -11),
    (-11, -4, -4), (-4, -11, -4), (-4, -4, -11), (11, -4, -4), (4, -11, -4), (4, -4, -11),
)  # fmt: skip


def _extra_vertex_table() -> tuple[list[list[int]], list[list[float]]]:
    """Offsets (and real-space displacements) of the two extra vertices for each of the 27 case codes.

    Codes (``c``, ``m``, ``q``, ``n`` are axes 0..2; ``1`` is (1,1,1), ``e_a`` the unit vector of axis ``a``):

    * 0-2, tetrahedron (0,0,0), the origin among the two closest corners, other closest ``e_c``:
      ``e_c - e_a``, ``e_c - e_b`` for the two other axes ``a < b``;
    * 3-5, tetrahedron (0,0,0), otherwise (``m`` = axis of neither closest corner): ``1 - e_m``, ``1 - 2 e_m``;
    * 6-8, tetrahedron (1,1,1), (1,1,1) among the closest, other closest ``1 - e_q``:
      ``1 - e_q + e_a``, ``1 - e_q + e_b``;
    * 9-11, tetrahedron (1,1,1), otherwise (``n`` = axis shared by both closest corners): ``e_n``, ``2 e_n``;
    * 12-14, octahedron, both closest on the far side (shared axis ``n``): ``1``, ``2 e_n``;
    * 15-17, octahedron, both on the near side (missing axis ``m``): ``0``, ``1 - 2 e_m``;
    * 18-26, octahedron, mixed: ``18 + 3 m + n`` with ``m`` the axis missing from the far corner and ``n`` the
      axis of the near one: ``1 - 2 e_m``, ``2 e_n``.
    """

    def e(a: int, k: int = 1) -> list[int]:
        return [k if i == a else 0 for i in range(3)]

    def add(*vs: list[int]) -> list[int]:
        return [sum(c) for c in zip(*vs)]

    one, zero = [1, 1, 1], [0, 0, 0]
    others = {0: (1, 2), 1: (0, 2), 2: (0, 1)}
    rows = []
    for c in range(3):
        rows.append((add(e(c), e(others[c][0], -1)), add(e(c), e(others[c][1], -1))))
    for m in range(3):
        rows.append((add(one, e(m, -1)), add(one, e(m, -2))))
    for q in range(3):
        rows.append((add(one, e(q, -1), e(others[q][0])), add(one, e(q, -1), e(others[q][1]))))
    for n in range(3):
        rows.append((e(n), e(n, 2)))
    for n in range(3):
        rows.append((one, e(n, 2)))
    for m in range(3):
        rows.append((zero, add(one, e(m, -2))))
    for m in range(3):
        for n in range(3):
            rows.append((add(one, e(m, -2)), e(n, 2)))
    offsets = [[v[a] for v in pair for a in range(3)] for pair in rows]  # 27 x (ext0 xyz, ext1 xyz)
    disps = [[v[a] + sum(v) * _SQUISH for v in pair for a in range(3)] for pair in rows]
    return offsets, disps


_EXTRA_OFFSETS, _EXTRA_DISPLACEMENTS = _extra_vertex_table()


def _code_of_index(index: int) -> int:
    """Case code (0..26) for a region index of :func:`_extra_vertex_index`: the reference's cascade on its bits.

    Index ``0..31``: tetrahedron (0,0,0), ``32..63``: tetrahedron (1,1,1), bits ``first | z_x << 1 | z_y << 2 |
    y_z << 3 | close << 4`` (for (1,1,1) the comparisons reversed); ``64..127``: octahedron, bits ``a_far | b_far
    << 1 | far3 << 2 | a_le_b << 3 | a_lt << 4 | b_lt << 5``. Bit patterns no point can produce map to some code
    and are never looked up. The same cascade as :func:`_extra_vertex_code`, which the tests hold both to.
    """
    region = index >> 5
    if region < 2:
        first, z_x, z_y, y_z, close = ((index >> k) & 1 for k in range(5))
        strong = 2 * z_x if first else 2 - y_z  # the stronger of the two closest corners
        neither = 2 - z_y if first else 2 - 2 * z_x  # the axis of neither
        if region == 0:
            return strong if close else 3 + neither
        return 6 + strong if close else 9 + neither
    a_far, b_far, far3, a_le_b, a_lt, b_lt = ((index >> k) & 1 for k in range(6))
    rep_a, rep_b = a_le_b and a_lt, b_lt and not a_le_b
    a_far = far3 if rep_a else a_far
    b_far = far3 if rep_b else b_far
    a_ax, b_ax = (0 if rep_a else 2), (0 if rep_b else 1)
    if a_far == b_far:
        return 18 - 3 * a_far - a_ax - b_ax
    far_ax = a_ax if a_far else b_ax
    return 18 + 3 * far_ax + (a_ax + b_ax - far_ax)


_INDEX_CODES = [_code_of_index(i) for i in range(128)]


class Tables3(NamedTuple):
    """Per-seed lookup tables for :func:`opensimplex3` (flat, ``P`` seeds, on the device of the noise)."""

    # uint8 (P * 65536,): perm[(perm[X & 255] + Y) & 255] at p * 65536 + (X & 255) * 256 + (Y & 255)
    hash2: torch.Tensor
    grad: torch.Tensor  # float32 (3, P * 256): gradient for final hash h at p * 256 + h
    grad_packed: torch.Tensor  # int32 (P * 256,): the same gradient as (gx + 16) | (gy + 16) << 8 | (gz + 16) << 16
    extra: torch.Tensor  # float32 (12, 27): extra-vertex offsets (ext0 xyz, ext1 xyz) and displacements (same)
    # int32 (2, 128): offsets as (ox + 2) | (oy + 2) << 4 | (oz + 2) << 8, by region index (_extra_vertex_index)
    extra_packed: torch.Tensor


@cache
def _constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients and extra-vertex tables on ``device``, uploaded once per device."""
    offsets = torch.tensor(_EXTRA_OFFSETS, dtype=torch.int32)  # (27, 6)
    extra = torch.cat([offsets.float(), torch.tensor(_EXTRA_DISPLACEMENTS)], 1).t().contiguous()
    packed = (offsets[_INDEX_CODES] + 2).view(128, 2, 3)
    extra_packed = (packed[..., 0] | (packed[..., 1] << 4) | (packed[..., 2] << 8)).t().contiguous()
    grads = torch.tensor(_GRADIENTS, dtype=torch.int32)
    return grads.to(device), extra.to(device), extra_packed.to(device)


def gradient_tables3(perm: torch.Tensor) -> Tables3:
    """Build the lookup tables of :func:`opensimplex3` from permutations ``(P, 256)`` (on their device)."""
    device = perm.device
    grads, extra, extra_packed = _constants(device)
    hash2 = hash2_table(perm)
    grads = grads[perm.reshape(-1) % 24]  # (P * 256, 3): the reference's perm_grad_index3 / 3
    grad = grads.t().float().contiguous()
    grad_packed = (grads[:, 0] + 16) | ((grads[:, 1] + 16) << 8) | ((grads[:, 2] + 16) << 16)
    return Tables3(hash2, grad, grad_packed, extra, extra_packed)


def opensimplex3(
    x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, plane: torch.Tensor, tables: Tables3, fused: bool = False
) -> torch.Tensor:
    """3D OpenSimplex noise at the points ``(x, y, z)``, seed ``plane`` (row of the tables), as float32.

    Args:
        x, y, z: float64 coordinates, broadcastable to a common shape.
        plane: int32 index of the seed of each point, broadcastable to the same shape.
        tables: from :func:`gradient_tables3`.
        fused: formulate for a fused (``torch.compile``) kernel: fewer gathers (packed tables decoded with
            integer arithmetic) and comparisons combined as selects (:func:`_extra_vertex_index`), cheap when
            fused, at the cost of more (and slower) separate ops in eager mode.

    Returns:
        float32 tensor of the broadcast shape; equals ``OpenSimplex(seed).noise3(x, y, z)`` within ~1e-6.
    """
    i32 = torch.int32
    # stretched lattice coordinates, cell origin, in-cell coordinates: float64 in the reference's operation order
    s = (x + y + z) * _STRETCH
    xs, ys, zs = x + s, y + s, z + s
    xsb, ysb, zsb = torch.floor(xs), torch.floor(ys), torch.floor(zs)
    sx, sy, sz = xs - xsb, ys - ysb, zs - zsb
    in_sum = sx + sy + sz
    # displacement from the cell origin: x - (xsb + squish) = sx - (s + squish), small, so float32 is enough
    shift = (s + (xsb + ysb + zsb) * _SQUISH).float()
    dx0, dy0, dz0 = sx.float() - shift, sy.float() - shift, sz.float() - shift
    xi, yi, zi = xsb.to(i32), ysb.to(i32), zsb.to(i32)

    in_t0, in_t1 = in_sum <= 1, in_sum >= 2
    if fused:
        code = _extra_vertex_index(sx, sy, sz, in_sum, in_t0, in_t1)
        # selects, not casts: a vectorised compiled kernel turns a float64 mask into float32 cheaply this way
        t0, t1 = torch.where(in_t0, 1.0, 0.0).float(), torch.where(in_t1, 1.0, 0.0).float()
    else:
        code = _extra_vertex_code(sx, sy, sz, in_sum)
        t0, t1 = in_t0.float(), in_t1.float()
    # corners by |v|: tetrahedron 0 uses |v| <= 1, the octahedron |v| in {1, 2}, tetrahedron 1 |v| >= 2
    masks = (t0, 1 - t1, 1 - t0, t1)

    # plane & 0x7FFF (callers keep plane < 32768) lets a compiler prove the table indices non-negative
    plane = plane.to(i32) & 0x7FFF
    base2 = plane * 65536
    base1 = plane * 256

    def contribution(h2, zv, dx, dy, dz, mask=None):
        h = base1 + ((h2 + zv) & 255)
        attn = 2 - torch.addcmul(torch.addcmul(dx * dx, dy, dy), dz, dz)
        if mask is not None:
            attn = attn * mask
        attn = attn.clamp_(min=0).square_().square_()
        if fused:
            g = _take(tables.grad_packed, h)
            dot = ((g & 255) - 16) * dx + (((g >> 8) & 255) - 16) * dy + ((g >> 16) - 16) * dz
        else:
            grad = tables.grad
            dot = torch.addcmul(torch.addcmul(_take(grad[0], h) * dx, _take(grad[1], h), dy), _take(grad[2], h), dz)
        return attn * dot

    row = [(xi & 255) << 8, ((xi + 1) & 255) << 8]
    col = [base2 + (yi & 255), base2 + ((yi + 1) & 255)]
    hashes = [[_take(tables.hash2, row[ox] + col[oy]).to(i32) for oy in (0, 1)] for ox in (0, 1)]
    if fused:
        corners = _region_corners(hashes, zi, t0, t1)
    else:  # all 8 corners, masked by region
        corners = []
        for cx, cy, cz in ((a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)):
            n = cx + cy + cz
            corners.append((hashes[cx][cy], zi + cz, cx, cy, cz, n * _SQUISH, masks[n]))
    value: torch.Tensor | None = None
    for h2, zv, ox, oy, oz, squish, mask in corners:
        c = contribution(h2, zv, dx0 - (ox + squish), dy0 - (oy + squish), dz0 - (oz + squish), mask)
        value = c if value is None else value + c
    assert value is not None  # the corner loop always runs
    # the two extra vertices
    for k in range(2):
        if fused:
            packed = _take(tables.extra_packed[k], code)
            ox, oy, oz = (packed & 15) - 2, ((packed >> 4) & 15) - 2, (packed >> 8) - 2
            so = (ox + oy + oz) * _SQUISH
            dx, dy, dz = dx0 - (ox + so), dy0 - (oy + so), dz0 - (oz + so)
        else:
            ext = tables.extra
            ox, oy, oz = (_take(ext[3 * k + a], code).to(i32) for a in range(3))
            dx, dy, dz = (d0 - _take(ext[6 + 3 * k + a], code) for a, d0 in enumerate((dx0, dy0, dz0)))
        xv, yv, zv = xi + ox, yi + oy, zi + oz
        h2 = _take(tables.hash2, ((xv & 255) << 8) + base2 + (yv & 255)).to(i32)
        value = value + contribution(h2, zv, dx, dy, dz)
    return value / _NORM


def _region_corners(hashes: list[list[torch.Tensor]], zi: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor) -> list:
    """The fused kernels' cube corners: the region's 4 or 6 in six slots instead of all 8 masked (~7 % faster).

    Slots 0-2 hold ``e_k`` (tetrahedron (0,0,0) and octahedron) or ``1 - e_k`` (tetrahedron (1,1,1)); slot 3 the
    origin, ``(1,1,0)`` or ``(1,1,1)``; slots 4-5 the octahedron's ``(1,0,1)``, ``(0,1,1)`` (masked elsewhere). Each
    slot picks its column hash ``hashes[ox][oy]`` with integer selects and its offset with float arithmetic on the
    region masks ``t0``, ``t1`` (0/1). Returns ``(hash2, Z, ox, oy, oz, squish offset, mask or None)`` per slot.
    """
    t0i, t1i = t0.to(torch.int32), t1.to(torch.int32)
    m0, m1 = -t0i, -t1i  # all-ones masks

    def pick(mask, a, b):  # b where mask is all ones, else a (a bit blend, no bool conversion)
        return a ^ ((a ^ b) & mask)

    (h00, h01), (h10, h11) = hashes
    u0, u1 = 1 - t0, 1 - t1
    near = (1 + t1) * _SQUISH  # |e_k| = 1 or |1 - e_k| = 2
    return [
        (pick(m1, h10, h01), zi + t1i, u1, t1, t1, near, None),
        (pick(m1, h01, h10), zi + t1i, t1, u1, t1, near, None),
        (pick(m1, h00, h11), zi + 1 - t1i, t1, t1, u1, near, None),
        (pick(m0, h11, h00), zi + t1i, u0, u0, t1, (2 * u0 + t1) * _SQUISH, None),
        (h10, zi + 1, 1.0, 0.0, 1.0, 2 * _SQUISH, u0 - t1),
        (h01, zi + 1, 0.0, 1.0, 1.0, 2 * _SQUISH, u0 - t1),
    ]


def _extra_vertex_code(sx: torch.Tensor, sy: torch.Tensor, sz: torch.Tensor, in_sum: torch.Tensor) -> torch.Tensor:
    """Case code 0..26 of :func:`_extra_vertex_table` for every point (int32): the reference's cascade, branch-free.

    Every comparison is one the reference makes, on the same float64 values and with the same strictness, so ties
    (frequent on pixel grids) resolve identically. The cascades are solved in closed form: in a tetrahedron the two
    kept corners are the top (bottom) two in-cell coordinates and the decisive score is their median; in the
    octahedron ``|p - 1|`` equals the reference's ``p - 1`` / ``1 - p`` bit for bit. Selections are integer
    arithmetic on booleans rather than ``torch.where``, which is not vectorised on CPU.
    """

    def i(b: torch.Tensor) -> torch.Tensor:
        return b.to(torch.int32)

    x_ge_y, x_le_y = sx >= sy, sx <= sy
    z_gt_x, z_gt_y, z_lt_x, z_lt_y = sz > sx, sz > sy, sz < sx, sz < sy
    median = torch.maximum(torch.minimum(sx, sy), torch.minimum(torch.maximum(sx, sy), sz))

    # tetrahedron at (0,0,0): closest corners among e_x, e_y, e_z; "origin close" if 1 - in_sum beats the weaker
    ge = i(x_ge_y)
    c_a = ge * (2 * i(z_gt_x)) + (1 - ge) * (2 - i(sy > sz))  # the stronger of the two (ties to the first)
    m_b = ge * (2 - i(z_gt_y)) + (1 - ge) * (2 - 2 * i(z_gt_x))  # the axis of neither
    close = i((1 - in_sum) > median)
    code_t0 = close * c_a + (1 - close) * (3 + m_b)

    # tetrahedron at (1,1,1): closest corners among 1 - e_a, identified by the missing axis q
    le = i(x_le_y)
    q_a = le * (2 * i(z_lt_x)) + (1 - le) * (2 - i(sy < sz))
    n_b = le * (2 - i(z_lt_y)) + (1 - le) * (2 - 2 * i(z_lt_x))  # the axis both keep
    close = i((3 - in_sum) < median)
    code_t1 = close * (6 + q_a) + (1 - close) * (9 + n_b)

    # octahedron: pairs (0,0,1)/(1,1,0) -> a [axis 2], (0,1,0)/(1,0,1) -> b [axis 1], (1,0,0)/(0,1,1) [axis 0]
    p1, p2, p3 = sx + sy, sx + sz, sy + sz
    a_far, b_far, far3 = p1 > 1, p2 > 1, p3 > 1
    a_score, b_score, score = (p1 - 1).abs_(), (p2 - 1).abs_(), (p3 - 1).abs_()
    a_le_b = a_score <= b_score
    rep_a = a_le_b & (a_score < score)
    rep_b = (b_score < score) > a_le_b  # booleans: x > y is x & ~y
    a_far = a_far ^ (rep_a & (a_far ^ far3))
    b_far = b_far ^ (rep_b & (b_far ^ far3))
    a_ax, b_ax = 2 - 2 * i(rep_a), 1 - i(rep_b)
    af = i(a_far)
    far_ax = af * a_ax + (1 - af) * b_ax
    near_ax = a_ax + b_ax - far_ax
    same = i(a_far == b_far)
    code_o = same * (15 - 3 * af + 3 - a_ax - b_ax) + (1 - same) * (18 + 3 * far_ax + near_ax)

    t0, t1 = i(in_sum <= 1), i(in_sum >= 2)
    return code_o + t0 * (code_t0 - code_o) + t1 * (code_t1 - code_o)


def _extra_vertex_index(
    sx: torch.Tensor, sy: torch.Tensor, sz: torch.Tensor, in_sum: torch.Tensor, in_t0: torch.Tensor, in_t1: torch.Tensor
) -> torch.Tensor:
    """Region index 0..127 (:func:`_code_of_index`) of every point (int32): the fused kernels' form of
    :func:`_extra_vertex_code`.

    The reference's comparisons (same float64 operands and strictness) become bits, summed as float selects and
    converted to an integer once; the cascade itself is a table lookup. In a vectorised Inductor CPU kernel each
    bool-to-int32 conversion of a float64 comparison costs many instructions, and the closed form of
    :func:`_extra_vertex_code` needs ~20 of them (this form made the 3D kernel ~25 % faster); in eager mode the
    selects are slower, so the eager kernels keep the closed form.
    """
    where = torch.where

    def bit(b: torch.Tensor, k: int) -> torch.Tensor:
        return where(b, float(1 << k), 0.0)

    median = torch.maximum(torch.minimum(sx, sy), torch.minimum(torch.maximum(sx, sy), sz))
    # tetrahedra at (0,0,0) and (1,1,1): the same comparisons, mirrored
    t0 = bit(sx >= sy, 0) + bit(sz > sx, 1) + bit(sz > sy, 2) + bit(sy > sz, 3) + bit((1 - in_sum) > median, 4)
    t1 = bit(sx <= sy, 0) + bit(sz < sx, 1) + bit(sz < sy, 2) + bit(sy < sz, 3) + bit((3 - in_sum) < median, 4)
    p1, p2, p3 = sx + sy, sx + sz, sy + sz
    a_score, b_score, score = (p1 - 1).abs(), (p2 - 1).abs(), (p3 - 1).abs()
    octahedron = (
        bit(p1 > 1, 0) + bit(p2 > 1, 1) + bit(p3 > 1, 2) + bit(a_score <= b_score, 3)
        + bit(a_score < score, 4) + bit(b_score < score, 5)
    )  # fmt: skip
    return where(in_t0, t0, where(in_t1, t1 + 32, octahedron + 64)).to(torch.int32)
