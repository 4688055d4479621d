import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "launch"))
import sweep  # noqa: E402


def test_grid_is_cartesian_product_with_distinct_workdirs():
    grid = sweep.parse_grid(["ppo.reward_source=rwm,scorer", "ppo.bc_weight=0.0,0.1,0.5"])
    runs = list(sweep.commands("configs/tiny.py", "runs/s", "ppo", grid))
    assert len(runs) == 6
    workdirs = [argv[argv.index("--workdir") + 1] for _, argv in runs]
    assert len(set(workdirs)) == 6
    name, argv = runs[0]
    assert name == "ppo.reward_source=rwm,ppo.bc_weight=0.0"
    assert "--config.ppo.reward_source=rwm" in argv and "--config.ppo.bc_weight=0.0" in argv
    assert argv[:2] == ["irlvla", "train"] and argv[argv.index("--stage") + 1] == "ppo"


def test_bad_grid_item_is_a_clear_error():
    with pytest.raises(SystemExit, match="KEY=V1,V2"):
        sweep.parse_grid(["ppo.bc_weight"])
