"""The JAX EPDMS scorer agrees with the independent numpy reference on generated world scenes.

12 test-split scenes x 16 plans (expert, perturbed expert, random, constant velocity, stand still; every
other scene with a previous-frame plan for EC), tracked mode (the config default). Targets: every
sub-score equal in >= 99 % of cases, mean |delta EPDMS| < 0.005. The full >= 500-scene run, in both
modes, is benchmarks/agreement.py.
"""
from __future__ import annotations

import json

import numpy as np

from irlvla_jax.scene import SceneSpec
from tests.reference import agreement as A

N_SCENES = 12


def test_jax_scorer_agrees_with_reference():
    import configs.tiny as tiny
    spec = SceneSpec.from_config(tiny.get_config().scene)
    res = A.run_agreement(spec, N_SCENES, mode="tracked", chunk=6)
    bad = res.pop("disagreements")
    summary = json.dumps(res)
    print(summary)
    for b in bad:
        print("disagreement", b)
    assert res["cases"] == N_SCENES * 16
    low = {k: v for k, v in res["agreement"].items() if v < 0.99}
    assert not low, f"sub-scores below 99% agreement: {low}; {summary}; first disagreements: {bad[:10]}"
    assert res["mean_abs_delta_epdms"] < 0.005, f"{summary}; first disagreements: {bad[:10]}"


def test_agreement_inputs_are_varied():
    """The comparison is not vacuous: the plans produce failures of several kinds on these scenes."""
    import configs.tiny as tiny
    spec = SceneSpec.from_config(tiny.get_config().scene)
    scenes, trajs, prevs, has_prev = A.make_inputs(spec, 4)
    assert trajs.shape == (4, 16, 8, 3) and np.isfinite(trajs).all()
    rf = A.ref_scores(scenes, trajs, prevs, has_prev, "direct")
    failing = {k for k in ("NC", "DAC", "DDC", "LK", "HC", "EC", "TTC") if (rf[k] < 1).any()}
    assert len(failing) >= 3, f"too few failure kinds in the agreement inputs: {failing}"
    assert (rf["EPDMS"] > 0.8).any() and (rf["EPDMS"] < 0.5).any()
