"""ScenarioNet scenarios -> :class:`irlvla_jax.data.real.RealLog` (the ScenarioNet half of the real-log
adapter; :mod:`irlvla_jax.data.real` turns a log into Scene windows).

ScenarioNet's unified format is a pickled dict per scenario (``id``, ``length``, ``metadata``, ``tracks``,
``map_features``, ``dynamic_map_states``; positions in the dataset's global frame, 10 Hz). Its converters
fill different fields per source; what this module reads (checked on nuScenes v1.0-mini and Waymo Open
Motion v1.2 scenarios):

* **Clock**: ``metadata.ts`` (s). Steps within 0.1 +- 0.02 s of each other are taken as the uniform 10 Hz
  clock ``t = ts[0] + 0.1 i`` (Waymo's stamps jitter by 0.1 ms); any other increasing clock (e.g. 2 Hz, or
  dropped frames) is resampled to 10 Hz by linear interpolation (headings unwrapped; a resampled step is
  valid only where both bracketing samples are; lights take the previous sample's state).
* **Ego**: the track ``metadata.sdc_id``. ScenarioNet stores box centres, the RealLog wants the **rear
  axle**: ``rear = centre - EGO_CENTER (cos h, sin h)`` with :data:`irlvla_jax.geometry.EGO_CENTER`
  (1.461 m, NAVSIM's Pacifica) -- an assumption: the logged vehicles (nuScenes' Renault Zoe, Waymo's
  Pacifica / Jaguar) are not that car, so the rear axle is off by a few decimetres along the heading.
  Steps where the SDC is invalid are linearly interpolated inside its valid span (a gap longer than
  ``MAX_EGO_GAP`` s is a :class:`LogError`); invalid steps at the start / end **trim the whole log** to the
  SDC's valid span. A non-finite position / heading at a valid step is a :class:`LogError`. nuScenes'
  converter ends the SDC track with stale poses (all 6 moving scenes of v1.0-mini jump 0.07-1.9 m
  backwards 0.2-0.5 s before the end): a backward jump of the SDC while it drives forwards
  (:func:`_backward_jump`) within the last ``MAX_TAIL_GLITCH`` s trims the log before the jump; earlier it
  is a :class:`LogError`. (nuScenes' SDC steps also jitter: single 0.1 s steps ~20 % long, so
  accelerations by differences of its poses are noisy.)
* **Tracks**: every other track; type VEHICLE -> vehicle, PEDESTRIAN -> pedestrian, CYCLIST / BICYCLE /
  MOTORCYCLIST -> bicycle, everything else -> static (TRAFFIC_CONE, TRAFFIC_BARRIER, TRAFFIC_OBJECT,
  GROUND_OBJECT, OTHER, UNSET and any unknown type). Box size from the first valid step with a positive
  length and width (nuScenes stores sizes as [T, 1]); a track with none gets its type's default size. A
  valid step with a non-finite pose is treated as not valid; tracks never valid are dropped.
* **Lanes**: ``LANE_*`` features except ``LANE_BIKE_LANE`` (not for cars) and lanes whose centre polyline
  has fewer than 2 distinct points. Centerline = ``polyline[:, :2]`` (nuScenes' third column is the yaw,
  Waymo's is z).

  - nuScenes: lanes come with their ``polygon``; **lane connectors** (inside intersections) come without
    one (the converter drops it) and with a placeholder ``speed_limit_kmh`` = 100: those are
    ``is_connector`` and get a ``DEFAULT_LANE_WIDTH`` polygon around the centre line. nuScenes maps have
    no speed limits (``speed_limit`` None) and no lane graph (``successors`` empty: real.py infers them).
  - Waymo: a centre ``polyline`` and a per-point ``width`` [k, 2] = (distance to the left boundary,
    distance to the right boundary) -- checked against the ``left_boundaries`` / ``right_boundaries``
    features: median difference 0.01-0.02 m, but outliers of tens of metres where the converter's
    index-matching slips, and 0 where the lane has no boundary on that side (most intersection lanes). The
    polygon is the centre line offset by these half widths where they lie in [``MIN_HALF_WIDTH``,
    ``MAX_HALF_WIDTH``], else the other side's, else half of ``DEFAULT_LANE_WIDTH``; the inner side of a
    bend is kept within 0.9 x its radius (no self-intersecting polygons). ``is_connector`` = the
    ``interpolating`` flag (Waymo: the lane interpolates between two others, i.e. a path through an
    intersection; ~1/3 of the lanes. Signal-controlled lanes are not all interpolating: some are 48 m
    straight lanes running on past the intersection, so they are not taken as connectors).
    ``speed_limit`` = ``speed_limit_kmh`` / 3.6 (None where 0 / absent); ``successors`` = ``exit_lanes``
    (ids that are not lanes here dropped).
* **Drivable area**: nuScenes' converter writes the outline of the union of the drivable_area /
  road_segment / road_block layers as closed ``ROAD_LINE_SOLID_SINGLE_WHITE`` polylines named
  ``boundary_<n>`` (exterior and hole rings): they are rebuilt into the area (even-odd) and cut into
  hole-free pieces (needs shapely, like :func:`irlvla_jax.data.real_map.split_lanes`). Waymo has none (road
  edges are open polylines): ``drivable`` is empty and the lanes bound the drivable area. No intersection
  polygons in either source.
* **Crosswalks**: ``CROSSWALK`` polygons as 4 corners (the minimum-area rectangle around polygons with
  more vertices). DRIVEWAY, SPEED_BUMP and STOP_SIGN features are not read.
* **Markings**: ``ROAD_LINE_*`` polylines, style 2 if YELLOW, else 1 if BROKEN, else 0; ``ROAD_EDGE_*``
  (and nuScenes' ``boundary_<n>`` outlines) as solid 0.
* **Lights**: ``dynamic_map_states`` -> per step {lane id: is_red}; red = LANE_STATE_STOP /
  LANE_STATE_ARROW_STOP / LANE_STATE_FLASHING_STOP (and MetaDrive's TRAFFIC_LIGHT_RED); GO / CAUTION /
  ARROW_GO / ARROW_CAUTION / FLASHING_CAUTION / UNKNOWN / missing (None) -> not red. In the Waymo data the
  controlled ``lane`` *starts* at the ``stop_point`` (distance 0.0 m for all 30 signals checked): it is
  the lane beyond the stop line, through the intersection -- the no-enter zone of a red light. None when
  the scenario has no dynamic map states (nuScenes; also a Waymo scenario without signals).

Pickles can run code when loaded: only plain dicts / lists / numpy arrays are accepted (a restricted
unpickler); anything else is a :class:`LogError`.
"""
from __future__ import annotations

import glob
import os
import pickle
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np

from irlvla_jax import scene as S
from irlvla_jax.data import real
from irlvla_jax.data.real import LogError, RealLog, Track
from irlvla_jax.data.scenarionet_map import drivable_from_outlines, field, read_map
from irlvla_jax.geometry import EGO_CENTER

DT = 0.1                       # s: the RealLog clock
DT_TOL = 0.02                  # s: a step of 0.1 +- this counts as the uniform clock
MAX_EGO_GAP = 1.0              # s: longest run of invalid SDC steps interpolated inside the log
MAX_TAIL_GLITCH = 1.0          # s: a backward SDC jump this close to the end trims the log there
SKIP_FILES = ("dataset_summary.pkl", "dataset_mapping.pkl")   # ScenarioNet database index files

AGENT_TYPE = {"VEHICLE": S.AGENT_VEHICLE, "PEDESTRIAN": S.AGENT_PEDESTRIAN, "CYCLIST": S.AGENT_BICYCLE,
              "BICYCLE": S.AGENT_BICYCLE, "MOTORCYCLIST": S.AGENT_BICYCLE}
DEFAULT_SIZE = {S.AGENT_VEHICLE: (4.5, 1.9, 1.6), S.AGENT_PEDESTRIAN: (0.7, 0.7, 1.7),
                S.AGENT_BICYCLE: (1.8, 0.7, 1.6), S.AGENT_STATIC: (0.5, 0.5, 1.0)}
RED_STATES = frozenset({"LANE_STATE_STOP", "LANE_STATE_ARROW_STOP", "LANE_STATE_FLASHING_STOP",
                        "TRAFFIC_LIGHT_RED"})


# ----------------------------------------------------------------------------------------------------
# Reading

class _Unpickler(pickle.Unpickler):
    """Plain data only: builtin containers and numpy arrays / scalars / dtypes."""
    _NUMPY = {"_reconstruct", "scalar", "_frombuffer", "ndarray", "dtype"}
    _BUILTINS = {"int", "float", "str", "bytes", "bool", "complex", "list", "tuple", "dict", "set",
                 "frozenset", "bytearray", "slice", "range"}

    def find_class(self, module, name):
        ok = ((module.split(".")[0] == "numpy" and (name in self._NUMPY or module == "numpy.dtypes"))
              or (module == "builtins" and name in self._BUILTINS)
              or (module == "collections" and name in ("OrderedDict", "defaultdict"))
              or (module == "_codecs" and name == "encode"))         # bytes in protocol-2 pickles
        if not ok:
            raise pickle.UnpicklingError(f"refuses to load {module}.{name} (only plain dicts of numpy arrays)")
        return super().find_class(module, name)


def _read(path: str) -> Dict[str, Any]:
    try:
        with open(path, "rb") as f:
            d = _Unpickler(f).load()
    except OSError as e:
        raise LogError(path, "<file>", f"cannot read: {e.strerror or e}") from None
    except Exception as e:   # noqa: BLE001 - any unpickling failure is a malformed file
        raise LogError(path, "<file>", f"not a readable pickle: {type(e).__name__}: {e}".splitlines()[0]) from None
    if not isinstance(d, Mapping):
        raise LogError(path, "<file>", f"expected a ScenarioNet scenario dict, found {type(d).__name__}")
    return d


def _array(v, path: str, field: str, shape: Tuple, dtype=np.float64) -> np.ndarray:
    """``v`` as an array whose shape matches ``shape`` (None = any; a trailing 1 squeezed for [T, 1])."""
    try:
        a = np.asarray(v, dtype)
    except (TypeError, ValueError):
        raise LogError(path, field, "not a numeric array") from None
    if len(shape) == 1 and a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, a.shape)):
        raise LogError(path, field, f"expected shape {tuple('*' if s is None else s for s in shape)}, "
                       f"found {a.shape}")
    return a


# ----------------------------------------------------------------------------------------------------
# Clock

def _clock(ts: np.ndarray, path: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """-> (the uniform 10 Hz clock, None if the log is already on it, else the source times to resample)."""
    if len(ts) < 2:
        raise LogError(path, "metadata.ts", f"needs at least 2 steps, found {len(ts)}")
    if not np.all(np.isfinite(ts)):
        raise LogError(path, "metadata.ts", "non-finite timestamps")
    dt = np.diff(ts)
    if np.all(np.abs(dt - DT) <= DT_TOL):
        return ts[0] + DT * np.arange(len(ts)), None
    if np.any(dt <= 0):
        raise LogError(path, "metadata.ts", "timestamps not strictly increasing")
    n = int(np.floor((ts[-1] - ts[0]) / DT + 1e-6)) + 1
    if n < 2:
        raise LogError(path, "metadata.ts", f"spans {ts[-1] - ts[0]:.3f} s, less than one 10 Hz step")
    return ts[0] + DT * np.arange(n), ts


def _resample(src_t: np.ndarray, t: np.ndarray, xyh: np.ndarray, valid: np.ndarray):
    """Poses [N, 3] on ``src_t`` -> on ``t`` (linear, heading unwrapped between the two samples)."""
    i = np.clip(np.searchsorted(src_t, t, side="right") - 1, 0, len(src_t) - 2)
    w = np.clip((t - src_t[i]) / (src_t[i + 1] - src_t[i]), 0.0, 1.0)
    a, b = xyh[i], xyh[i + 1]
    dh = np.arctan2(np.sin(b[:, 2] - a[:, 2]), np.cos(b[:, 2] - a[:, 2]))
    out = np.stack([a[:, 0] + w * (b[:, 0] - a[:, 0]), a[:, 1] + w * (b[:, 1] - a[:, 1]), a[:, 2] + w * dh], -1)
    ok = np.where(w <= 1e-9, valid[i], np.where(w >= 1 - 1e-9, valid[i + 1], valid[i] & valid[i + 1]))
    return out, ok


def _wrap(h):
    return np.arctan2(np.sin(h), np.cos(h))


# ----------------------------------------------------------------------------------------------------
# Tracks

def _track_state(tr: Mapping, T: int, path: str, tid: str):
    """-> (xyh [T, 3] box centre, valid [T], state dict) of a raw track; non-finite valid steps invalid."""
    f = f"tracks.{tid}.state"
    st = field(tr, "state", path, f)
    pos = _array(field(st, "position", path, f + ".position", None), path, f + ".position", (T, None))
    if pos.shape[1] < 2:
        raise LogError(path, f + ".position", f"expected [T, 2 or 3], found {pos.shape}")
    head = _array(field(st, "heading", path, f + ".heading", None), path, f + ".heading", (T,))
    valid = _array(field(st, "valid", path, f + ".valid", None), path, f + ".valid", (T,)) > 0.5
    xyh = np.concatenate([pos[:, :2], head[:, None]], -1)
    return xyh, valid, st


def _size(st: Mapping, valid: np.ndarray, T: int, path: str, tid: str, agent_type: int) -> Tuple[float, float, float]:
    dims = []
    for k in ("length", "width", "height"):
        v = st.get(k)
        dims.append(None if v is None else _array(v, path, f"tracks.{tid}.state.{k}", (T,)))
    if dims[0] is not None and dims[1] is not None:
        ok = valid & np.isfinite(dims[0]) & np.isfinite(dims[1]) & (dims[0] > 0) & (dims[1] > 0)
        if ok.any():
            i = int(np.argmax(ok))
            h = dims[2][i] if dims[2] is not None and np.isfinite(dims[2][i]) and dims[2][i] > 0 \
                else DEFAULT_SIZE[agent_type][2]
            return float(dims[0][i]), float(dims[1][i]), float(h)
    return DEFAULT_SIZE[agent_type]


def _ego(raw: Mapping, ts: np.ndarray, path: str, sdc: str):
    """-> (rear-axle poses [T, 3] with interior gaps filled, first, last step to keep)."""
    T = len(ts)
    xyh, valid, _ = _track_state(raw, T, path, sdc)
    bad = valid & ~np.all(np.isfinite(xyh), -1)
    if bad.any():
        i = int(np.argmax(bad))
        raise LogError(path, f"tracks.{sdc}.state.position",
                       f"non-finite SDC pose at valid step {i} ({int(bad.sum())} steps)")
    idx = np.nonzero(valid)[0]
    if len(idx) < 2:
        raise LogError(path, f"tracks.{sdc}.state.valid", f"the SDC is valid at {len(idx)} steps, needs 2")
    gaps = np.where(np.diff(idx) > 1, np.diff(ts[idx]), 0.0)      # s between valid steps around a gap
    if gaps.max() > MAX_EGO_GAP + DT + 1e-6:
        k = int(np.argmax(gaps))
        raise LogError(path, f"tracks.{sdc}.state.valid",
                       f"the SDC is invalid for {gaps[k] - DT:.1f} s (steps {idx[k] + 1}..{idx[k + 1] - 1}), "
                       f"more than {MAX_EGO_GAP} s")
    a, b = int(idx[0]), int(idx[-1])
    steps = np.arange(T)
    h = np.unwrap(xyh[idx, 2])
    ego = np.stack([np.interp(steps, idx, xyh[idx, 0]), np.interp(steps, idx, xyh[idx, 1]),
                    np.interp(steps, idx, h)], -1)
    ego[:, 0] -= EGO_CENTER * np.cos(ego[:, 2])
    ego[:, 1] -= EGO_CENTER * np.sin(ego[:, 2])
    ego[:, 2] = _wrap(ego[:, 2])
    jump = _backward_jump(ego[a:b + 1])
    if jump is not None:
        i, back = a + jump[0], jump[1]
        if ts[b] - ts[i] > MAX_TAIL_GLITCH + 1e-6:
            raise LogError(path, f"tracks.{sdc}.state.position",
                           f"the SDC jumps {back:.2f} m backwards at step {i} -> {i + 1} while driving forwards")
        b = i                                   # stale poses at the end (nuScenes' converter): trimmed
    return ego, a, b


def _backward_jump(ego: np.ndarray) -> Optional[Tuple[int, float]]:
    """The first step i -> i+1 where poses [N, 3] move backwards (along the heading) while the 10
    steps around move forwards at more than 1 m/s, as (i, metres back); None if there is none."""
    if len(ego) < 3:
        return None
    d = np.diff(ego[:, :2], axis=0)
    lon = d[:, 0] * np.cos(ego[:-1, 2]) + d[:, 1] * np.sin(ego[:-1, 2])
    for i in np.nonzero(lon < 0)[0]:
        around = np.delete(lon[max(0, i - 5):i + 6], min(i, 5))
        med = float(np.median(around)) if len(around) else 0.0
        if med > 1.0 * DT and lon[i] < -0.1 * med:
            return int(i), float(-lon[i])
    return None


def _lights(dyn: Mapping, T: int, path: str) -> Optional[List[Dict[str, bool]]]:
    """-> per source step {lane id: is_red}, or None without dynamic states."""
    if not dyn:
        return None
    steps: List[Dict[str, bool]] = [dict() for _ in range(T)]
    for sid in sorted(dyn, key=str):
        s = dyn[sid]
        f = f"dynamic_map_states.{sid}"
        if not isinstance(s, Mapping):
            raise LogError(path, f, f"expected a dict, found {type(s).__name__}")
        lane = s.get("lane")
        if lane is None:
            raise LogError(path, f + ".lane", "missing")
        lane = str(lane)
        states = field(field(s, "state", path, f + ".state"), "object_state", path, f + ".state.object_state", None)
        if isinstance(states, (str, bytes, Mapping)) or not hasattr(states, "__len__"):
            raise LogError(path, f + ".state.object_state", f"expected a list of states, found {type(states).__name__}")
        states = list(states)
        if len(states) != T:
            raise LogError(path, f + ".state.object_state", f"expected {T} steps, found {len(states)}")
        for i, st in enumerate(states):
            steps[i][lane] = steps[i].get(lane, False) or (str(st) in RED_STATES)
    return steps


# ----------------------------------------------------------------------------------------------------
# The log

def load_log(path: str) -> RealLog:
    """A ScenarioNet scenario pickle -> :class:`RealLog` (global frame, rear-axle ego, 10 Hz; see the
    module docstring). Raises :class:`LogError` (file and field named, one line) on a malformed file."""
    path = str(path)
    try:
        return _load(path)
    except LogError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:   # a shape not foreseen
        raise LogError(path, "<structure>", f"malformed scenario: {type(e).__name__}: {e}".splitlines()[0]) from e


def _load(path: str) -> RealLog:
    d = _read(path)
    md = field(d, "metadata", path, "metadata")
    tracks_raw = field(d, "tracks", path, "tracks")
    mf = field(d, "map_features", path, "map_features")
    dyn = d.get("dynamic_map_states") or {}
    if not isinstance(dyn, Mapping):
        raise LogError(path, "dynamic_map_states", f"expected a dict, found {type(dyn).__name__}")
    dataset = str(md.get("dataset") or "scenarionet").lower()
    name = str(d.get("id") or md.get("scenario_id") or os.path.splitext(os.path.basename(path))[0])
    if "sdc_id" not in md or md["sdc_id"] is None:
        raise LogError(path, "metadata.sdc_id", "missing")
    sdc = str(md["sdc_id"])
    ts = _array(field(md, "ts", path, "metadata.ts", None), path, "metadata.ts", (None,))
    T = len(ts)
    if d.get("length") is not None and int(d["length"]) != T:
        raise LogError(path, "length", f"{d['length']} steps but metadata.ts has {T}")
    raw_tracks = {str(k): v for k, v in tracks_raw.items()}
    if sdc not in raw_tracks:
        raise LogError(path, "metadata.sdc_id", f"track {sdc!r} not in tracks")

    raw_lights = _lights(dyn, T, path)
    lanes, crosswalks, markings, outlines = read_map(mf, path, dataset)
    if not lanes:
        raise LogError(path, "map_features", "no drivable lanes (LANE_* features with a centre polyline)")
    lane_ids = {ln.id for ln in lanes}
    drivable = drivable_from_outlines(outlines, path)

    # Ego, trimmed to its valid span; then everything on the 10 Hz clock.
    if not np.all(np.isfinite(ts)):
        raise LogError(path, "metadata.ts", "non-finite timestamps")
    ego, a, b = _ego(raw_tracks[sdc], ts, path, sdc)
    t, src_t = _clock(ts[a:b + 1], path)
    ego = ego[a:b + 1]
    if src_t is not None:
        ego, _ = _resample(src_t, t, ego, np.ones(len(src_t), bool))
        ego[:, 2] = _wrap(ego[:, 2])
        src_idx = np.clip(np.searchsorted(src_t, t + 1e-9, side="right") - 1, 0, len(src_t) - 1)
    else:
        src_idx = np.arange(len(t))

    tracks: List[Track] = []
    for tid in sorted(raw_tracks):
        if tid == sdc:
            continue
        tr = raw_tracks[tid]
        if not isinstance(tr, Mapping):
            raise LogError(path, f"tracks.{tid}", f"expected a dict, found {type(tr).__name__}")
        agent_type = AGENT_TYPE.get(str(tr.get("type", "")).upper(), S.AGENT_STATIC)
        xyh, valid, st = _track_state(tr, T, path, tid)
        valid = valid & np.all(np.isfinite(xyh), -1)
        if not valid.any():
            continue
        size = _size(st, valid, T, path, tid, agent_type)
        xyh, valid = xyh[a:b + 1], valid[a:b + 1]
        xyh = np.where(valid[:, None], xyh, 0.0)
        if src_t is not None:
            xyh, valid = _resample(src_t, t, xyh, valid)
        if not valid.any():
            continue
        xyh[:, 2] = _wrap(xyh[:, 2])
        tracks.append(Track(tid, agent_type, *size, xyh, valid))

    lights = None
    if raw_lights is not None:
        lights = [{k: v for k, v in raw_lights[a + int(i)].items() if k in lane_ids} for i in src_idx]
    return RealLog(source=dataset, name=name, path=path, t=t, ego=ego, tracks=tracks, lanes=lanes,
                   drivable=drivable, intersections=[], crosswalks=crosswalks, markings=markings, lights=lights)


def scenario_files(src: str) -> List[str]:
    """The scenario pickles of folder ``src`` and its immediate subfolders (sorted; ScenarioNet's
    ``dataset_summary.pkl`` / ``dataset_mapping.pkl`` index files skipped), or ``[src]`` for one file."""
    src = str(src)
    if os.path.isfile(src):
        return [src]
    if not os.path.isdir(src):
        raise FileNotFoundError(f"{src}: no such ScenarioNet folder or file")
    files = glob.glob(os.path.join(src, "*.pkl")) + glob.glob(os.path.join(src, "*", "*.pkl"))
    return sorted(f for f in files if os.path.basename(f) not in SKIP_FILES)


def iter_windows(src: str, spec: S.SceneSpec, *, stride: int = 5, progress: bool = False,
                 render: bool = True) -> Iterator[real.Window]:
    """The windows (:func:`irlvla_jax.data.real.log_windows`) of every scenario in ``src`` (see
    :func:`scenario_files`), file by file; a file that cannot be read yields one
    :func:`real.failed_log` window (``t0 = -1``) with the one-line :class:`LogError`, and the others go on
    (as the AV2 adapter)."""
    files = scenario_files(src)
    if not files:
        raise FileNotFoundError(f"{src}: no ScenarioNet scenario (*.pkl) in the folder or its subfolders")
    it = files
    if progress:
        from tqdm import tqdm
        it = tqdm(files, desc="scenarionet", unit="log")
    for f in it:
        try:
            log = load_log(f)
        except LogError as e:
            yield real.failed_log(os.path.splitext(os.path.basename(f))[0], e)
            continue
        yield from real.log_windows(log, spec, stride=stride, render=render)
