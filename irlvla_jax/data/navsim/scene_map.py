"""The map part of a NAVSIM scene conversion: a :class:`~irlvla_jax.data.navsim.maps.MapQuery` (map frame)
written into a Scene's lanes, drivable polygons and traffic lights (t0 ego frame, cropped and fitted to the
SceneSpec), and the route centerline derived from the on-route lanes as NAVSIM's PDM-Closed does.

* Lanes within ``map_radius`` (polygon distance): on-route lanes first, then those with a light state, then
  by distance; ``lane_on_route`` = the lane's roadblock is in the t0 frame's ``roadblock_ids``.
* Drivable polygons: roadblocks, intersections, car parks (in that order, each by distance); roadblock
  *connector* polygons are not drivable area, as in NAVSIM.
* Lights: each connector in the ``traffic_lights`` of frames t0 ... t0 + 4 s that is a Scene lane: its
  polygon, on-route flag and red state at t = 0, 0.5, ..., 4.0 s (a connector missing from a frame is green
  there, as in NAVSIM's observation; NAVSIM holds each 2 Hz state for 0.5 s, exactly ``light_red``'s
  meaning); on-route lights first.
* Too many vertices for the spec: polygons are reduced by Visvalingam-Whyatt area elimination, polylines
  resampled by arc length.
* Route: starting lane = the on-route lane holding the rear axle with the smallest heading error (else the
  nearest on-route lane); a shortest-path search over on-route successors (cost = lane length) to the
  roadblock 29 places further along ``roadblock_ids`` (deepest path if not reached); centerlines joined.
  Not reproduced: nuPlan's route-roadblock correction (when the ego's roadblock is not on the route). A
  provider may give the centerline itself (``MapQuery.route``).
* Family: intersection if an on-route connector is in the crop, curve if the route turns > 0.5 rad in the
  80 m ahead, else cruise_lead.
"""
from __future__ import annotations

import heapq
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from irlvla_jax import scene as S
from irlvla_jax.data.navsim.geometry import (arclength, clean_ring, crop_polyline, fit_polygon, fit_polyline,
                                             point_in_polygon, point_polygon_distance, project_on_polyline,
                                             to_frame, wrap_angle)
from irlvla_jax.data.navsim.maps import MapLane, MapQuery


def fill_map(f, spec: S.SceneSpec, q: MapQuery, route_ids, origin, lights_t, where,
             map_radius: float) -> Tuple[np.ndarray, str]:
    """Write lanes, drivable polygons and lights of q (map frame) into f (t0 frame); return (route, family)."""
    route_set = set(route_ids)
    lanes = list(q.lanes)
    on_route = [ln.roadblock_id in route_set for ln in lanes]
    lit = set().union(*lights_t)          # connectors with a state in any of the 9 frames
    ego = np.asarray(origin[:2])
    dist = [point_polygon_distance(ego, ln.polygon) for ln in lanes]
    near = [i for i in range(len(lanes)) if dist[i] <= map_radius]
    order = sorted(near, key=lambda i: (not on_route[i], lanes[i].id not in lit, dist[i], lanes[i].id))
    lane_row: Dict[str, int] = {}
    for row, i in enumerate(order[:spec.num_lanes]):
        ln = lanes[i]
        poly = fit_polygon(to_frame(clean_ring(ln.polygon), origin), spec.lane_vertices)
        cl = fit_polyline(to_frame(ln.centerline, origin), spec.lane_points)
        if len(poly) < 3 or len(cl) < 2:
            raise S.SceneError("lane_polygons", ">= 3 polygon vertices and >= 2 centerline points",
                               f"{len(poly)} / {len(cl)} for map lane {ln.id}", where)
        f["lane_polygons"][row], f["lane_vertex_valid"][row] = S.pad_polygon(poly, spec.lane_vertices)
        f["lane_centerlines"][row], f["lane_point_valid"][row] = S.pad_polyline(cl, spec.lane_points)
        f["lane_valid"][row] = True
        f["lane_on_route"][row] = on_route[i]
        f["lane_is_connector"][row] = ln.is_connector
        f["lane_speed_limit"][row] = float(np.clip(ln.speed_limit or 0.0, 0.0, 60.0))
        lane_row[ln.id] = row

    g = 0
    for kind, areas in ((S.DRIVABLE_ROADBLOCK, q.roadblocks), (S.DRIVABLE_INTERSECTION, q.intersections),
                        (S.DRIVABLE_CARPARK, q.carparks)):
        for a in sorted(areas, key=lambda a: (point_polygon_distance(ego, a.polygon), a.id)):
            if g >= spec.num_drivable:
                break
            poly = fit_polygon(to_frame(clean_ring(a.polygon), origin), spec.drivable_vertices)
            if len(poly) < 3:
                raise S.SceneError("drivable_polygons", ">= 3 vertices", f"{len(poly)} for map object {a.id}", where)
            f["drivable_polygons"][g], f["drivable_vertex_valid"][g] = S.pad_polygon(poly, spec.drivable_vertices)
            f["drivable_valid"][g] = True
            f["drivable_kind"][g] = kind
            g += 1

    # Lights: connectors with a state at some 2 Hz step that are in the lane crop; on-route first.
    ids = sorted((lid for lid in lit if lid in lane_row),
                 key=lambda lid: (not f["lane_on_route"][lane_row[lid]], lid))
    for s_i, lid in enumerate(ids[:spec.num_lights]):
        row = lane_row[lid]
        f["light_polygons"][s_i], f["light_vertex_valid"][s_i] = S.pad_polygon(
            fit_polygon(f["lane_polygons"][row][f["lane_vertex_valid"][row]], spec.light_vertices),
            spec.light_vertices)
        f["light_valid"][s_i] = True
        f["light_on_route"][s_i] = f["lane_on_route"][row]
        f["light_red"][s_i] = [lt.get(lid, False) for lt in lights_t]

    # Route centerline (map frame) and the speed limit of its starting lane.
    route = q.route
    if route is None:
        route = route_from_lanes(lanes, on_route, route_ids, np.asarray(origin))
    if route is None or len(route) < 2:
        raise S.SceneError("route", f"on-route lanes (roadblock_ids {list(route_ids)[:4]}...) within the map crop",
                           "none", where)
    route = to_frame(route, origin)
    start = start_lane([ln for ln, r in zip(lanes, on_route) if r], np.asarray(origin))
    if start is not None:
        f["speed_limit"][...] = float(np.clip(start.speed_limit or 0.0, 0.0, 60.0))
    fam = "cruise_lead"
    if any(on_route[i] and lanes[i].is_connector for i in near):
        fam = "intersection"
    else:
        s_ego, _ = project_on_polyline(route, np.zeros(2))
        ahead = crop_polyline(route, s_ego, s_ego + 80.0)
        seg = np.diff(ahead, axis=0)
        seg = seg[np.linalg.norm(seg, axis=-1) > 1e-6]
        if len(seg) >= 2:
            h = np.unwrap(np.arctan2(seg[:, 1], seg[:, 0]))
            if np.ptp(h) > 0.5:
                fam = "curve"
    return route, fam


def start_lane(cand: List[MapLane], ego_pose: np.ndarray) -> Optional[MapLane]:
    """NAVSIM's starting lane: among on-route lanes holding the rear axle, the smallest heading error;
    else the nearest on-route lane (map frame)."""
    p = np.asarray(ego_pose[:2])
    best, best_key = None, None
    for ln in cand:
        if len(ln.centerline) < 2:
            continue
        s, d = project_on_polyline(ln.centerline, p)
        seg = np.diff(ln.centerline, axis=0)
        i = int(np.clip(np.searchsorted(arclength(ln.centerline), s, side="right") - 1, 0, len(seg) - 1))
        herr = abs(wrap_angle(np.arctan2(seg[i, 1], seg[i, 0]) - ego_pose[2]))
        key = (0, herr, d, ln.id) if point_in_polygon(p, ln.polygon) else (1, d, herr, ln.id)
        if best_key is None or key < best_key:
            best, best_key = ln, key
    return best


def route_from_lanes(lanes: List[MapLane], on_route: Sequence[bool], route_ids: Sequence[str],
                     ego_pose: np.ndarray, search_depth: int = 30) -> Optional[np.ndarray]:
    """Route centerline [k, 2] (map frame) through the on-route lanes, as NAVSIM's PDM-Closed finds it:
    from the starting lane, a shortest-path search (cost = centerline length) over on-route lane successors
    to any lane of the roadblock ``search_depth - 1`` places after the start's in ``route_ids`` (or the last
    one); if that roadblock is not reached (e.g. it lies outside the lanes given), the deepest path, ties
    broken by length. The lanes' centerlines are concatenated."""
    cand = {ln.id: ln for ln, r in zip(lanes, on_route) if r and len(ln.centerline) >= 2}
    start = start_lane(list(cand.values()), ego_pose)
    if start is None:
        return None
    order = list(dict.fromkeys(str(r) for r in route_ids))
    i0 = order.index(start.roadblock_id) if start.roadblock_id in order else 0
    target = order[i0:i0 + search_depth][-1]
    dist, depth, parent = {start.id: 1.0}, {start.id: 1}, {start.id: None}
    heap, done, end = [(1.0, start.id)], [], None
    while heap:
        d, lid = heapq.heappop(heap)
        if lid in done or d > dist[lid]:
            continue
        if cand[lid].roadblock_id == target:
            end = lid
            break
        done.append(lid)
        for nid in cand[lid].successors:
            if nid not in cand or nid in done:
                continue
            alt = d + float(arclength(cand[nid].centerline)[-1])
            if alt < dist.get(nid, np.inf):
                dist[nid], depth[nid], parent[nid] = alt, depth[lid] + 1, lid
                heapq.heappush(heap, (alt, nid))
    if end is None:
        end = min(done, key=lambda i: (-depth[i], dist[i], i))
    path = [end]
    while parent[path[-1]] is not None:
        path.append(parent[path[-1]])
    pts = [cand[path[-1]].centerline]
    for lid in reversed(path[:-1]):
        c = cand[lid].centerline
        pts.append(c[1:] if np.allclose(c[0], pts[-1][-1], atol=1e-3) else c)
    return np.concatenate(pts, 0)
