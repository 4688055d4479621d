"""Two local JAX processes (jax.distributed over 127.0.0.1) train the micro VLA together: the global mesh
spans both, each loads its own half of the batch (make_array_from_process_local_data), both end with the
same parameters, and the Orbax checkpoints are written. Opt-in (two extra compiles): IRLVLA_SLOW=1."""
import os
import socket
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("IRLVLA_SLOW") != "1", reason="slow: set IRLVLA_SLOW=1")

SCRIPT = textwrap.dedent('''
    import os, sys
    pid, port, wd, root = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ.update(IRLVLA_COORDINATOR="127.0.0.1:" + port, IRLVLA_NUM_PROCESSES="2", IRLVLA_PROCESS_ID=str(pid))
    sys.path.insert(0, root)
    from irlvla_jax.train import mesh as mesh_lib
    mesh_lib.maybe_initialize_distributed()
    import jax, numpy as np
    from irlvla_jax.scene import SceneSpec
    from irlvla_jax.train import imitation
    from irlvla_jax.train.synthetic import SyntheticIterator, micro_config, random_anchors
    cfg = micro_config(); cfg.il.steps = 4; cfg.il.checkpoint_every = 2; cfg.train.num_devices = 0
    spec = SceneSpec.from_config(cfg.scene)
    out = imitation.train(cfg, wd, train_iter=SyntheticIterator(spec, 4, seed=100 * pid),
                          anchors=random_anchors(4), progress=False)
    leaves = [np.asarray(x.addressable_data(0)) for x in jax.tree.leaves(out["state"].params)]
    print("RESULT", jax.process_count(), len(jax.devices()), out["steps"], float(sum(abs(x).sum() for x in leaves)))
''')


def test_two_processes_train_together(tmp_path):
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    (tmp_path / "run.py").write_text(SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS",)}
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "run.py"), str(i), port, str(tmp_path / "wd"), root],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    results = [[ln for ln in o.splitlines() if ln.startswith("RESULT")] for o in outs]
    assert all(r for r in results), outs[0][-2000:] + outs[1][-2000:]
    r0, r1 = results[0][0].split(), results[1][0].split()
    assert r0[1:4] == ["2", "2", "4"] and r1[1:4] == ["2", "2", "4"]
    assert r0[4] == r1[4]                    # identical replicated parameters on both processes
    assert sorted(os.listdir(tmp_path / "wd" / "checkpoints" / "il")) == ["2", "4"]
