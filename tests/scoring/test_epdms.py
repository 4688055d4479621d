"""Aggregation, human filter, EC handling, compile-once behaviour and input validation of the scorer."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from irlvla_jax import scene as S
from irlvla_jax.scoring import vectors as V
from irlvla_jax.scoring import epdms as E
from tests.scoring.vector_data import vectors_dir

B = 15  # the batch shape test_vectors compiles (shared jitted function, see epdms.make_scorer)


def test_formula_and_ec_denominator():
    s = {k: jnp.asarray([1.0, 1.0]) for k in E.SUB_SCORES}
    s["EP"] = jnp.asarray([0.5, 0.5])
    s["EC"] = jnp.asarray([0.0, 0.0])
    no_ec = np.asarray(E.epdms_formula(s, False))
    with_ec = np.asarray(E.epdms_formula(s, True))
    np.testing.assert_allclose(no_ec, (5 * 0.5 + 5 + 2 + 2) / 14)
    np.testing.assert_allclose(with_ec, (5 * 0.5 + 5 + 2 + 2 + 0) / 16)
    s["NC"] = jnp.asarray([0.5, 0.0])
    np.testing.assert_allclose(np.asarray(E.epdms_formula(s, False)), [0.5 * no_ec[0], 0.0])


@pytest.fixture(scope="module")
def batches():
    names, scenes, props, prevs, has = V.load_vectors(vectors_dir())
    return names, scenes, props, prevs, has


def test_compiles_once_and_filter_recomputes_product(batches):
    names, scenes, props, prevs, has = batches
    modes = ("tracked", "direct")               # the function test_vectors compiles
    fn = E.make_scorer(modes, True)
    assert fn is E.make_scorer(modes, True)
    outs = []
    for s0 in (0, B):
        idx = np.arange(s0, s0 + B)
        outs.append(fn(S.index(scenes, idx), props[idx], prevs[idx], has[idx]))
    assert fn._cache_size() == 1, "the scorer recompiled for a batch of the same shape"
    a, b = outs[0]["direct"], outs[1]["tracked"]
    assert not np.allclose(np.asarray(a.EPDMS), np.asarray(b.EPDMS))
    for out, s0 in ((a, 0), (b, B)):
        d = {k: np.asarray(getattr(out, k)) for k in E.SUB_SCORES}
        hp = has[s0:s0 + B][:, None]
        np.testing.assert_allclose(np.asarray(out.EPDMS), np.asarray(E.epdms_formula(d, hp)), atol=1e-6)
        assert np.all(d["EC"][~has[s0:s0 + B]] == 1.0)
        for k in E.SUB_SCORES:
            assert np.all((d[k] >= 0) & (d[k] <= 1)), k
    # scene_0000: the expert runs a light that turns red; the filter sets every proposal's TLC to 1,
    # and EPDMS is recomputed from the filtered product (the v2.2 fix: never 0 with all sub-scores 1).
    assert names[0] == "scene_0000.json"
    tlc0 = np.asarray(a.TLC)[0]
    assert np.all(tlc0 == 1.0)
    all_one = np.all(np.stack([np.asarray(getattr(a, k))[0] for k in E.SUB_SCORES if k != "EP"]) == 1.0, axis=0)
    assert np.all(np.asarray(a.EPDMS)[0][all_one] > 0.0)


def test_bad_inputs_raise_clear_errors(batches):
    _, scenes, props, prevs, has = batches
    sc = S.index(scenes, np.arange(2))
    with pytest.raises(ValueError, match=r"trajectories: expected shape \[B, N, 8, 3\]"):
        E.score(sc, props[:2, :, :7], None)
    with pytest.raises(ValueError, match="prev_trajectories"):
        E.score(sc, props[:2], prevs[:2, :3])
    with pytest.raises(ValueError, match="scoring mode"):
        E.make_scorer("open_loop")
    from jax.sharding import Mesh
    mesh = Mesh(np.asarray(jax.devices()[:4]), ("data",))
    with pytest.raises(ValueError, match="multiple of the mesh 'data' axis"):
        E.make_scorer("direct", True, mesh=mesh)(sc, props[:2][:1].repeat(3, 0), None)


def test_sharded_scoring_over_mesh_matches_one_device(batches):
    """The batch sharded over an 8-device 'data' axis: same scores as on one device, outputs sharded.

    The sharded program scores the tracked mode only; the one-device reference is the module's shared
    (tracked, direct) function at B = 15 (compiled once for test_vectors and the tests above; scenes are
    scored independently and the modes share nothing but the planner), so one program is compiled here.

    Run in a watchdog thread: a batched LAPACK solve once deadlocked XLA:CPU's worker pool when the
    devices ran concurrently (rollout._chain_least_squares replaced it), which would hang, not fail."""
    import threading
    from jax.sharding import Mesh
    _, scenes, props, prevs, has = batches
    n_dev = len(jax.devices())
    assert 2 <= n_dev <= B, "tests run with --xla_force_host_platform_device_count=8 (tests/conftest.py)"
    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    idx = np.arange(n_dev)
    args = (S.index(scenes, idx), props[idx], prevs[idx], has[idx])
    out = {}

    def run():
        out["sharded"] = jax.block_until_ready(E.make_scorer("tracked", True, mesh=mesh)(*args))

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(timeout=300)
    assert not th.is_alive(), "sharded scoring did not finish in 300 s (XLA:CPU deadlock?)"
    ref = np.arange(B)
    one = E.make_scorer(("tracked", "direct"), True)(S.index(scenes, ref), props[ref], prevs[ref], has[ref])["tracked"]
    sharded = out["sharded"]
    assert sharded.EPDMS.shape == (n_dev, props.shape[1])
    assert len(sharded.EPDMS.sharding.device_set) == n_dev
    assert sharded.EPDMS.sharding.spec[0] == "data"
    for k in E.Scores.__dataclass_fields__:
        np.testing.assert_allclose(np.asarray(getattr(sharded, k)), np.asarray(getattr(one, k))[:n_dev], atol=1e-5,
                                   err_msg=k)


def test_two_stage_weights():
    so, sp = jnp.asarray([1.0]), jnp.asarray([0.5])
    sn, sq = jnp.asarray([[1.0, 0.0]]), jnp.asarray([[0.0, 1.0]])
    end = jnp.asarray([[10.0, 0.0]])
    start_n = jnp.asarray([[[10.0, 0.0], [30.0, 0.0]]])     # the first follow-up starts where o ends
    got = float(E.two_stage(so, sp, sn, sq, end, start_n, end, start_n)[0])
    assert got == pytest.approx(0.5 * (1.0 * 1.0 + 0.5 * 0.0), abs=1e-6)
    far = jnp.asarray([[[900.0, 0.0], [950.0, 0.0]]])       # weights ~0 -> uniform
    got = float(E.two_stage(so, sp, sn, sq, end, far, end, far)[0])
    assert got == pytest.approx(0.5 * (0.5 + 0.5 * 0.5), abs=1e-6)
