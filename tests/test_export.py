"""``irlvla export`` (irlvla_jax/export.py) and examples/run_exported.py: a micro IL checkpoint exported, run
without the project (no irlvla_jax module imported), bit-exact with ``imitation.policy``; another batch size;
the rl stage (run ppo_rwm); one-line errors."""
import dataclasses
import functools
import json
import os
import runpy
import subprocess
import sys
import types

import jax
import numpy as np
import pytest

from irlvla_jax import export as E
from irlvla_jax.errors import UserError
from irlvla_jax.scene import FIELDS, SceneSpec
from irlvla_jax.train.synthetic import SyntheticIterator, micro_config, random_anchors, random_scenes
from tests.compile_flags import DEFAULT_EMITTER

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "run_exported.py")
# Runs the example in an isolated interpreter (-I: no PYTHONPATH, no script dir / cwd on sys.path), then
# fails if any irlvla_jax module was imported.
ISOLATED = ("import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'irlvla_jax']; assert not bad, bad")


def _args(stage):
    return types.SimpleNamespace(stage=stage)


def _load(d, name):
    """(manifest, params, deserialized function ``name``) of an export folder, as the example loads them."""
    import orbax.checkpoint as ocp
    with open(os.path.join(d, "manifest.json")) as f:
        man = json.load(f)
    params = ocp.PyTreeCheckpointer().restore(os.path.join(d, "params"))
    with open(os.path.join(d, man["functions"][name]["file"]), "rb") as f:
        return man, params, jax.export.deserialize(bytearray(f.read()))


def _flat(scenes, man):
    return {f: np.asarray(getattr(scenes, f)) for f in man["inputs"]["scenes"]}


def _run_example(argv, capsys):
    """The example in this process -> (exit message or None, stdout)."""
    old = sys.argv
    sys.argv = [EXAMPLE, *argv]
    try:
        runpy.run_path(EXAMPLE, run_name="__main__")
        msg = None
    except SystemExit as e:
        msg = str(e.code)
    finally:
        sys.argv = old
    return msg, capsys.readouterr().out


def test_errors_are_one_line(tmp_path):
    cfg = micro_config()
    with pytest.raises(UserError, match=r"--stage il or --stage rl"):
        E.main(cfg, str(tmp_path), _args("ppo"))
    with pytest.raises(UserError, match=r"export --stage il: no il checkpoint .*irlvla train --stage il") as e:
        E.main(cfg, str(tmp_path), _args("il"))
    assert "\n" not in str(e.value)
    assert not os.path.exists(os.path.join(tmp_path, "export"))
    p = subprocess.run([sys.executable, "-m", "irlvla_jax.cli", "export", "--stage", "rl", "--config",
                        os.path.join(ROOT, "configs", "tiny.py"), "--workdir", str(tmp_path / "wd")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300, env=dict(os.environ, IRLVLA_TRACEBACK=""))
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1, p.stderr[-2000:]
    assert lines[0].startswith("irlvla: error: export --stage rl: no il checkpoint"), lines[0]


def test_export_il_and_rl(tmp_path, capsys, monkeypatch):
    from irlvla_jax.train import imitation, loop, ppo, reward
    from irlvla_jax.train import mesh as mesh_lib
    from irlvla_jax.train.checkpoint import Checkpointer
    from irlvla_jax.train.state import TrainState
    cfg = micro_config()          # the program of tests/train/test_imitation.py (compilation cache)
    cfg.il.checkpoint_every = 2
    spec = SceneSpec.from_config(cfg.scene)
    wd = str(tmp_path / "wd")
    imitation.train(cfg, wd, train_iter=SyntheticIterator(spec, 8, seed=11),
                    anchors=random_anchors(cfg.data.num_anchors), stop_at=2, progress=False)   # checkpoint: step 2

    # -- il ------------------------------------------------------------------------------------------
    m = E.main(cfg, wd, _args("il"))
    d = os.path.join(wd, "export", "il")
    assert m["dir"] == d and m["run"] == "il" and m["chunk"] == cfg.il.batch_size
    names = sorted(os.listdir(d))
    assert names == sorted(["manifest.json", "params", "policy.jax_export", "policy_any_batch.jax_export",
                            "policy.jax_export.pkl", "policy_any_batch.jax_export.pkl",
                            "sample_input.npz", "sample_output.npy"]), names
    assert not [n for n in os.listdir(os.path.dirname(d)) if n.startswith(".")]      # no temporary left
    man, params, fixed = _load(d, "fixed")
    assert man["functions"]["fixed"]["batch"] == cfg.il.batch_size and man["functions"]["any_batch"]["batch"] == "b"
    assert man["functions"]["fixed"]["sample"]["bit_exact"] and man["output"]["shape"] == ["B", 8, 3]
    assert {"camera", "lidar", "instruction", "command", "ego_past"} <= set(man["inputs"]["scenes"]) < set(FIELDS)
    assert "expert_future" not in man["inputs"]["scenes"]          # the policy does not read the answer
    assert man["jax_version"] == jax.__version__ and man["stage"] == "il"

    # (a) the example, isolated: prints the shape and the first pose, imports no irlvla_jax module.
    p = subprocess.run([sys.executable, "-I", "-c", ISOLATED, EXAMPLE, d], capture_output=True, text=True,
                       cwd=str(tmp_path), timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert p.returncode == 0, p.stderr[-3000:]
    expected = np.load(os.path.join(d, "sample_output.npy"))
    assert f"trajectories ({cfg.il.batch_size}, 8, 3) float32" in p.stdout, p.stdout
    assert str(expected[0, 0].tolist()) in p.stdout, p.stdout

    # (b) bit for bit the trainer's policy on the sample scenes (the synthetic sample is regenerated).
    scenes, source = E.sample_scenes(cfg, wd, spec, m["chunk"])
    assert source.startswith("synthetic")
    sample = dict(np.load(os.path.join(d, "sample_input.npz")))
    assert sample.keys() == man["inputs"]["scenes"].keys()
    for f, v in sample.items():
        np.testing.assert_array_equal(v, getattr(scenes, f))
    pol = imitation.policy(cfg, wd, chunk=m["chunk"])
    ref = pol(scenes)[:, 0]
    got = np.asarray(fixed.call(params, sample, np.int32(0)))
    assert got.shape == (m["chunk"], 8, 3) and got.dtype == np.float32
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(expected, ref)
    assert not np.array_equal(np.asarray(fixed.call(params, sample, np.int32(5))), ref)   # the seed is an input

    # (c) another batch size: the fixed function is refused in one line; the symbolic one runs it (3 scenes:
    # one padded chunk; 11: two chunks, keys seed + 0 and seed + 8) and equals the policy to float rounding.
    np.savez(tmp_path / "three.npz", **{f: v[:3] for f, v in sample.items()})
    msg, _ = _run_example([d, str(tmp_path / "three.npz")], capsys)
    assert msg and "takes exactly 8 scenes per call, got 3" in msg and "--any-batch" in msg and "\n" not in msg
    msg, out = _run_example([d, str(tmp_path / "three.npz"), "--any-batch"], capsys)
    assert msg is None and "trajectories (3, 8, 3)" in out, (msg, out)
    _, _, anyb = _load(d, "any_batch")
    for n in (3, 11):
        sc = random_scenes(spec, n, seed=n)
        out = np.asarray(anyb.call(params, _flat(sc, man), np.int32(0)))
        assert out.shape == (n, 8, 3)
        np.testing.assert_allclose(out, pol(sc)[:, 0], rtol=0, atol=1e-4)

    # -- rl (run ppo_rwm) -------------------------------------------------------------------------------
    with pytest.raises(UserError, match=r"export --stage rl: no ppo_rwm checkpoint .*irlvla train --stage ppo") as e:
        E.main(cfg, wd, _args("rl"))
    assert "\n" not in str(e.value)
    # A stand-in PPO checkpoint (training PPO needs an RWM, whose held-out report compiles the scorer: too
    # slow here): the IL planner, perturbed, saved as step 1 of ppo_rwm exactly as ppo.train saves its state.
    c = ppo.variant(cfg, reward="rwm", objective="denoise")
    gd, il_params, consts = imitation.restore(c, wd, mesh_lib.make_mesh(1))
    state = ppo.build(c, gd, il_params, consts)[2]
    state = dataclasses.replace(state, params=jax.tree.map(lambda x: x * 1.25 + 0.01, state.params))
    assert c.ppo.rwm_refresh_every > 0        # the default: the checkpoint holds the refreshed RWM's state too
    rwm_state = TrainState.create(reward.build_rwm(c)[1], {}, reward.make_optimizer(c.rwm), 0)
    ck = Checkpointer(loop.checkpoint_dir(wd, ppo.run_name(c)), config=c, async_save=False)
    ck.save(1, {"ppo": state, "rwm": rwm_state}, force=True)
    ck.close()
    m = E.main(cfg, wd, _args("rl"))
    d = os.path.join(wd, "export", "rl")
    assert m["run"] == "ppo_rwm" and m["chunk"] == c.ppo.batch_size and m["stage"] == "rl"
    man, params, fixed = _load(d, "fixed")
    scenes, _ = E.sample_scenes(c, wd, spec, m["chunk"])
    # Bit for bit with XLA's default emitter (tests/compile_flags.py): the trainer's policy jitted with it, and
    # the exported function called under a jit with it.
    with monkeypatch.context() as patch:
        patch.setattr(jax, "jit", functools.partial(jax.jit, compiler_options=DEFAULT_EMITTER))
        ref = ppo.policy(c, wd)(scenes)[:, 0]
        got = jax.jit(fixed.call)(params, _flat(scenes, man), np.int32(0))
    np.testing.assert_array_equal(np.asarray(got), ref)
    il_ref = pol(scenes)[:, 0]
    assert not np.allclose(ref, il_ref)                          # the PPO checkpoint's planner was exported
    assert os.path.exists(os.path.join(wd, "export", "il", "manifest.json"))     # the il export is kept
