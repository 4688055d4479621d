"""irlvla-jax: IRL-VLA in JAX/Flax -- imitation (train/imitation.py), a reward world model learned from the
EPDMS scorer (train/reward.py), PPO on the diffusion planner against it (train/ppo.py), evaluated with the
true scorer (evaluate.py); on the embedded procedural world (world/) or converted real data (data/).
The README's Layout section maps every module."""
