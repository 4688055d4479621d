"""CLI commands: one-line errors for bad config, inspect's table + JSON, render's PNGs, viz API."""
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from irlvla_jax.data import commands
from irlvla_jax.scene import FAMILIES, SPLITS, WORLD_SPLITS
from tests.data.conftest import ROOT, SIZES


def _cli(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("IRLVLA_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", "irlvla_jax.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("flag, expect", [
    ("--config.data.bogus_key=1", "bogus_key"),
    ("--config.data.num_train=0", "config.data.num_train: must be >= 1"),
])
def test_bad_config_is_a_one_line_error(tmp_path, flag, expect):
    r = _cli("generate", "--config", "configs/tiny.py", "--workdir", str(tmp_path), flag)
    assert r.returncode != 0
    err = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(err) == 1, r.stderr[-2000:]
    assert expect in err[0]
    assert not os.path.exists(tmp_path / "data" / "irlvla_world_tiny")


def test_data_checker_names_key():
    from irlvla_jax import config as config_lib
    from tests.data.conftest import tiny_config
    for key, val, expect in (("render_split", "nope", "config.data.render_split: must be one of"),
                             ("workers", -1, "config.data.workers: must be >= 0"),
                             ("name", "Bad Name", "config.data.name: must match")):
        c = tiny_config()
        c.data[key] = val
        with pytest.raises(ValueError, match=expect):
            config_lib.check(c)


def _args(*rest):
    return types.SimpleNamespace(rest=list(rest), stage=None, predictions=None, mode=None, seeds=None)


def test_inspect_counts_families_and_ranges(dataset, tmp_path, capsys):
    cfg, meta = dataset
    out = commands.inspect(cfg, str(tmp_path), _args())
    text = capsys.readouterr().out
    printed = json.loads(text.strip().splitlines()[-1])
    assert printed == json.loads(json.dumps(out))
    assert out["counts_match_metadata"]
    for s in WORLD_SPLITS:
        r = out["splits"][s]
        assert r["count"] == SIZES[f"num_{s}"]
        assert r["families"] == meta["families"][s]
        assert 0.0 <= r["ego_speed_mps"]["min"] <= r["ego_speed_mps"]["mean"] <= r["ego_speed_mps"]["max"] <= 15.0
        assert 0 <= r["agents_at_t0"]["min"] <= r["agents_at_t0"]["max"] <= 16
    assert "expert progress" in text and all(f in text for f in FAMILIES)


def test_render_writes_pngs(dataset, tmp_path):
    cfg, _ = dataset
    paths = commands.render(cfg, str(tmp_path), _args("test", "2"))
    assert len(paths) == 2 and all(p.startswith(str(tmp_path / "render" / "test")) for p in paths)
    for p in paths:
        data = open(p, "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(data) < 150_000
    with pytest.raises(Exception, match="neither a split"):
        commands.render(cfg, str(tmp_path), _args("bogus"))


def test_render_scene_with_scored_candidates(dataset, tmp_path):
    from irlvla_jax import viz
    from irlvla_jax.data import loader
    from irlvla_jax.scene import index
    cfg, _ = dataset
    s = index(loader.load_split(cfg, "val", limit=1), 0)
    trajs = np.stack([s.expert_future + np.array([0.0, dy, 0.0], np.float32) for dy in (-2, 0, 2)])
    p = viz.render_scene(s, str(tmp_path / "c.png"), trajectories=trajs, labels=["a", "b", "c"],
                         scores=[0.1, 0.5, 0.9], title="candidates")
    assert open(p, "rb").read()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="labels has 2 entries for 3 trajectories"):
        viz.render_scene(s, str(tmp_path / "d.png"), trajectories=trajs, labels=["a", "b"])
    batch = loader.load_split(cfg, "val", limit=2)
    with pytest.raises(Exception, match="unbatched"):
        viz.render_scene(batch, str(tmp_path / "e.png"))


def test_generate_command_with_the_real_world(tmp_path, capsys):
    """`irlvla generate` end to end on the embedded world (tiny sizes, in-process), then load it back."""
    from irlvla_jax.data import loader
    from tests.data.conftest import tiny_config
    cfg = tiny_config(num_train=9, num_val=3, num_test=3, num_hard=3, num_anchors=3)
    summary = commands.generate(cfg, str(tmp_path), _args())
    assert summary["sizes"] == {"train": 9, "val": 3, "test": 3, "hard": 3} and not summary["skipped"]
    assert cfg.data.data_dir == str(tmp_path / "data")  # resolved and stored for later calls
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(line)["path"] == str(tmp_path / "data" / "irlvla_world_tiny")
    for s in WORLD_SPLITS:
        assert sum(summary["families"][s].values()) == summary["sizes"][s]
    assert all(v == 1 for v in summary["families"]["train"].values())  # 9 = one block of the 9 families
    val = loader.load_split(cfg, "val")
    assert len(set(val.scene_id.tolist())) == 3 and set(val.split.tolist()) == {SPLITS.index("val")}
    assert loader.load_anchors(cfg).shape == (3, 8, 3)
    again = commands.generate(cfg, str(tmp_path), _args())
    assert again["skipped"]
    # same identity but damaged (anchors.npy deleted): generate rebuilds it instead of calling it up to date
    os.remove(tmp_path / "data" / "irlvla_world_tiny" / "anchors.npy")
    capsys.readouterr()
    fixed = commands.generate(cfg, str(tmp_path), _args())
    assert not fixed["skipped"] and "anchors.npy is missing; regenerating it" in capsys.readouterr().out
    assert loader.load_anchors(cfg).shape == (3, 8, 3)
