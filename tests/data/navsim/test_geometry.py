"""Tests of irlvla_jax.data.navsim.geometry: quaternion yaw, polygon / polyline fitting."""
import math

import numpy as np
import pytest

from irlvla_jax.data import navsim as N


def test_geometry_helpers():
    q = [math.cos(0.35), 0.0, 0.0, math.sin(0.35)]
    assert N.quaternion_yaw(q) == pytest.approx(0.7)
    assert N.quaternion_yaw([2 * v for v in q]) == pytest.approx(0.7)       # not normalised
    sq = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    dense = np.concatenate([np.linspace(sq[i], sq[(i + 1) % 4], 10, endpoint=False) for i in range(4)])
    np.testing.assert_allclose(np.sort(N.fit_polygon(dense, 4), axis=0), np.sort(sq, axis=0), atol=1e-9)
    line = N.fit_polyline(np.stack([np.linspace(0, 10, 50), np.zeros(50)], -1), 6)
    np.testing.assert_allclose(line[:, 0], [0, 2, 4, 6, 8, 10])


def test_quaternion_yaw_follows_pyquaternion_convention():
    """NAVSIM takes yaw = pyquaternion's yaw_pitch_roll[0], i.e. q = q_x(roll) q_y(pitch) q_z(yaw)."""
    def mul(a, b):
        w1, x1, y1, z1 = a
        w2, x2, y2, z2 = b
        return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                         w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])

    def axis(a, i):
        q = np.zeros(4)
        q[0], q[1 + i] = math.cos(a / 2), math.sin(a / 2)
        return q

    for yaw in (-2.9, -0.4, 0.7, 3.0):
        q = mul(mul(axis(0.05, 0), axis(-0.03, 1)), axis(yaw, 2))
        assert N.quaternion_yaw(q) == pytest.approx(yaw, abs=1e-9)
