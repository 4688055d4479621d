"""Road networks of the embedded world (numpy, world frame; metres, radians, right-hand traffic): the map
container, traffic-light phases, and the two road layouts the scenario families build on. Polylines and
sampling helpers live in :mod:`irlvla_jax.world.paths`.

Building blocks:

* :class:`MapBuilder` — collects lanes / lane connectors (polygon + centerline, on-route, connector flag,
  speed limit), drivable polygons (roadblock / intersection / car park), traffic lights (a connector's
  polygon with a :class:`Signal` phase), crosswalks and painted markings (for the sensors).
* :func:`build_corridor` — a straight or curved (straight, arc of radius 30-200 m, straight) road with
  ``n_fwd`` lanes in the ego's direction and ``n_back`` oncoming lanes (0 = one-way). Lanes and roadblocks
  of one road are sampled at *shared* reference parameters, so neighbouring polygons share boundaries
  exactly (no slivers). Long lanes are split into segments when the lane budget allows, for accuracy.
* :func:`build_intersection` — a signalised 4-way intersection: one roadblock per arm and direction, one
  intersection polygon, a lane connector per movement (straight from every lane, left from the leftmost,
  right from the rightmost), a light per connector (stop zone = connector polygon). The ego approach and
  the opposite approach share phase A, the crossing road has phase B, with 1 s of all-red between.

Budgets: polygons and centerlines are sampled adaptively (more vertices where the heading changes) at
the spec's vertex counts; :mod:`irlvla_jax.world.pack` reduces the lists to the SceneSpec sizes.
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence, Tuple

import numpy as np

from irlvla_jax.world.paths import Path, adaptive_params, arc_pts, bezier_pts, ccw, straight_pts

SHOULDER = 0.5          # metres of paved shoulder outside the outermost lane of a roadblock


# ----------------------------------------------------------------------------------------------------
# Traffic-light phases.

class Signal:
    """Two phases A (ego approach + opposite) and B (crossing road); green intervals in seconds
    relative to t0. Red everywhere else (which includes the 1 s all-red between phases)."""

    def __init__(self, green_a: Sequence[Tuple[float, float]], green_b: Sequence[Tuple[float, float]]):
        self.green = (list(green_a), list(green_b))

    def red(self, phase: int, t) -> np.ndarray:
        t = np.asarray(t, np.float64)
        g = np.zeros(t.shape, bool)
        for a, b in self.green[phase]:
            g |= (t >= a - 1e-9) & (t < b - 1e-9)
        return ~g


def make_signal(rng: np.random.Generator, pattern: str) -> Signal:
    """A phase plan giving the ego's phase A the ``pattern`` green / red / turns_red / turns_green
    over the 4 s horizon. All switching times are multiples of 0.5 s; all-red lasts 1 s."""
    half = lambda lo, hi: 0.5 * int(rng.integers(int(2 * lo), int(2 * hi) + 1))  # noqa: E731
    if pattern == "green":
        t_end = half(6.0, 20.0)
        ga, gb = [(-30.0, t_end)], [(-60.0, -31.0), (t_end + 1.0, t_end + 30.0)]
    elif pattern == "turns_red":
        tc = half(0.5, 3.5)
        ga, gb = [(-30.0, tc)], [(tc + 1.0, tc + 30.0)]
    elif pattern == "red":
        tb = half(3.5, 15.0)
        ga, gb = [(tb + 1.0, tb + 40.0)], [(-20.0, tb)]
    elif pattern == "turns_green":
        tg = half(0.5, 3.5)
        ga, gb = [(tg, tg + 30.0)], [(-30.0, tg - 1.0)]
    else:
        raise ValueError(f"unknown light pattern {pattern!r}")
    return Signal(ga, gb)


# ----------------------------------------------------------------------------------------------------
# The map container.

@dataclasses.dataclass
class LaneRec:
    polygon: np.ndarray          # [Vl, 2] (or fewer) world
    centerline: np.ndarray       # [P, 2] world, driving direction
    is_connector: bool
    speed_limit: float
    on_route: bool = False
    light: Optional[Tuple[Signal, int]] = None   # (signal, phase) for connectors
    key: str = ""                # identity (lane id / connector movement)


@dataclasses.dataclass
class Marking:
    pts: np.ndarray              # [k, 2] dense polyline (world)
    style: int                   # 0 solid white, 1 dashed white, 2 yellow (centre line)


class MapBuilder:
    """Collects map elements in the world frame; sizes come from the SceneSpec."""

    def __init__(self, spec):
        self.spec = spec
        self.lanes: List[LaneRec] = []
        self.drivable: List[Tuple[np.ndarray, int]] = []   # (polygon, kind)
        self.crosswalks: List[np.ndarray] = []             # polygons
        self.markings: List[Marking] = []
        self.lane_paths = {}                               # key -> Path (dense, full lane)

    # -- helpers ------------------------------------------------------------------------------------
    def add_drivable(self, poly: np.ndarray, kind: int) -> None:
        self.drivable.append((ccw(np.asarray(poly, np.float64)), kind))


def _lane_budget_segments(spec, n_lanes_total: int, length: float) -> int:
    """How many segments to split each lane of a corridor into (accuracy vs. lane budget)."""
    per = spec.num_lanes // max(1, n_lanes_total)
    want = int(np.ceil(length / 90.0))
    return int(max(1, min(per, want, 4)))


# ----------------------------------------------------------------------------------------------------
# Corridor roads (straight / curved, one-way / two-way).

@dataclasses.dataclass
class Corridor:
    ref: Path                    # reference line (left edge of the forward lanes), in forward direction
    widths: float                # lane width (m)
    n_fwd: int
    n_back: int
    u0: float                    # reference arc length range covered by the road
    u1: float
    speed_limit: float
    _cache: dict = dataclasses.field(default_factory=dict)

    def fwd_offset(self, k: int) -> float:
        """Lateral offset (left +) of forward lane k's centre; k = 0 is the leftmost forward lane."""
        return -(k + 0.5) * self.widths

    def back_offset(self, j: int) -> float:
        return (j + 0.5) * self.widths

    def fwd_path(self, k: int) -> Path:
        key = ("fwd", k)
        if key not in self._cache:
            self._cache[key] = lane_path(self.ref, self.fwd_offset(k), self.u0, self.u1, +1)
        return self._cache[key]

    def back_path(self, j: int) -> Path:
        key = ("back", j)
        if key not in self._cache:
            self._cache[key] = lane_path(self.ref, self.back_offset(j), self.u0, self.u1, -1)
        return self._cache[key]


def lane_path(ref: Path, offset: float, u0: float, u1: float, direction: int, ds: float = 1.0) -> Path:
    n = max(2, int(np.ceil((u1 - u0) / ds)) + 1)
    u = np.linspace(u0, u1, n)
    pts = ref.offset_points(u, offset)
    return Path(pts if direction > 0 else pts[::-1])


def corridor_reference(p0, h0, pieces: Sequence[Tuple[str, float, float]]) -> Path:
    """Chain of ('straight', length, 0) / ('arc', radius, angle) pieces from (p0, h0)."""
    pts = [np.asarray(p0, float)[None]]
    p, h = np.asarray(p0, float), float(h0)
    for kind, a, b in pieces:
        if kind == "straight":
            q = straight_pts(p, h, a)
        else:
            q = arc_pts(p, h, a, b)
            h += b
        pts.append(q[1:])
        p = q[-1]
    return Path(np.concatenate(pts))


def build_corridor(mb: MapBuilder, cor: Corridor) -> None:
    """Add the lanes, roadblocks and markings of a corridor road to ``mb``."""
    spec = mb.spec
    w = cor.widths
    n_tot = cor.n_fwd + cor.n_back
    straight = float(np.ptp(cor.ref.h)) < 1e-6
    # A straight road is exact with one segment per lane; a curved one is split (budget allowing) so
    # that the arcs keep enough vertices. (Segment joins make the 'multiple lanes' test fire there.)
    nseg = 1 if straight else _lane_budget_segments(spec, n_tot, cor.u1 - cor.u0)
    # Shared segment boundaries on the reference (equal adaptive cost).
    bounds = adaptive_params(cor.ref, cor.u0, cor.u1, nseg + 1)
    nv = spec.lane_vertices // 2
    npnt = spec.lane_points
    nd = spec.drivable_vertices // 2
    for si in range(nseg):
        a, b = bounds[si], bounds[si + 1]
        uv = adaptive_params(cor.ref, a, b, nv)
        up = adaptive_params(cor.ref, a, b, npnt)
        ud = adaptive_params(cor.ref, a, b, nd)
        for k in range(cor.n_fwd):
            o = cor.fwd_offset(k)
            left = cor.ref.offset_points(uv, o + w / 2)
            right = cor.ref.offset_points(uv, o - w / 2)
            poly = np.concatenate([right, left[::-1]])
            cl = cor.ref.offset_points(up, o)
            mb.lanes.append(LaneRec(poly, cl, False, cor.speed_limit, key=f"fwd{k}"))
        for j in range(cor.n_back):
            o = cor.back_offset(j)
            left = cor.ref.offset_points(uv, o + w / 2)
            right = cor.ref.offset_points(uv, o - w / 2)
            poly = np.concatenate([right, left[::-1]])
            cl = cor.ref.offset_points(up, o)[::-1]
            mb.lanes.append(LaneRec(poly, cl, False, cor.speed_limit, key=f"back{j}"))
        # Roadblocks: forward (ref line .. right edge + shoulder), backward (ref line .. left edge + shoulder).
        inner = cor.ref.offset_points(ud, 0.0)
        outer_f = cor.ref.offset_points(ud, -cor.n_fwd * w - SHOULDER)
        inner_f = inner if cor.n_back else cor.ref.offset_points(ud, SHOULDER)
        mb.add_drivable(np.concatenate([outer_f, inner_f[::-1]]), 0)
        if cor.n_back:
            outer_b = cor.ref.offset_points(ud, cor.n_back * w + SHOULDER)
            mb.add_drivable(np.concatenate([inner, outer_b[::-1]]), 0)
    # Markings (dense, for the camera / BEV): edges solid, dividers dashed, centre line yellow.
    um = np.arange(cor.u0, cor.u1, 1.0)
    mb.markings.append(Marking(cor.ref.offset_points(um, -cor.n_fwd * w), 0))
    for k in range(1, cor.n_fwd):
        mb.markings.append(Marking(cor.ref.offset_points(um, -k * w), 1))
    if cor.n_back:
        mb.markings.append(Marking(cor.ref.offset_points(um, 0.0), 2))
        mb.markings.append(Marking(cor.ref.offset_points(um, cor.n_back * w), 0))
        for j in range(1, cor.n_back):
            mb.markings.append(Marking(cor.ref.offset_points(um, j * w), 1))
    else:
        mb.markings.append(Marking(cor.ref.offset_points(um, 0.0), 0))


# ----------------------------------------------------------------------------------------------------
# Signalised 4-way intersection.

@dataclasses.dataclass
class Arm:
    phi: float                   # outward direction of the arm (radians)
    h: float                     # distance of the arm's stop line from the centre
    length: float
    n_in: int
    n_out: int
    width: float
    phase: int                   # 0 = A, 1 = B

    @property
    def e(self):
        return np.array([np.cos(self.phi), np.sin(self.phi)])

    @property
    def n(self):
        return np.array([-np.sin(self.phi), np.cos(self.phi)])

    def in_offset(self, k):      # inbound lane k (0 = leftmost, next to the centre line)
        return (k + 0.5) * self.width

    def out_offset(self, k):     # outbound lane k (0 = leftmost)
        return -(k + 0.5) * self.width

    def in_path(self, k, c) -> Path:
        o = self.n * self.in_offset(k)
        p_far = c + self.e * (self.h + self.length) + o
        return Path(straight_pts(p_far, self.phi + np.pi, self.length))

    def out_path(self, k, c) -> Path:
        o = self.n * self.out_offset(k)
        return Path(straight_pts(c + self.e * self.h + o, self.phi, self.length))


@dataclasses.dataclass
class Intersection:
    centre: np.ndarray
    arms: List[Arm]              # order: 0 = ego approach (W), 1 = E (opposite), 2 = S, 3 = N
    hx: float
    hy: float
    signal: Signal
    connectors: dict             # (arm, lane, movement) -> Path
    speed_limit: float


def arm_lookup(arms, direction):
    """Index of the arm whose outward direction is closest to ``direction`` (radians)."""
    d = [abs(np.angle(np.exp(1j * (a.phi - direction)))) for a in arms]
    return int(np.argmin(d))


def build_intersection(mb: MapBuilder, centre, heading, n_main: int, n_cross: int, w_main: float,
                       w_cross: float, margin: float, arm_lengths: Sequence[float], signal: Signal,
                       speed_limit: float, one_way_cross: bool = False) -> Intersection:
    """Build a 4-way intersection centred at ``centre``; the ego approaches along ``heading``.

    Arms: 0 = ego approach (from behind), 1 = opposite, 2 = right-hand side, 3 = left-hand side
    (relative to the ego's travel direction). Adds lanes, connectors (with lights), roadblocks, the
    intersection polygon, crosswalks and markings to ``mb``.
    """
    c = np.asarray(centre, float)
    hx = n_cross * w_cross + margin
    hy = n_main * w_main + margin
    arms = [
        Arm(heading + np.pi, hx, arm_lengths[0], n_main, n_main, w_main, 0),
        Arm(heading, hx, arm_lengths[1], n_main, n_main, w_main, 0),
        Arm(heading - np.pi / 2, hy, arm_lengths[2], n_cross, n_cross, w_cross, 1),
        Arm(heading + np.pi / 2, hy, arm_lengths[3], n_cross, n_cross, w_cross, 1),
    ]
    spec = mb.spec
    nv, npnt = spec.lane_vertices // 2, spec.lane_points
    # Arm lanes and roadblocks.
    for ai, arm in enumerate(arms):
        for k in range(arm.n_in):
            p = arm.in_path(k, c)
            mb.lane_paths[("in", ai, k)] = p
            mb.lanes.append(_straight_lane(p, arm.width, nv, npnt, speed_limit, f"in{ai}_{k}"))
        for k in range(arm.n_out):
            p = arm.out_path(k, c)
            mb.lane_paths[("out", ai, k)] = p
            mb.lanes.append(_straight_lane(p, arm.width, nv, npnt, speed_limit, f"out{ai}_{k}"))
        e, n = arm.e, arm.n
        a0, a1 = c + e * arm.h, c + e * (arm.h + arm.length)
        rb_in = [a0, a1, a1 + n * (arm.n_in * arm.width + SHOULDER), a0 + n * (arm.n_in * arm.width + SHOULDER)]
        rb_out = [a0 - n * (arm.n_out * arm.width + SHOULDER), a1 - n * (arm.n_out * arm.width + SHOULDER), a1, a0]
        mb.add_drivable(np.array(rb_in), 0)
        mb.add_drivable(np.array(rb_out), 0)
        # Markings on the arm.
        um = np.linspace(0.0, arm.length, max(2, int(arm.length)))
        base = a0[None] + e[None] * um[:, None]
        mb.markings.append(Marking(base, 2))
        mb.markings.append(Marking(base + n * arm.n_in * arm.width, 0))
        mb.markings.append(Marking(base - n * arm.n_out * arm.width, 0))
        for k in range(1, arm.n_in):
            mb.markings.append(Marking(base + n * k * arm.width, 1))
        for k in range(1, arm.n_out):
            mb.markings.append(Marking(base - n * k * arm.width, 1))
        # Stop line across the inbound lanes and a crosswalk just inside the intersection.
        mb.markings.append(Marking(np.stack([a0, a0 + n * arm.n_in * arm.width]), 0))
        cw0, cw1 = arm.h - 3.5, arm.h - 0.7
        wl, wr = arm.n_in * arm.width, arm.n_out * arm.width
        mb.crosswalks.append(np.array([c + e * cw0 - n * wr, c + e * cw1 - n * wr,
                                       c + e * cw1 + n * wl, c + e * cw0 + n * wl]))
    # Intersection polygon (a rectangle in the road frame).
    ex, ey = arms[1].e, arms[3].e
    square = np.array([c - ex * hx - ey * hy, c + ex * hx - ey * hy, c + ex * hx + ey * hy, c - ex * hx + ey * hy])
    mb.add_drivable(square, 1)
    # Connectors.
    conns = {}
    for ai, arm in enumerate(arms):
        travel = arm.phi + np.pi
        left_arm = arm_lookup(arms, travel + np.pi / 2)
        right_arm = arm_lookup(arms, travel - np.pi / 2)
        straight_arm = arm_lookup(arms, travel)
        moves = [("straight", k, straight_arm, min(k, arms[straight_arm].n_out - 1)) for k in range(arm.n_in)]
        moves.append(("left", 0, left_arm, 0))
        moves.append(("right", arm.n_in - 1, right_arm, arms[right_arm].n_out - 1))
        for mv, k, bi, kb in moves:
            b = arms[bi]
            p0 = c + arm.e * arm.h + arm.n * arm.in_offset(k)
            p3 = c + b.e * b.h + b.n * b.out_offset(kb)
            pts = bezier_pts(p0, travel, p3, b.phi)
            path = Path(pts)
            conns[(ai, k, mv)] = path
            mb.lane_paths[("conn", ai, k, mv)] = path
            wdt = 0.5 * (arm.width + b.width)
            uv = adaptive_params(path, 0.0, path.length, nv)
            up = adaptive_params(path, 0.0, path.length, npnt)
            left = path.offset_points(uv, wdt / 2)
            right = path.offset_points(uv, -wdt / 2)
            poly = np.concatenate([right, left[::-1]])
            x, y, _ = path.at(up)
            mb.lanes.append(LaneRec(poly, np.stack([x, y], -1), True, speed_limit,
                                    light=(signal, arm.phase), key=f"conn{ai}_{k}_{mv}"))
    return Intersection(c, arms, hx, hy, signal, conns, speed_limit)


def _straight_lane(p: Path, width: float, nv: int, npnt: int, limit: float, key: str) -> LaneRec:
    uv = np.linspace(0.0, p.length, nv)
    up = np.linspace(0.0, p.length, npnt)
    left = p.offset_points(uv, width / 2)
    right = p.offset_points(uv, -width / 2)
    x, y, _ = p.at(up)
    return LaneRec(np.concatenate([right, left[::-1]]), np.stack([x, y], -1), False, limit, key=key)


def carpark_polygon(ref: Path, u: float, side_offset: float, length: float, depth: float) -> np.ndarray:
    """A rectangular car park beside a road: along the reference at [u, u + length], starting
    ``side_offset`` to the left (negative = right) and extending ``depth`` further outwards."""
    sgn = np.sign(side_offset) if side_offset != 0 else -1.0
    uu = np.array([u, u + length])
    a = ref.offset_points(uu, side_offset)
    b = ref.offset_points(uu, side_offset + sgn * depth)
    return np.array([a[0], a[1], b[1], b[0]])
