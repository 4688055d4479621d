"""Road geometry of the embedded world (numpy, world frame; metres, radians, right-hand traffic).

Building blocks:

* :class:`Path` — a dense polyline with arc length ``s``, unwrapped heading and curvature; ``at(s)``
  interpolates (and extrapolates linearly past both ends), ``project(points)`` gives (s, lateral offset,
  positive to the left).
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

Budgets: every output list is reduced to the SceneSpec sizes by priority (on-route first, then distance
to the ego), never overflowing them; polygons and centerlines are resampled adaptively (more vertices
where the heading changes) to the spec's vertex counts.
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence, Tuple

import numpy as np
from scipy.spatial import cKDTree

SHOULDER = 0.5          # metres of paved shoulder outside the outermost lane of a roadblock


# ----------------------------------------------------------------------------------------------------
# Paths.

class Path:
    """Dense polyline ``xy`` [N, 2] (metres) with arc length ``s`` [N], heading ``h`` [N] (unwrapped,
    radians) and curvature ``k`` [N] (1/m)."""

    __slots__ = ("xy", "s", "h", "k", "length", "_tree")

    def __init__(self, xy):
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        d = np.diff(xy, axis=0)
        seg = np.hypot(d[:, 0], d[:, 1])
        keep = np.concatenate([[True], seg > 1e-6])
        if not keep.all():
            xy = xy[keep]
            d = np.diff(xy, axis=0)
            seg = np.hypot(d[:, 0], d[:, 1])
        if len(xy) < 2:
            raise ValueError("Path needs at least 2 distinct points")
        self.xy = xy
        self.s = np.concatenate([[0.0], np.cumsum(seg)])
        self.length = float(self.s[-1])
        hs = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
        h = np.empty(len(xy))
        h[0], h[-1] = hs[0], hs[-1]
        h[1:-1] = 0.5 * (hs[:-1] + hs[1:])
        self.h = h
        self.k = np.gradient(h, self.s) if len(xy) > 2 else np.zeros(len(xy))
        self._tree = None

    def at(self, s) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, heading) at arc length(s) ``s`` (any shape); linear extrapolation past the ends."""
        s = np.asarray(s, np.float64)
        sc = np.clip(s, 0.0, self.length)
        x = np.interp(sc, self.s, self.xy[:, 0])
        y = np.interp(sc, self.s, self.xy[:, 1])
        h = np.interp(sc, self.s, self.h)
        extra = s - sc
        return x + extra * np.cos(h), y + extra * np.sin(h), h

    def curvature(self, s) -> np.ndarray:
        return np.interp(s, self.s, self.k)

    def offset_points(self, s, d) -> np.ndarray:
        """[..., 2] points at arc length ``s`` shifted ``d`` metres to the left."""
        x, y, h = self.at(s)
        return np.stack([x - np.sin(h) * d, y + np.cos(h) * d], -1)

    def project(self, pts) -> Tuple[np.ndarray, np.ndarray]:
        """Project points [M, 2] -> (s [M], lateral [M], positive left). Extrapolates past the ends.

        Nearest vertex by a KD-tree, then the better of its two adjacent segments (exact for dense,
        smooth polylines such as these paths)."""
        p = np.asarray(pts, np.float64).reshape(-1, 2)
        if self._tree is None:
            self._tree = cKDTree(self.xy)
        _, iv = self._tree.query(p)
        nseg = len(self.xy) - 1
        best_s = best_lat = best_d = None
        for i in (np.clip(iv - 1, 0, nseg - 1), np.clip(iv, 0, nseg - 1)):
            a = self.xy[i]
            ab = self.xy[i + 1] - a
            l2 = np.maximum((ab * ab).sum(-1), 1e-12)
            ap = p - a
            t = (ap * ab).sum(-1) / l2
            tc = np.clip(t, 0.0, 1.0)
            te = np.where((i == 0) & (t < 0), t, np.where((i == nseg - 1) & (t > 1), t, tc))
            diff = ap - tc[:, None] * ab
            dist = (diff * diff).sum(-1)
            seglen = np.sqrt(l2)
            s = self.s[i] + te * seglen
            lat = (ab[:, 0] * ap[:, 1] - ab[:, 1] * ap[:, 0]) / seglen
            if best_d is None:
                best_s, best_lat, best_d = s, lat, dist
            else:
                better = dist < best_d
                best_s = np.where(better, s, best_s)
                best_lat = np.where(better, lat, best_lat)
        return best_s, best_lat

    def sub(self, s0: float, s1: float, ds: float = 1.0) -> "Path":
        n = max(2, int(np.ceil((s1 - s0) / ds)) + 1)
        s = np.linspace(s0, s1, n)
        x, y, _ = self.at(s)
        return Path(np.stack([x, y], -1))


def straight_pts(p0, heading, length, ds=1.0) -> np.ndarray:
    n = max(2, int(np.ceil(length / ds)) + 1)
    t = np.linspace(0.0, length, n)
    return np.stack([p0[0] + t * np.cos(heading), p0[1] + t * np.sin(heading)], -1)


def arc_pts(p0, heading, radius, angle, ds=1.0) -> np.ndarray:
    """Arc from p0 with initial heading; ``angle`` > 0 turns left (counter-clockwise)."""
    length = abs(angle) * radius
    n = max(2, int(np.ceil(length / ds)) + 1)
    sgn = np.sign(angle)
    cx = p0[0] - sgn * radius * np.sin(heading)
    cy = p0[1] + sgn * radius * np.cos(heading)
    phi = np.linspace(0.0, angle, n)
    a0 = heading - sgn * np.pi / 2
    return np.stack([cx + radius * np.cos(a0 + phi), cy + radius * np.sin(a0 + phi)], -1)


def bezier_pts(p0, h0, p3, h3, ds=0.5) -> np.ndarray:
    """Cubic Bezier from (p0, heading h0) to (p3, heading h3); handles sized from the tangent corner."""
    p0 = np.asarray(p0, float)
    p3 = np.asarray(p3, float)
    d0 = np.array([np.cos(h0), np.sin(h0)])
    d3 = np.array([np.cos(h3), np.sin(h3)])
    chord = np.linalg.norm(p3 - p0)
    den = d0[0] * d3[1] - d0[1] * d3[0]
    if abs(den) < 1e-6:
        k0 = k3 = chord / 3.0
    else:
        r = p3 - p0
        t0 = (r[0] * d3[1] - r[1] * d3[0]) / den      # distance along d0 to the tangent corner
        t3 = (r[0] * d0[1] - r[1] * d0[0]) / den      # signed distance from p3 back along d3
        k0 = 0.5523 * max(abs(t0), 0.2 * chord)
        k3 = 0.5523 * max(abs(t3), 0.2 * chord)
    p1 = p0 + k0 * d0
    p2 = p3 - k3 * d3
    n = max(4, int(np.ceil(1.3 * chord / ds)) + 1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return ((1 - t) ** 3) * p0 + 3 * ((1 - t) ** 2) * t * p1 + 3 * (1 - t) * t * t * p2 + (t ** 3) * p3


def adaptive_params(path: Path, s0: float, s1: float, n: int, alpha: float = 40.0) -> np.ndarray:
    """``n`` arc-length samples in [s0, s1], denser where the heading turns (cost = s + alpha·|Δh|)."""
    m = np.searchsorted(path.s, [s0, s1])
    ss = np.concatenate([[s0], path.s[m[0]:m[1]], [s1]])
    hh = np.interp(ss, path.s, path.h)
    cost = np.concatenate([[0.0], np.cumsum(np.diff(ss) + alpha * np.abs(np.diff(hh)))])
    if cost[-1] <= 0:
        return np.linspace(s0, s1, n)
    return np.interp(np.linspace(0.0, cost[-1], n), cost, ss)


def ccw(poly: np.ndarray) -> np.ndarray:
    """Return the polygon [k, 2] in counter-clockwise order."""
    x, y = poly[:, 0], poly[:, 1]
    area = 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)
    return poly if area >= 0 else poly[::-1].copy()


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


def _arm_lookup(arms, direction):
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
        left_arm = _arm_lookup(arms, travel + np.pi / 2)
        right_arm = _arm_lookup(arms, travel - np.pi / 2)
        straight_arm = _arm_lookup(arms, travel)
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
