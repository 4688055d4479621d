"""The embedded procedural driving world (numpy; deterministic from (seed, split, index)).

Contract (docs: TEAM contract 1): ``irlvla_jax.world.generate.generate_scene(spec, seed, index, split,
family=None) -> Scene`` and ``family_for(split, seed, index)``; ``irlvla_jax.world.language.VOCAB``,
``encode(text, length) -> (ids, valid)``, ``decode(ids, valid) -> str``.

Modules: ``roads`` (paths, corridors, signalised intersections, lights), ``traffic`` (log-replay IDM
agents, pedestrians, static objects), ``expert`` (the rule-based "human"), ``sensors`` (camera, LiDAR
histogram, BEV semantics), ``language`` (instruction vocabulary), ``generate`` (families, packing).
Speed check: ``python -m irlvla_jax.world.generate --config configs/tiny.py --n 180``.
"""
