"""The compact-edge path of the PDM-Closed reference planner changes no bit.

``reference_planner.proposals(scene, sparse=True)`` (red lights only, bounding-box pre-filtered corridor
test, edges cut at the last real vertex, object progress only where an object is a candidate) must give
exactly the proposals of the dense path (``sparse=False``, the original code: every selected light,
every edge, every object at every step), hence the same choice and progress. Checked on the official
vector scenes, on variants with every light red, with a red light swept across the corridor's edge,
with a red light just inside / just outside the corridor's pruning box, and with an unpadded light polygon
(as many real vertices as the padding allows). Not on the small world maps: there the default is the dense
path (few light vertices), so the sparse path never runs on them.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from irlvla_jax import scene as S
from irlvla_jax.scoring import reference_planner as RP
from irlvla_jax.scoring import vectors as V
from tests.compile_flags import DEFAULT_EMITTER
from tests.scoring.vector_data import vectors_dir

BATCH = 15
SWEEP = np.arange(-6.0, 6.01, 0.4)      # lateral positions of the swept red light [m]


@functools.lru_cache(maxsize=None)
def _fn(sparse):
    """The proposals of a scene batch; ``sparse=None`` is the planner's default path (XLA's default emitter:
    tests/compile_flags.py)."""
    return jax.jit(jax.vmap(lambda s: RP.proposals(s, sparse=sparse)[0]), compiler_options=DEFAULT_EMITTER)


@functools.lru_cache(maxsize=None)
def _vectors():
    names, scenes, *_ = V.load_vectors(vectors_dir())
    return scenes


def _check(scenes):
    """Sparse == dense bit for bit on a stacked batch (run in chunks of BATCH: one compilation)."""
    n = int(np.asarray(scenes.scene_id).shape[0])
    outs = []
    for s0 in range(0, n, BATCH):
        idx = np.minimum(np.arange(s0, s0 + BATCH), n - 1)
        b = S.index(scenes, idx)
        got, want = np.asarray(_fn(True)(b)), np.asarray(_fn(False)(b))
        np.testing.assert_array_equal(got, want)
        outs.append(got[: min(BATCH, n - s0)])
    return np.concatenate(outs)


def _with_lights(scene, **fields):
    return scene.replace(**{k: np.asarray(v) for k, v in fields.items()})


def _lead_scenes(scenes):
    ctx = jax.jit(jax.vmap(RP.forecast_context))(scenes)           # one program, not op by op
    return np.flatnonzero(np.asarray(ctx["lead_light"]).any(-1))


def test_vector_scenes_bit_identical():
    scenes = _vectors()
    assert np.asarray(scenes.light_polygons).shape[-2] > RP.SPARSE_MIN_VERTICES   # auto picks sparse
    _check(scenes)
    # The default (sparse=None) is the sparse path on these scenes.
    b = S.index(scenes, np.arange(BATCH))
    np.testing.assert_array_equal(np.asarray(_fn(None)(b)), np.asarray(_fn(False)(b)))


def test_every_light_red():
    """Many red lights per scene (several owners of packed rows, MAX_LIGHTS selection)."""
    scenes = _vectors()
    idx = np.flatnonzero(np.asarray(scenes.light_valid).any(-1))[:BATCH]
    sub = S.index(scenes, idx)
    red = np.ones_like(np.asarray(sub.light_red))
    _check(_with_lights(sub, light_red=red, light_on_route=np.asarray(sub.light_valid)))


def _single_red(scene, poly):
    """Scene copy whose light 0 is ``poly`` [V, 2] (red, valid, on route) and every other light not red."""
    lp = np.array(scene.light_polygons)
    lp[0] = poly
    red = np.zeros_like(np.asarray(scene.light_red))
    red[0] = True
    valid = np.array(scene.light_valid)
    valid[0] = True
    on = np.array(scene.light_on_route)
    on[0] = True
    return _with_lights(scene, light_polygons=lp, light_red=red, light_valid=valid, light_on_route=on)


def _square(cx, cy, half, v):
    sq = np.array([[cx + half, cy + half], [cx - half, cy + half], [cx - half, cy - half],
                   [cx + half, cy - half]], np.float32)
    return np.concatenate([sq, np.repeat(sq[:1], v - 4, axis=0)])   # padding repeats vertex 0


@jax.jit
def _prefilter_boxes(scene):
    """The pruning boxes (lo, hi) [3, 2] of the three paths of one scene, as the planner computes them
    (one program for every scene: the scene is an argument, not a constant)."""
    targets = jnp.asarray(RP.SPEED_FRACTIONS) * RP.starting_speed_limit(scene)

    def one(off):
        pts, hun, prog = RP._path(scene.route, scene.route_valid, off)
        ego_s = RP.geo.project_to_polyline(jnp.zeros((1, 2)), pts)[0][0]
        seg_ok, a, b, u, rect, joints, joint_ok = RP._corridor(pts, prog, ego_s, targets)
        return RP._prefilter_box(rect, seg_ok)

    return jax.vmap(one)(jnp.asarray(RP.LATERAL_OFFSETS))


def test_red_light_at_the_pruning_bound():
    """A small red light whose box sits 1 mm inside / outside each side of each path's pruning box, and
    one swept laterally across the corridor's edges in 40 cm steps."""
    scenes = _vectors()
    v = np.asarray(scenes.light_polygons).shape[-2]
    variants = []
    for i in (0, 9, 14, 23):
        sc = S.index(scenes, i)
        lo, hi = (np.asarray(x) for x in _prefilter_boxes(sc))
        half = 0.5
        for p in range(3):
            mid = 0.5 * (lo[p] + hi[p])
            for eps in (-1e-3, 1e-3):
                # Just inside (eps < 0) / just outside (eps > 0) of each of the four sides.
                variants.append(_single_red(sc, _square(hi[p, 0] + half + eps, mid[1], half, v)))
                variants.append(_single_red(sc, _square(lo[p, 0] - half - eps, mid[1], half, v)))
                variants.append(_single_red(sc, _square(mid[0], hi[p, 1] + half + eps, half, v)))
                variants.append(_single_red(sc, _square(mid[0], lo[p, 1] - half - eps, half, v)))
        # 1.5 m squares 12 m ahead, swept (0.4 m steps) from -6 m to +6 m: across the corridor's edges and beyond.
        for y in SWEEP:
            variants.append(_single_red(sc, _square(12.0, y, 0.75, v)))
    out = _check(S.stack(variants))
    # The sweep reaches both regimes: the light stops the planner in some variants and not in others.
    sweep = out[-len(SWEEP):]
    assert not all(np.array_equal(sweep[0], s) for s in sweep[1:])


def test_unpadded_and_long_light_polygons():
    """A red light with V real vertices (no padding, the n == V case), and lights whose real vertices
    end at various indices, in scenes with a red light."""
    scenes = _vectors()
    v = np.asarray(scenes.light_polygons).shape[-2]
    variants = []
    for i in _lead_scenes(scenes)[:6]:
        sc = S.index(scenes, int(i))
        # A circle of radius 3 m, 10 m ahead, with all v vertices distinct.
        ang = np.linspace(0.0, 2 * np.pi, v, endpoint=False)
        circ = np.stack([10.0 + 3.0 * np.cos(ang), 3.0 * np.sin(ang)], -1).astype(np.float32)
        variants.append(_single_red(sc, circ))
        for n in (3, 5, 17, v - 1):
            c = circ[np.linspace(0, v, n, endpoint=False).astype(int)]
            variants.append(_single_red(sc, np.concatenate([c, np.repeat(c[:1], v - n, 0)])))
    _check(S.stack(variants))
