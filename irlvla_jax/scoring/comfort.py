"""History comfort (HC) and two-frame extended comfort (EC), NAVSIM v2.2 rules.

Savitzky-Golay filters (scipy ``savgol_filter``, mode 'interp', windows shortened to the sequence
length) are linear in their input, so each (length, window, order, derivative) filter is a constant
matrix built once in numpy by filtering the identity; in jnp they are a matmul. NAVSIM rounds the
filtered values to 8 decimals; at float32 that rounding is below resolution and is omitted.

States are ``[..., T, 11]`` (see ``rollout``). Thresholds (strict inequalities for HC):
longitudinal acceleration (centre of the box, NAVSIM's shifted-acceleration formula) in (-4.05, 2.40)
m/s^2, |lateral acceleration| < 4.89 m/s^2, |jerk magnitude| < 8.37 m/s^3, |longitudinal jerk| <
4.13 m/s^3, |yaw rate| < 0.95 rad/s, |yaw acceleration| < 1.93 rad/s^2. EC: RMS of the per-step
differences of (acceleration magnitude, jerk, yaw rate, yaw acceleration) <= (0.7, 0.5, 0.1, 0.1).
"""
from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from scipy.signal import savgol_filter

from irlvla_jax.geometry import normalize_angle
from irlvla_jax.scoring.rollout import DT, REAR_AXLE_TO_CENTER

MAX_ABS_MAG_JERK = 8.37
MAX_ABS_LAT_ACCEL = 4.89
MAX_LON_ACCEL = 2.40
MIN_LON_ACCEL = -4.05
MAX_ABS_YAW_ACCEL = 1.93
MAX_ABS_LON_JERK = 4.13
MAX_ABS_YAW_RATE = 0.95
EC_ACCEL, EC_JERK, EC_YAW_RATE, EC_YAW_ACCEL = 0.7, 0.5, 0.1, 0.1


@functools.lru_cache(maxsize=None)
def savgol_matrix(n: int, window: int, order: int, deriv: int = 0) -> np.ndarray:
    """[n, n] matrix M with ``M @ y == savgol_filter(y, min(window, n), order, deriv, delta=DT)``."""
    w = min(window, n)
    return savgol_filter(np.eye(n), w, order, deriv=deriv, delta=DT, axis=0).astype(np.float32)


def _apply(mat, y):
    """Apply a [T, T] filter along the last axis of ``y [..., T]``."""
    return jnp.einsum("ts,...s->...t", jnp.asarray(mat), y)


def unwrap(h):
    """Phase-unwrap headings along the last axis (NAVSIM ``_phase_unwrap``)."""
    d = jnp.diff(h, axis=-1)
    adj = jnp.concatenate([jnp.zeros_like(h[..., :1]), jnp.cumsum(jnp.round(d / (2 * jnp.pi)), axis=-1)], axis=-1)
    return h - 2 * jnp.pi * adj


def _features(states):
    n = states.shape[-2]
    ax, ay = states[..., 5], states[..., 6]
    w, a = states[..., 9], states[..., 10]
    lon = ax + REAR_AXLE_TO_CENTER * (w ** 2 + a)   # NAVSIM's get_acceleration_shifted (x component)
    smooth = savgol_matrix(n, 8, 2)
    dmat = savgol_matrix(n, 15, 2, 1)
    lon_acc = _apply(smooth, lon)
    lat_acc = _apply(smooth, ay)
    mag_acc = _apply(smooth, jnp.hypot(ax, ay))
    h = unwrap(states[..., 2])
    return dict(lon_acc=lon_acc, lat_acc=lat_acc, mag_acc=mag_acc, jerk=_apply(dmat, mag_acc),
                lon_jerk=_apply(dmat, lon_acc), yaw_rate=_apply(savgol_matrix(n, 5, 2, 1), h),
                yaw_acc3=_apply(savgol_matrix(n, 5, 3, 2), h), yaw_acc2=_apply(savgol_matrix(n, 5, 2, 2), h))


def is_comfortable(states):
    """``states [..., T, 11]`` -> bool [...]: every step within the six HC bounds."""
    f = _features(states)
    ok = ((f["lon_acc"] > MIN_LON_ACCEL) & (f["lon_acc"] < MAX_LON_ACCEL)
          & (jnp.abs(f["lat_acc"]) < MAX_ABS_LAT_ACCEL)
          & (jnp.abs(f["jerk"]) < MAX_ABS_MAG_JERK)
          & (jnp.abs(f["lon_jerk"]) < MAX_ABS_LON_JERK)
          & (jnp.abs(f["yaw_rate"]) < MAX_ABS_YAW_RATE)
          & (jnp.abs(f["yaw_acc3"]) < MAX_ABS_YAW_ACCEL))
    return jnp.all(ok, axis=-1)


def history_states(ego_past):
    """Scene ``ego_past [..., 15, 7]`` -> the HC history ``[..., 14, 11]`` at -1.5 ... -0.2 s.

    NAVSIM quirk (named): the sample at -0.1 s is dropped (``history_time_us[:-1]``), and the filters
    still treat the 14 + 41 samples as 0.1 s apart. Steering, yaw rate and yaw acceleration are 0.
    """
    past = ego_past[..., :14, :]
    return jnp.concatenate([past, jnp.zeros(past.shape[:-1] + (4,), past.dtype)], axis=-1)


def history_comfort(states, ego_past):
    """HC for ``states [..., 41, 11]`` preceded by the scene's past: float {0, 1} [...]."""
    hist = jnp.broadcast_to(history_states(ego_past), states.shape[:-2] + (14, states.shape[-1]))
    return is_comfortable(jnp.concatenate([hist, states], axis=-2)).astype(jnp.float32)


def extended_comfort(current, previous, overlap_start: int = 5):
    """EC: ``current`` and ``previous`` ``[..., 41, 11]`` (previous plan started 0.5 s earlier) -> {0, 1} [...].

    Compares current states 0..35 with previous states 5..40 (the 0.5 s overlap), NAVSIM's
    ``ego_is_two_frame_extended_comfort``.
    """
    c = _features(current[..., :-overlap_start, :])
    p = _features(previous[..., overlap_start:, :])
    rms = lambda a, b: jnp.sqrt(jnp.mean((a - b) ** 2, axis=-1))
    ok = ((rms(c["mag_acc"], p["mag_acc"]) <= EC_ACCEL) & (rms(c["jerk"], p["jerk"]) <= EC_JERK)
          & (rms(c["yaw_rate"], p["yaw_rate"]) <= EC_YAW_RATE) & (rms(c["yaw_acc2"], p["yaw_acc2"]) <= EC_YAW_ACCEL))
    return ok.astype(jnp.float32)


__all__ = ["savgol_matrix", "is_comfortable", "history_comfort", "extended_comfort", "history_states", "unwrap",
           "normalize_angle"]
