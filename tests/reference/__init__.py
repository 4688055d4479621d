"""Independent EPDMS reference (numpy + shapely + scipy), sharing no code with ``irlvla_jax.scoring``.

* ``epdms_ref``      the scorer: ``score_one(scene, traj, prev_traj=None, mode, human_filter)`` (slow, exact)
* ``vectors_reader`` its own reader of the official test vectors (shared/epdms_vectors) into a Scene
* ``builders``       hand-built scenes and plans for the rule tests (tests/scoring/test_rules.py)
* ``trajectories``   the 16 plans per scene of the JAX-vs-reference comparison
* ``agreement``      that comparison (tests/scoring/test_agreement.py, benchmarks/agreement.py)
* ``test_reference_vectors`` the reference against the official NAVSIM v2.2 numbers (both modes)
"""
