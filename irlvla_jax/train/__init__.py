"""Training: the three stages -- imitation (il), reward (the RWM: rwm), ppo (RL on the diffusion planner,
with the generic group-relative PPO in ppo_core) -- each exposing loss / train / restore / policy and
sharing the preamble and host loop of ``loop``; mesh, checkpoint, state, logging underneath; synthetic
(micro configs and random scenes for tests and benchmarks); commands (``irlvla train``)."""
