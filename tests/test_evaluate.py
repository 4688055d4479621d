"""irlvla_jax.evaluate: bootstrap statistics, the policy registry and an end-to-end `evaluate` run."""
from __future__ import annotations

import json
import os
import types

import numpy as np
import pytest

from irlvla_jax import evaluate as E


def test_bootstrap_ci_is_seeded_and_covers_the_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(0.7, 0.2, size=(400, 3))
    m, lo, hi = E.bootstrap_ci(x, n_boot=500, seed=3)
    np.testing.assert_allclose(m, x.mean(0))
    assert np.all(lo < m) and np.all(m < hi)
    # about +-1.96 standard errors
    se = x.std(0) / np.sqrt(len(x))
    np.testing.assert_allclose(hi - lo, 2 * 1.96 * se, rtol=0.2)
    m2, lo2, hi2 = E.bootstrap_ci(x, n_boot=500, seed=3)
    assert np.array_equal(lo, lo2) and np.array_equal(hi, hi2)
    _, lo_small, hi_small = E.bootstrap_ci(x[:25], n_boot=500, seed=3)
    assert np.all(hi_small - lo_small > hi - lo)  # fewer scenes, wider interval


def test_paired_difference():
    rng = np.random.default_rng(1)
    il = rng.uniform(0.3, 0.9, 300)
    rl = il + 0.05 + rng.normal(0, 0.02, 300)
    d = E.paired_difference(rl, il)
    assert abs(d["mean"] - (rl - il).mean()) < 1e-12 and d["n"] == 300
    assert 0.0 < d["lo"] < d["mean"] < d["hi"]          # significant improvement
    same = E.paired_difference(il, il)
    assert same["mean"] == same["lo"] == same["hi"] == 0.0
    with pytest.raises(ValueError, match="same length"):
        E.paired_difference(rl, il[:10])


def test_default_differences_pair_each_run_with_its_baselines():
    names = ["constant_velocity", "expert", "il", "rwm", "ppo_rwm", "ppo_rwm_pick"]
    pairs = E.default_differences(names)
    assert ("ppo_rwm", "il") in pairs and ("ppo_rwm_pick", "il") in pairs and ("ppo_rwm_pick", "rwm") in pairs
    assert ("il", "constant_velocity") in pairs and not any("expert" in p for p in pairs)
    assert all(a in names and b in names for a, b in pairs) and len(set(pairs)) == len(pairs)
    # a pick row evaluated without the RWM stage's row: only its pairs with what was evaluated
    alone = E.default_differences(["constant_velocity", "ppo_rwm_pick"])
    assert alone == [("ppo_rwm_pick", "constant_velocity")]


def test_scoring_num_devices_is_validated():
    from irlvla_jax import config as C
    from irlvla_jax.scoring import epdms
    from configs import tiny
    c = tiny.get_config()
    c.scoring.num_devices = -1
    with pytest.raises(ValueError, match=r"config.scoring.num_devices: must be an int >= 0"):
        C.check(c)
    c.scoring.num_devices = 10_000
    with pytest.raises(ValueError, match=r"config.scoring.num_devices=10000: \d+ local device"):
        epdms.scorer_from_config(c)
    assert epdms.round_chunk(6, 4) == 8 and epdms.round_chunk(6, 2) == 6 and epdms.round_chunk(6, 1) == 6


def test_policy_registry_and_trajectory_checks():
    with pytest.raises(ValueError, match="exists"):
        E.register_policy("expert", E.expert)
    with pytest.raises(ValueError, match="callable"):
        E.register_policy("x", 3)
    with pytest.raises(ValueError, match="expected"):
        E._check_trajectories("bad", np.zeros((4, 1, 6, 3)), 4)
    with pytest.raises(ValueError, match="non-finite"):
        E._check_trajectories("nan", np.full((2, 1, 8, 3), np.nan), 2)
    with pytest.raises(ValueError, match="unknown policy"):
        E.load_stage_policies(None, "/tmp", "nonsense")


def test_evaluate_end_to_end(world_dataset, capsys):
    from irlvla_jax import config as C
    c, wd = world_dataset
    c.evaluate.splits = ("val",)
    c.evaluate.chunk = 6
    c.evaluate.bootstrap = 200
    c.scoring.num_devices = 2          # every scorer call sharded over a 2-device 'data' mesh (chunk 6 = 2 x 3)
    C.check(c)
    # a registered extra policy (stand still) is evaluated next to the baselines
    E.register_policy("stand_still", lambda s: np.zeros((np.asarray(s.scene_id).shape[0], 1, 8, 3)),
                      overwrite=True)
    try:
        E.main(c, wd, types.SimpleNamespace(policies="stand_still", predictions=None, mode=None, rest=[], seeds=None))
    finally:
        E.unregister_policy("stand_still")
    out = capsys.readouterr().out
    assert "| expert |" in out and "| constant_velocity |" in out
    last = json.loads(out.strip().splitlines()[-1])
    assert os.path.exists(last["json"]) and os.path.exists(last["markdown"])
    with open(last["json"]) as f:
        saved = json.load(f)
    assert saved["mode"] == c.scoring.mode and saved["policies"] == ["constant_velocity", "expert", "stand_still"]
    val = saved["splits"]["val"]
    assert val["num_scenes"] == 12
    allg = val["groups"]["all"]
    for p in saved["policies"]:
        for col in E.COLUMNS:
            r = allg[p][col]
            assert r["lo"] - 1e-9 <= r["mean"] <= r["hi"] + 1e-9 and 0.0 <= r["mean"] <= 1.0
        # the "all" mean is the scene-weighted mean of the family groups
        fam = [g for g in val["groups"] if g != "all"]
        assert sum(val["groups"][g][p]["n"] for g in fam) == 12
        weighted = sum(val["groups"][g][p]["EPDMS"]["mean"] * val["groups"][g][p]["n"] for g in fam) / 12
        assert abs(weighted - allg[p]["EPDMS"]["mean"]) < 1e-9
    # the logged expert beats standing still (EP = 0 wherever PDM-Closed drives > 5 m)
    assert allg["expert"]["EPDMS"]["mean"] > allg["stand_still"]["EPDMS"]["mean"]
    assert allg["stand_still"]["EP"]["mean"] < 0.5
    assert allg["expert"]["EC"]["mean"] == 1.0  # no previous plans in datasets
    # two-frame tables: the baselines with their plans made at -0.5 s (EC scored, /16); the same plan,
    # so every other sub-score equals the main table's; constant velocity is not extended-comfortable
    # everywhere (its -0.5 s plan holds a different velocity)
    two = val["two_frame"]
    assert set(two) == {"constant_velocity", "expert"}
    for p, r in two.items():
        for col in ("NC", "DAC", "DDC", "TLC", "EP", "TTC", "LK", "HC"):
            assert abs(r[col]["mean"] - allg[p][col]["mean"]) < 1e-9, (p, col)
        assert r["n"] == 12 and 0.0 <= r["EC"]["mean"] <= 1.0
    assert two["constant_velocity"]["EC"]["mean"] < 1.0
    assert "two-frame" in open(last["markdown"]).read()
    # every trained/extra policy gets its paired difference against constant velocity
    d = val["differences"]["stand_still - constant_velocity"]
    assert d["n"] == 12 and d["lo"] <= d["mean"] <= d["hi"]
    # renders: one PNG per requested scene, with every policy drawn
    assert len(val["renders"]) == min(int(c.evaluate.renders), 12)
    for p in val["renders"]:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_previous_plans_are_the_baselines_made_at_minus_half_a_second():
    """The previous plans, taken back to the t0 frame: the expert's is its logged poses at 0.0 ... 3.5 s;
    constant velocity's runs along the -0.5 s heading at the -0.5 s speed."""
    from irlvla_jax import geometry as G
    from irlvla_jax import scene as S
    from irlvla_jax.world.generate import generate_scene
    from irlvla_jax.config import scene_spec
    from configs import tiny
    spec = scene_spec(tiny.get_config())
    scenes = S.stack([generate_scene(spec, 0, i, "test") for i in range(3)])
    past = np.asarray(scenes.ego_past)[:, 10]
    back = lambda prev: np.asarray(G.se2_to_global(past[:, None, :3], prev[:, 0]))
    ex = back(E.expert_previous(scenes))
    fut = np.asarray(scenes.expert_future)
    np.testing.assert_allclose(ex[:, 0], 0.0, atol=1e-4)                  # the ego at t0 (the origin)
    np.testing.assert_allclose(ex[:, 1:, :2], fut[:, :7, :2], atol=1e-4)
    np.testing.assert_allclose(np.asarray(G.normalize_angle(ex[:, 1:, 2] - fut[:, :7, 2])), 0.0, atol=1e-5)
    cv = back(E.constant_velocity_previous(scenes))
    speed = np.hypot(past[:, 3], past[:, 4])
    step = np.linalg.norm(np.diff(cv[..., :2], axis=1), axis=-1)          # 0.5 s apart
    np.testing.assert_allclose(step, 0.5 * speed[:, None].repeat(7, 1), rtol=1e-4, atol=1e-4)
    assert E.PREVIOUS_PLANS.keys() == {"constant_velocity", "expert"}


def test_ppo_monitor_scores_the_executed_plans(world_dataset):
    """ppo.make_monitor_fn (PPO's reward-hacking curve): the true scorer's means of the executed plans under
    ``exec_<name>``, from the scorer program ``irlvla evaluate`` runs (here sharded over the 2-device mesh of
    test_evaluate_end_to_end, chunks of 6 scenes: the same compiled program); None when
    ``ppo.log_true_score`` is off."""
    import copy
    import jax
    from irlvla_jax.data import loader as L
    from irlvla_jax.scoring import epdms
    from irlvla_jax.train import ppo
    c, wd = world_dataset
    c = copy.deepcopy(c)
    c.scoring.num_devices = 2
    scenes = L.load_split(c, "val", data_dir=L.data_dir(c, wd), limit=6)
    traj = np.asarray(E.constant_velocity(scenes), np.float32)
    mesh = epdms.data_mesh(2)
    got = jax.device_get(ppo.make_monitor_fn(c, mesh)(scenes, traj))
    want = epdms.scorer_from_config(c)[0](scenes, traj)
    assert set(got) == {f"exec_{k}" for k in ppo.MONITORED}
    for k, v in ppo.MONITORED.items():
        assert float(got[f"exec_{k}"]) == pytest.approx(float(np.mean(np.asarray(getattr(want, v)))), abs=1e-6), k
    assert float(got["exec_true_epdms"]) < float(got["exec_NC"]) + 1e-6
    c.ppo.log_true_score = False
    assert ppo.make_monitor_fn(c, mesh) is None
