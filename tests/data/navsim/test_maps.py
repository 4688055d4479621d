"""Tests of irlvla_jax.data.navsim.maps: the dict / JSON provider, the devkit adapter (against a stand-in
map API) and the guarded devkit import."""
import importlib.abc
import sys
import types

import numpy as np
import pytest

from irlvla_jax import scene as S
from irlvla_jax.data import navsim as N
from tests.data.navsim.synthetic import MAP, SPEC, map_dict


def test_json_map_provider_matches_dict(tmp_path, log_path, scene0):
    import json
    p = tmp_path / "maps.json"
    p.write_text(json.dumps(map_dict()))
    sc = N.convert_scene(N.load_log(log_path)[:14], SPEC, N.DictMapLayers.from_json(str(p)))
    for name in S.FIELDS:
        np.testing.assert_array_equal(getattr(sc, name), getattr(scene0, name), err_msg=name)
    with pytest.raises(KeyError, match="us-nv-pittsburgh"):
        N.DictMapLayers(map_dict()).query("us-nv-pittsburgh", 0, 0, 10)


class _Blocker(importlib.abc.MetaPathFinder):
    def __init__(self):
        self.attempts = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("navsim", "nuplan", "pyquaternion"):
            self.attempts.append(name)
            raise ImportError(f"blocked import of {name}")
        return None


def test_devkit_free_path_never_imports_navsim(log_path, tmp_path):
    blocker = _Blocker()
    before = set(sys.modules)
    sys.meta_path.insert(0, blocker)
    try:
        tokens, batch = N.convert_log(log_path, SPEC, N.DictMapLayers(map_dict()))
        out = N.write_submission(str(tmp_path / "sub.pkl"), dict(zip(tokens, batch.expert_future)),
                                 team_name="t", authors=["a"], email="a@b.c", institution="i", country="c")
        N.read_submission(out)
    finally:
        sys.meta_path.remove(blocker)
    assert blocker.attempts == []
    assert not [m for m in set(sys.modules) - before if m.split(".")[0] in ("navsim", "nuplan")]


def test_devkit_import_error_is_clear(monkeypatch):
    monkeypatch.setitem(sys.modules, "nuplan", None)          # makes `import nuplan.*` fail
    with pytest.raises(ImportError) as e:
        N.DevkitMapLayers(map_root="/nonexistent")
    msg = str(e.value)
    assert 'pip install -e ".[navsim]"' in msg
    assert "git clone https://github.com/autonomousvision/navsim" in msg and "nuplan-devkit" in msg


def test_devkit_map_layers_with_a_stand_in_map_api(monkeypatch, log_path):
    """DevkitMapLayers against a duck-typed nuPlan map API (the attributes NAVSIM itself uses)."""
    import enum
    Layer = enum.Enum("SemanticMapLayer", "ROADBLOCK ROADBLOCK_CONNECTOR INTERSECTION CARPARK_AREA LANE")

    class Geom:
        def __init__(self, pts):
            self.exterior = types.SimpleNamespace(coords=[tuple(p) for p in pts] + [tuple(pts[0])])

    class Obj:
        def __init__(self, d):
            self.id, self.polygon = d["id"], Geom(d["polygon"])

    class Edge(Obj):
        def __init__(self, d):
            super().__init__(d)
            self.baseline_path = types.SimpleNamespace(
                discrete_path=[types.SimpleNamespace(x=x, y=y) for x, y in d["centerline"]])
            self.speed_limit_mps = d["speed_limit"]
            self._succ = d["successors"]

    m = map_dict()[MAP]
    edges = {d["id"]: Edge(d) for d in m["lanes"]}
    for e in edges.values():
        e.outgoing_edges = [edges[i] for i in e._succ]
    blocks = {}
    for d in m["lanes"]:
        rb = d["roadblock_id"]
        layer = Layer.ROADBLOCK_CONNECTOR if d["is_connector"] else Layer.ROADBLOCK
        b = blocks.setdefault(rb, types.SimpleNamespace(id=rb, interior_edges=[], layer=layer,
                                                        polygon=Geom(d["polygon"])))
        b.interior_edges.append(edges[d["id"]])
    for d in m["roadblocks"]:
        blocks[d["id"]].polygon = Geom(d["polygon"])
    calls = []

    class Api:
        def get_proximal_map_objects(self, point, radius, layers):
            calls.append((point.x, point.y, radius))
            out = {layer: [] for layer in layers}
            for b in blocks.values():
                if b.id != "RB3":                       # pretend RB3 is beyond the radius
                    out[b.layer].append(b)
            out[Layer.INTERSECTION] = [Obj(d) for d in m["intersections"]]
            return out

        def get_map_object(self, oid, layer):
            b = blocks.get(oid)
            return b if b is not None and b.layer == layer else None

    names = []
    fake = {
        "nuplan": types.ModuleType("nuplan"),
        "nuplan.common.actor_state.state_representation": types.SimpleNamespace(
            Point2D=lambda x, y: types.SimpleNamespace(x=x, y=y)),
        "nuplan.common.maps.maps_datatypes": types.SimpleNamespace(SemanticMapLayer=Layer),
        "nuplan.common.maps.nuplan_map.map_factory": types.SimpleNamespace(
            get_maps_api=lambda root, version, name: names.append((root, version, name)) or Api()),
    }
    for name in ("nuplan.common", "nuplan.common.actor_state", "nuplan.common.maps",
                 "nuplan.common.maps.nuplan_map"):
        fake[name] = types.ModuleType(name)
    for k, v in fake.items():
        monkeypatch.setitem(sys.modules, k, v)
    maps = N.DevkitMapLayers(map_root="/maps")
    q = maps.query("las_vegas", 1.0, 2.0, 100.0, ["RB1", "RBC1", "RB3"])
    assert names == [("/maps", "nuplan-maps-v1.0", "us-nv-las-vegas-strip")] and calls == [(1.0, 2.0, 100.0)]
    by_id = {ln.id: ln for ln in q.lanes}
    assert set(by_id) == {"L0", "L1", "L2", "C1", "C2", "L3"}          # L3 only as a route lane (RB3)
    assert by_id["C1"].is_connector and not by_id["L1"].is_connector and by_id["C1"].roadblock_id == "RBC1"
    assert by_id["L1"].successors == ("C1",) and by_id["L1"].speed_limit == 13.4
    assert len(by_id["L1"].polygon) == 5                                # closed ring, as shapely gives it
    assert [a.id for a in q.roadblocks] == ["RB1", "RB0"] and [a.id for a in q.intersections] == ["I1"]
    frames = [dict(f, map_location="las_vegas") for f in N.load_log(log_path)[:14]]
    sc = N.convert_scene(frames, SPEC, maps)
    r = sc.route[sc.route_valid]
    np.testing.assert_allclose([r[0, 0], r[-1, 0]], [-60.0, 140.0], atol=1e-3)     # L1 -> C1 -> L3
