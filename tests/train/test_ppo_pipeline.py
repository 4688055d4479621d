"""irlvla_jax/pipeline.py: stage markers (resume), baselines, bootstrap interval, tables (no training)."""
import json
import os
import types

import numpy as np
import pytest

from irlvla_jax import pipeline as PL
from irlvla_jax.scene import SceneSpec, empty_scene, stack


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


def test_constant_velocity_baseline():
    spec = SceneSpec()
    s = [empty_scene(spec) for _ in range(2)]
    s[0].ego_state[3] = 10.0
    s[1].ego_state[3:5] = (4.0, 1.0)
    out = PL.constant_velocity(stack(s))
    assert out.shape == (2, 1, 8, 3)
    np.testing.assert_allclose(out[0, 0, :, 0], 10.0 * np.arange(1, 9) * 0.5)
    np.testing.assert_allclose(out[1, 0, -1], [16.0, 4.0, 0.0])


def test_bootstrap_interval_is_sane():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=400)
    m, lo, hi = PL.bootstrap_diff(a + 0.1, a)
    assert m == pytest.approx(0.1) and lo <= m <= hi
    b = rng.uniform(size=400)
    m2, lo2, hi2 = PL.bootstrap_diff(a, b)
    assert lo2 < m2 < hi2 and hi2 - lo2 > 0.02     # unpaired noise -> a real interval


def test_results_table(tmp_path):
    row = {c: 0.5 for c in ("EPDMS",) + PL.SUBS}
    res = dict(seed=0, split="test", scenes=3, scoring_mode="tracked", best_of_n_candidates=32,
               table={k: dict(row) for k in PL.POLICIES},
               differences={"rl_rwm - il": dict(mean=0.01, lo=-0.02, hi=0.04)})
    text = PL._write_results(str(tmp_path), [res, dict(res, seed=1)])
    assert "| RL (RWM reward) |" in text and "best-of-32" in text and "mean +- std over seeds 0,1" in text
    assert (tmp_path / "results.md").exists() and json.loads((tmp_path / "results.json").read_text())[0]["seed"] == 0


def test_bad_seeds_flag(tmp_path):
    import ml_collections
    cfg = ml_collections.ConfigDict(dict(seed=0, data=dict(data_dir=str(tmp_path))))
    with pytest.raises(ValueError, match="--seeds must be comma-separated integers"):
        PL.main(cfg, str(tmp_path), types.SimpleNamespace(seeds="0,x"))
