"""geometry.py against shapely on random inputs (boxes, non-convex padded polygons, polylines)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from shapely.geometry import LineString, Point, Polygon

from irlvla_jax import geometry as G
from irlvla_jax.scene import pad_polygon
from tests.compile_flags import DEFAULT_EMITTER

RNG = np.random.default_rng(0)


def _box(c, h, l, w):
    return np.asarray(G.box_corners(jnp.asarray(c), jnp.asarray(h), jnp.asarray(l), jnp.asarray(w)))


def _star(n, rng, center=(0.0, 0.0)):
    """A random non-convex (star-shaped) polygon with n vertices."""
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = rng.uniform(2.0, 8.0, n)
    return np.stack([center[0] + rad * np.cos(ang), center[1] + rad * np.sin(ang)], -1)


def test_box_corners_order_and_size():
    c = _box([1.0, 2.0], np.pi / 2, 4.0, 2.0)
    # heading +y: front-left is at +y (front) and -x (left of +y).
    np.testing.assert_allclose(c, [[0.0, 4.0], [0.0, 0.0], [2.0, 0.0], [2.0, 4.0]], atol=1e-6)
    assert Polygon(c).area == pytest.approx(8.0, rel=1e-5)


def _random_box_pairs(n):
    """n random pairs of boxes: centres, headings, lengths, widths of a and of b."""
    ca, cb = RNG.uniform(-4, 4, (n, 2)), RNG.uniform(-4, 4, (n, 2))
    ha, hb = RNG.uniform(-np.pi, np.pi, n), RNG.uniform(-np.pi, np.pi, n)
    la, lb = RNG.uniform(0.5, 5, n), RNG.uniform(0.5, 5, n)
    wa, wb = RNG.uniform(0.5, 2.5, n), RNG.uniform(0.5, 2.5, n)
    return ca, cb, ha, hb, la, lb, wa, wb


def test_boxes_overlap_matches_shapely():
    n = 400
    ca, cb, ha, hb, la, lb, wa, wb = _random_box_pairs(n)
    a = G.box_corners(jnp.asarray(ca), jnp.asarray(ha), jnp.asarray(la), jnp.asarray(wa))
    b = G.box_corners(jnp.asarray(cb), jnp.asarray(hb), jnp.asarray(lb), jnp.asarray(wb))
    got = np.asarray(jax.jit(G.boxes_overlap)(a, b))
    want = np.array([Polygon(np.asarray(a[i])).intersects(Polygon(np.asarray(b[i]))) for i in range(n)])
    assert 0.2 < want.mean() < 0.8
    assert (got == want).mean() >= 0.995


def test_rects_overlap_and_segment_test_match_shapely():
    """Centre-extent forms (what NC and TTC use) against shapely, including exactly touching pairs."""
    n = 600
    ca, cb, ha, hb, la, lb, wa, wb = _random_box_pairs(n)
    # axis-aligned pairs side by side: gaps of -1 cm (overlap), 0 (touching: overlap) and +1 cm (apart)
    k = 30
    gap = np.repeat([-0.01, 0.0, 0.01], k // 3)
    ha[:k] = hb[:k] = 0.0
    ca[:k] = 0.0
    la[:k], lb[:k], wa[:k], wb[:k] = 2.0, 2.0, 1.0, 0.5
    cb[:k, 0], cb[:k, 1] = 0.5, 0.5 + 0.25 + gap                 # half widths 0.5 + 0.25
    f = lambda x: jnp.asarray(x, jnp.float32)
    ra = (f(ca[:, 0]), f(ca[:, 1]), f(np.cos(ha)), f(np.sin(ha)), f(la / 2), f(wa / 2))
    rb = (f(cb[:, 0]), f(cb[:, 1]), f(np.cos(hb)), f(np.sin(hb)), f(lb / 2), f(wb / 2))
    got = np.asarray(jax.jit(G.rects_overlap)(ra, rb))
    pa, pb = _box(ca, ha, la, wa), _box(cb, hb, lb, wb)
    want = np.array([Polygon(pa[i]).intersects(Polygon(pb[i])) for i in range(n)])
    np.testing.assert_array_equal(got[:k], gap <= 0.0)
    assert 0.2 < want.mean() < 0.8
    assert (got == want).mean() >= 0.995
    assert np.array_equal(got, np.asarray(G.boxes_overlap(f(pa), f(pb))))     # the corner form, same answers
    p, q = RNG.uniform(-6, 6, (n, 2)), RNG.uniform(-6, 6, (n, 2))
    seg = np.asarray(G.segment_rect_overlap(f(p), f(q), rb))
    want = np.array([LineString([p[i], q[i]]).intersects(Polygon(pb[i])) for i in range(n)])
    assert 0.1 < want.mean() < 0.9 and (seg == want).mean() >= 0.995
    inside = np.asarray(G.segment_rect_overlap(f(cb), f(cb + 0.01), rb))     # a short segment inside
    assert inside.all()


@pytest.mark.parametrize("nv,pad", [(9, 16), (40, 64)])  # both code paths (broadcast, edge loop)
def test_points_in_polygon_padded_nonconvex(nv, pad):
    poly = _star(nv, RNG)
    padded, mask = pad_polygon(poly, pad)
    pts = RNG.uniform(-9, 9, (500, 2)).astype(np.float32)
    got = np.asarray(G.points_in_polygon(jnp.asarray(pts), jnp.asarray(padded)))
    sp = Polygon(poly)
    want = np.array([sp.contains(Point(p)) for p in pts])
    assert want.any() and (~want).any()
    assert (got == want).mean() >= 0.998
    # The points-minor layout (the RWM's features) gives the same bits, here and for polygon batches.
    minor = np.asarray(G.points_in_polygon(jnp.asarray(pts), jnp.asarray(padded), points_minor=True))
    np.testing.assert_array_equal(minor, got)
    polys = jnp.stack([jnp.asarray(padded), jnp.asarray(padded) * 0.5 + 1.0])                     # [2, V, 2]
    batch = lambda **kw: np.asarray(G.points_in_polygon(jnp.asarray(pts)[None], polys, **kw))    # noqa: E731
    np.testing.assert_array_equal(batch(points_minor=True), batch())


def test_box_polygon_overlap_and_distance_match_shapely():
    poly = _star(12, RNG)
    padded, _ = pad_polygon(poly, 20)
    sp = Polygon(poly)
    n = 300
    boxes = G.box_corners(jnp.asarray(RNG.uniform(-11, 11, (n, 2))), jnp.asarray(RNG.uniform(-3, 3, n)),
                          jnp.full(n, 3.0), jnp.full(n, 1.5))
    ov = np.asarray(G.box_polygon_overlap(boxes, jnp.asarray(padded)[None]))
    dist = np.asarray(G.polygon_distance(boxes, jnp.asarray(padded)[None]))
    want_ov = np.array([Polygon(np.asarray(b)).intersects(sp) for b in boxes])
    want_d = np.array([Polygon(np.asarray(b)).distance(sp) for b in boxes])
    assert want_ov.any() and (~want_ov).any()
    assert (ov == want_ov).mean() >= 0.995
    np.testing.assert_allclose(dist, want_d, atol=1e-4)


def test_rect_distances_equal_polygon_distance_and_shapely():
    """The planar box-to-rectangles distance of the planner's leading-agent search: polygon_distance's
    values (to float rounding) and shapely's, overlaps (0) included."""
    def boxes(n):
        return G.box_corners(jnp.asarray(RNG.uniform(-8, 8, (n, 2)), jnp.float32),
                             jnp.asarray(RNG.uniform(-3, 3, n), jnp.float32),
                             jnp.asarray(RNG.uniform(1, 6, n), jnp.float32), jnp.asarray(RNG.uniform(0.5, 3, n), jnp.float32))
    ego, rects = boxes(5), boxes(40)
    got = np.asarray(G.rect_distances(ego, rects))                                       # [5, 40]
    dense = np.asarray(jax.vmap(lambda e: G.polygon_distance(e[None], rects))(ego))
    want = np.array([[Polygon(np.asarray(e)).distance(Polygon(np.asarray(r))) for r in rects] for e in ego])
    assert got.shape == (5, 40) and (want == 0).any() and (want > 0).any()
    np.testing.assert_array_equal(got == 0, dense == 0)
    np.testing.assert_allclose(got, dense, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_project_to_polyline_matches_shapely():
    line = np.cumsum(RNG.uniform(0.5, 3.0, (12, 2)) * [1.0, 0.3], axis=0)
    line = np.concatenate([line, np.repeat(line[-1:], 4, 0)])           # padding repeats the last point
    pts = RNG.uniform(line.min(0) - 3, line.max(0) + 3, (200, 2))
    arc, lat, dist = (np.asarray(x) for x in G.project_to_polyline(jnp.asarray(pts), jnp.asarray(line)))
    ls = LineString(line[:12])
    np.testing.assert_allclose(arc, [ls.project(Point(p)) for p in pts], atol=2e-4)
    np.testing.assert_allclose(dist, [ls.distance(Point(p)) for p in pts], atol=2e-4)
    np.testing.assert_allclose(np.abs(lat), dist, atol=1e-6)
    # Sign: left of the driving direction is positive.
    a2, l2, _ = G.project_to_polyline(jnp.asarray([[1.0, 1.0], [1.0, -1.0]]), jnp.asarray([[0.0, 0.0], [5.0, 0.0]]))
    assert float(l2[0]) > 0 > float(l2[1])


def test_project_to_polyline_batched_and_ties():
    """Batched points against batched or shared lines equal row-by-row calls; a point equidistant from two
    segments (the outside of a corner) takes the first, as shapely does; the distance is polyline_distance."""
    lines = np.cumsum(RNG.uniform(0.5, 3.0, (3, 10, 2)) * [1.0, 0.4], axis=1).astype(np.float32)
    lines[1, 7:] = lines[1, 6]                                           # a padded route
    pts = RNG.uniform(-3, 20, (3, 50, 2)).astype(np.float32)
    f = jax.jit(G.project_to_polyline, compiler_options=DEFAULT_EMITTER)     # bit for bit: tests/compile_flags.py
    got = [np.asarray(x) for x in f(jnp.asarray(pts), jnp.asarray(lines))]
    shared = [np.asarray(x) for x in f(jnp.asarray(pts), jnp.asarray(lines[0]))]
    for b in range(3):
        row = [np.asarray(x) for x in f(jnp.asarray(pts[b]), jnp.asarray(lines[b]))]
        for g, r in zip(got, row):
            np.testing.assert_array_equal(g[b], r)
        for g, r in zip(shared, [np.asarray(x) for x in f(jnp.asarray(pts[b]), jnp.asarray(lines[0]))]):
            np.testing.assert_array_equal(g[b], r)
    dist = jax.jit(G.polyline_distance, compiler_options=DEFAULT_EMITTER)
    np.testing.assert_array_equal(got[2], np.asarray(dist(jnp.asarray(pts), jnp.asarray(lines))))
    corner = jnp.asarray([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0]])
    arc, lat, dist = (float(x[0]) for x in G.project_to_polyline(jnp.asarray([[5.0, -1.0]]), corner))
    assert arc == 4.0 and dist == pytest.approx(np.sqrt(2.0)) and lat < 0            # segment 0's end
    assert LineString(np.asarray(corner)).project(Point(5.0, -1.0)) == 4.0


def test_se2_roundtrip_and_angle_wrap():
    o = jnp.asarray([3.0, -2.0, 2.5])
    p = jnp.asarray(RNG.uniform(-5, 5, (10, 3)))
    back = G.se2_to_local(o, G.se2_to_global(o, p))
    np.testing.assert_allclose(np.asarray(back[:, :2]), np.asarray(p[:, :2]), atol=1e-5)
    np.testing.assert_allclose(np.cos(back[:, 2] - p[:, 2]), 1.0, atol=1e-5)
    w = np.asarray(G.wrap_angle(jnp.asarray([3 * np.pi, -3 * np.pi + 0.1, 0.5])))
    assert np.all((w >= -np.pi) & (w < np.pi))
    np.testing.assert_allclose(w[2], 0.5)
