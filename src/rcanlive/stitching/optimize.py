"""Global placement: all pairwise shifts solved together by weighted least squares.

Chaining pairwise shifts tile after tile along the zigzag would add every pair's
error to all the tiles after it. Instead every accepted link ``p_b − p_a = s_ab``
is one equation, and all positions are solved at once (a sparse graph-Laplacian
system, per axis), anchored at one tile. Each tile is then constrained by all its
links, so errors spread out instead of accumulating.

Outliers: on a grid each interior link is part of a loop, so a wrong link shows up
as a residual. The link with the largest residual above ``max_residual_px`` is
dropped and the system solved again, until every link agrees. Tiles left without
an accepted link keep their stage position; groups of tiles linked to each other
but not to the anchor keep their mean stage position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import spsolve

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .layout import Tile
    from .registration import PairShift


@dataclass
class Placement:
    """Solved tile positions and how each was obtained.

    Attributes
    ----------
    positions_px
        Tile index → ``(y, x)`` of its top-left pixel, level-0 pixels (global frame).
    status
        Tile index → ``"registered"`` (placed by links), ``"stage"`` (no accepted
        link: stage position) or ``"detached"`` (linked only to tiles that are not
        connected to the anchor: placed by their mean stage position).
    anchor
        The tile held at its stage position.
    used
        Links in the final solution; ``residual_px`` holds each one's residual.
    dropped
        Links removed as inconsistent with the others, with their residual.
    """

    positions_px: dict[int, tuple[float, float]]
    status: dict[int, str]
    anchor: int
    used: list[PairShift] = field(default_factory=list)
    residual_px: dict[tuple[int, int], float] = field(default_factory=dict)
    dropped: list[tuple[PairShift, float]] = field(default_factory=list)


def _solve_component(
    nodes: list[int],
    links: list[PairShift],
    reference: int,
) -> dict[int, np.ndarray]:
    """Least-squares positions of ``nodes`` relative to ``reference`` (at 0, 0)."""
    col = {n: i for i, n in enumerate(n for n in nodes if n != reference)}
    rows, cols, vals = [], [], []
    rhs = np.zeros((len(links), 2))
    for k, link in enumerate(links):
        w = np.sqrt(max(link.correlation, 1e-3))
        for node, sign in ((link.b, 1.0), (link.a, -1.0)):
            if node in col:
                rows.append(k)
                cols.append(col[node])
                vals.append(sign * w)
        rhs[k] = w * np.asarray(link.shift_px)
    a = sparse.csr_matrix((vals, (rows, cols)), shape=(len(links), len(col)))
    normal = (a.T @ a).tocsc()
    solved = np.column_stack([spsolve(normal, a.T @ rhs[:, k]) for k in range(2)])
    out = {reference: np.zeros(2)}
    out.update({n: solved[i].reshape(2) for n, i in col.items()})
    return out


def solve_positions(
    tiles: Sequence[Tile],
    links: Sequence[PairShift],
    *,
    anchor: int | None = None,
    max_residual_px: float = 1.5,
) -> Placement:
    """Place ``tiles`` (the present ones) from the accepted ``links``.

    Parameters
    ----------
    anchor
        Tile held at its stage position; default: the tile nearest the grid centre
        among those with the most links in the largest linked group.
    max_residual_px
        Links disagreeing with the solution by more than this are dropped, worst
        first, one at a time.
    """
    index = {t.index: i for i, t in enumerate(tiles)}
    stage = {t.index: np.asarray(t.stage_px, dtype=float) for t in tiles}
    active = [lk for lk in links if lk.accepted and lk.a in index and lk.b in index]
    dropped: list[tuple[PairShift, float]] = []
    while True:
        graph = _link_graph(tiles, index, active)
        if anchor is None or anchor not in index:
            chosen = _default_anchor(graph, stage)
        else:
            chosen = anchor
        positions, status = _place_groups(graph, active, stage, chosen)
        residual = {
            (lk.a, lk.b): float(
                np.linalg.norm(positions[lk.b] - positions[lk.a] - np.asarray(lk.shift_px))
            )
            for lk in active
        }
        worst = max(active, key=lambda lk: residual[(lk.a, lk.b)], default=None)
        if worst is None or residual[(worst.a, worst.b)] <= max_residual_px:
            break
        dropped.append((worst, residual[(worst.a, worst.b)]))
        active = [lk for lk in active if lk is not worst]
    return Placement(
        positions_px={n: (float(p[0]), float(p[1])) for n, p in positions.items()},
        status=status,
        anchor=chosen,
        used=active,
        residual_px=residual,
        dropped=dropped,
    )


@dataclass(frozen=True)
class _LinkGraph:
    """The tiles as a graph of their active links: connected groups and link counts."""

    #: tile index → row/column of the graph
    index: dict[int, int]
    #: connected-component label of each row of the graph
    labels: np.ndarray
    #: label → tile indices of that group, in tile order
    members: dict[int, list[int]]
    #: tile index → number of active links
    degree: dict[int, int]


def _link_graph(
    tiles: Sequence[Tile], index: dict[int, int], active: list[PairShift]
) -> _LinkGraph:
    """Connected groups and link counts of ``tiles`` joined by the ``active`` links."""
    graph = sparse.coo_matrix(
        (
            np.ones(len(active)),
            ([index[lk.a] for lk in active], [index[lk.b] for lk in active]),
        ),
        shape=(len(tiles), len(tiles)),
    )
    _, labels = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for t in tiles:
        members.setdefault(int(labels[index[t.index]]), []).append(t.index)
    degree = dict.fromkeys(index, 0)
    for lk in active:
        degree[lk.a] += 1
        degree[lk.b] += 1
    return _LinkGraph(index=index, labels=labels, members=members, degree=degree)


def _default_anchor(graph: _LinkGraph, stage: dict[int, np.ndarray]) -> int:
    """The most-linked tile of the largest group, nearest the group's centre on ties."""
    degree = graph.degree
    largest = max(graph.members.values(), key=len)
    centre = np.mean([stage[n] for n in largest], axis=0)
    return min(largest, key=lambda n: (-degree[n], float(np.linalg.norm(stage[n] - centre)), n))


def _place_groups(
    graph: _LinkGraph,
    active: list[PairShift],
    stage: dict[int, np.ndarray],
    chosen: int,
) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """Positions and status of every tile, group by group, with ``chosen`` as anchor."""
    positions: dict[int, np.ndarray] = {}
    status: dict[int, str] = {}
    labels, index, degree = graph.labels, graph.index, graph.degree
    for label, nodes in graph.members.items():
        if len(nodes) == 1:
            positions[nodes[0]] = stage[nodes[0]]
            status[nodes[0]] = "stage"
            continue
        comp_links = [lk for lk in active if labels[index[lk.a]] == label]
        ref = chosen if chosen in nodes else max(nodes, key=lambda n: (degree[n], -n))
        rel = _solve_component(nodes, comp_links, ref)
        if ref == chosen:
            offset = stage[ref]
            state = "registered"
        else:  # not connected to the anchor: keep the group's mean stage position
            offset = np.mean([stage[n] for n in nodes], axis=0) - np.mean(
                [rel[n] for n in nodes], axis=0
            )
            state = "detached"
        for n in nodes:
            positions[n] = rel[n] + offset
            status[n] = state
    return positions, status
