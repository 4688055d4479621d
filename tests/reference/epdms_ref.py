"""An independent EPDMS reference scorer: plain numpy + shapely + scipy, one trajectory at a time.

Written from shared/EPDMS.md and shared/epdms_vectors/README.md (facts and numbers of the NAVSIM v2.2
devkit), sharing no code with ``irlvla_jax.scoring``. It is slow (shapely, Python loops) and meant only as
a second opinion for tests and benchmarks.

Frames and units: everything is in the ego rear-axle frame at t0 (x forward, y left, heading CCW),
metres, seconds, radians. A trajectory is 8 poses (x, y, heading) at 0.5 ... 4.0 s. A "state" row has
11 entries (see ``S_*``): pose of the rear axle, body-frame velocity and acceleration, steering angle and
rate, yaw rate and yaw acceleration.

Public API:
    score_one(scene, traj [8,3], prev_traj=None, mode="tracked"|"direct", human_filter=True) -> dict
    score_scene(scene, trajs [N,8,3], prevs=None|[N,8,3], mode=..., human_filter=True) -> list[dict]
``prev_traj`` is the previous frame's plan in the ego frame at t = -0.5 s (like the official vectors);
it is simulated from the logged ego state at -0.5 s (``scene.ego_past[10]``), steering 0.

Devkit quirks reproduced on purpose (each named where it happens):
  * TTC tests "in intersection" at the rear axle, the other flags at the box centre.
  * NC/TTC take the object's "stopped" state from its first occurrence.
  * HC history is -1.5 ... -0.2 s (the -0.1 s sample is dropped), and the shifted-to-centre lateral
    acceleration is the rear-axle one (the devkit's rigid-body shift adds ω² and α terms along x only).
  * The yaw-rate Savitzky-Golay window is 5 (the devkit passes no window to its derivative helper).
  * PDM-Closed: leading agents refreshed every 2 steps with a zero "leading agent" at step 1, the
    leading-agent record is shared across the proposals of one path within a step.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional

import numpy as np
import shapely
from scipy.signal import savgol_filter
from shapely.geometry import LineString, Point, Polygon
from shapely.ops import substring as shp_substring

# ---------------------------------------------------------------------------------------------------
# Constants (EPDMS.md).
DT = 0.1
T = 41
WIDTH, LENGTH, FRONT, REAR, WHEELBASE = 2.297, 5.176, 4.049, 1.127, 3.089
CENTER_OFFSET = LENGTH / 2 - REAR  # 1.461 m from rear axle to box centre
S_X, S_Y, S_H, S_VX, S_VY, S_AX, S_AY, S_STEER, S_STEER_RATE, S_YAW_RATE, S_YAW_ACC = range(11)
NS = 11
VEHICLE, PEDESTRIAN, BICYCLE, STATIC = 0, 1, 2, 3
SUB_SCORES = ("NC", "DAC", "DDC", "TLC", "EP", "TTC", "LK", "HC", "EC")
FILTERED = ("NC", "DAC", "DDC", "TLC", "EP", "TTC", "LK", "HC")


def wrap(a):
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


# ---------------------------------------------------------------------------------------------------
# 8 poses -> 41 reference poses.

def interpolate_poses(traj: np.ndarray, start_pose=(0.0, 0.0, 0.0), t_start: float = 0.0) -> np.ndarray:
    """[8, 3] poses at 0.5..4.0 s after ``start_pose`` -> [41, 3] poses every 0.1 s (linear x, y; angular h)."""
    traj = np.asarray(traj, np.float64).reshape(8, 3)
    knots_t = np.arange(9) * 0.5
    knots = np.concatenate([np.asarray(start_pose, np.float64)[None], traj], 0)
    h = np.unwrap(knots[:, 2])
    tq = np.round(np.arange(T) * DT, 6)
    out = np.empty((T, 3))
    out[:, 0] = np.interp(tq, knots_t, knots[:, 0])
    out[:, 1] = np.interp(tq, knots_t, knots[:, 1])
    out[:, 2] = wrap(np.interp(tq, knots_t, h))
    return out


def relative_to_absolute(origin, poses):
    """Poses [K, 3] in the frame of ``origin`` (x, y, h) -> the frame where origin lives."""
    ox, oy, oh = origin
    c, s = math.cos(oh), math.sin(oh)
    p = np.asarray(poses, np.float64)
    out = np.empty_like(p)
    out[:, 0] = ox + c * p[:, 0] - s * p[:, 1]
    out[:, 1] = oy + s * p[:, 0] + c * p[:, 1]
    out[:, 2] = wrap(oh + p[:, 2])
    return out


def initial_state(row7) -> np.ndarray:
    """(x, y, h, vx, vy, ax, ay) -> state row with steering, yaw rate and yaw acceleration 0."""
    s = np.zeros(NS)
    s[:7] = np.asarray(row7, np.float64)[:7]
    return s


# ---------------------------------------------------------------------------------------------------
# Direct mode: finite differences of the interpolated poses.

def direct_states(poses: np.ndarray, init: np.ndarray) -> np.ndarray:
    """[41, 3] poses -> [41, 11] states; state 0 is ``init`` (the logged ego state)."""
    st = np.zeros((len(poses), NS))
    st[:, :3] = poses
    h = np.unwrap(poses[:, 2])
    gv = np.stack([np.gradient(poses[:, 0], DT), np.gradient(poses[:, 1], DT)], -1)
    ga = np.stack([np.gradient(gv[:, 0], DT), np.gradient(gv[:, 1], DT)], -1)
    c, s = np.cos(poses[:, 2]), np.sin(poses[:, 2])
    st[:, S_VX] = c * gv[:, 0] + s * gv[:, 1]
    st[:, S_VY] = -s * gv[:, 0] + c * gv[:, 1]
    st[:, S_AX] = c * ga[:, 0] + s * ga[:, 1]
    st[:, S_AY] = -s * ga[:, 0] + c * ga[:, 1]
    st[:, S_YAW_RATE] = np.gradient(h, DT)
    st[:, S_YAW_ACC] = np.gradient(st[:, S_YAW_RATE], DT)
    st[0] = init
    return st


# ---------------------------------------------------------------------------------------------------
# Tracked mode: LQR tracker on a kinematic bicycle (EPDMS.md numbers).

Q_LON, R_LON = 10.0, 1.0
Q_LAT = np.diag([1.0, 10.0, 0.0])
R_LAT = 1.0
HORIZON = 10
JERK_PENALTY, CURV_RATE_PENALTY, INIT_CURV_PENALTY = 1e-4, 1e-2, 1e-10
STOP_GAIN, STOP_VEL = 0.5, 0.2
TAU_ACC, TAU_STEER, MAX_STEER = 0.2, 0.05, np.pi / 3


def _fit_profiles(poses: np.ndarray):
    """Regularised least-squares velocity and curvature profiles ([M] each, M = len(poses) - 1)."""
    d = np.diff(poses, axis=0)
    dxy, dh = d[:, :2], wrap(d[:, 2])
    m = len(d)
    head = poses[:-1, 2]
    # displacement_i = dt * (v0 + dt * sum_{k<i} a_k) * (cos h_i, sin h_i); unknowns [v0, a_0..a_{m-2}]
    A = np.zeros((2 * m, m))
    cs = np.stack([np.cos(head), np.sin(head)], -1).reshape(-1)
    A[:, 0] = cs * DT
    for i in range(m):
        A[2 * i:2 * i + 2, 1:i + 1] = cs[2 * i:2 * i + 2, None] * DT ** 2
    # Devkit quirk: its "banded difference" matrix (m-2 rows over the m-1 accelerations) is filled by
    # writing +1 on the upper diagonal and then -1 on the main diagonal of the leading square block, which
    # wipes all upper +1 entries but the last row's. So the penalty is mostly on the accelerations
    # themselves, not on their differences. Reproduced as is (the official numbers depend on it).
    Rj = np.zeros((m - 2, m))
    for i in range(m - 2):
        Rj[i, i + 1] = -1.0
    Rj[m - 3, m - 1] = 1.0
    sol = np.linalg.pinv(A.T @ A + JERK_PENALTY * Rj.T @ Rj) @ A.T @ dxy.reshape(-1)
    vel = sol[0] + np.concatenate([[0.0], np.cumsum(sol[1:] * DT)])
    # heading_disp_i = dt * v_i * (k0 + dt * sum_{k<i} kr_k); unknowns [k0, kr_0..kr_{m-2}]
    B = np.tril(np.ones((m, m)))
    B[:, 0] = vel * DT
    B[1:, 1:] *= (vel[1:] * DT ** 2)[:, None]
    Q = CURV_RATE_PENALTY * np.eye(m)
    Q[0, 0] = INIT_CURV_PENALTY
    sol2 = np.linalg.pinv(B.T @ B + Q) @ B.T @ dh
    curv = sol2[0] + np.concatenate([[0.0], np.cumsum(sol2[1:] * DT)])
    return vel, curv


def _bicycle_step(s: np.ndarray, accel_cmd: float, steer_rate_cmd: float) -> np.ndarray:
    """One Euler step (0.1 s) of the kinematic bicycle with first-order actuator lags."""
    acc = DT / (DT + TAU_ACC) * (accel_cmd - s[S_AX]) + s[S_AX]
    ideal_steer = DT * steer_rate_cmd + s[S_STEER]
    new_steer_unclipped = DT / (DT + TAU_STEER) * (ideal_steer - s[S_STEER]) + s[S_STEER]
    steer_rate = (new_steer_unclipped - s[S_STEER]) / DT
    v, h = s[S_VX], s[S_H]
    out = s.copy()
    out[S_X] = s[S_X] + DT * v * math.cos(h)
    out[S_Y] = s[S_Y] + DT * v * math.sin(h)
    out[S_H] = float(wrap(h + DT * v * math.tan(s[S_STEER]) / WHEELBASE))
    out[S_VX] = v + DT * acc
    out[S_VY] = 0.0
    out[S_STEER] = float(np.clip(s[S_STEER] + DT * steer_rate, -MAX_STEER, MAX_STEER))
    out[S_YAW_RATE] = out[S_VX] * math.tan(out[S_STEER]) / WHEELBASE
    out[S_AX], out[S_AY] = acc, 0.0
    out[S_YAW_ACC] = (out[S_YAW_RATE] - s[S_YAW_RATE]) / DT
    out[S_STEER_RATE] = steer_rate
    return out


def tracked_states(ref: np.ndarray, init: np.ndarray) -> np.ndarray:
    """Track reference poses [41, 3] from state ``init`` -> simulated states [41, 11]."""
    vel, curv = _fit_profiles(ref)
    m = len(vel)
    out = np.zeros((len(ref), NS))
    out[0] = init
    for k in range(1, len(ref)):
        s = out[k - 1]
        i = k - 1
        r = ref[i]
        ex, ey = s[S_X] - r[0], s[S_Y] - r[1]
        lat = -ex * math.sin(r[2]) + ey * math.cos(r[2])
        herr = float(wrap(s[S_H] - r[2]))
        v0 = s[S_VX]
        ridx = min(i + HORIZON, m - 1)
        vref = vel[ridx]
        kap = np.empty(HORIZON)
        n = ridx - i
        kap[:n] = curv[i:ridx]
        kap[n:] = curv[ridx]
        if vref <= STOP_VEL and v0 <= STOP_VEL:
            acc, sr = -STOP_GAIN * (v0 - vref), 0.0
        else:
            b = HORIZON * DT
            acc = -(b * Q_LON * (v0 - vref)) / (b * Q_LON * b + R_LON)
            vprof = v0 + DT * acc * np.arange(HORIZON)
            A = np.eye(3)
            Bm = np.zeros(3)
            g = np.zeros(3)
            for j in range(HORIZON):
                Aj = np.eye(3)
                Aj[0, 1] = vprof[j] * DT
                Aj[1, 2] = vprof[j] * DT / WHEELBASE
                aff = np.array([0.0, -vprof[j] * kap[j] * DT, 0.0])
                A = Aj @ A
                Bm = Aj @ Bm + np.array([0.0, 0.0, DT])
                g = Aj @ g + aff
            x0 = np.array([lat, herr, s[S_STEER]])
            e = A @ x0 + g
            e[1:] = np.arctan2(np.sin(e[1:]), np.cos(e[1:]))
            bq = Bm @ Q_LAT
            sr = -(bq @ e) / (bq @ Bm + R_LAT)
        out[k] = _bicycle_step(s, acc, sr)
    return out


def simulate(traj, init_row7, mode: str, start_pose=None) -> np.ndarray:
    """8 poses (frame of ``start_pose``, default the t0 frame) -> [41, 11] states in the t0 frame."""
    init = initial_state(init_row7)
    if start_pose is None:
        poses = interpolate_poses(traj, init[:3])
    else:
        poses = interpolate_poses(relative_to_absolute(start_pose, traj), init[:3])
    return states_from_reference(poses, init, mode)


def states_from_reference(poses, init, mode):
    if mode == "tracked":
        return tracked_states(poses, init)
    if mode == "direct":
        return direct_states(poses, init)
    raise ValueError(f"mode must be 'tracked' or 'direct', got {mode!r}")


# ---------------------------------------------------------------------------------------------------
# Geometry of the ego box.

def ego_corners(state) -> np.ndarray:
    """[4, 2] corners FL, RL, RR, FR of the ego box for a rear-axle state."""
    x, y, h = state[0], state[1], state[2]
    c, s = math.cos(h), math.sin(h)
    cx, cy = x + CENTER_OFFSET * c, y + CENTER_OFFSET * s
    hl, hw = LENGTH / 2, WIDTH / 2
    pts = []
    for lo, la in ((hl, hw), (-hl, hw), (-hl, -hw), (hl, -hw)):
        pts.append((cx + lo * c - la * s, cy + lo * s + la * c))
    return np.array(pts)


def ego_center(state) -> np.ndarray:
    return np.array([state[0] + CENTER_OFFSET * math.cos(state[2]), state[1] + CENTER_OFFSET * math.sin(state[2])])


def box_polygon(x, y, h, length, width) -> Polygon:
    c, s = math.cos(h), math.sin(h)
    hl, hw = length / 2, width / 2
    return Polygon([(x + lo * c - la * s, y + lo * s + la * c)
                    for lo, la in ((hl, hw), (-hl, hw), (-hl, -hw), (hl, -hw))])


def relative_angle(ego_pose, point) -> float:
    """|angle| between ego heading and the direction from the ego rear axle to ``point``."""
    ang = math.atan2(point[1] - ego_pose[1], point[0] - ego_pose[0])
    return abs(float(wrap(ang - ego_pose[2])))


# ---------------------------------------------------------------------------------------------------
# The world as the reference sees it (built once per scene).

class Obj:
    __slots__ = ("token", "kind", "is_agent", "stopped", "polys", "red", "first_box", "first_vel")

    def __init__(self, token, kind, is_agent, stopped, polys, red=False):
        self.token, self.kind, self.is_agent, self.stopped, self.polys, self.red = (
            token, kind, is_agent, stopped, polys, red)


class World:
    """Map layers and per-step obstacles of one scene (numpy Scene, unbatched)."""

    def __init__(self, scene):
        a = lambda f: np.asarray(getattr(scene, f))
        self.scene = scene
        lv, lvv, lval = a("lane_polygons"), a("lane_vertex_valid"), a("lane_valid")
        self.lanes = []          # (polygon, on_route, is_connector, centerline [P,2], speed_limit)
        lc, lpv = a("lane_centerlines"), a("lane_point_valid")
        for i in np.nonzero(lval)[0]:
            poly = shapely.make_valid(Polygon(lv[i][lvv[i]]))
            self.lanes.append((poly, bool(a("lane_on_route")[i]), bool(a("lane_is_connector")[i]),
                               lc[i][lpv[i]].astype(np.float64), float(a("lane_speed_limit")[i])))
        dv, dvv, dval, dk = a("drivable_polygons"), a("drivable_vertex_valid"), a("drivable_valid"), a("drivable_kind")
        self.drivable, self.intersections = [], []
        for i in np.nonzero(dval)[0]:
            poly = shapely.make_valid(Polygon(dv[i][dvv[i]]))
            self.drivable.append(poly)
            if int(dk[i]) == 1:
                self.intersections.append(poly)
        route = a("route")[a("route_valid")].astype(np.float64)
        self.route_xy = route
        self.route_ls = LineString(route)
        # lights
        self.lights = []         # (polygon, red [9])
        sv, svv, sval, son, sred = (a("light_polygons"), a("light_vertex_valid"), a("light_valid"),
                                    a("light_on_route"), a("light_red"))
        for i in np.nonzero(sval & son)[0]:
            self.lights.append((shapely.make_valid(Polygon(sv[i][svv[i]])), sred[i].astype(bool)))
        # agents
        boxes, vel, typ, valid = a("agent_boxes"), a("agent_velocity"), a("agent_type"), a("agent_valid")
        self.agents = []
        for j in range(boxes.shape[0]):
            if not valid[j].any():
                continue
            first = int(np.argmax(valid[j]))
            kind = int(typ[j])
            is_agent = kind != STATIC
            stopped = (not is_agent) or float(np.hypot(*vel[j, first])) <= 0.05
            polys = [box_polygon(*boxes[j, t]) if valid[j, t] else None for t in range(boxes.shape[1])]
            self.agents.append(Obj(f"agent_{j}", kind, is_agent, stopped, polys))
            self.agents[-1].first_box = boxes[j, first].astype(np.float64)
            self.agents[-1].first_vel = vel[j, first].astype(np.float64)
        self._area_cache = {}

    # --- per-step observation for the scorer: agents at step t plus red-light polygons at step t.
    def observation(self):
        obs = []
        for t in range(T):
            items = [(o, o.polys[t]) for o in self.agents if o.polys[t] is not None]
            for k, (poly, red) in enumerate(self.lights):
                if red[min(t // 5, len(red) - 1)]:
                    items.append((Obj(f"red_light_{k}", -1, False, True, None, red=True), poly))
            obs.append(items)
        return obs

    # --- ego areas
    def areas(self, states: np.ndarray) -> Dict[str, np.ndarray]:
        n = len(states)
        multi = np.zeros(n, bool)
        nondriv = np.zeros(n, bool)
        oncoming = np.zeros(n, bool)
        inter_c = np.zeros(n, bool)
        inter_r = np.zeros(n, bool)
        for t in range(n):
            corners = [Point(*p) for p in ego_corners(states[t])]
            c = Point(*ego_center(states[t]))
            counts = [sum(lp.contains(p) for p in corners) for lp, *_ in self.lanes]
            multi[t] = sum(k > 0 for k in counts) > 1 and all(k != 4 for k in counts)
            nondriv[t] = sum(any(d.contains(p) for d in self.drivable) for p in corners) < 4
            oncoming[t] = not any(lp.contains(c) for lp, on, *_ in self.lanes if on)
            inter_c[t] = any(ip.contains(c) for ip in self.intersections)
            inter_r[t] = any(ip.contains(Point(states[t][0], states[t][1])) for ip in self.intersections)
        return {"multi": multi, "nondrivable": nondriv, "oncoming": oncoming, "inter_center": inter_c,
                "inter_rear": inter_r}


# ---------------------------------------------------------------------------------------------------
# Metrics on one simulated trajectory.

def metric_nc(states, polys, areas, obs):
    score = 1.0
    excused = set()
    for t in range(len(states)):
        ego = polys[t]
        fe = None
        for o, opoly in obs[t]:
            if o.red or o.token in excused or not ego.intersects(opoly):
                continue
            st = states[t]
            speed = math.hypot(st[S_VX], st[S_VY])
            if speed <= 0.05:
                ctype = "stopped_ego"
            elif o.stopped:  # quirk: "stopped" from the object's first occurrence
                ctype = "stopped_track"
            elif relative_angle(st[:3], (opoly.centroid.x, opoly.centroid.y)) > np.deg2rad(150):
                ctype = "rear"
            else:
                if fe is None:
                    cs = ego_corners(st)
                    fe = LineString([cs[0], cs[3]])
                ctype = "front" if fe.intersects(opoly) else "lateral"
            at_fault = ctype in ("front", "stopped_track") or (
                ctype == "lateral" and (areas["multi"][t] or areas["nondrivable"][t]))
            if at_fault:
                score = min(score, 0.0 if o.is_agent else 0.5)
            else:
                excused.add(o.token)
    return score


def metric_tlc(polys, obs):
    for t in range(len(polys)):
        for o, opoly in obs[t]:
            if o.red and polys[t].intersects(opoly):
                return 0.0
    return 1.0


def metric_ddc(states, areas):
    c = np.stack([ego_center(s) for s in states])
    d = np.zeros(len(states))
    d[1:] = np.linalg.norm(c[1:] - c[:-1], axis=-1)
    d[~areas["oncoming"] | areas["inter_center"]] = 0.0
    m = max(d[max(0, t - 10):t + 1].sum() for t in range(len(d)))
    return 1.0 if m < 2.0 else (0.5 if m < 6.0 else 0.0)


def progress_raw(states, route_ls):
    p0 = route_ls.project(Point(*ego_center(states[0])))
    p1 = route_ls.project(Point(*ego_center(states[-1])))
    return max(p1 - p0, 0.0)


def metric_ttc(states, areas, obs):
    speeds = np.hypot(states[:, S_VX], states[:, S_VY])
    excused = set()
    n_eval = len(states) - 1 - 9
    for t in range(n_eval + 1):
        if speeds[t] < 5e-3:
            # skipped objects are not excused: nothing to do at this step
            continue
        st = states[t]
        base = ego_corners(st)
        dxy = np.array([math.cos(st[2]), math.sin(st[2])]) * speeds[t]
        for fidx in (0, 3, 6, 9):
            poly = Polygon(base + dxy * (fidx * DT))
            for o, opoly in obs[t + fidx]:
                if o.red or o.token in excused or not poly.intersects(opoly):
                    continue
                cen = (opoly.centroid.x, opoly.centroid.y)
                ang = relative_angle(st[:3], cen)
                ahead = ang < np.deg2rad(30)
                behind = ang > np.deg2rad(150)
                # quirk: the intersection test of TTC uses the rear axle point
                risky = areas["multi"][t] or areas["nondrivable"][t] or areas["inter_rear"][t]
                if ahead or (risky and not behind):
                    return 0.0
                excused.add(o.token)
    return 1.0


def metric_lk(states, world, areas):
    run = 0
    for t in range(len(states)):
        if areas["inter_center"][t]:
            continue
        dev = world.route_ls.distance(Point(*ego_center(states[t])))
        run = run + 1 if dev > 0.5 else 0
        if run >= 20:
            return 0.0
    return 1.0


def _savgol_deriv(y, window, order, deriv):
    window = min(window, y.shape[-1])
    return savgol_filter(y, window_length=window, polyorder=order, deriv=deriv, delta=DT, axis=-1)


def comfort_ok(states: np.ndarray) -> bool:
    """The six history-comfort bounds (strict) on a [n, 11] state sequence at 0.1 s."""
    n = len(states)
    w = states[:, S_YAW_RATE]
    al = states[:, S_YAW_ACC]
    # box-centre acceleration with the devkit's rigid-body shift (d·ω² + d·α added to x only)
    ax_c = states[:, S_AX] + CENTER_OFFSET * w ** 2 + CENTER_OFFSET * al
    ay_c = states[:, S_AY]
    lon = np.round(savgol_filter(ax_c, window_length=min(8, n), polyorder=2, axis=-1), 8)
    lat = np.round(savgol_filter(ay_c, window_length=min(8, n), polyorder=2, axis=-1), 8)
    mag = np.round(savgol_filter(np.hypot(states[:, S_AX], states[:, S_AY]), window_length=min(8, n),
                                 polyorder=2, axis=-1), 8)
    jerk = np.round(_savgol_deriv(mag, 15, 2, 1), 8)
    lon_jerk = np.round(_savgol_deriv(lon, 15, 2, 1), 8)
    h = np.unwrap(states[:, S_H])
    yaw_rate = np.round(_savgol_deriv(h, 5, 2, 1), 8)
    yaw_acc = np.round(_savgol_deriv(h, 5, 3, 2), 8)
    return bool(np.all((lon > -4.05) & (lon < 2.40)) and np.all(np.abs(lat) < 4.89)
                and np.all(np.abs(jerk) < 8.37) and np.all(np.abs(lon_jerk) < 4.13)
                and np.all(np.abs(yaw_rate) < 0.95) and np.all(np.abs(yaw_acc) < 1.93))


def history_states(scene) -> np.ndarray:
    """Logged past at -1.5 ... -0.2 s as [14, 11] states (quirk: -0.1 s dropped)."""
    past = np.asarray(scene.ego_past, np.float64)
    return np.stack([initial_state(r) for r in past[:14]])


def metric_hc(states, scene) -> float:
    if scene is None:
        return 1.0
    return 1.0 if comfort_ok(np.concatenate([history_states(scene), states], 0)) else 0.0


def ec_features(states):
    n = len(states)
    mag = np.round(savgol_filter(np.hypot(states[:, S_AX], states[:, S_AY]), window_length=min(8, n),
                                 polyorder=2, axis=-1), 8)
    jerk = np.round(_savgol_deriv(mag, 15, 2, 1), 8)
    h = np.unwrap(states[:, S_H])
    return {"acc": mag, "jerk": jerk, "yaw_rate": np.round(_savgol_deriv(h, 5, 2, 1), 8),
            "yaw_acc": np.round(_savgol_deriv(h, 5, 2, 2), 8)}


def metric_ec(cur_states, prev_states) -> float:
    """Two-frame extended comfort: current states 0..35 vs previous plan states 5..40."""
    f1, f2 = ec_features(cur_states[:-5]), ec_features(prev_states[5:])
    rms = lambda k: float(np.sqrt(np.mean((f1[k] - f2[k]) ** 2)))
    return 1.0 if (rms("acc") <= 0.7 and rms("jerk") <= 0.5 and rms("yaw_rate") <= 0.1
                   and rms("yaw_acc") <= 0.1) else 0.0


def evaluate_states(states, world: World, obs, past_scene=None) -> Dict[str, float]:
    """All per-trajectory metrics except EP normalisation: NC DAC DDC TLC TTC LK HC and raw progress."""
    polys = [Polygon(ego_corners(s)) for s in states]
    areas = world.areas(states)
    return {
        "NC": metric_nc(states, polys, areas, obs),
        "DAC": 0.0 if areas["nondrivable"].any() else 1.0,
        "DDC": metric_ddc(states, areas),
        "TLC": metric_tlc(polys, obs),
        "TTC": metric_ttc(states, areas, obs),
        "LK": metric_lk(states, world, areas),
        "HC": metric_hc(states, past_scene),
        "progress": progress_raw(states, world.route_ls),
    }


def multiplicative(r) -> float:
    return r["NC"] * r["DAC"] * r["DDC"] * r["TLC"]


# ---------------------------------------------------------------------------------------------------
# PDM-Closed-like reference planner (for the EP normaliser).

IDM_FRACTIONS = (0.2, 0.4, 0.6, 0.8, 1.0)
IDM_MIN_GAP, IDM_HEADWAY, IDM_ACCEL, IDM_DECEL, IDM_EXP = 1.0, 1.5, 1.5, 3.0, 10
PDM_OFFSETS = (0.0, -1.0, 1.0)
PDM_FALLBACK_SPEED = 15.0
PDM_HORIZON = 50  # steps of the generated trajectory (5 s); proposals are scored on 40


class _Path:
    """Polyline with per-vertex heading (segment heading, last repeats) and arc-length interpolation."""

    def __init__(self, xy: np.ndarray):
        xy = np.asarray(xy, np.float64)
        keep = np.concatenate([[True], np.linalg.norm(np.diff(xy, axis=0), axis=-1) > 1e-9])
        xy = xy[keep]
        seg = np.diff(xy, axis=0)
        h = np.arctan2(seg[:, 1], seg[:, 0])
        h = np.concatenate([h, h[-1:]])
        self.se2 = np.concatenate([xy, np.unwrap(h)[:, None]], 1)
        self.progress = np.concatenate([[0.0], np.cumsum(np.linalg.norm(seg, axis=-1))])
        self.length = float(self.progress[-1])
        self.ls = LineString(xy)

    def interpolate(self, d):
        d = np.clip(np.atleast_1d(np.asarray(d, np.float64)), 1e-5, self.length)
        out = np.stack([np.interp(d, self.progress, self.se2[:, k]) for k in range(3)], -1)
        out[:, 2] = wrap(out[:, 2])
        return out

    def substring(self, a, b):
        a, b = np.clip(a, 0.0, self.length), np.clip(b, 0.0, self.length)
        m = (a <= self.progress) & (self.progress <= b)
        if m.sum() > 1:
            return LineString(self.se2[m, :2])
        return shp_substring(self.ls, a, b)

    def offset(self, off):
        xy = self.se2[:, :2] + off * np.stack([-np.sin(self.se2[:, 2]), np.cos(self.se2[:, 2])], -1)
        return _Path(xy)


def _pdm_observation(world: World, n_steps: int):
    """Objects at t0 forecast at constant velocity, red lights at t0 held: list over steps of items."""
    items0 = []
    c0 = ego_center(np.zeros(NS))
    for o in world.agents:
        if o.polys[0] is None:
            continue
        x, y, h, l, w = o.first_box
        if math.hypot(x - c0[0], y - c0[1]) > 100.0:  # planner's map radius around the ego centre
            continue
        if o.is_agent:
            # constant velocity along the box heading (reversed when the agent drives backwards)
            sp = float(np.hypot(*o.first_vel))
            vh = math.atan2(o.first_vel[1], o.first_vel[0])
            th = h if abs(float(wrap(h - vh))) < np.pi / 2 else h + np.pi
            v = np.array([math.cos(th) * sp, math.sin(th) * sp])
        else:
            v = np.zeros(2)
        items0.append((o, (x, y, h, l, w), v))
    reds = []
    for k, (poly, red) in enumerate(world.lights):
        if red[0]:
            reds.append((Obj(f"red_light_{k}", -1, False, True, None, red=True), poly))
    obs = []
    for t in range(n_steps + 1):
        tf = 2 * (t // 2) * DT  # the planner's observation has a 0.2 s resolution (odd steps reuse t - 1)
        step = []
        for o, (x, y, h, l, w), v in items0:
            step.append((o, box_polygon(x + v[0] * tf, y + v[1] * tf, h, l, w)))
        obs.append(step + reds)
    return obs


def _starting_lane_speed(world: World, ego_row7) -> Optional[float]:
    p = Point(0.0, 0.0)
    best, best_err = None, np.inf
    for poly, on, conn, cl, sl in world.lanes:
        if not on or not poly.intersects(p):
            continue
        if len(cl) >= 2:
            i = int(np.argmin(np.linalg.norm(cl, axis=-1)))
            j = min(i, len(cl) - 2)
            hd = math.atan2(cl[j + 1, 1] - cl[j, 1], cl[j + 1, 0] - cl[j, 0])
            err = abs(float(wrap(hd)))
        else:
            err = 0.0
        if err < best_err:
            best, best_err = sl, err
    if best is None:
        ego_poly = Polygon(ego_corners(initial_state(ego_row7)))
        center = Point(*ego_center(initial_state(ego_row7)))
        dist = np.inf
        for poly, on, conn, cl, sl in world.lanes:
            if not on:
                continue
            if poly.contains(center):
                best = sl
                break
            d = poly.distance(ego_poly)
            if d < dist:
                best, dist = sl, d
    if best is None or best <= 0:
        return None
    return best


def pdm_closed_reference(world: World, scene, mode: str):
    """Plan with the PDM-Closed-like planner; return its simulated states [41, 11] (in ``mode``)."""
    ego_row = np.asarray(scene.ego_state, np.float64)
    speed_limit = _starting_lane_speed(world, ego_row)
    if speed_limit is None:  # unknown limit of the starting lane: the planner's fallback target speed
        speed_limit = PDM_FALLBACK_SPEED
    targets = np.array(IDM_FRACTIONS) * speed_limit
    center = _Path(world.route_xy)
    paths = [center] + [center.offset(o) for o in PDM_OFFSETS[1:]]
    obs = _pdm_observation(world, PDM_HORIZON)
    ego_pt = Point(0.0, 0.0)
    v_ego = ego_row[3]
    n_prop = 40
    proposals = []  # (path_idx, long_idx, poses [51, 3], idm progress/vel arrays)
    rollouts = {}
    for pi, path in enumerate(paths):
        p0 = path.ls.project(ego_pt)
        corridor = path.substring(p0, p0 + abs(targets.max()) * PDM_HORIZON * DT).buffer(
            WIDTH / 2, cap_style="square")
        nl = len(targets)
        prog = np.zeros((nl, PDM_HORIZON + 1))
        vel = np.zeros((nl, PDM_HORIZON + 1))
        poses = np.zeros((nl, PDM_HORIZON + 1, 3))
        lead = np.zeros((nl, PDM_HORIZON + 1, 3))  # progress, velocity, rear length
        prog[:, 0], vel[:, 0] = p0, v_ego
        poses[:, 0] = path.interpolate([p0])[0]

        def step(idxs, t):
            if t % 2 != 0:
                lead[idxs, t] = lead[idxs, t - 1]
            else:
                shared = np.zeros(3)
                cand = {}
                for o, opoly in obs[t]:
                    if opoly.intersects(corridor):
                        cand[o.token] = (o, opoly, path.ls.project(opoly.centroid))
                for li in idxs:
                    cur = prog[li, t - 1]
                    ahead = [(o, op) for (o, op, pr) in cand.values() if pr > cur]
                    if ahead:
                        ego_poly = Polygon(ego_corners(np.r_[poses[li, t - 1], np.zeros(NS - 3)]))
                        dists = [ego_poly.distance(op) for _, op in ahead]
                        k = int(np.argmin(dists))
                        o = ahead[k][0]
                        shared[0] = cur + dists[k]
                        if not o.red:
                            if o.is_agent:
                                rel = float(wrap(o.first_box[2] - poses[li, t - 1, 2]))
                                shared[1] = float(np.hypot(*o.first_vel)) * math.cos(rel)
                            else:
                                shared[1] = 0.0
                    else:
                        shared[0] = path.ls.length
                        shared[2] = LENGTH / 2
                    lead[li, t] = shared
            x, v = prog[idxs, t - 1], vel[idxs, t - 1]
            xl, vl, lr = lead[idxs, t, 0], lead[idxs, t, 1], lead[idxs, t, 2]
            tv = targets[idxs]
            s_star = IDM_MIN_GAP + v * IDM_HEADWAY + v * (v - vl) / (2 * math.sqrt(IDM_ACCEL * IDM_DECEL))
            s_a = np.maximum(xl - x - lr, IDM_MIN_GAP)
            with np.errstate(divide="ignore", invalid="ignore"):
                vdot = IDM_ACCEL * (1 - (v / tv) ** IDM_EXP - (s_star / s_a) ** 2)
            vdot = np.clip(vdot, -IDM_DECEL, IDM_ACCEL)
            prog[idxs, t] = x + DT * v
            vel[idxs, t] = v + DT * vdot
            poses[idxs, t] = path.interpolate(prog[idxs, t])

        all_idx = list(range(nl))
        for t in range(1, n_prop + 1):
            step(all_idx, t)
        rollouts[pi] = (step, poses)
        for li in range(nl):
            proposals.append((pi, li))
    # score the 15 proposals against the forecast world (no history: HC = 1)
    results = []
    init = initial_state(ego_row)
    for pi, li in proposals:
        ref = rollouts[pi][1][li, :n_prop + 1]
        st = states_from_reference(ref, init, "tracked")  # the planner itself always simulates
        r = evaluate_states(st, world, obs[:n_prop + 1], None)
        results.append(r)
    multi = np.array([multiplicative(r) for r in results])
    praw = np.array([r["progress"] for r in results])
    norm = (praw * multi).max()
    ep = np.clip(praw / norm, 0, 1) if norm > 5.0 else np.ones(len(praw))
    wsum = np.array([5 * e + 5 * r["TTC"] + 2 * r["LK"] + 2 * r["HC"] for e, r in zip(ep, results)]) / 14
    best = int(np.argmax(multi * wsum))
    pi, li = proposals[best]
    step, poses = rollouts[pi]
    for t in range(n_prop + 1, PDM_HORIZON + 1):
        step([li], t)
    ref = poses[li, :T].copy()
    if mode == "direct":
        ref[0] = init[:3]
    return states_from_reference(ref, init, mode), ref


# ---------------------------------------------------------------------------------------------------
# Scene-level scoring.

def _weighted(r, ec: Optional[float]) -> float:
    num = 5 * r["EP"] + 5 * r["TTC"] + 2 * r["LK"] + 2 * r["HC"]
    if ec is None:
        return num / 14.0
    return (num + 2 * ec) / 16.0


class SceneScorer:
    """Caches the world, the observation, PDM-Closed and the expert for one scene and mode."""

    def __init__(self, scene, mode: str = "tracked"):
        if mode not in ("tracked", "direct"):
            raise ValueError(f"mode must be 'tracked' or 'direct', got {mode!r}")
        self.scene, self.mode = scene, mode
        self.world = World(scene)
        self.obs = self.world.observation()
        self.ego_row = np.asarray(scene.ego_state, np.float64)
        self.pdm_states, self.pdm_ref = pdm_closed_reference(self.world, scene, mode)
        self.pdm = evaluate_states(self.pdm_states, self.world, self.obs, scene)
        self._human = None

    @property
    def human(self):
        if self._human is None:
            st = simulate(np.asarray(self.scene.expert_future, np.float64), self.ego_row, self.mode)
            r = evaluate_states(st, self.world, self.obs, None)  # scored alone, without the past
            n = r["progress"] * multiplicative(r)
            r["EP"] = float(np.clip(r["progress"] / n, 0, 1)) if n > 5.0 else 1.0
            self._human = r
        return self._human

    def score(self, traj, prev_traj=None, human_filter: bool = True) -> Dict[str, float]:
        traj = np.asarray(traj, np.float64)
        if traj.shape != (8, 3) or not np.all(np.isfinite(traj)):
            raise ValueError(f"traj must be a finite [8, 3] array, got shape {traj.shape}")
        st = simulate(traj, self.ego_row, self.mode)
        r = evaluate_states(st, self.world, self.obs, self.scene)
        norm = max(self.pdm["progress"] * multiplicative(self.pdm), r["progress"] * multiplicative(r))
        r["EP"] = float(np.clip(r["progress"] / norm, 0, 1)) if norm > 5.0 else 1.0
        ec = None
        if prev_traj is not None:
            past = np.asarray(self.scene.ego_past, np.float64)
            start = past[10]  # ego at -0.5 s
            pst = simulate(np.asarray(prev_traj, np.float64), start, self.mode, start_pose=start[:3])
            ec = metric_ec(st, pst)
        out = {k: float(r[k]) for k in FILTERED}
        out["before_filter"] = dict(out)
        if human_filter:
            h = self.human
            for k in FILTERED:
                if h[k] == 0.0:
                    out[k] = 1.0
        out["EC"] = 1.0 if ec is None else ec
        out["EPDMS"] = multiplicative(out) * _weighted(out, ec)
        out["progress"] = float(r["progress"])
        out["pdm_progress"] = float(self.pdm["progress"])
        out["states"] = st
        return out


def score_scene(scene, trajs, prevs=None, mode: str = "tracked", human_filter: bool = True) -> List[dict]:
    s = SceneScorer(scene, mode)
    trajs = np.asarray(trajs, np.float64)
    return [s.score(trajs[i], None if prevs is None else prevs[i], human_filter) for i in range(len(trajs))]


def score_one(scene, traj, prev_traj=None, mode: str = "tracked", human_filter: bool = True) -> dict:
    """EPDMS of one trajectory [8, 3] on one numpy Scene. Returns NC ... EC, EPDMS, progress (floats)."""
    return SceneScorer(scene, mode).score(traj, prev_traj, human_filter)
