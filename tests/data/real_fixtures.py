"""Tiny synthetic logs in the real sources' formats, written by the tests (no real data involved), and the
location of the shared real logs (``../shared/real_data``; tests skip when it is absent)."""
import json
import os

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REAL_DATA = os.path.join(os.path.dirname(ROOT), "shared", "real_data")


def real_dir(source: str) -> str:
    """``../shared/real_data/<source>`` or pytest.skip with the reason."""
    import pytest
    d = os.path.join(REAL_DATA, source)
    if not os.path.isdir(d):
        pytest.skip(f"real logs not present: {d} (they are never committed; see the issue on real data)")
    return d


def _quat(yaw):
    return np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)


def write_av2_log(root: str, name: str = "log0", *, seconds: float = 8.0, speed: float = 10.0,
                  yaw0: float = 0.3, drop_column: str = "", nan_pose: bool = False, no_lanes: bool = False) -> str:
    """A straight two-lane road (3.5 m lanes, along heading ``yaw0`` from (100, 200) in the city frame), an
    ego in the right lane at ``speed`` m/s, a vehicle 20 m ahead at the same speed, a parked cone on the
    shoulder. Returns the log folder."""
    import pyarrow as pa
    import pyarrow.feather as feather
    d = os.path.join(root, name)
    os.makedirs(os.path.join(d, "map"), exist_ok=True)
    n = int(round(seconds * 10)) + 1
    ts = (10 ** 15 + np.arange(n) * 100_000_000 + (np.arange(n) % 3) * 200_000).astype(np.int64)  # jitter
    e = np.array([np.cos(yaw0), np.sin(yaw0)])
    nrm = np.array([-e[1], e[0]])
    origin = np.array([100.0, 200.0])
    tp = np.arange(0, n * 10) * 10_000_000 + ts[0] - 20_000_000          # 100 Hz poses
    s = speed * (tp - ts[0]) / 1e9
    pos = origin[None] + (s[:, None] + 30.0) * e[None]
    qw, qx, qy, qz = _quat(yaw0)
    poses = {"timestamp_ns": tp.astype(np.int64), "qw": np.full(len(tp), qw), "qx": np.zeros(len(tp)),
             "qy": np.zeros(len(tp)), "qz": np.full(len(tp), qz), "tx_m": pos[:, 0], "ty_m": pos[:, 1],
             "tz_m": np.zeros(len(tp))}
    if nan_pose:
        poses["tx_m"][5] = np.nan
    feather.write_feather(pa.table(poses), os.path.join(d, "city_SE3_egovehicle.feather"))
    rows = {k: [] for k in ("timestamp_ns", "track_uuid", "category", "length_m", "width_m", "height_m", "qw",
                            "qx", "qy", "qz", "tx_m", "ty_m", "tz_m", "num_interior_pts")}
    for t in ts:
        for tid, cat, x, y, (L, W, H) in (("lead", "REGULAR_VEHICLE", 20.0, 0.0, (4.5, 1.9, 1.6)),
                                          ("cone", "CONSTRUCTION_CONE", None, None, (0.4, 0.4, 0.7))):
            if x is None:   # fixed in the city frame: 40 m along, 3 m right of the right lane's centre
                ego = origin + (speed * (t - ts[0]) / 1e9 + 30.0) * e
                rel = origin + 70.0 * e - 3.0 * nrm - ego
                x, y = float(rel @ e), float(rel @ nrm)
            for k, v in (("timestamp_ns", int(t)), ("track_uuid", tid), ("category", cat), ("length_m", L),
                         ("width_m", W), ("height_m", H), ("qw", 1.0), ("qx", 0.0), ("qy", 0.0), ("qz", 0.0),
                         ("tx_m", x), ("ty_m", y), ("tz_m", 0.0), ("num_interior_pts", 10)):
                rows[k].append(v)
    if drop_column:
        rows.pop(drop_column)
    feather.write_feather(pa.table(rows), os.path.join(d, "annotations.feather"))

    def pts(p):
        return [{"x": float(a), "y": float(b), "z": 0.0} for a, b in p]
    lanes = {}
    for k, off in ((1, 0.0), (2, 3.5)):     # lane 1: the ego's; lane 2 to its left
        for seg in range(4):                 # 4 segments of 50 m, chained
            a, b = origin + seg * 50.0 * e, origin + (seg + 1) * 50.0 * e
            left = [a + (off + 1.75) * nrm, b + (off + 1.75) * nrm]
            right = [a + (off - 1.75) * nrm, b + (off - 1.75) * nrm]
            lid = k * 100 + seg
            lanes[str(lid)] = {"id": lid, "is_intersection": False, "lane_type": "VEHICLE",
                               "left_lane_boundary": pts(left), "right_lane_boundary": pts(right),
                               "left_lane_mark_type": "DASHED_WHITE" if k == 1 else "SOLID_YELLOW",
                               "right_lane_mark_type": "SOLID_WHITE" if k == 1 else "DASHED_WHITE",
                               "successors": [lid + 1] if seg < 3 else [], "predecessors": [],
                               "left_neighbor_id": None, "right_neighbor_id": None}
    area = [origin - 2.5 * nrm - 5 * e, origin + 200 * e - 2.5 * nrm, origin + 200 * e + 5.5 * nrm, origin + 5.5 * nrm - 5 * e]
    m = {"lane_segments": {} if no_lanes else lanes,
         "drivable_areas": {"1": {"id": 1, "area_boundary": pts(area)}},
         "pedestrian_crossings": {"7": {"id": 7, "edge1": pts([origin + 120 * e - 2 * nrm, origin + 120 * e + 5 * nrm]),
                                        "edge2": pts([origin + 124 * e - 2 * nrm, origin + 124 * e + 5 * nrm])}}}
    with open(os.path.join(d, "map", f"log_map_archive_{name}.json"), "w") as fh:
        json.dump(m, fh)
    return d
