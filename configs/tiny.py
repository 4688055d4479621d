"""tiny: CPU-sized everything (tests, demos, the README's main job). Minutes on 2 cores."""
import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.name = "tiny"

    # Static scene sizes (irlvla_jax.scene.SceneSpec).
    c.scene = ml_collections.ConfigDict(dict(
        num_agents=16, num_lanes=32, lane_vertices=32, lane_points=16, num_drivable=16,
        drivable_vertices=32, route_points=64, num_lights=16, light_vertices=32, instruction_tokens=24,
        camera_hw=(48, 96), lidar_hw=(48, 48), lidar_channels=4, bev_hw=(48, 48),
        bev_range=(-16.0, 48.0, -32.0, 32.0)))

    # Datasets (irlvla generate; data/).
    c.data = ml_collections.ConfigDict(dict(
        name="irlvla_world_tiny", num_train=4000, num_val=250, num_test=500, num_hard=250,
        num_anchors=16, batch_size=32, shuffle_seed=0, workers=2, data_dir="", world_seed=-1,  # data_dir "" -> <workdir>/data; world_seed -1 -> seed
        render_split="val", render_count=8))

    # VLA model (models/; MODEL/IL helper). Widths are CPU-small.
    c.model = ml_collections.ConfigDict(dict(
        dim=64, heads=4, dtype="float32",
        perception=dict(camera_channels=(16, 32, 32), lidar_channels=(16, 32), bev_stride=4,
                        bev_tokens_side=4, num_objects=8, num_map_queries=8, heatmap_sigma=1.0),
        semantic=dict(backbone="small", vocab_size=128, width=64, layers=2, heads=4, num_meta=4),
        planner=dict(layers=2, heads=4, train_timesteps=1000, trunc_steps=50, ddim_steps=2,
                     beta_start=1e-4, beta_end=0.02, eta=0.0, min_std=0.0,
                     norm_offset=(20.0, 0.0, 0.0), norm_scale=(20.0, 8.0, 0.5))))

    # Stage 1, imitation (train/imitation.py; MODEL/IL helper).
    c.il = ml_collections.ConfigDict(dict(
        steps=1500, batch_size=32, lr=1e-3, warmup_steps=100, end_lr_ratio=0.05, weight_decay=1e-4,
        grad_clip=1.0, w_traj=1.0, w_mode=0.5, w_det_heat=0.5, w_det_box=0.5, w_bev_seg=0.5,
        w_map_line=0.2, w_map_exist=0.1, w_meta=0.2, val_every=500, val_batches=4, epdms_scenes=64,
        checkpoint_every=250))

    # Training infrastructure shared by the stages (train/{mesh,checkpoint,logging}.py).
    c.train = ml_collections.ConfigDict(dict(
        num_devices=0, max_to_keep=3, async_checkpoint=True, log_every=25))

    # EPDMS scorer (scoring/); num_devices: 1 = one device, 0 = each call sharded over all local devices.
    c.scoring = ml_collections.ConfigDict(dict(mode="tracked", human_filter=True, num_devices=1))
    # Stage 2, reward world model (train/reward.py; RL helper).
    #   arch         "light": scene tokens projected once per scene, one token per plan through a small
    #                cross-attention head (the PPO reward: cheap per trajectory) | "transformer": 9 tokens per
    #                plan self- and cross-attending (measured on tiny seed 0, val: same ranking of the IL's
    #                chains, RWM-top chain 0.829 light vs 0.825 transformer)
    #   ppo_samples  samples of all K chains per scene drawn as the PPO rollout draws them (ppo.sigma,
    #                ppo.noise): the distribution the RL policy asks the RWM about
    c.rwm = ml_collections.ConfigDict(dict(
        d_model=64, num_layers=2, num_heads=4, ff_mult=2, steps=900, batch_size=8, lr=3e-3,
        warmup_steps=50, weight_decay=1e-4, grad_clip=1.0, policy_samples=1, noisy_chains=16,
        noise_std=0.3, expert_perturbations=24, use_anchors=True, use_ec=False, epdms_weight=2.0,
        eval_split="val", eval_scenes=128, checkpoint_every=50,
        kinematic_features=True, ego_features=True, rank_weight=1.0, rank_scale=10.0, policy_rank_boost=2.0,
        inner_steps=1, smooth_noise_frac=0.5, scene_features=True, arch="light", ppo_samples=2))

    # Stage 3, RL: group-relative PPO over the planner's denoising chain (train/ppo.py, train/ppo_core.py).
    # One update rolls out batch_size scenes x samples_per_scene samples x num_anchors chains, every one
    # rewarded (16 x 4 x 16 = 1024 trajectories).
    #   reward            "rwm" (the learned reward world model) | "scorer" (the true JAX EPDMS, ablation)
    #   objective         "denoise": every denoising step of every chain is a Gaussian policy step and the
    #                     whole planner (denoiser + mode head) is trained; "choice": only the mode head, the
    #                     chains stay the IL planner's (the re-ranking ablation)
    #   sigma, noise      exploration std per step (normalised poses; RMS over the poses) and its shape
    #                     over the poses: "smooth" (double-integrated kicks) | "white"
    #   advantage         baseline: "anchor" (the same anchor's samples) | "scene" (all of the scene's;
    #                     measured +0.044 vs +0.048)
    #   denoise_discount  weight of step s is discount ** (S - 1 - s) (the last step 1)
    #   lr, choice_lr     Adam step of the planner; of its mode head (the chain choice) when > 0 (measured on
    #                     tiny seed 0, val: lr 1e-4 collapsed HC within 6 updates (KL 280 nats); 1e-5 +0.032,
    #                     with choice_lr 1e-3 +0.040; 2e-5 with bc_weight 0.1 +0.047, HC -0.08)
    #   choice_loss       "surrogate": PPO's expected clipped surrogate over the chains; "distill": cross-entropy
    #                     to softmax(mean chain reward / choice_temperature) (measured: +0.033 vs +0.048)
    #   choice_weight     weight of the chain-choice loss; bc_weight: imitation loss toward the expert
    #   log_true_score    also score the executed trajectories with the true scorer every update (the
    #                     reward-hacking curve; B trajectories per update)
    c.ppo = ml_collections.ConfigDict(dict(
        reward="rwm", objective="denoise", updates=300, batch_size=16, samples_per_scene=4,
        epochs=2, num_minibatches=2, lr=1e-5, choice_lr=1e-3, max_grad_norm=1.0, clip_eps=0.2, sigma=0.05, noise="smooth",
        advantage="anchor", denoise_discount=1.0, choice_weight=1.0, choice_loss="surrogate",
        choice_temperature=0.02, bc_weight=0.0,
        checkpoint_every=100, log_true_score=True))

    # `irlvla pipeline` evaluation (pipeline.py; RL helper). scorer_updates: PPO updates of the true-scorer
    # ablation (0 = ppo.updates; tiny seed 0, val: 300 true-scorer updates +0.044 vs the RWM's +0.048, at
    # 100 the row understates it); choice_only_*: the re-ranking ablation (ppo.objective=choice) runs with
    # these updates / learning rate / samples per scene; rwm_report_scenes: scenes of the RWM report on the
    # RL policy's own samples.
    c.pipeline = ml_collections.ConfigDict(dict(
        eval_split="test", eval_scenes=500, eval_chunk=32, best_of_samples=2,
        extra_splits=("hard",), scorer_updates=100, choice_only_updates=1200, choice_only_lr=3e-3, choice_only_samples=1,
        rwm_report_scenes=128))

    # `irlvla evaluate` (evaluate.py; REFERENCE helper): splits scored, scenes per split (0 = all),
    # scenes per scorer call, bootstrap resamples and seed of the 95% intervals.
    c.evaluate = ml_collections.ConfigDict(dict(
        splits=("val", "test", "hard"), max_scenes=64, chunk=32, bootstrap=1000, seed=0, renders=3))
    return c
