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


def check(cfg) -> None:
    """Validate every known section present in ``cfg``."""
    for section, fn in _CHECKERS.items():
        if section in cfg:
            fn(cfg)


def scene_spec(cfg) -> SceneSpec:
    return SceneSpec.from_config(cfg.scene)
