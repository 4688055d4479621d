"""Export a trained policy for inference without this project: ``irlvla export``.

    irlvla export --config configs/tiny.py --workdir DIR --stage il|rl

writes ``DIR/export/<stage>/`` (replaced as a whole: built beside it, then renamed into place):

* ``params/``      Orbax checkpoint (``ocp.PyTreeCheckpointer``) of one flat dict ``name -> numpy array``: the
                   VLA's parameters (``params.<path>``) and constants (``consts.<path>``: the anchors). As in
                   the stage's policy, ``il`` reads the anchors from it and ``rl`` has them embedded in the
                   function as compile-time constants (``ppo.policy`` closes over them; XLA folds them, so
                   passing them in would change the last bits).
* ``policy.jax_export``, ``policy_any_batch.jax_export``: the inference function (and ``<file>.pkl``, the
  same ``jax.export.Exported`` pickled, which loads without the ``flatbuffers`` package that
  ``jax.export.deserialize`` needs -- same jax version, trusted files only),
  ``jax.export.export(jax.jit(infer))(...).serialize()`` (StableHLO for CPU), called as
  ``exported.call(params, scenes, seed)``:

      params  the dict restored from ``params/``
      scenes  dict ``field -> [B, ...]``: the Scene fields the policy reads (``manifest.json`` lists them with
              shapes and dtypes; ``irlvla_jax.scene.Scene`` documents them), numpy or jax arrays
      seed    int32 scalar, the sampling-noise seed, **passed in** (0 = the trainers' default)
      ->      float32 [B, 8, 3]: (x, y, heading) at 0.5 ... 4.0 s, metres / radians, ego rear-axle frame at t0

  The computation is the stage's ``policy(config, workdir, seed=seed)`` (the top-scored of the K anchor
  chains, deterministic DDIM): scenes in chunks of ``chunk`` (the policy's default: ``il.batch_size`` /
  ``ppo.batch_size``; in the manifest), the last chunk padded with its last scene, the chunk starting at scene
  s drawn with ``jax.random.key(seed + s)``.

  **Batch.** ``policy.jax_export`` is for a fixed batch, B = ``chunk``: one chunk, exactly the policy's jitted
  computation, so on CPU it returns the trainer's trajectories bit for bit (more scenes: call it per chunk
  of ``chunk`` scenes with ``seed + s``, the last chunk padded). ``policy_any_batch.jax_export`` has a
  symbolic batch (``jax.export.symbolic_shape("b")``, any B >= 1, chunks in a ``lax.scan``): the same
  computation, but not bit-exact: calling a shape-polymorphic export refines and re-canonicalises the
  StableHLO, which folds the planner's constant multiplications in another order (differences of a few
  float32 ulps, ~1e-5 m; the manifest records the sample's maximum). The model itself supports the
  symbolic batch; only bit-exactness forbids it for the main file. ``examples/run_exported.py`` refuses
  another batch size for ``policy.jax_export`` in one line (``--any-batch`` uses the other file).
  Instruction token ids must be below ``model.semantic.vocab_size`` (checked by the project's policy, not
  by the exported function).
* ``sample_input.npz`` ``chunk`` scenes flattened as ``scenes`` above (the first test scenes of the workdir's
  dataset if it is there, else synthetic ones); ``sample_output.npy`` the stage policy's trajectories for
  them [chunk, 8, 3] (what ``policy.jax_export`` returns).
* ``manifest.json``    inputs (names, shapes with "B" for the batch, dtypes), output shape, the two functions
  (file, batch, bytes, whether each reproduced ``sample_output.npy`` bit for bit and its largest difference
  when written), stage, run, chunk, seed, sample source, jax / orbax versions.

Stages: ``il`` = the imitation policy (``train/imitation.py``, run ``il``); ``rl`` = the PPO policy of the
run ``ppo_rwm`` (``train/ppo.py`` with ``ppo.reward=rwm``, ``ppo.objective=denoise``). Needs the
``flatbuffers`` package (``jax.export`` serialization).
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import tempfile
import time
from typing import Any, Dict, Tuple

import numpy as np

from irlvla_jax.errors import CheckpointCorrupt, UserError

STAGES = ("il", "rl")
FUNCTIONS = {"fixed": ("policy.jax_export", "chunk"), "any_batch": ("policy_any_batch.jax_export", "b")}
PICKLE_SUFFIX = ".pkl"      # beside each function: the Exported pickled (no flatbuffers needed to load)
PARAMS_DIR = "params"
SAMPLE_INPUT, SAMPLE_OUTPUT, MANIFEST = "sample_input.npz", "sample_output.npy", "manifest.json"


def export_dir(workdir: str, stage: str) -> str:
    return os.path.join(os.path.abspath(workdir), "export", stage)


def _stage(config, workdir: str, stage: str):
    """-> (run name, the stage's config, graphdef, params, consts, chunk, policy fn factory, whether the
    policy's jitted chunk function closes over consts (compile-time constants) instead of taking them)."""
    from irlvla_jax.train import imitation, ppo
    from irlvla_jax.train import mesh as mesh_lib
    if stage == "il":
        gd, params, consts = imitation.restore(config, workdir, mesh_lib.make_mesh(1))
        return imitation.RUN, config, gd, params, consts, int(config.il.batch_size), imitation.policy, False
    cfg = ppo.variant(config, reward="rwm", objective="denoise")
    gd, params, consts = ppo.restore(cfg, workdir)
    return ppo.run_name(cfg), cfg, gd, params, consts, int(cfg.ppo.batch_size), ppo.policy, True


def _key_name(k) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def flatten(tree) -> Tuple[Dict[str, np.ndarray], Any, list]:
    """Nested dict -> (flat dict ``"a.b.0.c" -> numpy array``, treedef, names in treedef leaf order)."""
    import jax
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    names = [".".join(_key_name(k) for k in path) for path, _ in leaves]
    if len(set(names)) != len(names):
        raise ValueError("parameter names are not unique after flattening")
    return {n: np.asarray(jax.device_get(v)) for n, (_, v) in zip(names, leaves)}, treedef, names


def used_fields(graphdef, params, consts, spec, chunk: int) -> Tuple[str, ...]:
    """The Scene fields the policy reads (the inputs its jaxpr references), in Scene field order."""
    import jax
    from flax import nnx
    from irlvla_jax.scene import FIELDS, Scene
    shapes = spec.shapes()
    abstract = Scene(**{f: jax.ShapeDtypeStruct((chunk, *shapes[f][0]), shapes[f][1]) for f in FIELDS})

    def run(p, c, scene):
        model = nnx.merge(graphdef, p, c)
        return model.sample(model.encode(scene), jax.random.key(0), 1)

    jaxpr = jax.make_jaxpr(run)(params, consts, abstract).jaxpr
    ids = {id(v): f for v, f in zip(jaxpr.invars[-len(FIELDS):], FIELDS)}   # Scene leaves: field order, last
    seen = {id(v) for eqn in jaxpr.eqns for v in eqn.invars} | {id(v) for v in jaxpr.outvars}
    return tuple(f for i, f in ids.items() if i in seen)


def make_infer(graphdef, treedef, names, fields, spec, chunk: int, consts=None):
    """``infer(params: flat dict, scenes: dict field -> [B, ...], seed: int32 []) -> [B, 8, 3]``: the stage
    policy's computation (module docstring). A concrete B unrolls its chunks (each exactly the policy's
    jitted chunk); a symbolic B runs them in a ``lax.scan``. ``consts`` given (jax arrays): closed over as
    ``ppo.policy`` does (XLA constants; numpy arrays would be folded by numpy at trace time instead) in place
    of the ``consts.*`` entries of params."""
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from irlvla_jax.scene import FIELDS, Scene
    shapes = spec.shapes()

    def run_chunk(tree, part, key):                     # = the policy's `run` on one padded chunk
        full = {f: part[f] if f in part else jnp.zeros((chunk, *shapes[f][0]), shapes[f][1]) for f in FIELDS}
        model = nnx.merge(graphdef, tree["params"], tree["consts"] if consts is None else consts)
        return model.sample(model.encode(Scene(**full)), key, 1)           # [chunk, 1, 8, 3]

    def infer(weights, scenes, seed):
        tree = jax.tree_util.tree_unflatten(treedef, [weights[n] for n in names])
        b = scenes[fields[0]].shape[0]
        n = (b + chunk - 1) // chunk
        pad = lambda x: jnp.concatenate([x, jnp.broadcast_to(x[-1:], (n * chunk - b, *x.shape[1:]))], 0)  # noqa: E731
        xs = {f: pad(scenes[f]) for f in fields}        # the last chunk padded with its last scene
        if isinstance(b, int):
            out = jnp.concatenate([run_chunk(tree, {f: x[i * chunk:(i + 1) * chunk] for f, x in xs.items()},
                                             jax.random.key(seed + i * chunk)) for i in range(n)])
        else:
            xs = {f: x.reshape((n, chunk, *x.shape[1:])) for f, x in xs.items()}
            starts = jax.lax.iota(jnp.int32, n) * chunk
            _, out = jax.lax.scan(lambda c, a: (c, run_chunk(tree, a[0], jax.random.key(seed + a[1]))), None,
                                  (xs, starts))
            out = out.reshape((n * chunk, *out.shape[2:]))
        return out[:b, 0].astype(jnp.float32)

    return infer


def _atomic_write(path: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def sample_scenes(config, workdir: str, spec, n: int):
    """-> (Scene batch of ``n``, source): the first ``n`` test scenes of the workdir's dataset (the last
    repeated if the split is shorter), else synthetic ones."""
    from irlvla_jax.scene import FIELDS, Scene, index, pad_rows
    from irlvla_jax.train import loop
    try:
        scenes = loop.load_scenes(config, workdir, "test", n)
        m = int(np.asarray(scenes.scene_id).shape[0])
        if m >= 1:
            scenes = index(scenes, slice(0, n))
            if m < n:
                scenes = Scene(**{f: pad_rows(np.asarray(getattr(scenes, f)), n) for f in FIELDS})
            return scenes, "test split"
    except (UserError, FileNotFoundError, OSError, ValueError):
        pass
    from irlvla_jax.train.synthetic import random_scenes
    vocab = max(2, min(64, int(config.model.semantic.vocab_size)))
    return random_scenes(spec, n, seed=0, vocab=vocab), "synthetic (irlvla_jax.train.synthetic.random_scenes)"


def export(config, workdir: str, stage: str, *, seed: int = 0) -> Dict[str, Any]:
    """Write ``<workdir>/export/<stage>/`` (module docstring) and return the manifest."""
    import jax
    import orbax.checkpoint as ocp
    from irlvla_jax.scene import SceneSpec
    if stage not in STAGES:
        raise UserError(f"export: --stage must be il or rl, got {stage!r}")
    try:
        import flatbuffers  # noqa: F401  (jax.export serialization needs it)
    except ImportError as e:
        raise UserError("export needs the flatbuffers package (jax.export serialization): pip install flatbuffers") from e
    t0 = time.perf_counter()
    try:
        run, cfg, graphdef, params, consts, chunk, policy_fn, embed = _stage(config, workdir, stage)
    except (FileNotFoundError, CheckpointCorrupt) as e:
        raise UserError(f"export --stage {stage}: {str(e).strip().splitlines()[0]}") from e
    spec = SceneSpec.from_config(cfg.scene)
    weights, treedef, names = flatten({"params": params, "consts": consts})
    fields = used_fields(graphdef, params, consts, spec, chunk)
    infer = jax.jit(make_infer(graphdef, treedef, names, fields, spec, chunk,
                               jax.tree.map(jax.numpy.asarray, consts) if embed else None))
    shapes = spec.shapes()
    a_weights = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in weights.items()}
    a_seed = jax.ShapeDtypeStruct((), np.int32)
    fns = {}
    for key, (fname, batch) in FUNCTIONS.items():
        b = chunk if batch == "chunk" else jax.export.symbolic_shape(batch)[0]
        a_scenes = {f: jax.ShapeDtypeStruct((b, *shapes[f][0]), shapes[f][1]) for f in fields}
        fns[key] = jax.export.export(infer, platforms=("cpu",))(a_weights, a_scenes, a_seed)

    scenes, source = sample_scenes(cfg, workdir, spec, chunk)
    sample = {f: np.asarray(getattr(scenes, f)) for f in fields}
    expected = policy_fn(cfg, workdir, seed=seed)(scenes)[:, 0]
    checks = {}
    for key, exp in fns.items():
        got = np.asarray(exp.call(weights, sample, np.int32(seed)))
        checks[key] = dict(bit_exact=bool(np.array_equal(got, expected)),
                           max_abs_diff=float(np.max(np.abs(got - expected))))

    out = export_dir(workdir, stage)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = tempfile.mkdtemp(dir=os.path.dirname(out), prefix=f".{stage}.tmp-")
    os.chmod(tmp, 0o755)
    try:
        ocp.PyTreeCheckpointer().save(os.path.join(tmp, PARAMS_DIR), weights)
        sizes = {}
        for key, (fname, _) in FUNCTIONS.items():
            blob = bytes(fns[key].serialize())
            _atomic_write(os.path.join(tmp, fname), blob)
            sizes[key] = len(blob)
            # The same Exported as a pickle: jax.export.deserialize needs the `flatbuffers` package; a pickle
            # loads with jax + numpy alone (the same jax version; only load pickles you trust).
            _atomic_write(os.path.join(tmp, fname + PICKLE_SUFFIX),
                          pickle.dumps(dataclasses.replace(fns[key], _get_vjp=None)))
        np.savez(os.path.join(tmp, SAMPLE_INPUT), **sample)
        np.save(os.path.join(tmp, SAMPLE_OUTPUT), expected.astype(np.float32))
        functions = {key: dict(file=fname, batch=chunk if batch == "chunk" else batch, bytes=sizes[key],
                               sample=checks[key]) for key, (fname, batch) in FUNCTIONS.items()}
        manifest = dict(
            stage=stage, run=run, chunk=chunk, functions=functions, params=PARAMS_DIR,
            consts="embedded in the functions (as ppo.policy closes over them); params/ holds a copy" if embed
            else "read from params/ (consts.*), as imitation.policy takes them",
            call="exported.call(params, scenes, seed)",
            inputs=dict(
                params=dict(format="orbax PyTreeCheckpointer, flat dict name -> array", count=len(weights),
                            size=int(sum(v.size for v in weights.values()))),
                scenes={f: dict(shape=["B", *shapes[f][0]], dtype=np.dtype(shapes[f][1]).name) for f in fields},
                seed=dict(shape=[], dtype="int32", default=int(seed),
                          meaning="sampling noise: the chunk starting at scene s uses jax.random.key(seed + s)")),
            output=dict(shape=["B", 8, 3], dtype="float32",
                        meaning="(x m, y m, heading rad) at 0.5 ... 4.0 s, ego rear-axle frame at t0"),
            platforms=list(fns["fixed"].platforms), sample_input=SAMPLE_INPUT, sample_output=SAMPLE_OUTPUT,
            sample_source=source, jax_version=jax.__version__,
            orbax_version=getattr(ocp, "__version__", None))
        _atomic_write(os.path.join(tmp, MANIFEST), (json.dumps(manifest, indent=1) + "\n").encode())
        old = None
        if os.path.exists(out):
            old = tempfile.mkdtemp(dir=os.path.dirname(out), prefix=f".{stage}.old-")
            os.rename(out, os.path.join(old, stage))
        os.rename(tmp, out)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest["dir"], manifest["wall_s"] = out, round(time.perf_counter() - t0, 2)
    return manifest


def main(config, workdir: str, args) -> Dict[str, Any]:
    """``irlvla export --stage il|rl``: see the module docstring."""
    stage = getattr(args, "stage", None)
    if stage not in STAGES:
        raise UserError(f"export needs --stage il or --stage rl (got {stage!r})")
    m = export(config, workdir, stage)
    f = m["functions"]
    print(f"export: {m['run']} -> {m['dir']} ({m['inputs']['params']['count']} arrays; policy.jax_export batch "
          f"{f['fixed']['batch']} {f['fixed']['bytes']} bytes, bit-exact on the sample: "
          f"{'yes' if f['fixed']['sample']['bit_exact'] else 'NO'}; policy_any_batch.jax_export batch b "
          f"{f['any_batch']['bytes']} bytes, max |diff| {f['any_batch']['sample']['max_abs_diff']:.1e}; "
          f"{m['wall_s']} s)")
    return m
