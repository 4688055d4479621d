"""base: one-GPU, NAVSIM-scale world (~100k train, ~12k test scenes) and model."""
import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.name = "base"
    c.scene = ml_collections.ConfigDict(dict(
        num_agents=32, num_lanes=48, lane_vertices=48, lane_points=24, num_drivable=16,
        drivable_vertices=48, route_points=96, num_lights=24, light_vertices=48, instruction_tokens=32,
        camera_hw=(256, 1024), lidar_hw=(128, 128), lidar_channels=8, bev_hw=(128, 128),
        bev_range=(-32.0, 64.0, -48.0, 48.0)))
    c.data = ml_collections.ConfigDict(dict(
        name="irlvla_world_base", num_train=100000, num_val=4000, num_test=12000, num_hard=4000,
        num_anchors=20, batch_size=64, shuffle_seed=0, workers=16, data_dir="", world_seed=-1,
        render_split="val", render_count=8))
    c.scoring = ml_collections.ConfigDict(dict(mode="tracked", human_filter=True, num_devices=1))
    # VLA model (models/; MODEL/IL helper): tens of millions of parameters, 256x1024 camera.
    c.model = ml_collections.ConfigDict(dict(
        dim=256, heads=8, dtype="float32",
        perception=dict(camera_channels=(32, 64, 128, 192, 256), lidar_channels=(64, 128), bev_stride=4,
                        bev_tokens_side=8, num_objects=32, num_map_queries=32, heatmap_sigma=1.5),
        semantic=dict(backbone="small", vocab_size=512, width=384, layers=6, heads=6, num_meta=8),
        planner=dict(layers=4, heads=8, train_timesteps=1000, trunc_steps=50, ddim_steps=2,
                     beta_start=1e-4, beta_end=0.02, eta=0.0, min_std=0.0,
                     norm_offset=(20.0, 0.0, 0.0), norm_scale=(20.0, 8.0, 0.5))))

    # Stage 1, imitation (train/imitation.py; MODEL/IL helper).
    c.il = ml_collections.ConfigDict(dict(
        steps=60000, batch_size=64, lr=3e-4, warmup_steps=2000, end_lr_ratio=0.02, weight_decay=1e-4,
        grad_clip=1.0, w_traj=1.0, w_mode=0.5, w_det_heat=0.5, w_det_box=0.5, w_bev_seg=0.5,
        w_map_line=0.2, w_map_exist=0.1, w_meta=0.2, val_every=2000, val_batches=16, epdms_scenes=1024,
        checkpoint_every=2000))

    # Training infrastructure shared by the stages (train/{mesh,checkpoint,logging}.py).
    c.train = ml_collections.ConfigDict(dict(
        num_devices=0, max_to_keep=3, async_checkpoint=True, log_every=50))

    # Stage 2, reward world model (train/reward.py; RL helper).
    #   arch         "light": scene tokens projected once per scene, one token per plan through a small
    #                cross-attention head (the PPO reward: cheap per trajectory) | "transformer": 9 tokens per
    #                plan self- and cross-attending (measured on tiny seed 0, val: same ranking of the IL's
    #                chains, RWM-top chain 0.829 light vs 0.825 transformer)
    #   ppo_samples  samples of all K chains per scene drawn as the PPO rollout draws them (ppo.sigma,
    #                ppo.noise): the distribution the RL policy asks the RWM about
    c.rwm = ml_collections.ConfigDict(dict(
        d_model=128, num_layers=3, num_heads=4, ff_mult=2, steps=20000, batch_size=64, lr=1e-3,
        warmup_steps=50, weight_decay=1e-4, grad_clip=1.0, policy_samples=1, noisy_chains=16,
        noise_std=0.3, expert_perturbations=24, use_anchors=True, use_ec=False, epdms_weight=2.0,
        eval_split="val", eval_scenes=2048, checkpoint_every=1000,
        kinematic_features=True, ego_features=True, rank_weight=1.0, rank_scale=10.0, policy_rank_boost=2.0,
        inner_steps=1, smooth_noise_frac=0.5, scene_features=True, arch="light", ppo_samples=2))

    # Stage 3, RL: group-relative PPO over the planner's denoising chain (train/ppo.py, train/ppo_core.py).
    # One update rolls out batch_size scenes x samples_per_scene samples x num_anchors chains, every one
    # rewarded (64 x 16 x 20 = 20480 trajectories).
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
        reward="rwm", objective="denoise", updates=20000, batch_size=64, samples_per_scene=16,
        epochs=2, num_minibatches=2, lr=1e-5, choice_lr=1e-3, max_grad_norm=1.0, clip_eps=0.2, sigma=0.05, noise="smooth",
        advantage="anchor", denoise_discount=1.0, choice_weight=1.0, choice_loss="surrogate",
        choice_temperature=0.02, bc_weight=0.0,
        checkpoint_every=1000, log_true_score=True))

    # `irlvla pipeline` evaluation (pipeline.py; RL helper). scorer_updates: PPO updates of the true-scorer
    # ablation (0 = ppo.updates; tiny seed 0, val: 300 true-scorer updates +0.044 vs the RWM's +0.048, at
    # 100 the row understates it); choice_only_*: the re-ranking ablation (ppo.objective=choice) runs with
    # these updates / learning rate / samples per scene; rwm_report_scenes: scenes of the RWM report on the
    # RL policy's own samples.
    c.pipeline = ml_collections.ConfigDict(dict(
        eval_split="test", eval_scenes=12000, eval_chunk=128, best_of_samples=2,
        extra_splits=("hard",), scorer_updates=2000, choice_only_updates=20000, choice_only_lr=3e-3, choice_only_samples=1,
        rwm_report_scenes=128))

    # `irlvla evaluate` (evaluate.py; REFERENCE helper): splits scored, scenes per split (0 = all),
    # scenes per scorer call, bootstrap resamples and seed of the 95% intervals.
    c.evaluate = ml_collections.ConfigDict(dict(
        splits=("val", "test", "hard"), max_scenes=0, chunk=128, bootstrap=1000, seed=0, renders=3))
    return c
