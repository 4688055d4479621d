"""The embedded procedural driving world (numpy; deterministic from (seed, split, index)).

Public API: ``irlvla_jax.world.generate.generate_scene(spec, seed, index, split,
family=None) -> Scene`` and ``family_for(split, seed, index)``; ``irlvla_jax.world.language.VOCAB``,
``encode(text, length) -> (ids, valid)``, ``decode(ids, valid) -> str``.

Modules, from the bottom up: ``paths`` (polylines, arc/Bezier points, adaptive sampling), ``roads`` (map
container, corridors, signalised intersections, light phases), ``traffic`` (log-replay IDM agents,
pedestrians, static objects), ``expert`` (the rule-based "human"), ``scaffold`` (the World under
construction and the helpers family builders share), ``families`` (the corridor families and the
registry of all nine) and ``intersection_family``, ``simulate`` (agents, expert, followers, sanity pass),
``sensors`` (camera, LiDAR histogram, BEV semantics), ``language`` (instruction vocabulary), ``pack``
(the Scene record in the ego frame, budgets), ``generate`` (the public entry point and family mix).
Speed check: ``python -m irlvla_jax.world.generate --config configs/tiny.py --n 180``.
"""
