"""Converted datasets (irlvla_jax/data/converted.py): real-log windows -> the TFDS dataset with the one split
``real``, read by the generator's loader; the ``convert`` / ``submit`` commands on a tiny NAVSIM log."""
import json
import os
import pickle
import subprocess
import sys
import types

import numpy as np
import pytest

from irlvla_jax import scene as S
from irlvla_jax.data import commands, converted as C, loader
from irlvla_jax.data.real import LogError, Window
from irlvla_jax.errors import UserError
from irlvla_jax.train.synthetic import random_scenes
from tests.data.conftest import ROOT, tiny_config
from tests.data.navsim.synthetic import build_log, map_dict

SPEC = S.SceneSpec.from_config(tiny_config().scene)
POOL = random_scenes(SPEC, 8, seed=3)


def _scene(i: int) -> S.Scene:
    return S.index(POOL, i % 8).replace(scene_id=np.asarray(1000 + i, np.int32))


def fake_source(plan):
    """iter_log for logs named in ``plan``: {log: [item, ...]}, an item is a scene index, a rejection
    reason (str), or an exception instance raised at that point."""
    def iter_log(path):
        for j, item in enumerate(plan[path]):
            if isinstance(item, BaseException):
                raise item
            tok = f"{path}@{j * 500}"
            if isinstance(item, str):
                yield Window(path, tok, j, None, item, {})
            else:
                yield Window(path, tok, j, _scene(item), "", {"agents_dropped": j, "max_simplify_m": 0.1 * j})
    return iter_log


def _write(tmp_path, plan, name="real_fake", **kw):
    return C.write_converted(SPEC, str(tmp_path), name, source="fake", logs=list(plan),
                             iter_log=fake_source(plan), progress=False, **kw)


def _cfg(tmp_path, name="real_fake"):
    c = tiny_config(data_dir=str(tmp_path))
    c.data.name = name
    return c


def test_round_trip_through_the_loader(tmp_path):
    meta = _write(tmp_path, {"log_a": [0, 1, 2], "log_b": [3, 4]}, info={"stride": 5})
    assert meta["kind"] == "converted" and meta["source"] == "fake" and meta["sizes"] == {"real": 5}
    assert meta["tokens"] == {str(1000 + i): t for i, t in
                              enumerate(["log_a@0", "log_a@500", "log_a@1000", "log_b@0", "log_b@500"])}
    assert meta["spec"]["num_agents"] == SPEC.num_agents and meta["info"] == {"stride": 5}
    assert not os.path.exists(os.path.join(meta["path"], "anchors.npy"))
    cfg = _cfg(tmp_path)
    got = loader.load_split(cfg, "real")
    assert got.scene_id.tolist() == [1000, 1001, 1002, 1003, 1004]
    want = S.stack([_scene(i) for i in range(5)])
    for n in S.FIELDS:
        if n == "split":
            assert (got.split == S.SPLITS.index("real")).all()
        else:
            np.testing.assert_array_equal(getattr(got, n), getattr(want, n), err_msg=n)
    batches = list(loader.make_loader(cfg, "real", 2, shuffle=False, num_epochs=1, process_index=0,
                                      process_count=1))
    assert len(batches) == 2 and all(b.scene_id.shape == (2,) for b in batches)
    assert [b.scene_id.tolist() for b in loader.iter_split(cfg, "real", 3)] == [[1000, 1001, 1002], [1003, 1004]]
    # A converted dataset has only `real` and no anchors; a world dataset has no `real`: one line each.
    with pytest.raises(loader.DatasetError, match=r"has only the split 'real', not 'test'.*--name real_fake"):
        loader.load_split(cfg, "test")
    with pytest.raises(loader.DatasetError, match="has no anchors"):
        loader.load_anchors(cfg)


def test_world_dataset_has_no_real_split(dataset):
    cfg, _ = dataset
    with pytest.raises(loader.DatasetError, match=r"generated world dataset .* `irlvla convert"):
        loader.load_split(cfg, "real")


def test_rejections_by_reason_and_the_report(tmp_path):
    plan = {"log_a": [0, "no route at t0: pose (3.5, 1.0) matches no lane", 1,
                      "no route at t0: pose (7.0, -2.0) matches no lane", "too short"]}
    lines = []
    meta = _write(tmp_path, plan, on_log=lambda s: lines.append(C.log_line(s)))
    (log,) = meta["logs"]
    assert (log["windows"], log["written"], log["error"]) == (5, 2, "")
    assert log["rejected"] == {"no route at t0: pose (#, #) matches no lane": 2, "too short": 1}
    assert log["examples"]["too short"] == "too short"
    assert log["report"] == {"agents_dropped": 0 + 2, "max_simplify_m": pytest.approx(0.2)}
    assert meta["totals"]["rejected_by_reason"] == log["rejected"]
    assert (meta["totals"]["windows"], meta["totals"]["written"], meta["totals"]["rejected"]) == (5, 2, 3)
    assert lines == ["log_a: 2/5 windows written, 3 rejected: 2 x no route at t0: pose (#, #) matches no lane; "
                     "1 x too short | cut: agents_dropped 2, max_simplify_m 0.2"]


def test_a_bad_log_fails_alone(tmp_path):
    plan = {"log_a": [0, 1], "log_bad": [2, LogError("log_bad/scenario.parquet", "track_id", "not a string")],
            "log_c": [3]}
    meta = _write(tmp_path, plan)
    logs = {s["log"]: s for s in meta["logs"]}
    assert logs["log_bad"]["error"] == "log_bad/scenario.parquet: field 'track_id': not a string"
    assert logs["log_bad"]["written"] == 0 and "FAILED" in C.log_line(logs["log_bad"])
    assert (logs["log_a"]["written"], logs["log_c"]["written"]) == (2, 1)
    assert meta["totals"]["logs"] == 3 and meta["totals"]["logs_failed"] == 1
    assert loader.load_split(_cfg(tmp_path), "real").scene_id.tolist() == [1000, 1001, 1003]  # not log_bad's 1002


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_interrupted_write_leaves_nothing(tmp_path, exc):
    _write(tmp_path, {"log_a": [0]})                                   # an older dataset of that name
    with pytest.raises(type(exc)):
        _write(tmp_path, {"log_a": [0, 1], "log_b": [2, exc], "log_c": [3]})
    assert sorted(os.listdir(tmp_path)) == ["real_fake"]              # no temp dir, the old one intact
    assert loader.load_split(_cfg(tmp_path), "real").scene_id.tolist() == [1000]
    with pytest.raises(type(exc)):
        _write(tmp_path, {"log_a": [0, exc]}, name="real_new")
    assert sorted(os.listdir(tmp_path)) == ["real_fake"]


def test_duplicate_scene_ids_are_refused(tmp_path):
    plan = {"log_a": [0, 1], "log_b": [9, 2]}                          # 9 -> scene id 1009 ... and 1 again:
    it = fake_source(plan)

    def iter_log(path):
        for w in it(path):
            if w.token == "log_b@0":
                w.scene = w.scene.replace(scene_id=np.asarray(1001, np.int32))
            yield w
    with pytest.raises(S.SceneError, match=r"1 duplicate\(s\): 1001 for 'log_a@500' and 'log_b@0'"):
        C.write_converted(SPEC, str(tmp_path), "real_dup", source="fake", logs=list(plan), iter_log=iter_log,
                          progress=False)
    assert os.listdir(tmp_path) == []


def test_nothing_converted_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"no window converted from 2 log\(s\) \(1 failed, 1 window\(s\) read, "
                                        r"1 rejected: 1 x no lane"):
        _write(tmp_path, {"a": ["no lane"], "b": [LogError("b", "x", "bad")]})
    assert os.listdir(tmp_path) == []


def test_navsim_map_sources(tmp_path):
    d = map_dict()
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "boston.json").write_text(json.dumps(d))
    (tmp_path / "maps" / "other.json").write_text(json.dumps({"sg-one-north": {"lanes": []}}))
    layers, desc = C.navsim_maps(str(tmp_path / "maps"))
    assert "2 map JSON file(s): sg-one-north, us-ma-boston" in desc and len(layers._maps) == 2
    (tmp_path / "maps" / "again.json").write_text(json.dumps(d))
    with pytest.raises(UserError, match="map 'us-ma-boston' is in both again.json and boston.json"):
        C.navsim_maps(str(tmp_path / "maps"))
    assert C.navsim_maps(None)[0] is None and "empty map" in C.navsim_maps(None)[1]
    (tmp_path / "nuplan").mkdir()
    (tmp_path / "nuplan" / "nuplan-maps-v1.0.json").write_text("{}")
    try:
        import nuplan  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match=r"--maps .*nuplan: a nuPlan maps root needs the NAVSIM devkit.*pip"):
            C.navsim_maps(str(tmp_path / "nuplan"))
    with pytest.raises(UserError, match="multiple of 5"):
        C.navsim_windows(SPEC, None, stride=3)


def _navsim_logs(folder):
    """Two tiny NAVSIM logs (2 windows each, distinct tokens), one whose frame 5 lacks its dynamics (both
    windows rejected), and a file that is not a pickle (a failed log)."""
    os.makedirs(folder, exist_ok=True)
    for prefix, drop in (("a", False), ("b", False), ("c", True)):
        frames = build_log(os.path.join(folder, f"log_{prefix}.pkl"), log=f"log_{prefix}")
        for f in frames:
            f["token"] = f"{prefix}_{f['token']}"
        if drop:
            del frames[5]["ego_dynamic_state"]
        with open(os.path.join(folder, f"log_{prefix}.pkl"), "wb") as fh:
            pickle.dump(frames, fh)
    with open(os.path.join(folder, "log_zbroken.pkl"), "wb") as fh:
        fh.write(b"not a pickle")


def test_cli_convert_navsim_then_submit(tmp_path):
    from irlvla_jax import evaluate as E
    from irlvla_jax.data import navsim as N
    _navsim_logs(str(tmp_path / "logs"))
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "boston.json").write_text(json.dumps(map_dict()))
    wd = str(tmp_path / "wd")
    p = subprocess.run([sys.executable, "-m", "irlvla_jax.cli", "convert", "navsim", str(tmp_path / "logs"),
                        "--config", os.path.join(ROOT, "configs", "tiny.py"), "--workdir", wd,
                        "--maps", str(tmp_path / "maps")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout.splitlines()
    assert "log_a: 2/2 windows written" in out and "log_b: 2/2 windows written" in out
    assert any(ln.startswith("log_c: 0/2 windows written, 2 rejected: 2 x NAVSIM scene <window>: scene field "
                             "'frames[#].ego_dynamic_state'") for ln in out), out
    assert any(ln.startswith("log_zbroken: FAILED (") for ln in out), out
    assert "us-ma-boston" in out[0]
    totals = json.loads(out[-1])
    assert {k: totals[k] for k in ("source", "logs", "logs_failed", "windows", "written", "rejected", "name")} == \
        dict(source="navsim", logs=4, logs_failed=1, windows=6, written=4, rejected=2, name="real_navsim")
    assert totals["path"] == os.path.join(wd, "data", "real_navsim")

    cfg = tiny_config(data_dir=os.path.join(wd, "data"))
    cfg.data.name = "real_navsim"
    scenes = loader.load_split(cfg, "real")
    tokens = loader.load_metadata(cfg)["tokens"]
    want = sorted(f"{p}_tok{i:02d}abcdef" for p in "ab" for i in (3, 4))
    assert sorted(tokens[str(int(i))] for i in scenes.scene_id) == want
    assert scenes.lane_valid.any() and (scenes.split == S.SPLITS.index("real")).all()

    # `evaluate --name` scores the converted split; `submit` writes NAVSIM's pickle (cfg.data.name untouched).
    cfg.data.name = "irlvla_world_tiny"
    assert tuple(E._select_dataset(cfg, wd, "real_navsim").evaluate.splits) == ("real",)
    args = types.SimpleNamespace(name="real_navsim", policy="cv", out=str(tmp_path / "sub.pkl"),
                                 rest=["team_name=t", "authors=a,b"])
    summary = commands.submit(cfg, wd, args)
    assert summary["tokens"] == 4 and cfg.data.name == "irlvla_world_tiny"
    sub = N.read_submission(str(tmp_path / "sub.pkl"))
    assert sub["team_name"] == "t" and sub["authors"] == ["a", "b"]
    preds = sub["first_stage_predictions"][0]
    assert sorted(preds) == want
    cv = E.constant_velocity(scenes)[:, 0]
    for i, sid in enumerate(scenes.scene_id):
        np.testing.assert_allclose(preds[tokens[str(int(sid))]], cv[i], rtol=1e-6)
    # A trained run goes through evaluate's stage loaders (a stand-in here).
    E.register_stage_loader("fake_run", lambda config, workdir: lambda s: E.expert(s) + 1.0)
    try:
        commands.submit(cfg, wd, types.SimpleNamespace(name="real_navsim", policy="fake_run", out=None, rest=[]))
    finally:
        E.STAGE_LOADERS.pop("fake_run", None)
        E.unregister_policy("fake_run")
    sub = N.read_submission(os.path.join(wd, "submissions", "real_navsim_fake_run.pkl"))
    for i, sid in enumerate(scenes.scene_id):
        np.testing.assert_allclose(sub["first_stage_predictions"][0][tokens[str(int(sid))]],
                                   scenes.expert_future[i] + 1.0, rtol=1e-6)
    with pytest.raises(UserError, match=r"--policy 'nope': unknown policy"):
        commands.submit(cfg, wd, types.SimpleNamespace(name="real_navsim", policy="nope", out=None, rest=[]))


def test_adapter_failed_log_windows_count_as_failed_logs(tmp_path):
    from irlvla_jax.data import real
    err = LogError("log_b/annotations.feather", "timestamp_ns", "not on a 10 Hz clock")
    src = {"log_a": [0, "off route"], "log_b": [], "log_c": [1]}
    it = fake_source(src)

    def iter_log(path):      # the AV2 / ScenarioNet adapters yield a failed_log window instead of raising
        if path == "log_b":
            yield real.failed_log("log_b", err)
            return
        yield from it(path)
    meta = C.write_converted(SPEC, str(tmp_path), "real_fake", source="fake", logs=list(src), iter_log=iter_log,
                             progress=False)
    logs = {s["log"]: s for s in meta["logs"]}
    assert logs["log_b"]["error"] == str(err) and logs["log_b"]["windows"] == 0
    t = meta["totals"]
    assert (t["logs"], t["logs_failed"], t["windows"], t["written"], t["rejected"]) == (3, 1, 3, 2, 1)


def test_cli_convert_av2_with_the_adapter(tmp_path, capsys):
    pytest.importorskip("irlvla_jax.data.av2")
    pytest.importorskip("pyarrow")
    from tests.data.real_fixtures import write_av2_log
    write_av2_log(str(tmp_path / "av2"), "log0", seconds=6.0)
    os.makedirs(tmp_path / "av2" / "log_broken" / "map")
    (tmp_path / "av2" / "log_broken" / "city_SE3_egovehicle.feather").write_bytes(b"nope")
    cfg = tiny_config()
    args = types.SimpleNamespace(rest=["av2", str(tmp_path / "av2")], name=None, stride=10, maps=None)
    meta = commands.convert(cfg, str(tmp_path / "wd"), args)
    out = capsys.readouterr().out.splitlines()
    totals = json.loads(out[-1])
    assert (totals["logs"], totals["logs_failed"], totals["name"]) == (2, 1, "real_av2")
    assert totals["written"] >= 1 and totals["written"] + totals["rejected"] == totals["windows"]
    assert any(ln.startswith("log_broken: FAILED (") for ln in out), out
    cfg.data.name = "real_av2"
    assert len(loader.load_split(cfg, "real").scene_id) == meta["sizes"]["real"] == totals["written"]
