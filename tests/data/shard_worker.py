"""One process of the 2-process loader test (run by test_loader.py, not collected by pytest).

argv: coordinator_address process_id data_dir out_json
"""
import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

import jax  # noqa: E402
import numpy as np  # noqa: E402


def main():
    addr, pid, data_dir, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    jax.distributed.initialize(addr, num_processes=2, process_id=pid)
    from irlvla_jax.data import loader
    from tests.data.conftest import tiny_config
    cfg = tiny_config(data_dir=data_dir)
    it = loader.make_loader(cfg, "train", 4, seed=5, num_epochs=1)
    ids = [int(i) for b in it for i in b.scene_id]
    mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    it = loader.make_loader(cfg, "train", 4, seed=5, num_epochs=1)
    local = next(it)
    g = loader.to_global(local, mesh)
    shards = sorted((s.index[0].start or 0, np.asarray(s.data).tolist()) for s in g.scene_id.addressable_shards)
    with open(out, "w") as f:
        json.dump({"ids": ids, "global_shape": list(g.camera.shape), "local_ids": local.scene_id.tolist(),
                   "shards": shards, "process_count": jax.process_count()}, f)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
