"""How well can the IL planner's chain choice get from what the policy sees? An offline probe.

    python benchmarks/choice_probe.py --workdir runs/tiny [--seeds 0,1,2] [--train_scenes 2048] [--scenes 500]

The RWM's pick among the IL's K anchor chains scores far above the IL's own choice (the pipeline's "IL
chains picked by the RWM" row), and RL's chain choice (the planner's linear mode head on the chain tokens)
gains little of it. This probe asks whether a chooser with the policy's own inputs could. For the trained
IL + RWM of each seed's run (``<workdir>`` for the pipeline's first seed, ``<workdir>/seed_<s>`` for
others), on ``--train_scenes`` train scenes and the first ``--scenes`` test scenes, it computes every one of
the K deterministic chains' features (all observable by the policy at t0):

    h     the planner's chain token at the last denoising step (what the mode head reads) [D]
    kin   the chain's finite-difference kinematics against the ego's past (models/reward_features.py)
    bev   the policy's own BEV segmentation probabilities (perception head) at the chain's 8 poses
    obj   distance from each pose to the nearest detected object (perception head, score > 0.3)

and the RWM reward and true EPDMS (tracked) of every chain. Choosers fitted on the train scenes pick one
chain per test scene: ridge regression of the within-scene-centred target (linear, the mode head's
capacity on ``h``) and a one-hidden-layer MLP trained with a listwise cross-entropy toward
softmax(target / 0.02) (distillation), each with the target = the RWM reward (what PPO can learn from) or
the true EPDMS (an oracle target). Prints per seed the true EPDMS of each pick, and the paired difference
to the IL's own choice with its bootstrap 95% interval.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

FEATURE_SETS = (("h",), ("h", "kin"), ("h", "kin", "bev", "obj"))
OBJECT_SCORE = 0.3        # detections kept for the object distance
DIST_CAP = 20.0           # metres: "no object near"
TEMPERATURE = 0.02        # distillation target softmax(target / T), as ppo.choice_temperature


def bev_lookup(probs, xy, bev_range, bev_hw):
    """Bilinear BEV class probabilities at ego-frame points. probs [B, H, W, C]; xy [B, K, 8, 2] metres
    -> [B, K, 8, C] (rows along +x from x_max, columns along -y from y_max: scene.py's raster)."""
    import jax.numpy as jnp
    x_min, x_max, y_min, y_max = bev_range
    H, W = bev_hw
    r = jnp.clip((x_max - xy[..., 0]) / (x_max - x_min) * H - 0.5, 0, H - 1.001)
    c = jnp.clip((y_max - xy[..., 1]) / (y_max - y_min) * W - 0.5, 0, W - 1.001)
    r0, c0 = jnp.floor(r).astype(jnp.int32), jnp.floor(c).astype(jnp.int32)
    fr, fc = (r - r0)[..., None], (c - c0)[..., None]
    bi = jnp.arange(probs.shape[0])[:, None, None]
    g = lambda rr, cc: probs[bi, rr, cc]  # noqa: E731
    return (g(r0, c0) * (1 - fr) * (1 - fc) + g(r0 + 1, c0) * fr * (1 - fc)
            + g(r0, c0 + 1) * (1 - fr) * fc + g(r0 + 1, c0 + 1) * fr * fc)


def chain_features(config, workdir: str, scenes, seed: int, chunk: int = 32):
    """-> dict of numpy arrays over scenes: logits [B, K], rwm [B, K], true [B, K] and the features."""
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from irlvla_jax.models import reward_features as RF
    from irlvla_jax.models import reward_model as R
    from irlvla_jax.models.planner import denormalise
    from irlvla_jax.scene import padded_chunks
    from irlvla_jax.scoring.epdms import make_scorer
    from irlvla_jax.train import imitation, reward
    gd, params, consts = imitation.restore(config, workdir)
    rgd, rparams = reward.restore(config, workdir)
    scorer = make_scorer(str(config.scoring.mode), bool(config.scoring.human_filter))

    @jax.jit
    def run(scene, rng):
        model = nnx.merge(gd, params, consts)
        tokens, per, _, _ = model.encode_with_aux(scene)
        pl = model.planner
        r1, r2 = jax.random.split(rng)
        B = scene.ego_state.shape[0]
        chain = pl.sample_chain(tokens, r2, pl.init_chains(r1, B, 1))
        K = chain.xs.shape[2]
        h = pl.hidden(tokens, chain.xs[-2], jnp.full((B, K), int(pl.sched.timesteps[-1]), jnp.int32))
        traj = denormalise(chain.xs[-1], pl.sched)
        rwm = R.predicted_reward(nnx.merge(rgd, rparams)(tokens, traj, scenes=scene), bool(config.rwm.use_ec))
        probs = jax.nn.softmax(per.bev_logits.astype(jnp.float32), -1)
        bev = bev_lookup(probs, traj[..., :2], tuple(config.scene.bev_range), tuple(config.scene.bev_hw))
        kin = RF.kinematic_features(traj, RF.ego_inputs(scene))
        d = jnp.linalg.norm(traj[:, :, :, None, :2] - per.obj_boxes[:, None, None, :, :2], axis=-1)
        d = jnp.where(per.obj_scores[:, None, None] > OBJECT_SCORE, d, DIST_CAP).min(-1)
        return dict(traj=traj, logits=chain.mode_logits[-1], rwm=rwm, h=h, bev=bev.reshape(B, K, -1),
                    kin=jnp.clip(jnp.stack([kin[n] for n in RF.KINEMATIC_NAMES], -1).reshape(B, K, -1), -20, 20),
                    obj=jnp.concatenate([jnp.minimum(d, DIST_CAP), (d < 3.0).astype(jnp.float32)], -1))

    out = []
    for i, b, m in padded_chunks(scenes, chunk):
        o = jax.device_get(run(b, jax.random.key(seed + i)))
        o["true"] = np.asarray(scorer(b, o["traj"]).EPDMS)
        out.append({k: np.asarray(v)[:m] for k, v in o.items() if k != "traj"})
    return {k: np.concatenate([o[k] for o in out]) for k in out[0]}


def _design(data, sets, stats=None):
    X = np.concatenate([data[s].reshape(data[s].shape[:2] + (-1,)) for s in sets], -1).astype(np.float64)
    if stats is None:
        flat = X.reshape(-1, X.shape[-1])
        stats = (flat.mean(0), flat.std(0) + 1e-6)
    return (X - stats[0]) / stats[1], stats


def ridge_chooser(train, test, sets, target, lam: float = 1e-3):
    """Linear score fitted to the within-scene-centred target -> test scores [B, K]."""
    X, stats = _design(train, sets)
    Xc = (X - X.mean(1, keepdims=True)).reshape(-1, X.shape[-1])
    y = (train[target] - train[target].mean(1, keepdims=True)).reshape(-1)
    w = np.linalg.solve(Xc.T @ Xc + lam * len(Xc) * np.eye(Xc.shape[1]), Xc.T @ y)
    return _design(test, sets, stats)[0] @ w


def mlp_chooser(train, test, sets, target, hidden: int = 64, steps: int = 3000, seed: int = 0):
    """One-hidden-layer MLP score, listwise cross-entropy toward softmax(target / TEMPERATURE)."""
    import jax
    import jax.numpy as jnp
    import optax
    X, stats = _design(train, sets)
    X, y, Xt = jnp.asarray(X, jnp.float32), jnp.asarray(train[target], jnp.float32), _design(test, sets, stats)[0]
    k1, k2 = jax.random.split(jax.random.key(seed))
    F = X.shape[-1]
    p = dict(w1=jax.random.normal(k1, (F, hidden)) / np.sqrt(F), b1=jnp.zeros(hidden),
             w2=jax.random.normal(k2, (hidden, 1)) / np.sqrt(hidden))
    f = lambda p, X: (jax.nn.gelu(X @ p["w1"] + p["b1"]) @ p["w2"])[..., 0]  # noqa: E731
    loss = lambda p, X, y: -(jax.nn.softmax(y / TEMPERATURE, -1) * jax.nn.log_softmax(f(p, X), -1)).sum(-1).mean()  # noqa: E731
    tx = optax.adamw(1e-3, weight_decay=1e-3)

    @jax.jit
    def step(p, o, idx):
        g = jax.grad(loss)(p, X[idx], y[idx])
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o

    o, rng = tx.init(p), np.random.default_rng(seed)
    for _ in range(steps):
        p, o = step(p, o, rng.integers(0, X.shape[0], 64))
    return np.asarray(f(p, jnp.asarray(Xt, jnp.float32)))


def picked(data, score):
    """True EPDMS [B] of each scene's highest-scored chain."""
    return np.take_along_axis(data["true"], np.argmax(score, -1)[:, None], 1)[:, 0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--train_scenes", type=int, default=2048)
    ap.add_argument("--scenes", type=int, default=500)
    args = ap.parse_args()
    from irlvla_jax.config import load_config
    from irlvla_jax.data import loader as L
    from irlvla_jax.data.tfds_builder import world_seed
    from irlvla_jax.evaluate import paired_difference
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = {}
    for i, seed in enumerate(seeds):
        wd = args.workdir if i == 0 else os.path.join(args.workdir, f"seed_{seed}")
        c = load_config(os.path.join(ROOT, "configs", "default.py"), args.config)
        with c.unlocked():
            c.data.world_seed, c.seed = world_seed(c), seed
        data_dir = L.data_dir(c, args.workdir)
        t0 = time.time()
        train = chain_features(c, wd, L.load_split(c, "train", data_dir=data_dir, limit=args.train_scenes), seed)
        test = chain_features(c, wd, L.load_split(c, "test", data_dir=data_dir, limit=args.scenes), seed)
        print(f"seed {seed}: features of {len(train['true'])} train and {len(test['true'])} test scenes x "
              f"{test['true'].shape[1]} chains in {time.time() - t0:.0f} s", flush=True)
        base = picked(test, test["logits"])
        picks = {"IL's own choice (mode head)": base, "RWM pick": picked(test, test["rwm"]),
                 "best chain (oracle)": test["true"].max(1)}
        for sets in FEATURE_SETS:
            for target in ("rwm", "true"):
                name = "+".join(sets)
                picks[f"ridge {name}, target {target}"] = picked(test, ridge_chooser(train, test, sets, target))
                picks[f"MLP {name}, target {target}"] = picked(test, mlp_chooser(train, test, sets, target))
        for k, v in picks.items():
            d = paired_difference(v, base)
            rows.setdefault(k, []).append(f"{v.mean():.3f} ({d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}])")
    print(f"\n| chooser (test {args.scenes}, true EPDMS of the pick; vs the IL's choice) | "
          + " | ".join(f"seed {s}" for s in seeds) + " |")
    print("|---|" + "---|" * len(seeds))
    for k, v in rows.items():
        print(f"| {k} | " + " | ".join(v) + " |")


if __name__ == "__main__":
    main()
