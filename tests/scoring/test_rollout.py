"""Interpolation, direct mode and the LQR + kinematic-bicycle tracker."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from irlvla_jax.scoring import rollout as R


def _line(v, heading=0.0):
    t = np.arange(1, 9) * 0.5
    return np.stack([v * t * np.cos(heading), v * t * np.sin(heading), np.full(8, heading)], -1).astype(np.float32)


def test_interpolation_hits_knots_and_wraps_heading():
    poses = _line(10.0)
    ref = np.asarray(R.interpolate_poses(jnp.asarray(poses)))
    assert ref.shape == (41, 3)
    np.testing.assert_allclose(ref[5::5], poses, atol=1e-5)
    np.testing.assert_allclose(ref[:, 0], np.arange(41) * 1.0, atol=1e-4)      # 10 m/s, 0.1 s
    # Heading crossing +-pi interpolates the short way round.
    p = np.zeros((8, 3), np.float32)
    p[:, 2] = np.pi - 0.1
    p[1:, 2] = -np.pi + 0.1
    r = np.asarray(R.interpolate_poses(jnp.asarray(p), jnp.asarray([0.0, 0.0, np.pi - 0.1])))
    assert np.all(np.abs(np.cos(r[:, 2]) + 1.0) < 0.02)   # stays near pi, never passes through 0


def test_direct_mode_differences():
    v = 8.0
    # A straight line at heading 0.3 rad, starting from a pose on it (velocities are body-frame).
    start = jnp.asarray([0.0, 0.0, 0.3])
    ref = R.interpolate_poses(jnp.asarray(_line(v, 0.3)), start)
    init = R.ego_state_array(jnp.asarray([0, 0, 0.3, v, 0, 0, 0], jnp.float32))
    st = np.asarray(R.rollout(ref, init, "direct"))
    np.testing.assert_allclose(st[1:, 3], v, atol=1e-3)       # body-frame forward speed
    np.testing.assert_allclose(st[1:, 4], 0.0, atol=1e-3)
    np.testing.assert_allclose(st[2:-1, 5], 0.0, atol=1e-2)
    np.testing.assert_allclose(st[0], np.asarray(init))       # state 0 is the current ego state


def test_tracked_follows_a_constant_velocity_line():
    v = 12.0
    ref = R.interpolate_poses(jnp.asarray(_line(v)))
    init = R.ego_state_array(jnp.asarray([0, 0, 0, v, 0, 0, 0], jnp.float32))
    st = np.asarray(jax.jit(lambda r, i: R.rollout(r, i, "tracked"))(ref, init))
    assert st.shape == (41, 11)
    np.testing.assert_allclose(st[:, 0], np.asarray(ref)[:, 0], atol=0.05)
    np.testing.assert_allclose(st[:, 1], 0.0, atol=1e-4)
    np.testing.assert_allclose(st[:, 3], v, atol=0.02)
    assert np.all(np.abs(st[:, 7]) <= R.MAX_STEER + 1e-6)


def test_tracked_lane_change_lags_the_reference_and_stop_stays_stopped():
    v = 10.0
    poses = _line(v)
    poses[:, 1] = 3.5 * np.clip((np.arange(1, 9) * 0.5 - 0.5) / 2.5, 0, 1)
    ref = R.interpolate_poses(jnp.asarray(poses))
    init = R.ego_state_array(jnp.asarray([0, 0, 0, v, 0, 0, 0], jnp.float32))
    st = np.asarray(R.rollout(ref[None], init, "tracked"))[0]
    assert 2.8 < st[-1, 1] < 4.2                              # reaches the new lane, with tracking error
    assert np.abs(st[:, 1] - np.asarray(ref)[:, 1]).max() > 0.05
    still = R.interpolate_poses(jnp.zeros((8, 3)))
    st0 = np.asarray(R.rollout(still[None], R.ego_state_array(jnp.zeros(7)), "tracked"))[0]
    np.testing.assert_allclose(st0[:, :4], 0.0, atol=1e-6)


def test_velocity_fit_matrix_reproduces_navsim_quirk():
    k = R._velocity_fit_matrix(41)
    assert k.shape == (40, 40)
    # Constant-speed displacements: the fit returns that speed and ~zero accelerations.
    x = k @ np.full(40, 0.1 * 7.0)
    assert abs(x[0] - 7.0) < 1e-3 and np.abs(x[1:]).max() < 1e-3


def test_curvature_fit_equals_navsim_dense_least_squares():
    """The O(M) chain solve gives NAVSIM's curvature profile: x = (A^T A + Q)^-1 A^T dh (float64 dense),
    curvature = x_0 + dt cumsum(x_1..), for moving, nearly stopped and stopped profiles."""
    rng = np.random.default_rng(0)
    m, dt = 40, R.DT
    for vel in (rng.uniform(0.0, 15.0, m), np.full(m, 2e-3), np.zeros(m)):
        dh = rng.normal(0.0, 0.05, m) * (vel > 0)
        a = np.tril(np.ones((m, m)))
        a[:, 0] = vel * dt
        a[1:, 1:] *= (vel[1:] * dt ** 2)[:, None]
        q = R.CURVATURE_RATE_PENALTY * np.eye(m)
        q[0, 0] = R.INITIAL_CURVATURE_PENALTY
        x = np.linalg.solve(a.T @ a + q, a.T @ dh)
        want = x[0] + np.concatenate([[0.0], np.cumsum(x[1:] * dt)])
        got = np.asarray(jax.jit(R._chain_least_squares, static_argnums=(2, 3))(
            jnp.asarray(vel * dt, jnp.float32), jnp.asarray(dh, jnp.float32), R.INITIAL_CURVATURE_PENALTY,
            R.CURVATURE_RATE_PENALTY / dt ** 2))
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5 * max(1.0, np.abs(want).max()))
