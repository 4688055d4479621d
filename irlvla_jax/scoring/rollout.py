"""From 8 poses to 41 ego states: interpolation, direct mode and tracked mode (LQR + kinematic bicycle).

State vector (NAVSIM's StateIndex order), ``[..., 11]``, rear axle, ego frame at t0:
    0 x [m], 1 y [m], 2 heading [rad], 3 vx, 4 vy [m/s, body frame], 5 ax, 6 ay [m/s^2, body frame],
    7 steering angle [rad], 8 steering rate [rad/s], 9 yaw rate [rad/s], 10 yaw acceleration [rad/s^2].

* :func:`interpolate_poses`: current pose + 8 poses (0.5 ... 4.0 s) -> 41 poses at 0.1 s, linear in x, y
  and angular (shortest way) in heading, as nuPlan's ``InterpolatedTrajectory``.
* **direct** mode: the interpolated poses as they are; state 0 is the current ego state; at steps 1..40
  velocity / acceleration (body frame) and yaw rate / acceleration are ``np.gradient``-style differences
  (central inside, one-sided at the ends, dt = 0.1 s); steering 0.
* **tracked** mode (NAVSIM's PDMSimulator): NAVSIM's batch LQR tracker (horizon 10 steps, longitudinal
  Q=10, R=1; lateral Q=diag(1, 10, 0), R=1; velocity / curvature profiles from regularised least squares
  with jerk penalty 1e-4 and curvature-rate penalty 1e-2; stopping P-controller with gain 0.5 below
  0.2 m/s) driving a kinematic bicycle (wheelbase 3.089 m, acceleration lag 0.2 s, steering lag 0.05 s,
  |steer| <= pi/3, Euler steps of 0.1 s), started from the current ego state with steering 0.

The velocity fit's normal matrix does not depend on the poses (cos^2 + sin^2 = 1), so its regularised
pseudo-inverse is a constant computed once in float64 (numpy); the curvature fit is a chain least-squares
problem in the curvature profile itself, solved exactly per trajectory in O(40) (a forward information
filter and a backward pass, no LAPACK call).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from irlvla_jax.geometry import EGO_CENTER, EGO_LENGTH, EGO_WHEEL_BASE, EGO_WIDTH, normalize_angle

DT = 0.1
T = 41
# nuPlan Pacifica (irlvla_jax.geometry).
WHEEL_BASE = EGO_WHEEL_BASE
HALF_LENGTH = EGO_LENGTH / 2.0
HALF_WIDTH = EGO_WIDTH / 2.0
REAR_AXLE_TO_CENTER = EGO_CENTER
# Bicycle model and LQR parameters (NAVSIM defaults).
MAX_STEER = np.pi / 3.0
TAU_ACCEL = 0.2
TAU_STEER = 0.05
HORIZON = 10
Q_LON, R_LON = 10.0, 1.0
Q_LAT = (1.0, 10.0, 0.0)
R_LAT = 1.0
JERK_PENALTY = 1e-4
CURVATURE_RATE_PENALTY = 1e-2
INITIAL_CURVATURE_PENALTY = 1e-10
STOP_GAIN = 0.5
STOP_VELOCITY = 0.2


def interpolate_poses(poses, start=None):
    """``poses [..., K, 3]`` at 0.5 s steps (after ``start [..., 3]``, default the origin) -> ``[..., 5K+1, 3]``."""
    if start is None:
        start = jnp.zeros(poses.shape[:-2] + (3,), poses.dtype)
    knots = jnp.concatenate([start[..., None, :], poses], axis=-2)              # [..., K+1, 3]
    dh = normalize_angle(jnp.diff(knots[..., 2], axis=-1))
    h = jnp.concatenate([knots[..., :1, 2], knots[..., :1, 2] + jnp.cumsum(dh, axis=-1)], axis=-1)
    k = poses.shape[-2]
    frac = jnp.arange(5, dtype=poses.dtype) / 5.0                                # [5]
    def lerp(v):  # [..., K+1] -> [..., 5K+1]
        seg = v[..., :-1, None] + (v[..., 1:, None] - v[..., :-1, None]) * frac
        return jnp.concatenate([seg.reshape(v.shape[:-1] + (5 * k,)), v[..., -1:]], axis=-1)
    return jnp.stack([lerp(knots[..., 0]), lerp(knots[..., 1]), normalize_angle(lerp(h))], axis=-1)


def ego_state_array(ego_state):
    """Scene ``ego_state [..., 7]`` (x, y, h, vx, vy, ax, ay) -> state ``[..., 11]`` (steering, rates 0)."""
    z = jnp.zeros(ego_state.shape[:-1] + (4,), ego_state.dtype)
    return jnp.concatenate([ego_state, z], axis=-1)


def _gradient(v, axis=-2):
    """np.gradient along ``axis`` with spacing DT (central inside, first-order one-sided at the ends)."""
    v = jnp.moveaxis(v, axis, -1)
    inner = (v[..., 2:] - v[..., :-2]) / (2 * DT)
    first = (v[..., 1:2] - v[..., 0:1]) / DT
    last = (v[..., -1:] - v[..., -2:-1]) / DT
    return jnp.moveaxis(jnp.concatenate([first, inner, last], axis=-1), -1, axis)


def direct_states(ref, init):
    """Direct mode: ``ref [..., 41, 3]`` interpolated poses, ``init [..., 11]`` current state -> ``[..., 41, 11]``."""
    xy = ref[..., :2]
    h = ref[..., 2]
    hu = h[..., :1] + jnp.concatenate([jnp.zeros_like(h[..., :1]),
                                       jnp.cumsum(normalize_angle(jnp.diff(h, axis=-1)), axis=-1)], axis=-1)
    vel_w = _gradient(xy)
    acc_w = _gradient(vel_w)
    c, s = jnp.cos(h)[..., None], jnp.sin(h)[..., None]
    def body(v):
        return jnp.concatenate([c * v[..., :1] + s * v[..., 1:], -s * v[..., :1] + c * v[..., 1:]], axis=-1)
    yaw_rate = _gradient(hu, axis=-1)
    yaw_acc = _gradient(yaw_rate, axis=-1)
    z = jnp.zeros_like(h)
    st = jnp.concatenate([ref, body(vel_w), body(acc_w), z[..., None], z[..., None], yaw_rate[..., None],
                          yaw_acc[..., None]], axis=-1)
    return st.at[..., 0, :].set(init)


# ---------------------------------------------------------------------------------------------------
# Tracked mode.

@functools.lru_cache(maxsize=None)
def _velocity_fit_matrix(num_poses: int = T) -> np.ndarray:
    """Constant [M, M] map from projected displacements to (v0, a_0..a_{M-2}) (float64, then cast)."""
    m = num_poses - 1
    rows = np.zeros((m, m))
    for i in range(m):
        rows[i, 0] = DT
        rows[i, 1:i + 1] = DT ** 2
    # NAVSIM quirk (named): its banded "difference" matrix is built with two assignments,
    # ``B[:, 1:] = I`` then ``B[:, :-1] = -I``; the second overwrites most of the first, leaving -I plus a
    # single +1 in the last column. The jerk penalty is therefore mostly an acceleration penalty.
    band = np.zeros((m - 2, m - 1))
    band[:, 1:] = np.eye(m - 2)
    band[:, :-1] = -np.eye(m - 2)
    r = np.concatenate([np.zeros((m - 2, 1)), band], axis=1)
    normal = rows.T @ rows + JERK_PENALTY * r.T @ r
    return (np.linalg.pinv(normal) @ rows.T).astype(np.float32)


def velocity_curvature_profiles(poses):
    """NAVSIM's least-squares fits: ``poses [41, 3]`` -> (velocity [40], curvature [40]).

    The curvature fit min_x |A x - dh|^2 + x^T Q x (A [i, 0] = v_i dt, A [i, 1..i] = v_i dt^2;
    Q = diag(1e-10, 1e-2, ...)) is solved in the curvature variables z = C x (z_i = x_0 + dt
    sum_{j<=i} x_j, which is the curvature profile itself): a chain
    sum_i (w_i z_i - dh_i)^2 + p0 z_0^2 + (p / dt^2) sum_i (z_i - z_{i-1})^2, w_i = v_i dt, solved
    exactly by :func:`_chain_least_squares` in O(M) instead of a dense [M, M] LU.
    """
    m = poses.shape[0] - 1
    d = jnp.diff(poses, axis=0)
    dh = normalize_angle(d[:, 2])
    h = poses[:-1, 2]
    proj = jnp.cos(h) * d[:, 0] + jnp.sin(h) * d[:, 1]               # [M]
    x = jnp.asarray(_velocity_fit_matrix(m + 1)) @ proj
    vel = x[0] + jnp.concatenate([jnp.zeros(1, x.dtype), jnp.cumsum(x[1:] * DT)])  # [M]
    curv = _chain_least_squares(vel * DT, dh, INITIAL_CURVATURE_PENALTY, CURVATURE_RATE_PENALTY / DT ** 2)
    return vel, curv


def _chain_least_squares(w, y, p0, k):
    """argmin_z sum_i (w_i z_i - y_i)^2 + p0 z_0^2 + k sum_{i>=1} (z_i - z_{i-1})^2 for ``w, y [M]``.

    A forward information filter (cost-to-come J_i (z_i - m_i)^2: every update adds positive terms, so
    no cancellation in float32 even where w ~ 0 and only p0 anchors the level) and a backward
    smoothing pass. Same minimiser as the dense normal equations; no LAPACK call (XLA:CPU's batched
    LU blocks its worker threads and deadlocks when two devices run it at once).
    """
    j0 = p0 + w[0] * w[0]

    def fwd(carry, wy):
        j, mu = carry
        wi, yi = wy
        jp = j * k / (j + k)
        jn = jp + wi * wi
        mn = (jp * mu + wi * yi) / jn
        return (jn, mn), (jn, mn)

    _, (js, ms) = jax.lax.scan(fwd, (j0, w[0] * y[0] / j0), (w[1:], y[1:]))
    js = jnp.concatenate([j0[None], js])
    ms = jnp.concatenate([(w[0] * y[0] / j0)[None], ms])

    def bwd(z_next, jm):
        j, mu = jm
        z = (j * mu + k * z_next) / (j + k)
        return z, z

    _, zs = jax.lax.scan(bwd, ms[-1], (js[:-1], ms[:-1]), reverse=True)
    return jnp.concatenate([zs, ms[-1:]])


def _lqr_command(state, t, ref, vel_prof, curv_prof):
    """One LQR tracker call at iteration ``t`` -> (acceleration, steering rate)."""
    n = vel_prof.shape[0]
    r = ref[t]
    xe, ye = state[0] - r[0], state[1] - r[1]
    lat_err = -xe * jnp.sin(r[2]) + ye * jnp.cos(r[2])
    head_err = normalize_angle(state[2] - r[2])
    v0 = state[3]
    ref_idx = jnp.minimum(t + HORIZON, n - 1)
    v_ref = vel_prof[ref_idx]
    k = jnp.arange(HORIZON)
    curv = jnp.where(t + k < ref_idx, curv_prof[jnp.minimum(t + k, n - 1)], curv_prof[ref_idx])
    stop = (v_ref <= STOP_VELOCITY) & (v0 <= STOP_VELOCITY)
    b_lon = HORIZON * DT
    accel_lqr = -(b_lon * Q_LON * (v0 - v_ref)) / (b_lon * Q_LON * b_lon + R_LON)
    vels = v0 + accel_lqr * DT * k                                       # [H]
    # Lateral error dynamics over the horizon: x_{k+1} = M_k x_k + (0, -v_k c_k dt, 0) (+ (0, 0, dt) u),
    # M_k = I + v_k dt E01 + v_k dt / L E12. Propagated as vectors, unrolled: the free response
    # y = A x0 + g of the error state (lat, heading, steering) and the input response B.
    y0, y1, y2 = lat_err, head_err, state[7]
    b0 = b1 = b2 = jnp.zeros_like(v0)
    for k in range(HORIZON):
        v, c = vels[k], curv[k]
        a_k, b_k = v * DT, v * DT / WHEEL_BASE
        y0, y1 = y0 + a_k * y1, y1 + b_k * y2 - v * c * DT
        b0, b1, b2 = b0 + a_k * b1, b1 + b_k * b2, b2 + DT
    e0, e1, e2 = y0, normalize_angle(y1), normalize_angle(y2)
    q0, q1, q2 = Q_LAT
    num = q0 * b0 * e0 + q1 * b1 * e1 + q2 * b2 * e2
    den = q0 * b0 * b0 + q1 * b1 * b1 + q2 * b2 * b2
    steer_rate_lqr = -num / (den + R_LAT)
    accel = jnp.where(stop, -STOP_GAIN * (v0 - v_ref), accel_lqr)
    steer_rate = jnp.where(stop, 0.0, steer_rate_lqr)
    return accel, steer_rate


def _bicycle(state, accel_cmd, steer_rate_cmd):
    """NAVSIM's BatchKinematicBicycleModel.propagate_state for one 0.1 s step."""
    accel, steer = state[5], state[7]
    ideal_steer = DT * steer_rate_cmd + steer
    new_accel = DT / (DT + TAU_ACCEL) * (accel_cmd - accel) + accel
    upd_steer = DT / (DT + TAU_STEER) * (ideal_steer - steer) + steer
    new_steer_rate = (upd_steer - steer) / DT
    v = state[3]
    x = state[0] + v * jnp.cos(state[2]) * DT
    y = state[1] + v * jnp.sin(state[2]) * DT
    h = normalize_angle(state[2] + v * jnp.tan(steer) / WHEEL_BASE * DT)
    v_new = v + new_accel * DT
    steer_new = jnp.clip(steer + new_steer_rate * DT, -MAX_STEER, MAX_STEER)
    yaw_rate = v_new * jnp.tan(steer_new) / WHEEL_BASE
    yaw_acc = (yaw_rate - state[9]) / DT
    return jnp.stack([x, y, h, v_new, jnp.zeros_like(v), new_accel, jnp.zeros_like(v), steer_new, new_steer_rate,
                      yaw_rate, yaw_acc])


def tracked_states(ref, init):
    """Tracked mode for one trajectory: ``ref [41, 3]`` reference poses, ``init [11]`` -> ``[41, 11]``."""
    vel_prof, curv_prof = velocity_curvature_profiles(ref)

    def step(state, t):
        a, sr = _lqr_command(state, t, ref, vel_prof, curv_prof)
        nxt = _bicycle(state, a, sr)
        return nxt, nxt

    _, traj = jax.lax.scan(step, init, jnp.arange(ref.shape[0] - 1))
    return jnp.concatenate([init[None], traj], axis=0)


def rollout(ref, init, mode: str):
    """``ref [..., 41, 3]`` poses and ``init [..., 11]`` -> states ``[..., 41, 11]`` in ``mode``."""
    if mode == "direct":
        return direct_states(ref, init)
    if mode != "tracked":
        raise ValueError(f"scoring mode must be 'tracked' or 'direct', got {mode!r}")
    fn = tracked_states
    for _ in range(ref.ndim - 2):
        fn = jax.vmap(fn)
    return fn(ref, jnp.broadcast_to(init, ref.shape[:-2] + (11,)))
