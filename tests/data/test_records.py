"""Record codec and anchors: byte-determinism, exact round trip, one-line SceneErrors naming the field."""
import dataclasses

import numpy as np
import pytest

from irlvla_jax.data.anchors import compute_anchors, kmeans
from irlvla_jax.data.records import decode_scene, encode_scene
from irlvla_jax.scene import FIELDS, SceneError, SceneSpec
from tests.data.standin import generate_scene

SPEC = SceneSpec()


def _scene(i=0, spec=SPEC):
    return generate_scene(spec, 0, i, "train")


def test_encode_is_deterministic_and_round_trips():
    a, b = encode_scene(_scene(3)), encode_scene(_scene(3))
    assert a == b
    assert encode_scene(_scene(4)) != a
    s = decode_scene(a, SPEC)
    ref = _scene(3)
    for n in FIELDS:
        got, want = getattr(s, n), getattr(ref, n)
        assert got.dtype == want.dtype and got.shape == want.shape, n
        np.testing.assert_array_equal(got, want, err_msg=n)


def _one_line(e):
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_truncated_and_foreign_records():
    rec = encode_scene(_scene())
    with pytest.raises(SceneError) as e:
        decode_scene(rec[: len(rec) // 2], SPEC, where="train record 7 (scene_id 7)")
    msg = _one_line(e)
    assert "'record'" in msg and "truncated" in msg and "train record 7 (scene_id 7)" in msg
    with pytest.raises(SceneError) as e:
        decode_scene(b"PNG....." + rec[8:], SPEC, where="r1")
    assert "not a scene record" in _one_line(e)
    flipped = bytearray(rec)
    flipped[len(rec) // 2] ^= 0xFF
    with pytest.raises(SceneError) as e:
        decode_scene(bytes(flipped), SPEC, where="r2")
    assert "'record'" in _one_line(e)


def test_nan_is_rejected_on_read_naming_field_and_scene():
    s = _scene()
    s.expert_future[3, 1] = np.nan
    rec = encode_scene(s)  # encoding does not validate; decoding must
    with pytest.raises(SceneError) as e:
        decode_scene(rec, SPEC, where="val record 2 (scene_id 1000002)")
    msg = _one_line(e)
    assert "'expert_future'" in msg and "finite" in msg and "scene_id 1000002" in msg


def test_wrong_shape_is_rejected_naming_field():
    small = dataclasses.replace(SPEC, num_agents=8)
    rec = encode_scene(_scene(spec=small))
    with pytest.raises(SceneError) as e:
        decode_scene(rec, SPEC, where="test record 0")
    msg = _one_line(e)
    assert "'agent_boxes'" in msg and "(16, 41, 5)" in msg and "(8, 41, 5)" in msg


def test_kmeans_recovers_separated_clusters_and_is_deterministic():
    rng = np.random.default_rng(0)
    centres = np.stack([np.stack([np.linspace(1, 8, 8) * v, np.full(8, y), np.zeros(8)], -1)
                        for v, y in ((1.0, 0.0), (3.0, 0.0), (2.0, 6.0), (2.0, -6.0))])
    x = np.concatenate([c + 0.05 * rng.standard_normal((50, 8, 3)) for c in centres])
    a = compute_anchors(x, 4, seed=1)
    assert a.shape == (4, 8, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, compute_anchors(x, 4, seed=1))
    # every true centre has an anchor within 0.1 m (max abs) of it
    d = np.abs(a[:, None] - centres[None]).max(axis=(2, 3))
    assert np.all(d.min(axis=0) < 0.1), d
    with pytest.raises(ValueError, match="num_anchors"):
        kmeans(x[:3], 4)
