"""The map half of a real-log window (:mod:`irlvla_jax.data.real`): a source's lanes cut into pieces,
chained and grouped into roadblocks (once per log), the lanes the logged ego drives (its route), and a
window's drivable area clipped to a box around the ego and cut into hole-free pieces within the
SceneSpec's budget, with what that cost. numpy + shapely, global (map) frame, metres and radians.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Sequence, Tuple

import numpy as np

from irlvla_jax.data.navsim import geometry as G
from irlvla_jax.data.navsim.maps import MapLane

MAX_LANE_LENGTH = 30.0          # m: longer lanes are cut into chained pieces (vertex budget, map crop)
CROP_BEHIND, CROP_AHEAD, CROP_SIDE = 30.0, 90.0, 50.0   # m: drivable-area box around the ego (its frame)
ROUTE_HEADING_TOL = np.pi / 3   # rad: an ego pose matches a lane whose direction is within this


# ----------------------------------------------------------------------------------------------------
# Map preparation (once per log): lane pieces, successors, roadblocks.

def _heading_at(line: np.ndarray, s: float) -> float:
    """Direction (rad) of polyline ``line`` [k, 2] at arc length s."""
    seg = np.diff(line, axis=0)
    i = int(np.clip(np.searchsorted(G.arclength(line), s, side="right") - 1, 0, len(seg) - 1))
    return float(np.arctan2(seg[i, 1], seg[i, 0]))


def split_lanes(lanes: Sequence[MapLane], max_length: float = MAX_LANE_LENGTH) -> List[MapLane]:
    """Lanes longer than ``max_length`` cut into chained pieces of equal length (ids ``<id>``, ``<id>#1``,
    ...; the first piece keeps the id, so lights and predecessors still point at the lane's start). A
    piece's polygon is the lane polygon clipped between the normals of the centerline at its two ends."""
    from shapely.geometry import Polygon
    out: List[MapLane] = []
    for ln in lanes:
        cl = G.fit_polyline(ln.centerline, 10 ** 6)
        length = float(G.arclength(cl)[-1]) if len(cl) >= 2 else 0.0
        n = int(np.ceil(length / max_length)) if length > max_length else 1
        if n == 1:
            out.append(ln)
            continue
        poly = Polygon(G.clean_ring(ln.polygon)).buffer(0)
        cuts = np.linspace(0.0, length, n + 1)
        ids = [ln.id] + [f"{ln.id}#{k}" for k in range(1, n)]
        for k in range(n):
            piece_cl = G.crop_polyline(cl, cuts[k], cuts[k + 1])
            h0, h1 = _heading_at(cl, cuts[k] + 1e-6), _heading_at(cl, cuts[k + 1] - 1e-6)
            a, b = piece_cl[0], piece_cl[-1]
            w = 50.0
            n0, n1 = np.array([-np.sin(h0), np.cos(h0)]), np.array([-np.sin(h1), np.cos(h1)])
            t0, t1 = np.array([np.cos(h0), np.sin(h0)]), np.array([np.cos(h1), np.sin(h1)])
            a0, b0 = (a - 0.01 * t0 if k else a - w * t0), (b + 0.01 * t1 if k < n - 1 else b + w * t1)
            quad = Polygon([a0 - w * n0, b0 - w * n1, b0 + w * n1, a0 + w * n0]).buffer(0)
            part = poly.intersection(quad)
            if part.geom_type != "Polygon":
                parts = [g for g in getattr(part, "geoms", []) if g.geom_type == "Polygon"]
                part = max(parts, key=lambda g: g.area) if parts else None
            ring = (np.asarray(part.exterior.coords)[:-1] if part is not None and not part.is_empty
                    else ln.polygon)
            succ = (ids[k + 1],) if k < n - 1 else ln.successors
            out.append(MapLane(ids[k], ring, piece_cl, ln.roadblock_id, ln.is_connector, ln.speed_limit, succ))
    return out


def infer_successors(lanes: Sequence[MapLane], gap: float = 1.5, max_turn: float = np.pi / 4) -> List[MapLane]:
    """Adds to each lane's successors the lanes whose centerline starts within ``gap`` m of its end,
    heading within ``max_turn`` (for sources without a lane graph, e.g. nuScenes in ScenarioNet)."""
    starts = np.array([ln.centerline[0] for ln in lanes])
    h_start = np.array([_heading_at(ln.centerline, 0.0) for ln in lanes])
    out = []
    for ln in lanes:
        end = ln.centerline[-1]
        h_end = _heading_at(ln.centerline, float(G.arclength(ln.centerline)[-1]))
        near = np.nonzero((np.linalg.norm(starts - end, axis=-1) < gap)
                          & (np.abs(G.wrap_angle(h_start - h_end)) < max_turn))[0]
        extra = tuple(lanes[j].id for j in near if lanes[j].id != ln.id and lanes[j].id not in ln.successors)
        out.append(dataclasses.replace(ln, successors=tuple(ln.successors) + extra))
    return out


def group_roadblocks(lanes: Sequence[MapLane], max_gap: float = 6.0, max_angle: float = np.pi / 6) -> List[MapLane]:
    """Lanes without a ``roadblock_id`` grouped into roadblocks: two lanes share one when the middle of one's
    centerline lies beside the other's (projection strictly inside it, 1.5 ... ``max_gap`` m to the side)
    and both run the same way (within ``max_angle``) -- lanes side by side in one direction, what nuPlan
    calls a roadblock. Union-find; a group is named by its smallest lane id."""
    parent = {ln.id: ln.id for ln in lanes}

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    mids, heads, lens = [], [], []
    for ln in lanes:
        s = G.arclength(ln.centerline)
        mids.append(np.array([np.interp(s[-1] / 2, s, ln.centerline[:, j]) for j in range(2)]))
        heads.append(_heading_at(ln.centerline, s[-1] / 2))
        lens.append(s[-1])
    mids = np.asarray(mids)
    for i, a in enumerate(lanes):
        if a.roadblock_id:
            continue
        cand = np.nonzero(np.linalg.norm(mids - mids[i], axis=-1) < max_gap + 0.5 * (lens[i] + np.asarray(lens)))[0]
        for j in cand:
            b = lanes[j]
            if j == i or b.roadblock_id or len(b.centerline) < 2:
                continue
            s, d = G.project_on_polyline(b.centerline, mids[i])
            if not (1.5 <= d <= max_gap and 0.0 < s < lens[j]):
                continue
            if abs(G.wrap_angle(_heading_at(b.centerline, s) - heads[i])) < max_angle:
                parent[find(a.id)] = find(b.id)
    groups: Dict[str, List[str]] = {}
    for ln in lanes:
        groups.setdefault(find(ln.id), []).append(ln.id)
    name = {lid: min(ids) for ids in groups.values() for lid in ids}
    return [ln if ln.roadblock_id else dataclasses.replace(ln, roadblock_id="rb:" + name[ln.id]) for ln in lanes]


def prepare_lanes(lanes: Sequence[MapLane]) -> List[MapLane]:
    """A source's lanes -> the lanes a window uses: cut to ``MAX_LANE_LENGTH`` pieces, successors inferred
    where the graph lacks them, grouped into roadblocks."""
    if not lanes:
        return []
    return group_roadblocks(infer_successors(split_lanes(lanes)))


def match_route(ego: np.ndarray, lanes: Sequence[MapLane]) -> Tuple[List[str], np.ndarray]:
    """The lanes the ego drives: for each pose [T, 3] the best-aligned lane holding its rear axle (heading
    error below ``ROUTE_HEADING_TOL``) or "" -> (roadblock ids in order of first visit, lane id per step)."""
    boxes = np.array([[*ln.polygon.min(0), *ln.polygon.max(0)] for ln in lanes]) if lanes else np.zeros((0, 4))
    per_step = []
    for x, y, h in ego:
        best, best_err = "", ROUTE_HEADING_TOL
        for k in np.nonzero((boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3]))[0]:
            ln = lanes[k]
            if len(ln.centerline) < 2 or not G.point_in_polygon(np.array([x, y]), ln.polygon):
                continue
            s, _ = G.project_on_polyline(ln.centerline, np.array([x, y]))
            err = abs(G.wrap_angle(_heading_at(ln.centerline, s) - h))
            if err < best_err:
                best, best_err = ln.id, err
        per_step.append(best)
    rb_of = {ln.id: ln.roadblock_id for ln in lanes}
    order: List[str] = []
    for lid in per_step:
        if lid and rb_of[lid] not in order:
            order.append(rb_of[lid])
    return order, np.asarray(per_step, object)


# ----------------------------------------------------------------------------------------------------
# Drivable area of a window: clipped to a box around the ego, cut into hole-free pieces within budget.

def crop_box(pose: np.ndarray):
    """The window's map box (shapely polygon, global frame): ``CROP_BEHIND`` m behind the ego to
    ``CROP_AHEAD`` m ahead, ``CROP_SIDE`` m to each side, aligned with its heading."""
    from shapely.geometry import Polygon
    c, s = np.cos(pose[2]), np.sin(pose[2])
    loc = np.array([[-CROP_BEHIND, -CROP_SIDE], [CROP_AHEAD, -CROP_SIDE], [CROP_AHEAD, CROP_SIDE],
                    [-CROP_BEHIND, CROP_SIDE]])
    return Polygon(np.stack([pose[0] + c * loc[:, 0] - s * loc[:, 1], pose[1] + s * loc[:, 0] + c * loc[:, 1]], -1))


MIN_PIECE_AREA = 0.05   # m^2: slivers left by polygon differences are dropped (counted in dropped_area_m2)


def _polygons(geom) -> list:
    if geom.is_empty:
        return []
    if geom.geom_type == "Polygon":
        return [geom] if geom.area > MIN_PIECE_AREA else []
    return [p for g in getattr(geom, "geoms", []) for p in _polygons(g)]


def _halves(p):
    """Cut polygon p in two across the longer side of its bounding box (through a hole's centre if it has
    one, so holes open up)."""
    from shapely.geometry import box
    x0, y0, x1, y1 = p.bounds
    if p.interiors:
        cx, cy = np.asarray(p.interiors[0].centroid.coords)[0]
    else:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if x1 - x0 >= y1 - y0:
        cut = (box(x0 - 1, y0 - 1, cx, y1 + 1), box(cx, y0 - 1, x1 + 1, y1 + 1))
    else:
        cut = (box(x0 - 1, y0 - 1, x1 + 1, cy), box(x0 - 1, cy, x1 + 1, y1 + 1))
    return _polygons(p.intersection(cut[0])) + _polygons(p.intersection(cut[1]))


def drivable_pieces(region, budget: int, max_vertices: int) -> Tuple[List[np.ndarray], Dict[str, float]]:
    """A drivable region (shapely geometry) -> at most ``budget`` hole-free rings [k <= max_vertices, 2],
    largest first, and what it cost: ``dropped_area_m2`` (pieces beyond the budget), ``holes_filled_m2``
    and ``max_simplify_m`` (the largest Hausdorff distance between a piece and its simplified ring).

    Pieces with holes or too many vertices are cut in halves (:func:`_halves`) while the budget allows;
    then holes are filled and rings simplified (Douglas-Peucker, the smallest tolerance that fits)."""
    from shapely.geometry import Polygon
    pieces = _polygons(region)

    def bad(p):
        return bool(p.interiors) or len(p.exterior.coords) - 1 > max_vertices

    while len(pieces) < budget:
        worst = [i for i, p in enumerate(pieces) if bad(p)]
        if not worst:
            break
        i = max(worst, key=lambda i: (bool(pieces[i].interiors), len(pieces[i].exterior.coords)))
        halves = _halves(pieces[i])
        if len(pieces) - 1 + len(halves) > budget or len(halves) < 2:
            break
        pieces[i:i + 1] = halves
    pieces.sort(key=lambda p: -p.area)
    cost = {"dropped_area_m2": float(sum(p.area for p in pieces[budget:])), "holes_filled_m2": 0.0,
            "max_simplify_m": 0.0}
    rings = []
    for p in pieces[:budget]:
        if p.interiors:
            cost["holes_filled_m2"] += float(sum(Polygon(r).area for r in p.interiors))
            p = Polygon(p.exterior)
        q, tol = p, 0.0
        while len(q.exterior.coords) - 1 > max_vertices:
            tol = max(2 * tol, 0.02)
            q = p.simplify(tol, preserve_topology=True)
            q = q if q.geom_type == "Polygon" else max(_polygons(q), key=lambda g: g.area)
        if tol > 0:
            cost["max_simplify_m"] = max(cost["max_simplify_m"], float(p.hausdorff_distance(q)))
        ring = np.asarray(q.exterior.coords)[:-1]
        if len(ring) >= 3:
            rings.append(ring)
    cost = {k: round(v, 3) for k, v in cost.items()}
    return rings, cost
