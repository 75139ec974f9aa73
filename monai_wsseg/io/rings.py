"""Trace the outlines of labelled regions of a grid along cell edges, vectorised (no Python loop per cell).

The rings follow cell edges exactly, so they rasterise back to the regions cell for cell. Regions are
4-connected; at a corner where two cells of one region touch diagonally the outline keeps them joined, so a
hole that touches its region's outline at one corner stays a hole (OGC-valid: a hole may touch the shell at
a point), and two different regions meeting at a corner get separate outlines (a shell may not touch
itself). Used by :func:`monai_wsseg.io.polygons.map_polygons`; coordinates here are grid corners, not
slide pixels.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Rings", "trace_rings"]

# Directions of boundary edges, clockwise on screen (y down): turning right is +1, left is +3 (mod 4).
_E, _S, _W, _N = 0, 1, 2, 3


class Rings(NamedTuple):
    """Traced rings, flat: ring ``r`` is ``vertices[starts[r]:starts[r + 1]]`` (open, corners only)."""

    vertices: np.ndarray  # (V, 2) int64 (x, y) cell-corner coordinates
    starts: np.ndarray  # (R + 1,) int64 offsets
    region: np.ndarray  # (R,) label of the region each ring bounds
    area2: np.ndarray  # (R,) int64 twice the signed (shoelace) area: > 0 outer ring, < 0 hole


def trace_rings(labels: np.ndarray) -> Rings:
    """Trace the cell-edge boundaries of labelled regions.

    Args:
        labels: ``(h, w)`` integer array, 0 = background, ``k > 0`` = region ``k`` (4-connected).

    Returns:
        The rings of all regions (see :class:`Rings`). Corner ``(x, y)`` is the top-left of cell ``(y, x)``;
        rings hold corner vertices only (no collinear ones) and do not repeat their first vertex. The region
        lies on the right of the direction of travel (y down), which makes outer rings' shoelace area
        positive and holes' negative.
    """
    h, w = labels.shape
    lab = np.pad(labels, 1)
    fg = lab > 0
    # Directed unit edges with the region on their right. Horizontal edges are listed row by row and
    # vertical ones column by column, so a straight run of edges has consecutive ids (used below).
    above, below = fg[0 : h + 1, 1 : w + 1], fg[1 : h + 2, 1 : w + 1]  # cells on either side of line y = Y
    left, right = fg[1 : h + 1, 0 : w + 1], fg[1 : h + 1, 1 : w + 2]  # cells on either side of line x = X
    e_y, e_x = np.nonzero(below & ~above)  # east, from (x, Y): region below
    s_x, s_y = np.nonzero((left & ~right).T)  # south, from (X, y): region on the west side
    w_y, w_x = np.nonzero(above & ~below)  # west, from (x + 1, Y): region above
    n_x, n_y = np.nonzero((right & ~left).T)  # north, from (X, y + 1): region on the east side
    counts = [len(e_x), len(s_x), len(w_x), len(n_x)]
    if not sum(counts):
        empty = np.zeros(0, dtype=np.int64)
        return Rings(np.zeros((0, 2), dtype=np.int64), np.zeros(1, dtype=np.int64), empty, empty)
    d = np.repeat(np.arange(4, dtype=np.int8), counts)
    # start and end corners of every edge
    x0 = np.concatenate([e_x, s_x, w_x + 1, n_x]).astype(np.int64)
    y0 = np.concatenate([e_y, s_y, w_y, n_y + 1]).astype(np.int64)
    x1 = np.concatenate([e_x + 1, s_x, w_x, n_x]).astype(np.int64)
    y1 = np.concatenate([e_y, s_y + 1, w_y, n_y]).astype(np.int64)
    region = np.concatenate([lab[e_y + 1, e_x + 1], lab[s_y + 1, s_x], lab[w_y, w_x + 1], lab[n_y + 1, n_x + 1]])
    del e_x, e_y, s_x, s_y, w_x, w_y, n_x, n_y
    span = (h + 2) * (w + 2)

    def key(direction: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        horizontal = (direction == _E) | (direction == _W)
        return direction.astype(np.int64) * span + np.where(horizontal, y * (w + 1) + x, x * (h + 1) + y)

    keys = key(d, x0, y0)  # sorted: the edge lists above are in this order
    del x0, y0

    # The 2x2 cells around each edge's end corner decide which edge follows.
    tl, tr = fg[y1, x1], fg[y1, x1 + 1]
    bl, br = fg[y1 + 1, x1], fg[y1 + 1, x1 + 1]
    leaving = np.stack([br & ~tr, bl & ~br, tl & ~bl, tr & ~tl])  # an edge leaves towards E, S, W, N
    idx = np.arange(len(d))
    turn_r, turn_l = (d + 1) % 4, (d + 3) % 4
    has_r, has_s, has_l = leaving[turn_r, idx], leaving[d, idx], leaving[turn_l, idx]
    # Two cells touching only at this corner: keep them joined (turn left) when they are one region, so a
    # region's outline never touches itself; separate them (turn right) when they are two regions.
    pinch = has_r & has_l
    same = np.where(tl, lab[y1, x1] == lab[y1 + 1, x1 + 1], lab[y1, x1 + 1] == lab[y1 + 1, x1])
    nxt_d = np.where(pinch, np.where(same, turn_l, turn_r), np.where(has_r, turn_r, np.where(has_s, d, turn_l)))
    next_key = key(nxt_d, x1, y1)
    succ = np.searchsorted(keys, next_key)
    if succ.max() >= len(keys) or not np.array_equal(keys[succ], next_key):
        raise RuntimeError("boundary tracing lost an edge; please report this map")

    # Keep only edges that end at a corner; link each to the next such edge along its ring. The run that
    # starts at succ[c] has consecutive ids, ascending for E/S and descending for W/N, and ends at the
    # first corner edge met in that order.
    corner = np.flatnonzero(nxt_d != d)
    start = succ[corner]
    forward = (d[start] == _E) | (d[start] == _S)
    pos = np.where(forward, np.searchsorted(corner, start, "left"), np.searchsorted(corner, start, "right") - 1)

    order, offsets = _cycles(pos)
    ring_edges = corner[order]
    vertices = np.stack([x1[ring_edges], y1[ring_edges]], axis=1)
    # shoelace per ring: each vertex with the next one of its own ring
    following = np.arange(1, len(order) + 1)
    following[offsets[1:] - 1] = offsets[:-1]
    x, y = vertices[:, 0], vertices[:, 1]
    area2 = np.add.reduceat(x * y[following] - x[following] * y, offsets[:-1])
    return Rings(vertices, offsets, region[ring_edges[offsets[:-1]]].astype(np.int64), area2)


def _cycles(nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a permutation into its cycles, vectorised (pointer jumping instead of a Python walk).

    Args:
        nxt: ``(n,)`` int permutation; ``i`` is followed by ``nxt[i]``.

    Returns:
        ``order`` ``(n,)``: the cycles one after another, each starting at its smallest index and following
        ``nxt``; ``starts`` ``(R + 1,)``: cycle ``r`` is ``order[starts[r]:starts[r + 1]]``.
    """
    n = len(nxt)
    nxt = nxt.astype(np.int64, copy=False)
    # head of every cycle = its smallest index: after k rounds, low[i] is the minimum of the 2**k
    # elements from i on; a round that changes nothing means every window already holds the head.
    low, jump = np.arange(n), nxt
    while True:
        lower = np.minimum(low, low[jump])
        if np.array_equal(lower, low):
            break
        low, jump = lower, jump[jump]
    head = low
    # steps from each element forward to its head (list ranking, the head being the list's end)
    is_head = head == np.arange(n)
    steps = (~is_head).astype(np.int64)
    jump = np.where(is_head, np.arange(n), nxt)
    while True:
        ahead = jump[jump]
        steps = steps + steps[jump]
        if np.array_equal(ahead, jump):
            break
        jump = ahead
    length = np.bincount(head, minlength=n)[head]
    position = (length - steps) % length  # the head is 0, its successor 1, ...
    order = np.lexsort((position, head))
    starts = np.flatnonzero(position[order] == 0)
    return order, np.r_[starts, n].astype(np.int64)
