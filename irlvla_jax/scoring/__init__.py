"""EPDMS (NAVSIM v2.2) in JAX: rollout (interpolation, direct / LQR-tracked), metrics (NC, DAC, DDC, TLC, TTC,
LK, progress), comfort (HC, EC), reference_planner (PDM-Closed, the EP normaliser), epdms (aggregation,
human filter, ``score`` / ``make_scorer`` / ``score_in_chunks``, the sub-score names and the EPDMS formula),
vectors (the official test vectors -> Scene pytrees), commands (``irlvla vectors``, ``irlvla score``).

Checked number by number against the official v2.2 test vectors (tests/scoring/test_vectors.py): all
1,080 proposals agree on every sub-score in both tracked and direct mode.
"""
