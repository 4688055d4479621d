"""Run a policy written by `irlvla export` with jax, numpy and orbax only (no irlvla_jax, no config).

    python examples/run_exported.py DIR/export/il [SCENES.npz] [--any-batch]

SCENES.npz (default: the export's sample_input.npz) maps each input field of manifest.json to [B, ...].
policy.jax_export takes exactly `chunk` scenes (bit-exact with the trainer on CPU); --any-batch runs
policy_any_batch.jax_export (symbolic batch, any B; equal to a few float32 ulps).
"""
import json
import os
import pickle
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

t0 = time.perf_counter()
args = [a for a in sys.argv[1:] if a != "--any-batch"]
any_batch = "--any-batch" in sys.argv[1:]
d = args[0]
with open(os.path.join(d, "manifest.json")) as f:
    man = json.load(f)
fn = man["functions"]["any_batch" if any_batch else "fixed"]
scenes = dict(np.load(args[1] if len(args) > 1 else os.path.join(d, man["sample_input"])))
b = len(next(iter(scenes.values())))
if not any_batch and b != fn["batch"]:
    sys.exit(f"run_exported: error: {fn['file']} takes exactly {fn['batch']} scenes per call, got {b}; "
             f"pass --any-batch for {man['functions']['any_batch']['file']} (any batch size)")
params = ocp.PyTreeCheckpointer().restore(os.path.abspath(os.path.join(d, man["params"])))
try:                                   # jax.export's own format needs the `flatbuffers` package ...
    with open(os.path.join(d, fn["file"]), "rb") as f:
        exported = jax.export.deserialize(bytearray(f.read()))
except ImportError:                    # ... without it: the same Exported pickled (same jax version)
    with open(os.path.join(d, fn["file"] + ".pkl"), "rb") as f:
        exported = pickle.load(f)
traj = np.asarray(exported.call(params, scenes, np.int32(man["inputs"]["seed"]["default"])))
print(f"{man['stage']} ({man['run']}): trajectories {traj.shape} {traj.dtype} in {time.perf_counter() - t0:.2f} s")
print("first pose (x m, y m, heading rad):", traj[0, 0].tolist())
