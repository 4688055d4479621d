"""The VLA policy: perception + semantic reasoning + command encoder + diffusion planner.

    model = VLA(config.model, spec, anchors [K, 8, 3], nnx.Rngs(seed))
    tokens = model.encode(scene)                          # SceneTokens
    x0, logits = model.denoise(tokens, x_t, t)            # x_t [B, C, 8, 3] normalised, t [B, C] int
    traj = model.sample(tokens, rng, num_samples)         # [B, M, 8, 3] metres/radians, ego frame
    tokens, per, speed, path = model.encode_with_aux(scene)  # + perception outputs, meta-action logits

Functional use (how training, PPO and evaluation call it)::

    graphdef, params, consts = split(model)               # params: nnx.Param pure dict; consts: anchors
    def f(params, ...):
        model = nnx.merge(graphdef, params, consts)       # inside jit: cheap, no Python graph walk per call
        ...

``scene`` is a (batched) :class:`irlvla_jax.scene.Scene` of jnp/numpy arrays with a leading batch axis.
The stage-1 loss over these outputs is ``irlvla_jax.train.imitation.loss``.
Token widths: D = config.model.dim for every token family.
SceneTokens: meta [B, Nm, D], bev [B, P*P, D], map [B, Nq, D], obj [B, K_obj, D], cmd [B, 1, D].
"""
from __future__ import annotations

import copy
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from irlvla_jax.models.command import CommandEncoder
from irlvla_jax.models.perception import Perception
from irlvla_jax.models.planner import Planner
from irlvla_jax.models.semantic import Semantic
from irlvla_jax.scene import SceneSpec


@struct.dataclass
class SceneTokens:
    """Scene tokens consumed by the planner and the reward world model (all [B, N, D])."""
    meta: Any
    bev: Any
    map: Any
    obj: Any
    cmd: Any


class VLA(nnx.Module):
    """See the module docstring. ``cfg`` = ``config.model``; ``anchors`` [K, 8, 3] metres/radians."""

    def __init__(self, cfg, spec: SceneSpec, anchors, rngs: nnx.Rngs):
        D = int(cfg.dim)
        self.spec = spec
        self.perception = Perception(cfg, spec, D, rngs=rngs)
        self.semantic = Semantic(cfg, spec, D, int(cfg.perception.bev_tokens_side) ** 2, rngs=rngs)
        self.command = CommandEncoder(cfg, D, rngs=rngs)
        self.planner = Planner(cfg, anchors, rngs=rngs)
        self.heatmap_sigma = float(cfg.perception.heatmap_sigma)

    def encode_with_aux(self, scene):
        """-> (SceneTokens, PerceptionOut, speed_logits [B, 4], path_logits [B, 5])."""
        per = self.perception(scene.camera, scene.lidar)
        meta, speed, path = self.semantic(per.bev_tokens, scene.instruction, scene.instruction_valid)
        cmd = self.command(scene.command, scene.ego_history, scene.speed_limit)
        f32 = lambda x: x.astype(jnp.float32)
        tokens = SceneTokens(meta=f32(meta), bev=f32(per.bev_tokens), map=f32(per.map_tokens),
                             obj=f32(per.obj_tokens), cmd=f32(cmd))
        return tokens, per, speed, path

    def encode(self, scene) -> SceneTokens:
        return self.encode_with_aux(scene)[0]

    def denoise(self, tokens: SceneTokens, x_t, t):
        return self.planner.denoise(tokens, x_t, t)

    def sample(self, tokens: SceneTokens, rng, num_samples: int = 1, **kw):
        return self.planner.sample(tokens, rng, num_samples, **kw)


def split(model: VLA):
    """-> (graphdef, params, consts): params = pure dict of nnx.Param arrays (trained), consts = pure
    dict of every other variable (anchors). Both are plain nested dicts (graphdef-independent)."""
    graphdef, params, consts = nnx.split(model, nnx.Param, ...)
    return graphdef, params.to_pure_dict(), consts.to_pure_dict()


def _model_key(model_cfg, spec: SceneSpec, anchors):
    """What a VLA's structure depends on: the model config, the scene sizes and the number of anchors."""
    return model_cfg.to_json(sort_keys=True), spec, np.shape(anchors)


_BUILT: dict = {}        # _model_key -> (graphdef, abstract params, abstract consts, jitted init)


def _built(model_cfg, spec: SceneSpec, anchors):
    """The graphdef, abstract state and jitted initialiser of a VLA structure, traced once per process (an
    NNX construction of even the micro VLA is ~2.5 s of Python on 2 cores, and tests and the pipeline
    restore the same model many times)."""
    key = _model_key(model_cfg, spec, anchors)
    if key not in _BUILT:
        model_cfg = copy.deepcopy(model_cfg)       # the traced functions keep it: a caller's later edits stay out
        shapes = np.zeros(key[2], np.float32)      # the structure needs the anchors' shape, not their values
        graphdef, params, consts = split(nnx.eval_shape(lambda: VLA(model_cfg, spec, shapes, nnx.Rngs(0))))

        @jax.jit
        def init(seed, anchors):
            _, p, c = split(VLA(model_cfg, spec, shapes, nnx.Rngs(jax.random.key(seed, impl="rbg"))))
            assert jax.tree.structure(c) == jax.tree.structure({"planner": {"anchors": 0}}), c   # anchors only
            return p, {"planner": {"anchors": anchors}}

        _BUILT[key] = graphdef, params, consts, init
    return _BUILT[key]


def build(model_cfg, spec: SceneSpec, anchors, seed: int = 0):
    """Construct a VLA and split it: -> (graphdef, params, consts). Initialisation runs as one jitted
    computation (eager NNX init dispatches hundreds of tiny ops, each compiled separately) with the
    'rbg' PRNG, whose initialisers compile ~2x faster than threefry's; deterministic per seed and backend.
    The seed and the anchors are arguments of that computation: one trace and compile per structure."""
    graphdef, _, _, init = _built(model_cfg, spec, anchors)
    params, consts = init(jnp.uint32(seed), jnp.asarray(anchors, jnp.float32))
    return graphdef, params, consts


def abstract(model_cfg, spec: SceneSpec, anchors):
    """(graphdef, params, consts) with ShapeDtypeStruct leaves, without allocating (nnx.eval_shape; traced
    once per structure: fresh trees each call)."""
    graphdef, params, consts, _ = _built(model_cfg, spec, anchors)
    return graphdef, jax.tree.map(lambda x: x, params), jax.tree.map(lambda x: x, consts)
