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
    # --- DATA helper block (irlvla_jax/data): keys read by generate / loaders / render.
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


# ---- MODEL/IL helper: sections `model`, `il`, `train` ------------------------------------------------
_MODEL_KEYS = {
    "": ("dim", "heads", "dtype", "perception", "semantic", "planner"),
    "perception": ("camera_channels", "lidar_channels", "bev_stride", "bev_tokens_side", "num_objects",
                   "num_map_queries", "heatmap_sigma"),
    "semantic": ("backbone", "vocab_size", "width", "layers", "heads", "num_meta"),
    "planner": ("layers", "heads", "train_timesteps", "trunc_steps", "ddim_steps", "beta_start", "beta_end",
                "eta", "min_std", "norm_offset", "norm_scale"),
}


def _keys_exact(section, name: str, expected) -> None:
    have = set(section.keys())
    missing, extra = sorted(set(expected) - have), sorted(have - set(expected))
    require(not missing, f"{name}.{missing[0] if missing else ''}", "missing; add it (see configs/tiny.py)")
    require(not extra, f"{name}.{extra[0] if extra else ''}", f"unknown key; known keys: {sorted(expected)}")


@checker("model")
def _check_model(cfg) -> None:
    m = cfg.model
    _keys_exact(m, "model", _MODEL_KEYS[""])
    for sub in ("perception", "semantic", "planner"):
        _keys_exact(m[sub], f"model.{sub}", _MODEL_KEYS[sub])
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
# ---- end MODEL/IL helper -------------------------------------------------------------------------------


# ---- RL helper: sections `rwm`, `ppo`, `pipeline` -------------------------------------------------------------------
@checker("rwm")
def _check_rwm(cfg) -> None:
    r = cfg.rwm
    for k in ("d_model", "num_layers", "num_heads", "ff_mult", "steps", "batch_size", "policy_samples",
              "eval_scenes", "checkpoint_every"):
        require(int(r[k]) >= 1, f"rwm.{k}", f"must be >= 1, got {r[k]}")
    require(int(r.d_model) % int(r.num_heads) == 0, "rwm.d_model", "must be divisible by rwm.num_heads")
    for k in ("noisy_chains", "expert_perturbations", "warmup_steps"):
        require(int(r[k]) >= 0, f"rwm.{k}", f"must be >= 0, got {r[k]}")
    require(int(r.get("inner_steps", 1)) >= 1, "rwm.inner_steps", f"must be >= 1, got {r.get('inner_steps')}")
    for k in ("rank_weight", "policy_rank_boost"):
        require(float(r.get(k, 0.0)) >= 0, f"rwm.{k}", f"must be >= 0, got {r.get(k)}")
    require(0.0 <= float(r.get("smooth_noise_frac", 0.0)) <= 1.0, "rwm.smooth_noise_frac",
            f"must be in [0, 1], got {r.get('smooth_noise_frac')}")
    require(float(r.get("rank_scale", 10.0)) > 0, "rwm.rank_scale", f"must be > 0, got {r.get('rank_scale')}")
    for k in ("lr", "grad_clip"):
        require(float(r[k]) > 0, f"rwm.{k}", f"must be > 0, got {r[k]}")
    for k in ("noise_std", "epdms_weight", "weight_decay"):
        require(float(r[k]) >= 0, f"rwm.{k}", f"must be >= 0, got {r[k]}")
    require(r.arch in ("transformer", "light"), "rwm.arch",
            f"must be 'transformer' (9 tokens per plan) or 'light' (scene once, a small per-plan head), got {r.arch!r}")
    require(int(r.ppo_samples) >= 0, "rwm.ppo_samples", f"must be >= 0, got {r.ppo_samples}")
    require(r.eval_split in ("train", "val", "test", "hard"), "rwm.eval_split",
            f"must be one of train/val/test/hard, got {r.eval_split!r}")


PPO_KEYS = ("reward", "objective", "updates", "batch_size", "samples_per_scene", "epochs", "num_minibatches", "lr",
            "choice_lr", "max_grad_norm", "clip_eps", "sigma", "noise", "advantage", "denoise_discount", "choice_weight", "choice_loss", "choice_temperature",
            "bc_weight", "checkpoint_every", "log_true_score")


@checker("ppo")
def _check_ppo(cfg) -> None:
    p = cfg.ppo
    for k in p:
        require(k in PPO_KEYS, f"ppo.{k}", f"unknown key; the ppo section has {', '.join(PPO_KEYS)}")
    for k in PPO_KEYS:
        require(k in p, f"ppo.{k}", "missing; every ppo key is set in the config file (configs/tiny.py documents them)")
    require(p.reward in ("rwm", "scorer"), "ppo.reward", f"must be 'rwm' or 'scorer', got {p.reward!r}")
    require(p.objective in ("denoise", "choice"), "ppo.objective",
            f"must be 'denoise' (fine-tune the planner) or 'choice' (re-rank only), got {p.objective!r}")
    require(p.noise in ("white", "smooth"), "ppo.noise", f"must be 'white' or 'smooth', got {p.noise!r}")
    require(p.advantage in ("anchor", "scene"), "ppo.advantage",
            f"must be 'anchor' (per-anchor group) or 'scene' (per-scene group), got {p.advantage!r}")
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
    for k in ("bc_weight", "choice_weight", "choice_lr"):
        require(float(p[k]) >= 0, f"ppo.{k}", f"must be >= 0, got {p[k]}")
    require(0 < float(p.denoise_discount) <= 1, "ppo.denoise_discount",
            f"must be in (0, 1], got {p.denoise_discount}")


@checker("pipeline")
def _check_pipeline(cfg) -> None:
    p = cfg.pipeline
    require(p.eval_split in ("train", "val", "test", "hard"), "pipeline.eval_split",
            f"must be one of train/val/test/hard, got {p.eval_split!r}")
    for k in ("eval_scenes", "eval_chunk", "best_of_samples"):
        require(int(p[k]) >= 1, f"pipeline.{k}", f"must be >= 1, got {p[k]}")
    for x in p.get("extra_splits", ()):
        require(x in ("train", "val", "test", "hard"), "pipeline.extra_splits",
                f"entries must be among train/val/test/hard, got {x!r}")
    for k in ("choice_only_updates", "choice_only_samples", "rwm_report_scenes"):
        require(int(p[k]) >= 1, f"pipeline.{k}", f"must be >= 1, got {p[k]}")
    require(float(p.choice_only_lr) > 0, "pipeline.choice_only_lr", f"must be > 0, got {p.choice_only_lr}")
    require(int(p.get("scorer_updates", 0)) >= 0, "pipeline.scorer_updates",
            f"must be >= 0 (0 = ppo.updates), got {p.get('scorer_updates')}")
# ---- end RL helper ----------------------------------------------------------------------------------------


# ---- REFERENCE helper: section `evaluate` (irlvla_jax/evaluate.py) ------------------------------------
@checker("evaluate")
def _check_evaluate(cfg) -> None:
    from irlvla_jax.scene import SPLITS as _SPLITS
    e = cfg.evaluate
    _keys_exact(e, "evaluate", ("splits", "max_scenes", "chunk", "bootstrap", "seed", "renders"))
    require(int(e.renders) >= 0, "evaluate.renders", f"must be >= 0 (PNG renders per split), got {e.renders}")
    splits = tuple(e.splits)
    require(len(splits) >= 1 and all(s in _SPLITS for s in splits), "evaluate.splits",
            f"must be a non-empty subset of {_SPLITS}, got {splits!r}")
    require(int(e.max_scenes) >= 0, "evaluate.max_scenes", f"must be >= 0 (0 = whole split), got {e.max_scenes}")
    require(int(e.chunk) >= 1, "evaluate.chunk", f"must be >= 1 (scenes per scorer call), got {e.chunk}")
    require(int(e.bootstrap) >= 100, "evaluate.bootstrap", f"must be >= 100 resamples, got {e.bootstrap}")
    require(int(e.seed) >= 0, "evaluate.seed", f"must be >= 0, got {e.seed}")


# ---- scoring (SCORER helper) -------------------------------------------------------------------------
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
    """Validate every known section present in ``cfg``."""
    for section, fn in _CHECKERS.items():
        if section in cfg:
            fn(cfg)


def scene_spec(cfg) -> SceneSpec:
    return SceneSpec.from_config(cfg.scene)
