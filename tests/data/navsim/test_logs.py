"""Tests of irlvla_jax.data.navsim.logs: scene windows and the checked frame readers' errors (through
convert_scene, which names the token and the field)."""
import numpy as np
import pytest

from irlvla_jax import scene as S
from irlvla_jax.data import navsim as N
from tests.data.navsim.synthetic import N_FRAMES, SPEC, make_frame, map_dict


def test_split_log_filters_like_navsim():
    frames = [make_frame(i) for i in range(N_FRAMES)]
    frames[4]["roadblock_ids"] = []                           # the second window's t0 has no route
    scenes = N.split_log(frames)
    assert list(scenes) == ["tok03abcdef"]
    assert len(scenes["tok03abcdef"]) == 14
    assert list(N.split_log(frames, has_route=False)) == ["tok03abcdef", "tok04abcdef"]
    assert N.split_log(frames[:13]) == {}                     # too short


def _err(frames, **kw):
    with pytest.raises(S.SceneError) as e:
        N.convert_scene(frames, SPEC, N.DictMapLayers(map_dict()), **kw)
    return str(e.value)


def test_bad_records_name_token_and_field():
    base = [make_frame(i) for i in range(14)]
    f = [dict(x) for x in base]
    del f[5]["ego_dynamic_state"]
    msg = _err(f)
    assert "tok03abcdef" in msg and "frames[5].ego_dynamic_state" in msg and "missing" in msg
    f = [dict(x) for x in base]
    f[6]["anns"] = dict(f[6]["anns"], gt_boxes=f[6]["anns"]["gt_boxes"].copy())
    f[6]["anns"]["gt_boxes"][1, 0] = np.nan
    msg = _err(f)
    assert "tok03abcdef" in msg and "frames[6].anns.gt_boxes" in msg and "finite" in msg
    f = [dict(x) for x in base]
    f[3]["ego2global_translation"] = [1.0, float("inf"), 0.0]
    assert "frames[3].ego2global_translation" in _err(f)
    f = [dict(x) for x in base]
    names = f[4]["anns"]["gt_names"].copy().astype(object)
    names[0] = "spaceship"
    f[4]["anns"] = dict(f[4]["anns"], gt_names=names)
    assert "frames[4].anns.gt_names" in _err(f) and "spaceship" in _err(f)
    f = [dict(x) for x in base]
    vel = f[4]["anns"]["gt_velocity_3d"].copy()
    vel[list(f[4]["anns"]["track_tokens"]).index("lead"), 0] = np.nan   # a vehicle needs a velocity
    f[4]["anns"] = dict(f[4]["anns"], gt_velocity_3d=vel)
    assert "frames[4].anns.gt_velocity_3d" in _err(f)
    f = [dict(x) for x in base]
    f[7]["anns"] = dict(f[7]["anns"], gt_boxes=f[7]["anns"]["gt_boxes"][:, :6])
    msg = _err(f)
    assert "frames[7].anns.gt_boxes" in msg and "shape (N, 7)" in msg
    f = [dict(x) for x in base]
    f[2]["ego_dynamic_state"] = [1.0, 0.0, 0.0]
    assert "frames[2].ego_dynamic_state" in _err(f) and "shape (4,)" in _err(f)
    f = [dict(x) for x in base]
    f[3]["driving_command"] = [1, 1, 0, 0]
    assert "frames[3].driving_command" in _err(f)
    assert "frames" in _err(base[:10]) and "tok03abcdef" in _err(base[:10])   # too few frames
    f = [dict(x) for x in base]
    f[3]["roadblock_ids"] = ["RB_elsewhere"]
    msg = _err(f)
    assert "route" in msg and "tok03abcdef" in msg
