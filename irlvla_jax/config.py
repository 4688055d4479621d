"""Config validation at the boundary: every section of a config is checked here before a command runs.

Configs are ml_collections files under ``configs/`` (``tiny.py``, ``base.py``, ...). Each section has a
checker; a bad value raises ``ValueError`` naming ``config.<section>.<key>`` and the fix.
"""
from __future__ import annotations

from typing import Any, Callable, Dict

from irlvla_jax.scene import SceneSpec

_CHECKERS: Dict[str, Callable[[Any], None]] = {}


def checker(section: str):
    """Register a checker for ``config.<section>`` (modules call this at import)."""
    def deco(fn):
        _CHECKERS[section] = fn
        return fn
    return deco


def require(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"config.{key}: {msg}")


@checker("scene")
def _check_scene(cfg) -> None:
    SceneSpec.from_config(cfg.scene)


@checker("data")
def _check_data(cfg) -> None:
    d = cfg.data
    for k in ("num_train", "num_val", "num_test", "num_hard"):
        require(int(d[k]) >= 1, f"data.{k}", f"must be >= 1, got {d[k]}")
    require(int(d.num_anchors) >= 1, "data.num_anchors", f"must be >= 1, got {d.num_anchors}")
    require(int(d.num_anchors) <= int(d.num_train), "data.num_anchors", "must be <= data.num_train")
    import re as _re
    require(bool(_re.fullmatch(r"[a-z][a-z0-9_]*", str(d.name))), "data.name",
            f"must match [a-z][a-z0-9_]* (a directory name), got {d.name!r}")
    require(int(d.batch_size) >= 1, "data.batch_size", f"must be >= 1, got {d.batch_size}")
    require(int(d.workers) >= 0, "data.workers", f"must be >= 0 (0 or 1: in-process), got {d.workers}")
    require(isinstance(d.data_dir, str), "data.data_dir", "must be a path string ('' = <workdir>/data)")
    if "render_split" in d:
        from irlvla_jax.scene import SPLITS as _SPLITS
        require(d.render_split in _SPLITS, "data.render_split", f"must be one of {_SPLITS}, got {d.render_split!r}")
    if "render_count" in d:
        require(int(d.render_count) >= 1, "data.render_count", f"must be >= 1, got {d.render_count}")


# The keys of every section (their defaults and meanings: configs/default.py). check() rejects an unknown or
# a missing key with a one-line error.
SCHEMA = {
    "scene": ("num_agents", "num_lanes", "lane_vertices", "lane_points", "num_drivable", "drivable_vertices",
              "route_points", "num_lights", "light_vertices", "instruction_tokens", "camera_hw", "lidar_hw",
              "lidar_channels", "bev_hw", "bev_range"),
    "data": ("name", "num_train", "num_val", "num_test", "num_hard", "num_anchors", "batch_size", "shuffle_seed",
             "workers", "data_dir", "world_seed", "render_split", "render_count"),
    "model": ("dim", "heads", "dtype", "perception", "semantic", "planner"),
    "model.perception": ("camera_channels", "lidar_channels", "bev_stride", "bev_tokens_side", "num_objects",
                         "num_map_queries", "heatmap_sigma"),
    "model.semantic": ("backbone", "vocab_size", "width", "layers", "heads", "num_meta"),
    "model.planner": ("kind", "contexts", "layers", "heads", "train_timesteps", "trunc_steps", "ddim_steps",
                      "beta_start", "beta_end", "eta", "min_std", "norm_offset", "norm_scale"),
    "il": ("steps", "batch_size", "lr", "warmup_steps", "end_lr_ratio", "weight_decay", "grad_clip", "w_traj",
           "w_mode", "w_det_heat", "w_det_box", "w_bev_seg", "w_map_line", "w_map_exist", "w_meta", "val_every",
           "val_batches", "epdms_scenes", "checkpoint_every"),
    "train": ("num_devices", "max_to_keep", "async_checkpoint", "log_every"),
    "scoring": ("mode", "human_filter", "num_devices"),
    "rwm": ("d_model", "num_layers", "num_heads", "ff_mult", "steps", "batch_size", "lr", "warmup_steps",
            "weight_decay", "grad_clip", "policy_samples", "noisy_chains", "noise_std", "expert_perturbations",
            "use_anchors", "use_ec", "epdms_weight", "eval_split", "eval_scenes", "checkpoint_every",
            "kinematic_features", "ego_features", "rank_weight", "rank_scale", "policy_rank_boost", "inner_steps",
            "smooth_noise_frac", "scene_features", "scene_pose_stride", "arch", "ppo_samples", "warped_chains"),
    "ppo": ("reward", "objective", "updates", "batch_size", "samples_per_scene", "epochs", "num_minibatches", "lr",
            "choice_lr", "max_grad_norm", "clip_eps", "sigma", "noise", "advantage", "negative_advantages",
            "denoise_discount", "choice_weight", "choice_loss", "choice_temperature", "bc_weight", "reward_grad_weight",
            "checkpoint_every", "log_true_score", "rwm_refresh_every", "rwm_refresh_steps"),
    "pipeline": ("eval_split", "eval_scenes", "eval_chunk", "best_of_samples", "extra_splits", "scorer_updates",
                 "scorer_lr", "choice_only_updates", "choice_only_lr", "choice_only_samples", "rwm_report_scenes"),
    "evaluate": ("splits", "max_scenes", "chunk", "bootstrap", "seed", "renders"),
}
TOP_LEVEL = ("seed", "name") + tuple(k for k in SCHEMA if "." not in k)


def keys_exact(section, name: str) -> None:
    """``config.<name>`` has exactly the keys of ``SCHEMA[name]`` (ValueError naming the first offender)."""
    expected = SCHEMA[name]
    have = set(section.keys())
    missing, extra = sorted(set(expected) - have), sorted(have - set(expected))
    require(not missing, f"{name}.{missing[0] if missing else ''}",
            "missing; every key is set in the config file (configs/default.py documents them)")
    require(not extra, f"{name}.{extra[0] if extra else ''}", f"unknown key; the {name} section has {', '.join(expected)}")


@checker("model")
def _check_model(cfg) -> None:
    m = cfg.model
    for sub in ("perception", "semantic", "planner"):
        keys_exact(m[sub], f"model.{sub}")
    require(int(m.dim) > 0 and int(m.dim) % int(m.heads) == 0, "model.dim", f"must be a positive multiple of "
            f"model.heads={m.heads}, got {m.dim}")
    require(m.dtype in ("float32", "bfloat16"), "model.dtype", f"'float32' or 'bfloat16', got {m.dtype!r}")
    p, s, pl = m.perception, m.semantic, m.planner
    spec = SceneSpec.from_config(cfg.scene)
    stride = int(p.bev_stride)
    require(stride > 0 and spec.bev_hw[0] == spec.bev_hw[1] and spec.bev_hw[0] % stride == 0,
            "model.perception.bev_stride", f"scene.bev_hw {spec.bev_hw} must be square and divisible by it")
    g = spec.bev_hw[0] // stride
    require(int(p.bev_tokens_side) > 0 and g % int(p.bev_tokens_side) == 0, "model.perception.bev_tokens_side",
            f"must divide the BEV grid side {g} (= bev_hw / bev_stride)")
    require(0 < int(p.num_objects) <= g * g, "model.perception.num_objects", f"must be in [1, {g * g}]")
    require(len(p.camera_channels) >= 1 and len(p.lidar_channels) >= 1, "model.perception.camera_channels",
            "camera_channels and lidar_channels need >= 1 conv each")
    require(int(s.width) % int(s.heads) == 0, "model.semantic.width", "must be a multiple of model.semantic.heads")
    require(s.backbone == "small", "model.semantic.backbone", f"only 'small' is built in, got {s.backbone!r}")
    try:
        from irlvla_jax.world.language import VOCAB
        require(int(s.vocab_size) >= len(VOCAB), "model.semantic.vocab_size",
                f"must be >= len(world.language.VOCAB) = {len(VOCAB)}, got {s.vocab_size}")
    except ImportError:
        pass
    require(int(m.dim) % int(pl.heads) == 0, "model.planner.heads", f"must divide model.dim={m.dim}")
    require(1 <= int(pl.trunc_steps) <= int(pl.train_timesteps), "model.planner.trunc_steps",
            "must be in [1, train_timesteps]")
    require(1 <= int(pl.ddim_steps) <= int(pl.trunc_steps), "model.planner.ddim_steps", "must be in [1, trunc_steps]")
    require(0 < float(pl.beta_start) < float(pl.beta_end) < 1, "model.planner.beta_start",
            "need 0 < beta_start < beta_end < 1")
    require(len(pl.norm_offset) == 3 and len(pl.norm_scale) == 3 and min(pl.norm_scale) > 0,
            "model.planner.norm_scale", "norm_offset and norm_scale need 3 entries (x, y, heading), scale > 0")
    require(float(pl.eta) >= 0 and float(pl.min_std) >= 0, "model.planner.eta", "eta and min_std must be >= 0")
    from irlvla_jax.models.planner import CONTEXTS, KINDS
    require(pl.kind in KINDS, "model.planner.kind", f"must be one of {KINDS}, got {pl.kind!r}")
    ctx = tuple(pl.contexts)
    require(len(ctx) >= 1 and len(set(ctx)) == len(ctx) and all(c in CONTEXTS for c in ctx), "model.planner.contexts",
            f"must be a non-empty subset of {CONTEXTS} without repeats, got {ctx!r}")


@checker("il")
def _check_il(cfg) -> None:
    il = cfg.il
    for k in ("steps", "batch_size", "checkpoint_every"):
        require(int(il[k]) >= 1, f"il.{k}", f"must be >= 1, got {il[k]}")
    require(float(il.lr) > 0, "il.lr", f"must be > 0, got {il.lr}")
    require(int(il.warmup_steps) >= 0, "il.warmup_steps", "must be >= 0")
    require(0 <= float(il.end_lr_ratio) <= 1, "il.end_lr_ratio", "must be in [0, 1]")
    require(float(il.grad_clip) > 0, "il.grad_clip", "must be > 0")
    for k in il.keys():
        if k.startswith("w_"):
            require(float(il[k]) >= 0, f"il.{k}", f"loss weights must be >= 0, got {il[k]}")
    require(int(il.val_every) >= 0 and int(il.val_batches) >= 0, "il.val_every", "must be >= 0 (0 = never)")


@checker("train")
def _check_train(cfg) -> None:
    t = cfg.train
    require(int(t.num_devices) >= 0, "train.num_devices", "must be >= 0 (0 = all devices)")
    require(int(t.max_to_keep) >= 1, "train.max_to_keep", "must be >= 1")
    require(int(t.log_every) >= 1, "train.log_every", "must be >= 1")


@checker("rwm")
def _check_rwm(cfg) -> None:
    r = cfg.rwm
    for k in ("d_model", "num_layers", "num_heads", "ff_mult", "steps", "batch_size", "policy_samples",
              "eval_scenes", "checkpoint_every"):
        require(int(r[k]) >= 1, f"rwm.{k}", f"must be >= 1, got {r[k]}")
    require(int(r.d_model) % int(r.num_heads) == 0, "rwm.d_model", "must be divisible by rwm.num_heads")
    for k in ("noisy_chains", "expert_perturbations", "warmup_steps", "warped_chains"):
        require(int(r[k]) >= 0, f"rwm.{k}", f"must be >= 0, got {r[k]}")
    require(int(r.inner_steps) >= 1, "rwm.inner_steps", f"must be >= 1, got {r.inner_steps}")
    for k in ("rank_weight", "policy_rank_boost"):
        require(float(r[k]) >= 0, f"rwm.{k}", f"must be >= 0, got {r[k]}")
    require(0.0 <= float(r.smooth_noise_frac) <= 1.0, "rwm.smooth_noise_frac",
            f"must be in [0, 1], got {r.smooth_noise_frac}")
    require(float(r.rank_scale) > 0, "rwm.rank_scale", f"must be > 0, got {r.rank_scale}")
    for k in ("lr", "grad_clip"):
        require(float(r[k]) > 0, f"rwm.{k}", f"must be > 0, got {r[k]}")
    for k in ("noise_std", "epdms_weight", "weight_decay"):
        require(float(r[k]) >= 0, f"rwm.{k}", f"must be >= 0, got {r[k]}")
    require(r.arch in ("transformer", "light"), "rwm.arch",
            f"must be 'transformer' (9 tokens per plan) or 'light' (scene once, a small per-plan head), got {r.arch!r}")
    require(int(r.ppo_samples) >= 0, "rwm.ppo_samples", f"must be >= 0, got {r.ppo_samples}")
    from irlvla_jax.models.reward_features import SCENE_POSE_STRIDES
    require(int(r.scene_pose_stride) in SCENE_POSE_STRIDES, "rwm.scene_pose_stride",
            f"must be one of {SCENE_POSE_STRIDES} (geometry at every stride-th of the 8 poses), got {r.scene_pose_stride}")
    require(r.eval_split in ("train", "val", "test", "hard"), "rwm.eval_split",
            f"must be one of train/val/test/hard, got {r.eval_split!r}")


@checker("ppo")
def _check_ppo(cfg) -> None:
    p = cfg.ppo
    require(p.reward in ("rwm", "scorer"), "ppo.reward", f"must be 'rwm' or 'scorer', got {p.reward!r}")
    require(p.objective in ("denoise", "choice"), "ppo.objective",
            f"must be 'denoise' (fine-tune the planner) or 'choice' (re-rank only), got {p.objective!r}")
    require(p.noise in ("white", "smooth"), "ppo.noise", f"must be 'white' or 'smooth', got {p.noise!r}")
    require(p.advantage in ("anchor", "scene"), "ppo.advantage",
            f"must be 'anchor' (per-anchor group) or 'scene' (per-scene group), got {p.advantage!r}")
    require(p.negative_advantages in ("keep", "clip"), "ppo.negative_advantages",
            f"must be 'keep' or 'clip' (floor the normalised advantages at 0), got {p.negative_advantages!r}")
    for k in ("samples_per_scene", "updates", "batch_size", "epochs", "num_minibatches", "checkpoint_every"):
        require(int(p[k]) >= 1, f"ppo.{k}", f"must be >= 1, got {p[k]}")
    require(p.advantage != "anchor" or p.objective == "choice" or int(p.samples_per_scene) >= 2,
            "ppo.samples_per_scene", f"must be >= 2 with ppo.advantage='anchor' (a group per anchor), "
                                     f"got {p.samples_per_scene}")
    require(int(p.batch_size) % int(p.num_minibatches) == 0, "ppo.num_minibatches",
            f"must divide ppo.batch_size={p.batch_size}")
    for k in ("lr", "clip_eps", "sigma", "max_grad_norm", "choice_temperature"):
        require(float(p[k]) > 0, f"ppo.{k}", f"must be > 0, got {p[k]}")
    require(p.choice_loss in ("surrogate", "distill"), "ppo.choice_loss",
            f"must be 'surrogate' (PPO's clipped surrogate) or 'distill' (cross-entropy to the improved choice), "
            f"got {p.choice_loss!r}")
    for k in ("bc_weight", "choice_weight", "choice_lr", "reward_grad_weight"):
        require(float(p[k]) >= 0, f"ppo.{k}", f"must be >= 0, got {p[k]}")
    require(p.objective == "choice" or cfg.model.planner.kind == "diffusion", "ppo.objective",
            "'denoise' needs model.planner.kind = 'diffusion' (a regression planner has no denoising chain); "
            "use ppo.objective = 'choice'")
    require(p.reward == "rwm" or float(p.reward_grad_weight) == 0, "ppo.reward_grad_weight",
            f"must be 0 with ppo.reward='scorer' (the true scorer is not differentiable), got {p.reward_grad_weight}")
    require(0 < float(p.denoise_discount) <= 1, "ppo.denoise_discount",
            f"must be in (0, 1], got {p.denoise_discount}")
    require(int(p.rwm_refresh_every) >= 0, "ppo.rwm_refresh_every",
            f"must be >= 0 (0 = off), got {p.rwm_refresh_every}")
    require(int(p.rwm_refresh_every) == 0 or int(p.rwm_refresh_steps) >= 1, "ppo.rwm_refresh_steps",
            f"must be >= 1 with ppo.rwm_refresh_every > 0, got {p.rwm_refresh_steps}")
    refresh = p.reward == "rwm" and int(p.rwm_refresh_every) > 0       # (the true scorer's runs have no RWM)
    require(not refresh or int(p.batch_size) % int(cfg.rwm.batch_size) == 0, "ppo.batch_size",
            f"must be a multiple of rwm.batch_size={cfg.rwm.batch_size} with ppo.rwm_refresh_every > 0 (each PPO "
            f"batch is cut into RWM refresh batches), got {p.batch_size}")


@checker("pipeline")
def _check_pipeline(cfg) -> None:
    p = cfg.pipeline
    require(p.eval_split in ("train", "val", "test", "hard"), "pipeline.eval_split",
            f"must be one of train/val/test/hard, got {p.eval_split!r}")
    for k in ("eval_scenes", "eval_chunk", "best_of_samples"):
        require(int(p[k]) >= 1, f"pipeline.{k}", f"must be >= 1, got {p[k]}")
    for x in p.extra_splits:
        require(x in ("train", "val", "test", "hard"), "pipeline.extra_splits",
                f"entries must be among train/val/test/hard, got {x!r}")
    for k in ("choice_only_updates", "choice_only_samples", "rwm_report_scenes"):
        require(int(p[k]) >= 1, f"pipeline.{k}", f"must be >= 1, got {p[k]}")
    require(float(p.choice_only_lr) > 0, "pipeline.choice_only_lr", f"must be > 0, got {p.choice_only_lr}")
    require(float(p.scorer_lr) > 0, "pipeline.scorer_lr", f"must be > 0, got {p.scorer_lr}")
    require(int(p.scorer_updates) >= 0, "pipeline.scorer_updates",
            f"must be >= 0 (0 = ppo.updates), got {p.scorer_updates}")


@checker("evaluate")
def _check_evaluate(cfg) -> None:
    from irlvla_jax.scene import SPLITS as _SPLITS
    e = cfg.evaluate
    require(int(e.renders) >= 0, "evaluate.renders", f"must be >= 0 (PNG renders per split), got {e.renders}")
    splits = tuple(e.splits)
    require(len(splits) >= 1 and all(s in _SPLITS for s in splits), "evaluate.splits",
            f"must be a non-empty subset of {_SPLITS}, got {splits!r}")
    require(int(e.max_scenes) >= 0, "evaluate.max_scenes", f"must be >= 0 (0 = whole split), got {e.max_scenes}")
    require(int(e.chunk) >= 1, "evaluate.chunk", f"must be >= 1 (scenes per scorer call), got {e.chunk}")
    require(int(e.bootstrap) >= 100, "evaluate.bootstrap", f"must be >= 100 resamples, got {e.bootstrap}")
    require(int(e.seed) >= 0, "evaluate.seed", f"must be >= 0, got {e.seed}")


@checker("scoring")
def _check_scoring(cfg) -> None:
    s = cfg.scoring
    require(s.mode in ("tracked", "direct"), "scoring.mode", f"must be 'tracked' or 'direct', got {s.mode!r}")
    require(isinstance(s.human_filter, bool), "scoring.human_filter", f"must be True or False, got {s.human_filter!r}")
    if "num_devices" in s:
        nd = s.num_devices
        require(isinstance(nd, int) and not isinstance(nd, bool) and nd >= 0, "scoring.num_devices",
                f"must be an int >= 0 (1 = one device, 0 = all local devices), got {nd!r}")


def check(cfg) -> None:
    """Validate a whole config: exactly the known sections and keys (:data:`SCHEMA`), then every section's
    values. ValueError naming ``config.<section>.<key>`` and the fix."""
    for k in cfg.keys():
        require(k in TOP_LEVEL, k, f"unknown section or key; a config has {', '.join(TOP_LEVEL)}")
    for k in TOP_LEVEL:
        require(k in cfg, k, "missing; every section is set in the config file (configs/default.py)")
    for name in SCHEMA:
        if "." not in name:
            keys_exact(cfg[name], name)
    for fn in _CHECKERS.values():
        fn(cfg)


def scene_spec(cfg) -> SceneSpec:
    return SceneSpec.from_config(cfg.scene)


def load_config(path: str, arg: str | None = None):
    """The ConfigDict of the config file ``path`` (``get_config(arg)``; ``get_config()`` when ``arg`` is
    None). ``path`` may also be ``FILE:ARG`` (ml_collections' syntax, as on the command line). Raises
    ``UserError`` naming the file on a missing file, a file that does not load, or no ``get_config``."""
    import importlib.util
    import os
    from irlvla_jax.errors import UserError
    if arg is None and ":" in os.path.basename(path):
        path, arg = path.rsplit(":", 1)
    if not os.path.isfile(path):
        raise UserError(f"config file {path!r} not found; pass e.g. --config configs/tiny.py")
    name = "irlvla_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception as e:  # a config file is user code: any failure is the user's to fix
        raise UserError(f"config file {path!r} does not load: {type(e).__name__}: {e}") from e
    if not callable(getattr(mod, "get_config", None)):
        raise UserError(f"config file {path!r} defines no get_config()")
    try:
        return mod.get_config() if arg is None else mod.get_config(arg)
    except Exception as e:  # noqa: BLE001 - user code again
        raise UserError(f"config file {path!r}: get_config({'' if arg is None else repr(arg)}) failed: "
                        f"{type(e).__name__}: {e}") from e
