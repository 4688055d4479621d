"""Ablation sweeps: a thin wrapper of ``irlvla sweep`` (irlvla_jax/sweep.py documents it).

    python launch/sweep.py --config configs/tiny.py --workdir runs/sweep \
        --grid ppo.reward=rwm,scorer --grid ppo.objective=denoise,choice --seeds 0,1,2 [--launcher local|slurm|print]

is ``irlvla sweep`` with the same flags: one ``irlvla pipeline`` per cell x seed in
``<workdir>/<key>=<value>,.../seed_<s>`` on one shared dataset (resumable), then ``sweep.md`` / ``.json`` /
``.png`` with 95% intervals and the paired difference to the baseline cell.
"""
from __future__ import annotations

import os
import sys


def main(argv=None):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from irlvla_jax import cli
    # ml_collections reads the --config.* overrides from sys.argv, so the command line is set there.
    sys.argv = ["irlvla", "sweep", *(sys.argv[1:] if argv is None else argv)]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
