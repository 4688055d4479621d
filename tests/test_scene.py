"""scene.py: validate() names field / expected / found; padding conventions; padded_chunks."""
import numpy as np
import pytest

from irlvla_jax import scene as S


@pytest.fixture(scope="module")
def spec():
    return S.SceneSpec()


def test_empty_scene_is_valid_and_batches(spec):
    s = S.validate(S.empty_scene(spec), spec)
    b = S.stack([s, s, s])
    S.validate(b, spec, batch_dims=1)
    assert b.ego_history.shape == (3, 4, 7)


@pytest.mark.parametrize("field,value,needle", [
    ("agent_boxes", np.nan, "finite values"),
    ("speed_limit", -3.0, "values in"),
    ("command", None, "one-hot"),
])
def test_validate_names_the_field(spec, field, value, needle):
    d = S.empty_scene(spec).to_dict()
    if field == "command":
        d["command"] = np.array([1, 1, 0, 0], np.float32)
    else:
        d[field] = np.full_like(d[field], value)
    with pytest.raises(S.SceneError, match=field) as e:
        S.validate(S.Scene(**d), spec, where="scene 7")
    assert needle in str(e.value) and str(e.value).startswith("scene 7:")


def test_wrong_shape_and_dtype(spec):
    d = S.empty_scene(spec).to_dict()
    d["route"] = d["route"][:-1]
    with pytest.raises(S.SceneError, match="'route'.*shape"):
        S.validate(S.Scene(**d), spec)
    d = S.empty_scene(spec).to_dict()
    d["camera"] = d["camera"].astype(np.float32)
    with pytest.raises(S.SceneError, match="'camera'.*dtype uint8"):
        S.validate(S.Scene(**d), spec)


def test_padding_conventions(spec):
    poly, mask = S.pad_polygon([[0, 0], [1, 0], [1, 1]], 5)
    assert mask.tolist() == [True, True, True, False, False] and (poly[3:] == poly[0]).all()
    line, lmask = S.pad_polyline([[0, 0], [2, 0]], 4)
    assert lmask.sum() == 2 and (line[2:] == line[1]).all()
    with pytest.raises(S.SceneError, match="at most 2 vertices"):
        S.pad_polygon([[0, 0], [1, 0], [1, 1]], 2, "lane_polygons")
    d = S.empty_scene(spec).to_dict()
    d["lane_valid"][0] = True
    d["lane_polygons"][0], d["lane_vertex_valid"][0] = S.pad_polygon([[0, 0], [1, 0], [1, 1]], spec.lane_vertices)
    d["lane_centerlines"][0], d["lane_point_valid"][0] = S.pad_polyline([[0, 0], [1, 0]], spec.lane_points)
    S.validate(S.Scene(**d), spec)
    d["lane_polygons"][0, -1] = (5.0, 5.0)  # padding that is not vertex 0
    with pytest.raises(S.SceneError, match="padded vertices equal to vertex 0"):
        S.validate(S.Scene(**d), spec)


def test_padded_chunks_cover_every_scene_once_with_fixed_shape(spec):
    b = S.stack([S.empty_scene(spec)] * 5)
    b = b.replace(scene_id=np.arange(5, dtype=np.int32))
    got = [(i, m, c.scene_id.tolist()) for i, c, m in S.padded_chunks(b, 2)]
    assert got == [(0, 2, [0, 1]), (2, 2, [2, 3]), (4, 1, [4, 4])]
    assert all(c.camera.shape[0] == 2 for _, c, _ in S.padded_chunks(b, 2))
