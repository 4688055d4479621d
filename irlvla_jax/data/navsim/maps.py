"""NAVSIM map layers: the map objects a scene conversion reads, the :class:`MapLayers` provider interface,
a dict / JSON provider (tests, exported maps) and :class:`DevkitMapLayers`, the nuPlan-devkit map adapter.

All geometry is in the map frame. Only :class:`DevkitMapLayers` needs the NAVSIM devkit (``nuplan-devkit``'s
map API); it imports it on construction and raises an ImportError saying how to install it otherwise.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from irlvla_jax.data.navsim.geometry import point_polygon_distance

INSTALL_HINT = (
    "the NAVSIM devkit is needed for this (nuPlan map API). Install it with: pip install -e \".[navsim]\" && "
    "git clone https://github.com/autonomousvision/navsim && pip install -e navsim, plus nuplan-devkit as in "
    "NAVSIM's docs/install.md, and set NUPLAN_MAPS_ROOT. (Do NOT `pip install navsim`: that PyPI package is "
    "an unrelated simulator.)")


@dataclasses.dataclass
class MapLane:
    """A lane or lane connector, map frame. polygon [k, 2], centerline [m, 2] in driving direction (m/s)."""
    id: str
    polygon: np.ndarray
    centerline: np.ndarray
    roadblock_id: str
    is_connector: bool = False
    speed_limit: Optional[float] = None
    successors: Tuple[str, ...] = ()


@dataclasses.dataclass
class MapArea:
    """A roadblock, intersection or car park polygon [k, 2], map frame."""
    id: str
    polygon: np.ndarray


@dataclasses.dataclass
class MapQuery:
    """Map objects near a point, map frame. ``route`` [k, 2]: an optional route centerline (else built)."""
    lanes: List[MapLane]
    roadblocks: List[MapArea]
    intersections: List[MapArea]
    carparks: List[MapArea]
    route: Optional[np.ndarray] = None


class MapLayers:
    """Provider interface: ``query(map_name, x, y, radius, route_roadblock_ids) -> MapQuery`` (map frame):
    the lanes, roadblocks, intersections and car parks within ``radius`` m of (x, y), plus the lanes of the
    route roadblocks wherever they are (only those within the radius become Scene lanes; the others serve
    the route search)."""

    def query(self, map_name: str, x: float, y: float, radius: float,
              route_roadblock_ids: Sequence[str] = ()) -> MapQuery:
        raise NotImplementedError


def _as_xy(v, what: str) -> np.ndarray:
    a = np.asarray(v, np.float64)
    if a.ndim != 2 or a.shape[-1] != 2 or not np.all(np.isfinite(a)):
        raise ValueError(f"map field '{what}': expected finite [k, 2] points, found shape {a.shape}"
                         + ("" if a.ndim != 2 or a.shape[-1] != 2 else " with non-finite values"))
    return a


class DictMapLayers(MapLayers):
    """Map layers from a dict (or a JSON file) in the map frame::

        {"<map_name>": {
            "lanes": [{"id", "polygon": [[x, y], ...], "centerline": [[x, y], ...], "roadblock_id",
                       "is_connector": bool, "speed_limit": m/s or null, "successors": [ids]}, ...],
            "roadblocks" | "intersections" | "carparks": [{"id", "polygon"}, ...],
            "route": optional [[x, y], ...]}}

    ``query`` returns the objects whose polygon comes within ``radius`` of (x, y), plus every lane of
    the route roadblocks (for the route search).
    """

    def __init__(self, maps: Mapping[str, Mapping[str, Any]]):
        self._maps: Dict[str, Dict[str, Any]] = {}
        for name, m in maps.items():
            unknown = sorted(set(m) - {"lanes", "roadblocks", "intersections", "carparks", "route"})
            if unknown:
                raise ValueError(f"map '{name}': unknown layer(s) {unknown}; known: lanes, roadblocks, "
                                 "intersections, carparks, route")
            lanes = []
            for i, ln in enumerate(m.get("lanes") or []):
                for k in ("id", "polygon", "centerline", "roadblock_id"):
                    if k not in ln:
                        raise ValueError(f"map '{name}': lanes[{i}] lacks field '{k}'")
                lanes.append(MapLane(str(ln["id"]), _as_xy(ln["polygon"], f"{name}.lanes[{i}].polygon"),
                                     _as_xy(ln["centerline"], f"{name}.lanes[{i}].centerline"),
                                     str(ln["roadblock_id"]), bool(ln.get("is_connector", False)),
                                     None if ln.get("speed_limit") is None else float(ln["speed_limit"]),
                                     tuple(str(s) for s in ln.get("successors") or ())))
            layers = {"lanes": lanes}
            for key in ("roadblocks", "intersections", "carparks"):
                layers[key] = [MapArea(str(a["id"]), _as_xy(a["polygon"], f"{name}.{key}[{i}].polygon"))
                               for i, a in enumerate(m.get(key) or [])]
            layers["route"] = None if m.get("route") is None else _as_xy(m["route"], f"{name}.route")
            self._maps[str(name)] = layers

    @classmethod
    def from_json(cls, path: str) -> "DictMapLayers":
        with open(path) as fh:
            return cls(json.load(fh))

    def query(self, map_name, x, y, radius, route_roadblock_ids=()):
        if map_name not in self._maps:
            raise KeyError(f"map '{map_name}' not in this DictMapLayers (has {sorted(self._maps)})")
        m, p = self._maps[map_name], np.array([x, y], np.float64)
        near = lambda poly: point_polygon_distance(p, poly) <= radius  # noqa: E731
        route = set(str(r) for r in route_roadblock_ids)
        return MapQuery(lanes=[ln for ln in m["lanes"] if ln.roadblock_id in route or near(ln.polygon)],
                        roadblocks=[a for a in m["roadblocks"] if near(a.polygon)],
                        intersections=[a for a in m["intersections"] if near(a.polygon)],
                        carparks=[a for a in m["carparks"] if near(a.polygon)], route=m["route"])


def _require_devkit():
    """Import the nuPlan map API (part of the NAVSIM devkit install) or raise a clear ImportError."""
    try:
        from nuplan.common.actor_state.state_representation import Point2D
        from nuplan.common.maps.maps_datatypes import SemanticMapLayer
        from nuplan.common.maps.nuplan_map.map_factory import get_maps_api
    except ImportError as e:  # pragma: no cover - message checked in tests with a blocked import
        raise ImportError(f"irlvla_jax.data.navsim: {INSTALL_HINT} (import failed: {e})") from e
    return Point2D, SemanticMapLayer, get_maps_api


class DevkitMapLayers(MapLayers):
    """Map layers from the nuPlan maps through the devkit's map factory (NAVSIM's own source).

    ``map_root`` defaults to $NUPLAN_MAPS_ROOT, ``map_version`` to NAVSIM's "nuplan-maps-v1.0". Queries
    ROADBLOCK, ROADBLOCK_CONNECTOR, INTERSECTION and CARPARK_AREA around (x, y) like NAVSIM's drivable
    area map; lanes are the interior edges of the roadblocks (lanes) and roadblock connectors (lane
    connectors). Polygons use their exterior ring (holes are dropped).
    """

    def __init__(self, map_root: Optional[str] = None, map_version: str = "nuplan-maps-v1.0"):
        self._api = _require_devkit()
        self.map_root = map_root or os.environ.get("NUPLAN_MAPS_ROOT")
        if not self.map_root:
            raise ValueError("DevkitMapLayers: no map_root given and $NUPLAN_MAPS_ROOT is not set")
        self.map_version = map_version
        self._cache: Dict[str, Any] = {}

    def _map(self, name: str):
        name = "us-nv-las-vegas-strip" if name == "las_vegas" else name   # as NAVSIM's scenario builder
        if name not in self._cache:
            self._cache[name] = self._api[2](self.map_root, self.map_version, name)
        return self._cache[name]

    def query(self, map_name, x, y, radius, route_roadblock_ids=()):  # pragma: no cover - needs devkit + maps
        Point2D, L, _ = self._api
        api = self._map(map_name)
        objs = api.get_proximal_map_objects(Point2D(x, y), radius,
                                            [L.ROADBLOCK, L.ROADBLOCK_CONNECTOR, L.INTERSECTION, L.CARPARK_AREA])
        ring = lambda o: np.asarray(o.polygon.exterior.coords, np.float64)  # noqa: E731
        lanes = []
        for layer, is_conn in ((L.ROADBLOCK, False), (L.ROADBLOCK_CONNECTOR, True)):
            for block in objs[layer]:
                for e in block.interior_edges:
                    cl = np.asarray([[s.x, s.y] for s in e.baseline_path.discrete_path], np.float64)
                    lanes.append(MapLane(str(e.id), ring(e), cl, str(block.id), is_conn, e.speed_limit_mps,
                                         tuple(str(o.id) for o in e.outgoing_edges)))
        seen = {ln.id for ln in lanes}
        for rid in dict.fromkeys(str(r) for r in route_roadblock_ids):   # as NAVSIM's route dicts
            block = api.get_map_object(rid, L.ROADBLOCK)
            is_conn = block is None
            block = block or api.get_map_object(rid, L.ROADBLOCK_CONNECTOR)
            for e in (block.interior_edges if block is not None else []):
                if str(e.id) not in seen:
                    cl = np.asarray([[s.x, s.y] for s in e.baseline_path.discrete_path], np.float64)
                    lanes.append(MapLane(str(e.id), ring(e), cl, str(block.id), is_conn, e.speed_limit_mps,
                                         tuple(str(o.id) for o in e.outgoing_edges)))
                    seen.add(str(e.id))
        area = lambda layer: [MapArea(str(o.id), ring(o)) for o in objs[layer]]  # noqa: E731
        return MapQuery(lanes, area(L.ROADBLOCK), area(L.INTERSECTION), area(L.CARPARK_AREA))
