"""Road geometry and traffic-light schedules."""
import numpy as np
import pytest

from irlvla_jax import scene as S
from irlvla_jax.world import roads as R

shapely = pytest.importorskip("shapely")
from shapely.geometry import LineString, Polygon  # noqa: E402
from shapely.ops import unary_union  # noqa: E402


@pytest.mark.parametrize("pattern", ["green", "red", "turns_red", "turns_green"])
def test_signal_phases(pattern):
    rng = np.random.default_rng(3)
    for _ in range(20):
        sig = R.make_signal(rng, pattern)
        t = np.arange(-200, 600) * 0.05
        ga, gb = ~sig.red(0, t), ~sig.red(1, t)
        assert not np.any(ga & gb)                       # never both green
        # every switch between the phases has >= 1 s of all-red
        change = np.nonzero(ga[:-1] & ~ga[1:])[0]
        for i in change:
            nxt = np.nonzero(gb[i + 1:])[0]
            if len(nxt):
                assert nxt[0] * 0.05 >= 1.0 - 1e-6
        h = ~sig.red(0, np.arange(9) * 0.5)
        if pattern == "green":
            assert h.all()
        elif pattern == "red":
            assert not h.any()
        elif pattern == "turns_red":
            assert h[0] and not h[-1] and np.all(np.diff(h.astype(int)) <= 0)
        else:
            assert not h[0] and h[-1] and np.all(np.diff(h.astype(int)) >= 0)


def _polys(sc, name, vmask, valid):
    return [Polygon(getattr(sc, name)[i][getattr(sc, vmask)[i]]) for i in np.nonzero(getattr(sc, valid))[0]]


def test_lanes_tile_the_road_without_slivers(family_scenes):
    for fam in ("curve", "oncoming", "cruise_lead", "lane_change"):
        for sc in family_scenes[fam][:8]:
            lanes = [p for p, c in zip(_polys(sc, "lane_polygons", "lane_vertex_valid", "lane_valid"),
                                       sc.lane_is_connector[sc.lane_valid]) if not c]
            assert all(p.is_valid for p in lanes)
            union = unary_union(lanes)
            # neighbours share boundaries exactly: no overlaps (areas add up) ...
            assert union.area == pytest.approx(sum(p.area for p in lanes), rel=1e-3)
            # ... and every lane lies on the drivable area
            drv = unary_union(_polys(sc, "drivable_polygons", "drivable_vertex_valid", "drivable_valid"))
            assert union.difference(drv.buffer(0.02)).area < 0.05
            # centerlines run inside their lane polygons
            for i in np.nonzero(sc.lane_valid)[0]:
                cl = LineString(sc.lane_centerlines[i][sc.lane_point_valid[i]])
                poly = Polygon(sc.lane_polygons[i][sc.lane_vertex_valid[i]])
                assert poly.buffer(0.05).contains(cl)


def test_intersection_structure_and_phases(family_scenes):
    for sc in family_scenes["intersection"]:
        conn = sc.lane_valid & sc.lane_is_connector
        route_conn = conn & sc.lane_on_route
        assert route_conn.any()
        lights = np.nonzero(sc.light_valid)[0]
        reds = sc.light_red[lights]
        # exactly two phases: each light's schedule equals one of two complementary-with-all-red rows
        rows = {tuple(r) for r in reds.astype(int)}
        assert 1 <= len(rows) <= 2
        if len(rows) == 2:
            a, b = (np.array(r, bool) for r in rows)
            assert not np.any(~a & ~b)                   # never both green
        # the ego's route runs through the intersection polygon
        inter = [p for p, k in zip(_polys(sc, "drivable_polygons", "drivable_vertex_valid", "drivable_valid"),
                                   sc.drivable_kind[sc.drivable_valid]) if k == S.DRIVABLE_INTERSECTION]
        assert len(inter) == 1
        route = LineString(sc.route[sc.route_valid])
        assert route.intersects(inter[0])
        # on-route lights are the connectors of the ego's movement (all its approach lanes): one phase,
        # and the route runs through one of them
        onr = np.nonzero(sc.light_valid & sc.light_on_route)[0]
        assert len({tuple(r) for r in sc.light_red[onr].astype(int)}) == 1
        assert any(route.intersects(Polygon(sc.light_polygons[li][sc.light_vertex_valid[li]])) for li in onr)
