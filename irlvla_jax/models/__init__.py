"""Models (Flax NNX): the VLA policy (vla: perception, semantic, command, planner -- a truncated-diffusion
planner over K anchors -- built from layers) and the reward world model (reward_model, with its explicit
inputs in reward_features)."""
