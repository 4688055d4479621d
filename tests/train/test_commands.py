"""``irlvla train`` (irlvla_jax/train/commands.py) and the shape every stage module shares."""
import inspect
import types

import pytest

from irlvla_jax.train.synthetic import micro_config


def test_cli_stage_dispatch_errors():
    from irlvla_jax.errors import UserError
    from irlvla_jax.train import commands
    with pytest.raises(UserError, match="--stage"):
        commands.train(micro_config(), "/tmp", types.SimpleNamespace(stage="nope"))
    assert commands.STAGES["il"] == "irlvla_jax.train.imitation"


@pytest.mark.parametrize("stage", ["il", "rwm", "ppo"])
def test_every_stage_has_the_same_shape(stage):
    """Each stage module exposes loss, train(config, workdir, *, ...), restore(config, workdir, ...) and
    policy(config, workdir, *, seed, chunk) -- the names pipeline and evaluate rely on."""
    import importlib
    from irlvla_jax.train import commands
    mod = importlib.import_module(commands.STAGES[stage])
    for name in ("loss", "train", "restore", "policy"):
        assert callable(getattr(mod, name, None)), f"{mod.__name__}.{name} missing"
    for name in ("train", "restore", "policy"):
        params = list(inspect.signature(getattr(mod, name)).parameters.values())
        assert [p.name for p in params[:2]] == ["config", "workdir"], (mod.__name__, name)
    for name in ("train", "policy"):
        rest = list(inspect.signature(getattr(mod, name)).parameters.values())[2:]
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in rest), (mod.__name__, name)
    assert {"seed", "chunk"} <= set(inspect.signature(mod.policy).parameters)
