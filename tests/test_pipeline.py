"""irlvla_jax/pipeline.py: stage markers (resume), stage order, the headline table through evaluate, the
results files (no training)."""
import json
import os
import types

import numpy as np
import pytest

from irlvla_jax import pipeline as PL


def test_stage_marker_skips_finished_stage(tmp_path):
    calls = []

    def fn():
        calls.append(1)
        return {"x": 1.5, "state": object()}      # non-JSON items such as a state are dropped
    a = PL._stage(str(tmp_path), "rwm", fn)
    b = PL._stage(str(tmp_path), "rwm", fn)
    assert calls == [1] and a["x"] == b["x"] == 1.5 and "state" not in b
    with open(tmp_path / "stages" / "rwm.json") as f:
        assert json.load(f)["x"] == 1.5


def test_failed_stage_leaves_no_marker(tmp_path):
    def boom():
        raise RuntimeError("killed")
    with pytest.raises(RuntimeError):
        PL._stage(str(tmp_path), "ppo_rwm", boom)
    assert not os.path.exists(PL._marker(str(tmp_path), "ppo_rwm"))


def test_results_table(tmp_path):
    row = {c: 0.5 for c in PL.COLUMNS}
    res = dict(seed=0, split="test", scenes=3, scoring_mode="tracked", best_of_n_candidates=32,
               table={k: dict(row) for k in PL.POLICIES},
               differences={"ppo_rwm - il": dict(mean=0.01, lo=-0.02, hi=0.04)})
    res["other_splits"] = [dict(res, split="hard", differences={"ppo_rwm - il": dict(mean=0.02, lo=0.01, hi=0.03)})]
    text = PL._write_results(str(tmp_path), [res, dict(res, seed=1)])
    assert "| RL (RWM reward) |" in text and "best-of-32" in text and "mean +- std over seeds 0,1" in text
    assert "seed 0: hard split, 3 scenes" in text
    assert "seed 0, hard: RL (RWM) - IL +0.0200 [+0.0100, +0.0300]  (excludes 0)" in text
    assert "seed 0, test: RL (RWM) - IL +0.0100 [-0.0200, +0.0400]\n" in text + "\n"
    assert (tmp_path / "results.md").exists() and json.loads((tmp_path / "results.json").read_text())[0]["seed"] == 0


def test_bad_seeds_flag(tmp_path):
    import ml_collections
    cfg = ml_collections.ConfigDict(dict(seed=0, data=dict(data_dir=str(tmp_path))))
    with pytest.raises(ValueError, match="--seeds must be comma-separated integers"):
        PL.main(cfg, str(tmp_path), types.SimpleNamespace(seeds="0,x"))


def test_pipeline_orchestration_and_resume(tmp_path, monkeypatch):
    """Stage order, per-seed run directories sharing one dataset, and resume after a crash (stages
    replaced by recorders; the real stages are exercised by their own tests and the CLI)."""
    import ml_collections
    from irlvla_jax.data import commands as data_commands
    from irlvla_jax.train import imitation, ppo, reward
    calls = []
    crash = {"on": True}

    def rec(name):
        def f(config, workdir, *a, **kw):
            tag = name + (f":{config.ppo.reward}" if name == "ppo" else "")
            if name == "ppo" and config.ppo.objective == "choice":
                tag += ":choice"
            if tag == "ppo:scorer":      # PPO alone at its own step: the scorer is not differentiable
                assert config.ppo.reward_grad_weight == 0.0 and config.ppo.lr == 5e-6, config.ppo
                assert config.ppo.updates == 10                   # scorer_updates 0 = ppo.updates
            if name == "ppo":     # only RL (RWM) refreshes its RWM: choice-only keeps the stage-2 RWM, the scorer has none
                assert ppo.refresh_every(config) == (0 if tag in ("ppo:scorer", "ppo:rwm:choice") else 5), tag
            if tag == "ppo:scorer" and crash["on"]:
                crash["on"] = False
                raise RuntimeError("killed")
            calls.append((tag, os.path.basename(workdir), int(config.seed), config.data.data_dir,
                          config.data.get("world_seed", -1)))
            return {"ok": 1}
        return f
    monkeypatch.setattr(data_commands, "generate", rec("generate"))
    monkeypatch.setattr(imitation, "train", rec("il"))
    monkeypatch.setattr(reward, "train", rec("rwm"))
    monkeypatch.setattr(ppo, "train", rec("ppo"))
    row = {c: 0.5 for c in PL.COLUMNS}

    def fake_eval(config, workdir, seed):
        calls.append(("evaluate", os.path.basename(workdir), seed, config.data.data_dir))
        return dict(seed=seed, split="test", scenes=1, scoring_mode="direct", best_of_n_candidates=4,
                    table={k: dict(row) for k in PL.POLICIES},
                    differences={"ppo_rwm - il": dict(mean=0.0, lo=0.0, hi=0.0)})
    monkeypatch.setattr(PL, "evaluate_run", fake_eval)
    monkeypatch.setattr(PL, "make_figure", lambda *a, **k: "fig.png")
    cfg = ml_collections.ConfigDict(dict(
        seed=0, data=dict(data_dir="", world_seed=-1, name="irlvla_world_tiny"),
        ppo=dict(reward="rwm", objective="denoise", lr=1e-5, updates=10, samples_per_scene=4, log_true_score=True,
                 reward_grad_weight=10.0, rwm_refresh_every=5),
        pipeline=dict(choice_only_lr=3e-3, choice_only_updates=20, choice_only_samples=1, scorer_updates=0,
                      scorer_lr=5e-6)))
    args = types.SimpleNamespace(seeds="0,1")
    with pytest.raises(RuntimeError, match="killed"):
        PL.main(cfg, str(tmp_path), args)
    done = [c[0] for c in calls]
    assert done == ["generate", "il", "rwm", "ppo:rwm"]
    calls.clear()
    PL.main(cfg, str(tmp_path), args)                     # resume: finished stages are skipped
    assert [(c[0], c[1], c[2]) for c in calls] == [
        ("ppo:scorer", "seed_0", 0), ("ppo:rwm:choice", "seed_0", 0), ("evaluate", "seed_0", 0),
        ("il", "seed_1", 1), ("rwm", "seed_1", 1), ("ppo:rwm", "seed_1", 1), ("ppo:scorer", "seed_1", 1),
        ("ppo:rwm:choice", "seed_1", 1), ("evaluate", "seed_1", 1)]
    assert {c[3] for c in calls} == {str(tmp_path / "data")}   # one shared dataset
    # Every training seed reads the dataset of seed 0 (the loader checks the world seed, not config.seed).
    assert {c[4] for c in calls if c[0] != "evaluate"} == {0}
    assert "mean +- std over seeds 0,1" in (tmp_path / "results.md").read_text()
    # A single-seed run in the workdir itself (the README's main job) joins a later --seeds summary.
    for stage in ("il", "rwm", "ppo_rwm", "ppo_scorer", "ppo_rwm_choice"):
        PL._stage(str(tmp_path), stage, lambda: {"ok": 1})
    PL._stage(str(tmp_path), "evaluate", lambda: fake_eval(cfg, str(tmp_path), 7))
    calls.clear()
    PL.main(cfg, str(tmp_path), types.SimpleNamespace(seeds="0,1"))
    assert [c[0] for c in calls] == []                    # every stage already done
    text = (tmp_path / "results.md").read_text()
    assert "mean +- std over seeds 7,0,1" in text and "### seed 7: test split" in text
    # ... and when its seed is in the list it is that seed's run: seed 7 is not trained again.
    PL.main(cfg, str(tmp_path), types.SimpleNamespace(seeds="7,1,2"))
    assert {c[1] for c in calls} == {"seed_2"} and not (tmp_path / "seed_7").exists()
    text = (tmp_path / "results.md").read_text()
    assert "mean +- std over seeds 7,1,2" in text and "### seed 7: test split" in text


def test_headline_table_comes_from_evaluate(world_dataset, tmp_path, monkeypatch):
    """pipeline.evaluate_split (the code behind the headline table) on a generated split, with simple
    policies under the table's names: every row is evaluate's mean, every difference is the paired
    per-scene difference with its bootstrap interval, and the results files print the table. The
    two-frame rows, which the table does not show, are not scored (no previous plan is asked for)."""
    import copy
    from irlvla_jax import evaluate as E

    def no_previous_plans(scenes):
        raise AssertionError("the pipeline's table scored a two-frame row")
    for name in E.PREVIOUS_PLANS:
        monkeypatch.setitem(E.PREVIOUS_PLANS, name, no_previous_plans)
    c, wd = world_dataset
    c = copy.deepcopy(c)
    c.pipeline.eval_split, c.pipeline.eval_scenes = "val", 10
    # The scorer as tests/test_evaluate.py::test_evaluate_end_to_end sets it (chunks of 6 sharded over 2
    # devices; 10 scenes = 6 + 4 padded): the same compiled programs, not two more.
    c.evaluate.bootstrap, c.evaluate.renders, c.evaluate.chunk, c.scoring.num_devices = 200, 0, 6, 2
    n_of = lambda s: np.asarray(s.scene_id).shape[0]  # noqa: E731
    still = lambda s: np.zeros((n_of(s), 1, 8, 3), np.float32)  # noqa: E731
    pols = {p: E.constant_velocity for p in PL.POLICIES}
    pols.update(expert=E.expert, ppo_rwm=E.expert, il=still, ppo_rwm_choice=still)
    try:
        res = PL.evaluate_split(c, wd, 0, "val", policies=pols, rwm_report=False)
    finally:
        for p in PL.POLICIES:
            if p not in ("constant_velocity", "expert"):
                E.unregister_policy(p)
    assert res["scenes"] == 10 and set(res["table"]) == set(PL.POLICIES)
    per = {k: np.asarray(v) for k, v in res["per_scene_epdms"].items()}
    for p in PL.POLICIES:
        assert res["table"][p]["EPDMS"] == pytest.approx(per[p].mean()) and per[p].shape == (10,)
    assert res["table"]["ppo_rwm"] == res["table"]["expert"]
    d = res["differences"]["ppo_rwm - il"]
    assert d["mean"] == pytest.approx((per["ppo_rwm"] - per["il"]).mean()) and d["lo"] <= d["mean"] <= d["hi"]
    assert d["lo"] > 0                                   # the logged expert beats standing still
    assert res["differences"]["ppo_rwm - ppo_rwm_choice"]["mean"] == pytest.approx(d["mean"])
    assert set(res["differences"]) == {f"{a} - {b}" for a, b in PL.DIFFERENCES}
    text = PL._write_results(str(tmp_path), [res])
    assert "| RL (RWM reward) |" in text and "val split, 10 scenes" in text


def test_figure_draws_the_report_examples_without_compiling(world_dataset, tmp_path, monkeypatch):
    """make_figure renders each example scene twice (samples coloured by true EPDMS, then by RWM reward)
    from the arrays evaluate_split kept, and compiles nothing (no jit call)."""
    import copy
    import jax
    from irlvla_jax.data import loader as L
    c, wd = world_dataset
    c = copy.deepcopy(c)
    scenes = L.load_split(c, "val", data_dir=L.data_dir(c, wd), limit=2)
    rng = np.random.default_rng(0)
    traj = np.cumsum(np.tile([[1.0, 0.0, 0.0]], (2, 5, 8, 1)), axis=2).astype(np.float32)
    true, pred = rng.uniform(size=(2, 5)), rng.uniform(size=(2, 5))
    drawn = []

    def fake_render(one, path, **kw):
        import matplotlib.pyplot as plt
        drawn.append(kw)
        plt.imsave(path, np.zeros((4, 4, 3)))
        return path
    monkeypatch.setattr("irlvla_jax.viz.render_scene", fake_render)
    monkeypatch.setattr(jax, "jit", lambda *a, **k: pytest.fail("the figure compiled a program"))
    path = PL.make_figure(c, str(tmp_path), str(tmp_path / "fig.png"), (scenes, traj, pred, true))
    assert os.path.getsize(path) > 0 and len(drawn) == 4
    np.testing.assert_array_equal(drawn[0]["scores"], true[0])
    np.testing.assert_array_equal(drawn[3]["scores"], pred[1])
    assert "true EPDMS" in drawn[0]["title"] and "RWM reward" in drawn[1]["title"]
