"""ScenarioNet map features -> lanes, crosswalks, markings and the drivable area (the map half of
:mod:`irlvla_jax.data.scenarionet`, whose docstring describes what is read from each source: lane
polygons from nuScenes' ``polygon`` or Waymo's per-point widths, nuScenes' ``boundary_<n>`` outlines as
the drivable area, crosswalk rectangles, road-line / road-edge markings). Errors are
:class:`irlvla_jax.data.real.LogError` naming the field."""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence

import numpy as np

from irlvla_jax.data.navsim.maps import MapArea, MapLane
from irlvla_jax.data.real import LogError, Marking

DEFAULT_LANE_WIDTH = 3.7       # m: lanes without a polygon or usable widths
MIN_HALF_WIDTH, MAX_HALF_WIDTH = 0.5, 4.0   # m: usable Waymo half widths (centre -> boundary)


def field(d: Mapping, key: str, path: str, name: str, kind=Mapping):
    """``d[key]`` (a :class:`LogError` naming ``name`` when missing, None, or not of type ``kind``)."""
    if not isinstance(d, Mapping) or key not in d or d[key] is None:
        raise LogError(path, name, "missing")
    v = d[key]
    if kind is not None and not isinstance(v, kind):
        raise LogError(path, name, f"expected {getattr(kind, '__name__', kind)}, found {type(v).__name__}")
    return v


def polyline(v, path: str, field: str) -> np.ndarray:
    """A [k, >=2] point list -> [k', 2] float64 without repeated consecutive points (may be < 2 long)."""
    try:
        a = np.asarray(v, np.float64)
    except (TypeError, ValueError):
        raise LogError(path, field, "not a numeric point list") from None
    if a.ndim != 2 or a.shape[1] < 2:
        raise LogError(path, field, f"expected [k, 2 or 3] points, found shape {a.shape}")
    a = a[:, :2]
    if not np.all(np.isfinite(a)):
        raise LogError(path, field, "non-finite points")
    if len(a) > 1:
        a = a[np.r_[True, np.linalg.norm(np.diff(a, axis=0), axis=-1) > 1e-6]]
    return a


def ring(a: np.ndarray) -> np.ndarray:
    """A polygon's vertices without the closing repeat."""
    return a[:-1] if len(a) > 3 and np.allclose(a[0], a[-1]) else a


def normals(cl: np.ndarray) -> np.ndarray:
    """Unit left normals [k, 2] of a centre line (central differences, one-sided at the ends)."""
    t = np.gradient(cl, axis=0)
    t /= np.maximum(np.linalg.norm(t, axis=-1, keepdims=True), 1e-9)
    return np.stack([-t[:, 1], t[:, 0]], -1)


def lane_polygon(cl: np.ndarray, width: Optional[np.ndarray] = None) -> np.ndarray:
    """Polygon [2k, 2] around centre line ``cl`` [k, 2]: its points offset left by ``width[:, 0]`` and right
    by ``width[:, 1]`` (Waymo: distances to the left / right boundary); unusable values (outside
    [MIN_HALF_WIDTH, MAX_HALF_WIDTH]) take the other side's, else half of ``DEFAULT_LANE_WIDTH``."""
    half = np.full((len(cl), 2), DEFAULT_LANE_WIDTH / 2.0)
    if width is not None:
        w = np.asarray(width, np.float64)
        ok = np.isfinite(w) & (w >= MIN_HALF_WIDTH) & (w <= MAX_HALF_WIDTH)
        w = np.where(ok, w, np.where(ok[:, ::-1], w[:, ::-1], DEFAULT_LANE_WIDTH / 2.0))
        half = w
    if len(cl) >= 3:                    # the inner side of a bend no farther out than 0.9 x its radius
        seg = np.linalg.norm(np.diff(cl, axis=0), axis=-1)
        h = np.arctan2(np.diff(cl[:, 1]), np.diff(cl[:, 0]))
        turn = np.arctan2(np.sin(np.diff(h)), np.cos(np.diff(h)))          # at points 1 .. k-2
        radius = 0.5 * (seg[:-1] + seg[1:]) / np.maximum(np.abs(turn), 1e-9)
        inner = np.where(turn > 0, 0, 1)
        rows = np.arange(1, len(cl) - 1)
        half[rows, inner] = np.minimum(half[rows, inner], 0.9 * radius)
    n = normals(cl)
    left, right = cl + n * half[:, :1], cl - n * half[:, 1:]
    return np.concatenate([left, right[::-1]], 0)


def cross(u: np.ndarray, v: np.ndarray) -> float:
    return float(u[0] * v[1] - u[1] * v[0])


def rectangle(poly: np.ndarray) -> np.ndarray:
    """The minimum-area rectangle [4, 2] around a polygon (rotating calipers over its convex hull)."""
    pts = np.unique(poly, axis=0)
    if len(pts) < 3:
        return np.repeat(poly[:1], 4, 0) if len(poly) else np.zeros((4, 2))
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]

    def half(points):
        h: List[np.ndarray] = []
        for p in points:
            while len(h) >= 2 and cross(h[-1] - h[-2], p - h[-2]) <= 0:
                h.pop()
            h.append(p)
        return h
    hull = np.array(half(pts)[:-1] + half(pts[::-1])[:-1])
    best = None
    for i in range(len(hull)):
        e = hull[(i + 1) % len(hull)] - hull[i]
        if np.linalg.norm(e) < 1e-9:
            continue
        u = e / np.linalg.norm(e)
        v = np.array([-u[1], u[0]])
        a, b = hull @ u, hull @ v
        area = (a.max() - a.min()) * (b.max() - b.min())
        if best is None or area < best[0]:
            best = (area, u, v, a.min(), a.max(), b.min(), b.max())
    _, u, v, a0, a1, b0, b1 = best
    return np.array([a0 * u + b1 * v, a1 * u + b1 * v, a1 * u + b0 * v, a0 * u + b0 * v])


def hole_free(geom) -> List[np.ndarray]:
    """A shapely (Multi)Polygon -> exterior rings [k, 2] of hole-free pieces with the same union (each
    polygon with holes is split by a vertical line through a hole until none is left)."""
    from shapely.geometry import LineString
    from shapely.ops import split
    out, todo = [], [g for g in getattr(geom, "geoms", [geom]) if g.geom_type == "Polygon" and not g.is_empty]
    while todo:
        g = todo.pop()
        if not g.interiors:
            out.append(np.asarray(g.exterior.coords)[:-1, :2])
            continue
        from shapely.geometry import Polygon
        x = Polygon(g.interiors[0]).representative_point().x
        y0, y1 = g.bounds[1] - 1.0, g.bounds[3] + 1.0
        parts = split(g, LineString([(x, y0), (x, y1)]))
        pieces = [p for p in parts.geoms if p.geom_type == "Polygon" and p.area > 1e-6]
        if len(pieces) < 2:                 # degenerate: keep the outline only
            out.append(np.asarray(g.exterior.coords)[:-1, :2])
            continue
        todo.extend(pieces)
    return out


def drivable_from_outlines(rings: Sequence[np.ndarray], path: str) -> List[MapArea]:
    """nuScenes' ``boundary_<n>`` rings (exteriors and holes of the drivable area) -> hole-free areas."""
    if not rings:
        return []
    from shapely.geometry import Polygon
    area = None
    for r in rings:
        p = Polygon(r).buffer(0)
        area = p if area is None else area.symmetric_difference(p)
    return [MapArea(f"drivable_{k}", ring) for k, ring in enumerate(hole_free(area)) if len(ring) >= 3]


def marking_style(kind: str) -> Optional[int]:
    if kind.startswith("ROAD_EDGE"):
        return 0
    if kind.startswith("ROAD_LINE"):
        return 2 if "YELLOW" in kind else 1 if "BROKEN" in kind else 0
    return None


def read_map(mf: Mapping, path: str, dataset: str):
    lanes: List[MapLane] = []
    crosswalks: List[np.ndarray] = []
    markings: List[Marking] = []
    outlines: List[np.ndarray] = []
    for fid in sorted(mf, key=str):
        feat = mf[fid]
        fid = str(fid)
        f = f"map_features.{fid}"
        if not isinstance(feat, Mapping):
            raise LogError(path, f, f"expected a dict, found {type(feat).__name__}")
        kind = str(field(feat, "type", path, f + ".type", None))
        if kind.startswith("LANE_"):
            if kind == "LANE_BIKE_LANE":
                continue
            cl = polyline(field(feat, "polyline", path, f + ".polyline", None), path, f + ".polyline")
            if len(cl) < 2:
                continue
            has_polygon = feat.get("polygon") is not None and len(feat["polygon"]) >= 3
            if has_polygon:
                poly = ring(polyline(feat["polygon"], path, f + ".polygon"))
            else:
                w = feat.get("width")
                if w is not None:
                    w = np.asarray(w, np.float64)
                    if w.shape != (len(np.asarray(feat["polyline"])), 2):
                        raise LogError(path, f + ".width", f"expected [{len(feat['polyline'])}, 2], found {w.shape}")
                    w = w[kept_points(feat["polyline"])]
                poly = lane_polygon(cl, w)
            kmh = feat.get("speed_limit_kmh")
            speed = (float(kmh) / 3.6 if dataset != "nuscenes" and kmh is not None and np.isfinite(kmh)
                     and float(kmh) > 0 else None)
            if dataset == "nuscenes":
                connector = not has_polygon
            else:
                connector = bool(feat.get("interpolating", False))
            succ = tuple(str(s) for s in (feat.get("exit_lanes") or ()))
            lanes.append(MapLane(fid, poly, cl, "", connector, speed, succ))
        elif kind == "CROSSWALK":
            poly = ring(polyline(field(feat, "polygon", path, f + ".polygon", None), path, f + ".polygon"))
            if len(poly) >= 3:
                crosswalks.append(poly if len(poly) == 4 else rectangle(poly))
        else:
            style = marking_style(kind)
            if style is None:
                continue
            line = polyline(field(feat, "polyline", path, f + ".polyline", None), path, f + ".polyline")
            if len(line) < 2:
                continue
            markings.append(Marking(line, style))
            if (fid.startswith("boundary_") and kind == "ROAD_LINE_SOLID_SINGLE_WHITE" and len(line) >= 4
                    and np.allclose(line[0], line[-1])):
                outlines.append(line)
    lane_ids = {ln.id for ln in lanes}
    lanes = [ln if all(s in lane_ids for s in ln.successors)
             else MapLane(ln.id, ln.polygon, ln.centerline, ln.roadblock_id, ln.is_connector, ln.speed_limit,
                          tuple(s for s in ln.successors if s in lane_ids)) for ln in lanes]
    return lanes, crosswalks, markings, outlines


def kept_points(v) -> np.ndarray:
    """The indices :func:`polyline` keeps (to keep per-point widths aligned)."""
    a = np.asarray(v, np.float64)[:, :2]
    if len(a) <= 1:
        return np.arange(len(a))
    return np.nonzero(np.r_[True, np.linalg.norm(np.diff(a, axis=0), axis=-1) > 1e-6])[0]
