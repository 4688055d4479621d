"""Polylines: arc length, interpolation and projection, orientation, adaptive sampling."""
import numpy as np
import pytest

from irlvla_jax.world import paths as P
from irlvla_jax.world import roads as R


def test_path_at_and_project_roundtrip():
    p = R.corridor_reference((0.0, 0.0), 0.3, [("straight", 20.0, 0.0), ("arc", 30.0, 1.2), ("straight", 20.0, 0.0)])
    assert p.length == pytest.approx(40.0 + 36.0, abs=0.2)
    s = np.array([3.0, 25.0, 50.0, 70.0, -4.0, p.length + 5.0])
    for d in (-2.0, 0.0, 1.5):
        pts = p.offset_points(s, d)
        s2, lat = p.project(pts)
        np.testing.assert_allclose(s2, s, atol=0.1)
        np.testing.assert_allclose(lat, d, atol=0.05)
    assert np.abs(p.k[(p.s > 25) & (p.s < 50)] - 1 / 30.0).max() < 0.01


def test_ccw_orients_polygons_counter_clockwise():
    sq = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    np.testing.assert_array_equal(P.ccw(sq), sq)
    np.testing.assert_array_equal(P.ccw(sq[::-1]), sq)


def test_adaptive_params_denser_where_the_heading_turns():
    p = P.Path(np.concatenate([P.straight_pts((0.0, 0.0), 0.0, 50.0), P.arc_pts((50.0, 0.0), 0.0, 20.0, 1.5)[1:]]))
    s = P.adaptive_params(p, 0.0, p.length, 40)
    assert s[0] == pytest.approx(0.0) and s[-1] == pytest.approx(p.length) and np.all(np.diff(s) > 0)
    assert np.diff(s[s > 55.0]).mean() < 0.5 * np.diff(s[s < 45.0]).mean()
