"""The ``irlvla`` command line (big_vision style).

    irlvla <command> --config configs/<name>.py --workdir DIR [--config.a.b=value ...] [command flags]

Commands are looked up in ``COMMANDS`` (name -> "module:function") and imported lazily, so a command's
dependencies load only when it runs. Each function takes ``(config, workdir, args)`` where ``args`` holds
this module's parsed flags plus positional ``args.rest``. One meaning per flag:

  --stage        `train`: the stage to train, il | rwm | ppo
  --policies     `evaluate`: trained runs to evaluate beside the baselines (il, rwm, ppo_rwm, ppo_scorer,
                 ppo_rwm_choice; comma-separated, or all); `sweep`: the table row reported (default ppo_rwm)
  --split        `score`: the split the predictions are for (default test); `score-vocab`: the split scored
                 (default train; real for a converted dataset)
  --predictions  `score`: the predictions file (JSON or .npz)
  --subset       `score`: allow predictions for a subset of the split's scenes
  --mode         `score`, `vectors`, `score-vocab`: scoring mode override, tracked | direct
  --vocab        `score-vocab`: K, the number of vocabulary trajectories (k-means of the train split's
                 expert futures; e.g. 4096 or 8192)
  --seeds        `pipeline`, `sweep`: comma-separated training seeds
  --grid         `sweep`: KEY=V1,V2,... config values to sweep (repeat; cells: their Cartesian product)
  --baseline     `sweep`: the cell the others are compared with, KEY=VALUE,... (default the first cell)
  --launcher     `sweep`: local (run one after another, default) | slurm (sbatch each) | print
  --name         `convert`: the dataset written (default real_<source>); `submit`, `evaluate`, `inspect`,
                 `render`, `score-vocab`: the dataset read (sets config.data.name; `evaluate` and
                 `score-vocab` of a converted dataset score its split real)
  --stride       `convert`: steps of 0.1 s between window starts (default 5 = 0.5 s; navsim: a multiple of 5)
  --maps         `convert navsim`: nuPlan maps root (NAVSIM devkit), map JSON file or folder of them
  --policy       `submit`: the policy, a trained run (il, rwm, ppo_rwm, ...) or a baseline (cv, expert)
  --out          `submit`: the submission pickle (default <workdir>/submissions/<name>_<policy>.pkl)

Real logs (irlvla_jax.data.converted; a converted dataset has the one split ``real`` and no anchors)::

    irlvla convert navsim|av2|scenarionet SRC --config configs/tiny.py --workdir DIR [--name NAME]
                   [--stride N] [--maps PATH]        -> DIR/data/NAME (default NAME real_<source>)
    irlvla evaluate --config configs/tiny.py --workdir DIR --name real_navsim [--policies il,ppo_rwm]
    irlvla submit  --config configs/tiny.py --workdir DIR --name real_navsim --policy ppo_rwm [--out FILE]
                   [team_name=... authors=a,b email=... institution=... country=... version=v2|v1]

Vocabulary scoring (irlvla_jax.scoring.vocab; Hydra-MDP / GTRS training targets)::

    irlvla score-vocab --config configs/tiny.py --workdir DIR --vocab 8192 [--split train] [--name NAME]
                       [--mode tracked|direct]
        -> <dataset dir>/vocab_<K>.npy and <dataset dir>/vocab_scores_<split>_<K>/ (array_record shards,
           resumable; read them with irlvla_jax.scoring.vocab.read_vocab_scores)

``evaluate --name`` (or ``--config.data.name=NAME --config.evaluate.splits="('real',)"``) scores the trained
runs of DIR (their checkpoints carry their anchors) on the converted split; its tables go to
``DIR/eval/evaluate_<NAME>_<mode>.*`` so the world's are kept.

``--config`` is required, except for `vectors`, whose documented default is configs/tiny.py (it reads
only the scorer settings). Errors meant for the user (bad config, bad data, bad input) are raised as
``irlvla_jax.errors.UserError`` (or SceneError / ValueError from validation) and printed as one line with
exit code 2.
"""
from __future__ import annotations

import importlib
import os
import sys
import types

from irlvla_jax.errors import UserError

COMMANDS = {
    "generate": ("irlvla_jax.data.commands:generate", "generate the train/val/test/hard datasets"),
    "inspect": ("irlvla_jax.data.commands:inspect", "summarise a generated dataset"),
    "render": ("irlvla_jax.data.commands:render", "write a PNG per scene (BEV, camera, LiDAR)"),
    "score": ("irlvla_jax.scoring.commands:score", "score a predictions file with EPDMS"),
    "vectors": ("irlvla_jax.scoring.commands:vectors", "check the scorer against official test vectors"),
    "evaluate": ("irlvla_jax.evaluate:main", "EPDMS tables for baselines and trained policies"),
    "train": ("irlvla_jax.train.commands:train", "train a stage: --stage il | rwm | ppo"),
    "pipeline": ("irlvla_jax.pipeline:main", "generate -> IL -> RWM -> PPO -> evaluate, resumable"),
    "checkpoints": ("irlvla_jax.train.inspect_checkpoints:main", "list every checkpoint step with its integrity"),
    "export": ("irlvla_jax.export:main", "export a policy (--stage il | rl): Orbax params + jax.export function"),
    "sweep": ("irlvla_jax.sweep:main", "a pipeline per grid cell x seed, one table with 95% intervals"),
    "convert": ("irlvla_jax.data.commands:convert", "convert real logs (navsim | av2 | scenarionet) to a dataset"),
    "submit": ("irlvla_jax.data.commands:submit", "NAVSIM submission pickle of a policy on a converted split"),
    "score-vocab": ("irlvla_jax.scoring.vocab:score_vocab", "sub-scores of a K-trajectory vocabulary per scene"),
}


def _usage() -> str:
    lines = ["usage: irlvla <command> --config configs/<name>.py --workdir DIR [--config.key=value ...]",
             "", "commands:"]
    lines += [f"  {k:10s} {v[1]}" for k, v in COMMANDS.items()]
    return "\n".join(lines)


def setup_jax(workdir: str | None) -> None:
    """Persistent compilation cache under the workdir (compile time dominates short CLI runs)."""
    import jax
    if workdir:
        cache = os.path.join(workdir, ".jax_cache")
        os.makedirs(cache, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _run(argv):
    from absl import flags
    from irlvla_jax import config as config_lib
    FLAGS = flags.FLAGS
    rest = [a for a in argv[1:]]
    if not rest or rest[0] not in COMMANDS:
        found = rest[0] if rest else "nothing"
        raise UserError(f"unknown command {found!r}; choose one of {sorted(COMMANDS)} (irlvla --help)")
    cmd = rest[0]
    if FLAGS.config is None:
        raise UserError("--config is required, e.g. --config configs/tiny.py")
    if FLAGS.workdir is None:
        raise UserError("--workdir is required, e.g. --workdir /tmp/irlvla")
    cfg = FLAGS.config
    config_lib.check(cfg)
    workdir = os.path.abspath(FLAGS.workdir)
    os.makedirs(workdir, exist_ok=True)
    setup_jax(workdir)
    modname, fn = COMMANDS[cmd][0].split(":")
    func = getattr(importlib.import_module(modname), fn)
    args = types.SimpleNamespace(stage=FLAGS.stage, policies=FLAGS.policies, split=FLAGS.split,
                                 predictions=FLAGS.predictions, mode=FLAGS.mode, rest=rest[1:], seeds=FLAGS.seeds,
                                 subset=FLAGS.subset, grid=FLAGS.grid, baseline=FLAGS.baseline, launcher=FLAGS.launcher,
                                 name=FLAGS.name, stride=FLAGS.stride, maps=FLAGS.maps, policy=FLAGS.policy,
                                 out=FLAGS.out, vocab=FLAGS.vocab)
    with _lock(cmd, cfg, workdir, args):
        return func(cfg, workdir, args)


def _lock(cmd: str, cfg, workdir: str, args):
    """The workdir lock of a command that writes (irlvla_jax.workdir): ``train`` locks its run (il, rwm,
    ppo_<reward>[_choice]), ``pipeline`` the whole pipeline (its stages lock their runs too), ``generate``
    the dataset folder. Other commands only read."""
    import contextlib
    from irlvla_jax import workdir as workdir_lib
    if cmd == "train" and args.stage in ("il", "rwm"):
        return workdir_lib.hold(workdir, args.stage)
    if cmd == "train" and args.stage == "ppo":
        from irlvla_jax.train.ppo import run_name
        return workdir_lib.hold(workdir, run_name(cfg))
    if cmd == "pipeline":
        return workdir_lib.hold(workdir, "pipeline")
    if cmd == "generate":
        from irlvla_jax.data import loader
        return workdir_lib.hold(loader.data_dir(cfg, workdir), f"generate-{cfg.data.name}")
    if cmd == "convert":        # the same lock name as generate: one writer per dataset folder
        from irlvla_jax.data import loader
        from irlvla_jax.data.commands import convert_name
        return workdir_lib.hold(loader.data_dir(cfg, workdir), f"generate-{convert_name(args)}")
    return contextlib.nullcontext()


def _flag_value(argv, name: str):
    """The value of ``--name VALUE`` / ``--name=VALUE`` in argv (the last one), or None."""
    val = None
    for i, a in enumerate(argv):
        if a == f"--{name}" and i + 1 < len(argv):
            val = argv[i + 1]
        elif a.startswith(f"--{name}="):
            val = a.split("=", 1)[1]
    return val


def _check_config_file(argv) -> None:
    """Load the ``--config`` file once before flag parsing, so a missing file, a file that does not load, no
    get_config or a get_config that does not return a ConfigDict is one line naming the file."""
    import ml_collections
    from irlvla_jax.config import load_config
    path = _flag_value(argv, "config")
    if path is None:
        return                                   # `_run` says --config is required
    cfg = load_config(path)
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise UserError(f"config file {path!r}: get_config() returned a {type(cfg).__name__}, not an "
                        "ml_collections.ConfigDict (see configs/default.py)")


def _override_error(argv, e: BaseException) -> UserError:
    """A --config.<key>=value that does not apply, as one line naming the flag."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    overrides = [a for a in argv if a.startswith("--config.")]
    named = [a.split("=")[0] for a in overrides if a.split("=")[0][len("--config."):].split(".")[-1] in text]
    flag = (named or [a.split("=")[0] for a in overrides] or ["--config"])[0]
    if isinstance(e, (AttributeError, KeyError)):
        return UserError(f"{flag}: the config has no such key; configs/default.py lists every key")
    return UserError(f"{flag}: bad value ({text.strip(chr(34) + chr(39))}); give a value of the key's type")


def main(argv=None) -> None:
    """Console-script entry point."""
    from absl import flags
    from ml_collections import config_flags
    from irlvla_jax.errors import NonFiniteError
    from irlvla_jax.scene import SceneError
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(_usage())
        return
    # `irlvla vectors DIR` and `irlvla checkpoints` need no config: their documented default is configs/tiny.py.
    if argv[1] in ("vectors", "checkpoints") and _flag_value(argv, "config") is None:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        argv += ["--config", os.path.join(here, "configs", "tiny.py")]
    if argv[1] == "vectors" and not any(a.startswith("--workdir") for a in argv):
        argv += ["--workdir", os.path.join(os.getcwd(), ".irlvla_vectors")]
    config_flags.DEFINE_config_file("config", None, "ml_collections config file", lock_config=True)
    flags.DEFINE_string("workdir", None, "output directory (datasets, checkpoints, logs, reports)")
    flags.DEFINE_string("stage", None, "`train`: the stage to train, il | rwm | ppo")
    flags.DEFINE_string("policies", None, "`evaluate`: trained runs to evaluate (il, rwm, ppo_rwm, ppo_scorer, "
                                          "ppo_rwm_choice; comma-separated, or all); `sweep`: the row reported")
    flags.DEFINE_string("split", None, "`score`: the split the predictions are for (default test); "
                                       "`score-vocab`: the split scored (default train, or real)")
    flags.DEFINE_string("predictions", None, "`score`: the predictions file (JSON or .npz)")
    flags.DEFINE_bool("subset", False, "`score`: allow predictions for a subset of the split's scenes")
    flags.DEFINE_string("mode", None, "`score`, `vectors`, `score-vocab`: scoring mode override, tracked | direct")
    flags.DEFINE_integer("vocab", None, "`score-vocab`: K, the number of vocabulary trajectories (e.g. 8192)")
    flags.DEFINE_string("seeds", None, "comma-separated seeds for `pipeline` and `sweep`")
    flags.DEFINE_multi_string("grid", None, "`sweep`: KEY=V1,V2,... config values to sweep (repeat the flag)")
    flags.DEFINE_string("baseline", None, "`sweep`: the baseline cell, KEY=VALUE,... (default the first cell)")
    flags.DEFINE_enum("launcher", "local", ["local", "slurm", "print"], "`sweep`: local | slurm | print")
    flags.DEFINE_string("name", None, "`convert`: the dataset written (default real_<source>); `submit`, "
                                      "`evaluate`, `score-vocab`: the dataset read (config.data.name)")
    flags.DEFINE_integer("stride", None, "`convert`: 0.1 s steps between window starts (default 5; navsim: x5)")
    flags.DEFINE_string("maps", None, "`convert navsim`: nuPlan maps root, map JSON file or folder of them")
    flags.DEFINE_string("policy", None, "`submit`: a trained run (il, rwm, ppo_rwm, ...) or a baseline (cv, expert)")
    flags.DEFINE_string("out", None, "`submit`: the submission pickle (default <workdir>/submissions/...)")
    try:
        _check_config_file(argv)
        try:
            rest = flags.FLAGS(argv)
        except flags.Error as e:
            if any(a.startswith("--config.") for a in argv):
                raise _override_error(argv, e) from e
            raise UserError(str(e).strip().splitlines()[0]) from e
        except (AttributeError, KeyError, TypeError, ValueError) as e:   # ml_collections, applying --config.<key>
            raise _override_error(argv, e) from e
        _run(rest)
    except (UserError, SceneError, ValueError, FileNotFoundError, KeyError, NonFiniteError) as e:
        if os.environ.get("IRLVLA_TRACEBACK"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"irlvla: error: {msg}  (IRLVLA_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
