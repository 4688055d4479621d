"""Every setting of irlvla-jax, documented once; named variants (big_vision style).

    irlvla <command> --config configs/default.py:tiny ...     (= --config configs/tiny.py)
    irlvla <command> --config configs/default.py:base ...     (= --config configs/base.py)

``get_config(arg)`` builds the tiny defaults below and applies the variant's overrides (``VARIANTS``), so a
default is changed in one place. Variants:
  tiny  CPU-sized everything (tests, demos, the README's main job): minutes on 2 cores.
  tiny_real  tiny with room for real streets (64 agents, 64 lanes, 24 drivable pieces): real-log conversion
        and zero-shot evaluation of tiny checkpoints.
  reward_grad  tiny with PPO's reward gradient on (the RWM reward differentiated through the denoiser, lr 5e-5,
        the RWM trained on time-warped chains too): a larger gain on tiny seed 0, and a risk of reward hacking.
  base  one GPU, a NAVSIM-scale world (~100k train, ~12k test scenes) and a model of tens of millions of
        parameters (256 x 1024 camera).
Any key can be overridden on the command line: ``--config.ppo.lr=2e-5``. Every section is checked strictly
(unknown or missing key: a one-line error) by ``irlvla_jax.config.check``.
"""
import ml_collections

VARIANTS = {
    "tiny": {},
    # The paper's ablations, on tiny (docs/ablations.md): each changes the model or the method.
    "no_semantic": {"model.planner.contexts": ("bev", "map", "obj"), "il.w_meta": 0.0},   # no meta tokens
    "no_3d": {"model.planner.contexts": ("meta",)},                 # no BEV / object / map tokens to the planner
    "regression": {"model.planner.kind": "regression", "ppo.objective": "choice"},   # no diffusion
    "rl_scorer": {"ppo.reward": "scorer"},                          # RL with the true scorer instead of the RWM
    # RL with the reward gradient (ppo.reward_grad_weight; docs/results/rl_tiny_3seeds.md, "the fourteenth stop"):
    # the RWM's reward differentiated through the denoiser, at a 10x larger step, the RWM trained on time-warped
    # chains too. Tiny, test 500, seeds 0 / 1 / 2: RL - IL +0.069 / -0.096 / +0.040 (the default +0.040 / +0.026 /
    # +0.045), EP -0.13 / -0.14 / -0.21; another seed-0 RWM (rwm.noisy_chains 8) was exploited into a collapse
    # (-0.272, HC 0.22). It hacks the RWM: not the default.
    "reward_grad": {"ppo.reward_grad_weight": 10.0, "ppo.lr": 5e-5, "rwm.warped_chains": 8},
    # Real logs (irlvla convert av2|scenarionet|navsim): tiny's model and sensors, room for a real street's
    # agents and map (padding only: tiny checkpoints serve these scenes, train.checkpoint.PADDING_KEYS).
    "tiny_real": {"scene.num_agents": 64, "scene.num_lanes": 64, "scene.num_drivable": 24},
    "base": {
        "scene.num_agents": 32, "scene.num_lanes": 48, "scene.lane_vertices": 48, "scene.lane_points": 24,
        "scene.drivable_vertices": 48, "scene.route_points": 96, "scene.num_lights": 24,
        "scene.light_vertices": 48, "scene.instruction_tokens": 32, "scene.camera_hw": (256, 1024),
        "scene.lidar_hw": (128, 128), "scene.lidar_channels": 8, "scene.bev_hw": (128, 128),
        "scene.bev_range": (-32.0, 64.0, -48.0, 48.0),
        "data.name": "irlvla_world_base", "data.num_train": 100000, "data.num_val": 4000, "data.num_test": 12000,
        "data.num_hard": 4000, "data.num_anchors": 20, "data.batch_size": 64, "data.workers": 16,
        "model.dim": 256, "model.heads": 8,
        "model.perception.camera_channels": (32, 64, 128, 192, 256), "model.perception.lidar_channels": (64, 128),
        "model.perception.bev_tokens_side": 8, "model.perception.num_objects": 32,
        "model.perception.num_map_queries": 32, "model.perception.heatmap_sigma": 1.5,
        "model.semantic.vocab_size": 512, "model.semantic.width": 384, "model.semantic.layers": 6,
        "model.semantic.heads": 6, "model.semantic.num_meta": 8, "model.planner.layers": 4, "model.planner.heads": 8,
        "il.steps": 60000, "il.batch_size": 64, "il.lr": 3e-4, "il.warmup_steps": 2000, "il.end_lr_ratio": 0.02,
        "il.val_every": 2000, "il.val_batches": 16, "il.epdms_scenes": 1024, "il.checkpoint_every": 2000,
        "train.log_every": 50,
        # One cross-attention layer, as tiny (tiny seed 0: 1 vs 2 layers ranked the RL policy's samples alike,
        # 0.594 vs 0.593); 96 wide, the widest of 128 / 96 / 64 whose reward is >= 10x the scorer's per
        # trajectory: 20,480 world-scene trajectories on 2 CPU cores, one run, 94k / 125k / 150k per second vs
        # the scorer's 10.3k (9.1x / 12.1x / 14.4x). Not validated for quality at base scale (nothing is).
        "rwm.d_model": 96, "rwm.num_layers": 1, "rwm.steps": 20000, "rwm.batch_size": 64, "rwm.lr": 1e-3,
        "rwm.eval_scenes": 2048, "rwm.checkpoint_every": 1000,
        # 64 scenes x 16 samples x 20 anchor chains = 20,480 trajectories per PPO update.
        "ppo.updates": 20000, "ppo.batch_size": 64, "ppo.samples_per_scene": 16, "ppo.checkpoint_every": 1000,
        # the RWM refreshed 3 times, as on tiny (300 updates, every 75); its steps scaled as the updates (unmeasured)
        "ppo.rwm_refresh_every": 5000, "ppo.rwm_refresh_steps": 500,
        "pipeline.eval_scenes": 12000, "pipeline.eval_chunk": 128, "pipeline.scorer_updates": 2000,
        "pipeline.choice_only_updates": 20000,
        "evaluate.max_scenes": 0, "evaluate.chunk": 128,
    },
}


def get_config(arg: str = "tiny"):
    if arg not in VARIANTS:
        raise ValueError(f"unknown config variant {arg!r}; choose one of {sorted(VARIANTS)}")
    c = ml_collections.ConfigDict()
    c.seed = 0                      # training seed (model init, data order, PPO noise)
    c.name = arg                    # the variant's name (reports)

    # Static scene sizes (irlvla_jax.scene.SceneSpec): arrays are padded to these; camera / LiDAR / BEV
    # raster sizes (pixels) and the BEV window (x_min, x_max, y_min, y_max metres, ego frame).
    c.scene = ml_collections.ConfigDict(dict(
        num_agents=16, num_lanes=32, lane_vertices=32, lane_points=16, num_drivable=16,
        drivable_vertices=32, route_points=64, num_lights=16, light_vertices=32, instruction_tokens=24,
        camera_hw=(48, 96), lidar_hw=(48, 48), lidar_channels=4, bev_hw=(48, 48),
        bev_range=(-16.0, 48.0, -32.0, 32.0)))

    # Datasets (irlvla generate; data/): TFDS name, scenes per split, anchors (k-means of the train split's
    # expert futures), loader batch size, shuffle seed of `irlvla inspect` / `render` order, writer
    # processes, data_dir ("" -> <workdir>/data), world_seed (-1 -> seed: the procedural world's seed),
    # and the split / count of scenes `irlvla render` draws.
    c.data = ml_collections.ConfigDict(dict(
        name="irlvla_world_tiny", num_train=4000, num_val=250, num_test=500, num_hard=250,
        num_anchors=16, batch_size=32, shuffle_seed=0, workers=2, data_dir="", world_seed=-1,
        render_split="val", render_count=8))

    # VLA model (models/): token width and heads; perception (camera / LiDAR conv channels, BEV stride and
    # token grid side, object / map queries, detection heat-map sigma in BEV cells); semantic reasoning
    # (instruction vocabulary, transformer width / layers / heads, meta tokens); the truncated-diffusion
    # planner (kind: "diffusion" (truncated diffusion around the anchors) | "regression" (one pass from the clean
    # anchors, no noise: the regression-head ablation); contexts: the scene-token families it cross-attends to;
    # layers, heads, the DDPM schedule: train_timesteps, trunc_steps (start of the truncated chain),
    # ddim_steps, beta range, DDIM eta, min_std floor of a step's noise, trajectory normalisation
    # x_norm = (x - norm_offset) / norm_scale per (x, y, heading)).
    c.model = ml_collections.ConfigDict(dict(
        dim=64, heads=4, dtype="float32",
        perception=dict(camera_channels=(16, 32, 32), lidar_channels=(16, 32), bev_stride=4,
                        bev_tokens_side=4, num_objects=8, num_map_queries=8, heatmap_sigma=1.0),
        semantic=dict(backbone="small", vocab_size=128, width=64, layers=2, heads=4, num_meta=4),
        planner=dict(kind="diffusion", contexts=("meta", "bev", "map", "obj"), layers=2, heads=4,
                     train_timesteps=1000, trunc_steps=50, ddim_steps=2,
                     beta_start=1e-4, beta_end=0.02, eta=0.0, min_std=0.0,
                     norm_offset=(20.0, 0.0, 0.0), norm_scale=(20.0, 8.0, 0.5))))

    # Stage 1, imitation (train/imitation.py): steps, batch, AdamW (lr, warm-up, cosine to end_lr_ratio * lr,
    # weight decay, global-norm clip), the loss weights w_* of imitation.loss, validation every val_every
    # steps on val_batches batches (+ EPDMS on epdms_scenes val scenes), checkpoint cadence.
    c.il = ml_collections.ConfigDict(dict(
        steps=1500, batch_size=32, lr=1e-3, warmup_steps=100, end_lr_ratio=0.05, weight_decay=1e-4,
        grad_clip=1.0, w_traj=1.0, w_mode=0.5, w_det_heat=0.5, w_det_box=0.5, w_bev_seg=0.5,
        w_map_line=0.2, w_map_exist=0.1, w_meta=0.2, val_every=500, val_batches=4, epdms_scenes=64,
        checkpoint_every=250))

    # Training infrastructure shared by the stages (train/loop.py): devices of the 'data' mesh (0 = all),
    # checkpoints kept, asynchronous Orbax saves, TensorBoard / progress cadence in steps.
    c.train = ml_collections.ConfigDict(dict(
        num_devices=0, max_to_keep=3, async_checkpoint=True, log_every=25))

    # EPDMS scorer (scoring/): "tracked" (LQR-tracked bicycle model, NAVSIM) | "direct"; NAVSIM's human
    # filter; num_devices: 1 = one device, 0 = each call sharded over all local devices.
    c.scoring = ml_collections.ConfigDict(dict(mode="tracked", human_filter=True, num_devices=1))

    # Stage 2, reward world model (train/reward.py).
    #   d_model, num_layers, num_heads, ff_mult   the RWM's width and depth
    #   steps, batch_size, lr, warmup_steps, weight_decay, grad_clip, inner_steps   AdamW; inner_steps updates
    #                per labelled batch (labelling dominates a step's cost); tiny seed 0: 1,800 steps vs 900 gave
    #                val Spearman 0.743 vs 0.723, 0.623 vs 0.594 on the RL policy's samples, +100 s; inner_steps
    #                4 vs 1 (same IL, RWM seeds 0 / 1): 0.632 / 0.617 vs 0.613 / 0.601 on the RL policy's samples,
    #                RWM-top IL chain +0.094 / +0.101 vs +0.083 / +0.092 over IL, 252 vs 244 s
    #   policy_samples, noisy_chains, noise_std, smooth_noise_frac, expert_perturbations, use_anchors,
    #   ppo_samples  the candidates of a training scene: IL samples (all K chains each), noisy chains (std
    #                ~ U(0, noise_std), the smooth_noise_frac fraction with PPO's smooth noise), perturbed
    #                experts, the anchors, and samples of all K chains drawn as the PPO rollout draws them
    #                (ppo.sigma, ppo.noise): the distribution the RL policy asks the RWM about
    #   warped_chains  policy chains replayed at U(0.4, 1.2) x their pace (the slower plans the reward gradient
    #                drives the policy to; the variant reward_grad: 8. Tiny seed 0, test 500, with ppo.reward_grad_weight
    #                10 at lr 5e-5: RL - IL +0.074 with 8 vs +0.058 without; the RWM's EP on the RL policy's plans
    #                0.860 vs 0.814 true with 8, 0.824 vs 0.768 without)
    #   use_ec       predict EC too (EPDMS over /16); epdms_weight, rank_weight, rank_scale, policy_rank_boost:
    #                the MSE-to-EPDMS and within-scene ranking loss terms (policy pairs weighted 1 + boost)
    #   eval_split, eval_scenes   the held-out report
    #   kinematic_features, ego_features, scene_features   extra inputs (models/reward_features.py)
    #   scene_pose_stride   the plan-vs-scene geometry at every stride-th pose (1: all 8; 2: t = 1, 2, 3, 4 s:
    #                half its cost, the light RWM 1.4x faster; measured on tiny seed 0: val Spearman 0.720 vs
    #                0.720, on the RL policy's samples 0.593 vs 0.583, RWM-top IL chain +0.085 vs +0.089 over IL)
    #   arch         "light": scene tokens projected once per scene, one token per plan through a small
    #                cross-attention head (the PPO reward: cheap per trajectory) | "transformer": 9 tokens per
    #                plan self- and cross-attending (measured on tiny seed 0, val: same ranking of the IL's
    #                chains, RWM-top chain 0.829 light vs 0.825 transformer)
    c.rwm = ml_collections.ConfigDict(dict(
        d_model=64, num_layers=1, num_heads=4, ff_mult=2, steps=1800, batch_size=8, lr=3e-3,
        warmup_steps=50, weight_decay=1e-4, grad_clip=1.0, policy_samples=1, noisy_chains=16,
        noise_std=0.3, expert_perturbations=24, use_anchors=True, use_ec=False, epdms_weight=2.0,
        eval_split="val", eval_scenes=128, checkpoint_every=50,
        kinematic_features=True, ego_features=True, rank_weight=1.0, rank_scale=10.0, policy_rank_boost=2.0,
        inner_steps=4, smooth_noise_frac=0.5, scene_features=True, scene_pose_stride=2, arch="light", ppo_samples=2,
        warped_chains=0))

    # Stage 3, RL: group-relative PPO over the planner's denoising chain (train/ppo.py, train/ppo_core.py).
    # One update rolls out batch_size scenes x samples_per_scene samples x num_anchors chains, every one
    # rewarded (tiny: 16 x 4 x 16 = 1,024 trajectories).
    #   reward            "rwm" (the learned reward world model) | "scorer" (the true JAX EPDMS, ablation)
    #   objective         "denoise": every denoising step of every chain is a Gaussian policy step and the
    #                     whole planner (denoiser + mode head) is trained; "choice": only the mode head, the
    #                     chains stay the IL planner's (the re-ranking ablation)
    #   updates, batch_size, samples_per_scene, epochs, num_minibatches   the PPO schedule
    #                     (tiny seed 0, test 500: 600 updates +0.047 over IL with EP -0.080 at lr 1e-5, +0.035 with
    #                     EP -0.063 at 5e-6; 300 updates +0.037 / +0.040, EP -0.050 / -0.037)
    #   clip_eps, max_grad_norm   PPO's ratio clip; global-norm gradient clip
    #   sigma, noise      exploration std per step (normalised poses; RMS over the poses) and its shape
    #                     over the poses: "smooth" (double-integrated kicks) | "white"
    #   advantage         baseline: "anchor" (the same anchor's samples) | "scene" (all of the scene's;
    #                     measured +0.044 vs +0.048)
    #   negative_advantages  "keep" | "clip": the normalised advantages floored at 0 (DiffusionDriveV2; only
    #                     better-than-group chains reinforced). Tiny, test 500 (docs/results/rl_tiny_3seeds.md,
    #                     "The twenty-first stop"): seed 0 at lr 5e-6 RL - IL +0.036 vs +0.032 (no effect); at lr
    #                     2e-5, seeds 0 / 1 / 2: RL - IL +0.034 / +0.022 / +0.052 (default +0.032 / +0.028 / +0.042),
    #                     EP -0.063 / -0.071 / -0.067, HC -0.022 / -0.092 / -0.074 against IL (the sub-score bound
    #                     broken in every seed); at 5e-5 HC collapses (seed 0). Off by default
    #   denoise_discount  weight of step s is discount ** (S - 1 - s) (the last step 1); measured on tiny seed 0,
    #                     test 500: 0.6 (ReCogDrive's) +0.032 [+0.011, +0.054] over IL vs 1.0 +0.037 [+0.015, +0.059]
    #   lr, choice_lr     Adam step of the planner; of its mode head (the chain choice) when > 0 (measured on
    #                     tiny seed 0, val: lr 1e-4 collapsed HC within 6 updates (KL 280 nats); 1e-5 +0.032,
    #                     with choice_lr 1e-3 +0.040; 2e-5 with bc_weight 0.1 +0.047, HC -0.08; tiny seeds 0, 1, 2,
    #                     test 500, same IL and RWM: 5e-6 +0.040 / +0.026 / +0.045 over IL with EP -0.037 / -0.050 /
    #                     -0.040, 1e-5 +0.037 / +0.019 / +0.049 with EP -0.050 / -0.065 / -0.056)
    #   choice_loss       "surrogate": PPO's expected clipped surrogate over the chains; "distill": cross-entropy
    #                     to softmax(mean chain reward / choice_temperature) (measured: +0.033 vs +0.048)
    #   choice_weight     weight of the chain-choice loss; bc_weight: imitation loss toward the expert (tiny seed 0,
    #                     test 500, with reward_grad_weight 10 at lr 5e-5: 1.0 gave +0.022 vs +0.058 without)
    #   reward_grad_weight  weight of the reward gradient: the chains of each scene's first sample re-run from their
    #                     initial noise, the RWM reward differentiated through them (pathwise; needs ppo.reward='rwm':
    #                     the scorer is not differentiable; the variant reward_grad: 10 at lr 5e-5). Tiny seed 0, test
    #                     500, from one IL and RWM (no rwm.warped_chains): 0 at lr 5e-6 +0.040 over IL; 1 at 5e-6 +0.036;
    #                     10 at 2e-5 +0.044 (EP -0.115); 10 at 5e-5 +0.058 (EP -0.178, HC +0.184). It exploits the RWM:
    #                     RWM reward 0.84 vs true EPDMS 0.78 on the RL policy's samples; off by default
    #   rwm_refresh_every, rwm_refresh_steps   every rwm_refresh_every updates (0 = off), rwm_refresh_steps more RWM
    #                     training steps (the RWM stage's step and program, rwm.batch_size scenes each, cut from PPO's
    #                     batches) on the CURRENT policy's candidates, labelled by the true scorer; the refreshed RWM
    #                     rewards the updates that follow and is checkpointed with the policy (measurements:
    #                     docs/results/rl_tiny_3seeds.md, "The fifteenth stop")
    #   checkpoint_every  updates between checkpoints
    #   log_true_score    also score the executed trajectories with the true scorer every update (the
    #                     reward-hacking curve; B trajectories per update)
    c.ppo = ml_collections.ConfigDict(dict(
        reward="rwm", objective="denoise", updates=300, batch_size=16, samples_per_scene=4,
        epochs=2, num_minibatches=2, lr=5e-6, choice_lr=1e-3, max_grad_norm=1.0, clip_eps=0.2, sigma=0.05,
        noise="smooth", advantage="anchor", negative_advantages="keep", denoise_discount=1.0, choice_weight=1.0,
        choice_loss="surrogate", choice_temperature=0.02, bc_weight=0.0, reward_grad_weight=0.0, checkpoint_every=100,
        log_true_score=True, rwm_refresh_every=75, rwm_refresh_steps=100))

    # `irlvla pipeline` (pipeline.py): the table's split, scenes and policy chunk; best_of_samples IL samples
    # (all K chains each) for best-of-N; extra_splits get the same table; scorer_updates: PPO updates of the
    # true-scorer ablation (PPO alone, at scorer_lr: the scorer is not differentiable; 0 = ppo.updates; tiny seed 0, val: 300 true-scorer updates +0.044 vs the RWM's
    # +0.048, at 100 the row understates it); choice_only_*: the re-ranking ablation (ppo.objective=choice)
    # runs with these updates / learning rate / samples per scene; rwm_report_scenes: scenes of the RWM
    # report on the RL policy's own samples.
    c.pipeline = ml_collections.ConfigDict(dict(
        eval_split="test", eval_scenes=500, eval_chunk=32, best_of_samples=2, extra_splits=("hard",),
        scorer_updates=100, scorer_lr=5e-6, choice_only_updates=1200, choice_only_lr=3e-3, choice_only_samples=1,
        rwm_report_scenes=128))

    # `irlvla evaluate` (evaluate.py): splits scored, scenes per split (0 = all), scenes per scorer call,
    # bootstrap resamples and seed of the 95% intervals, PNG renders per split.
    c.evaluate = ml_collections.ConfigDict(dict(
        splits=("val", "test", "hard"), max_scenes=64, chunk=32, bootstrap=2000, seed=0, renders=3))

    for key, value in VARIANTS[arg].items():
        *path, leaf = key.split(".")
        section = c
        for p in path:
            section = section[p]
        if leaf not in section:
            raise KeyError(f"variant {arg!r} overrides {key!r}, which the config does not have")
        section[leaf] = value
    return c
