"""Vocabulary scoring (``irlvla score-vocab``): the EPDMS sub-scores of a fixed vocabulary of K
trajectories for every scene of a split -- the training targets of Hydra-MDP / GTRS-style planners.

    irlvla score-vocab --config configs/tiny.py --workdir DIR --vocab K [--split train] [--name NAME]
                       [--mode tracked|direct]

The vocabulary (:func:`build_vocab`)
    K trajectories [K, 8, 3] float32 (ego frame at t0: x, y metres, heading radians, at 0.5 ... 4.0 s):
    k-means (:func:`irlvla_jax.data.anchors.kmeans`, seed :data:`VOCAB_SEED`, at most
    :data:`KMEANS_ITERS` Lloyd iterations) of the expert futures (``scene.expert_future``) of the world
    dataset's train split. Written atomically (temp file + rename) beside that dataset as
    ``<dataset dir>/vocab_<K>.npy`` and reused whenever present (its shape [K, 8, 3] and finiteness are
    checked; a wrong file is a one-line error asking to delete it).

    * More futures than k-means can hold in memory: k-means runs on a seeded random subset of
      ``max(KMEANS_MAX_POINTS, 2 K)`` futures (its [points, K] float64 distance matrix: 1 GiB for
      16,384 x 8,192).
    * Fewer *distinct* futures than K (e.g. tiny's 4,000 train scenes and K = 8,192): the pool is
      augmented, as announced on stdout, with geometrically consistent variants of every future until
      it holds at least 2 K distinct ones: the mirror image (y, heading -> -y, -heading) and the same
      path uniformly scaled by :data:`AUGMENT_SCALES` (a slower / faster plan of the same shape;
      scaling keeps headings consistent with the path). If even that gives fewer than K distinct
      trajectories, the command refuses with one line saying how many there are.
    * A converted dataset (``--name real_av2``: kind "converted", one split ``real``): the vocabulary is
      the world dataset's of the same data dir (``config.data.name`` of the config, before ``--name``):
      its ``vocab_<K>.npy`` if present, else built from its train split if that dataset opens with the
      config; if there is no world dataset (or it does not open with this config: a note says why),
      from the scored split itself, written beside the converted dataset.

The scores (:func:`score_split`)
    ``<scored dataset dir>/vocab_scores_<split>_<K>/``: ``shard_<i:05d>.array_record`` files of
    :data:`SHARD_SCENES` consecutive scenes (in scene-id order), one record per scene: an uncompressed
    ``np.savez`` archive holding ``scene_id`` (int64 scalar) and, per field of :data:`FIELDS` (EPDMS and
    the nine sub-scores), an array [K] of dtype :data:`DTYPES` (float32 for the continuous EP and EPDMS;
    float16 for the eight sub-scores, whose values 0, 0.5, 1 it holds exactly). Records are zstd-compressed
    by array_record (``group_size:1``: each record can be read on its own). ``vocab_scores.json`` holds K,
    split, dataset, vocabulary file and sha256, mode, human filter, fields, dtypes, shard size, scenes
    and scenes done, and ``complete``; ``scene_order.npz`` the split's record order (kept for reruns).
    Read them with :func:`read_vocab_scores` (all as arrays [scenes, K]) or :func:`iter_vocab_scores`
    (one scene at a time). On disk (zstd): ~34 KB per scene at K = 8,192 on tiny (navtrain: ~3.5 GB).

    The scorer is :func:`irlvla_jax.scoring.epdms.scorer_from_config` (``config.scoring``: mode,
    human_filter, num_devices; ``--mode`` overrides the mode). Every call scores
    :data:`SCENES_PER_CALL` scenes x :data:`TRAJ_PER_CALL` trajectories (static shapes: compiled once;
    the last scene chunk is padded with its last scene, the vocabulary with its last trajectory), so
    memory is bounded whatever K. The EPDMS of a trajectory does not depend on the others scored with
    it (EP is normalised within the [PDM-Closed, trajectory] pair), so the chunking changes nothing.
    No previous plans: EC is 1 and EPDMS uses the /14 denominator.

Resuming: each shard is written to ``.shard_<i>.array_record.tmp-<pid>`` and renamed when complete;
the metadata is rewritten (atomically) after every shard. A rerun (after kill -9 too) deletes leftover
temp files, keeps every shard that reads back with the expected record count and first / last scene
ids, and scores only the others. Scores made with another vocabulary (sha256), K, mode or human filter
are refused with one line (delete the folder to rescore). One writer per output: a lock
``<data dir>/.locks/score-vocab-<name>-<split>-<K>.lock`` (:mod:`irlvla_jax.workdir`).

Output: a tqdm bar over scenes, then one JSON line: scenes, scenes_scored (this run), K,
trajectories_scored (this run), trajectories_per_s (this run, excluding the first call, which
compiles: ``compile_s``), compile_s, peak_rss_mb (``ru_maxrss``), path, vocab.
"""
from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import resource
import time
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from irlvla_jax.errors import UserError
from irlvla_jax.scoring.epdms import SUB_SCORES

FIELDS = ("EPDMS",) + SUB_SCORES
DTYPES = {k: (np.float32 if k in ("EPDMS", "EP") else np.float16) for k in FIELDS}
SCENES_PER_CALL = 2          # scenes per jitted scorer call
TRAJ_PER_CALL = 1024         # vocabulary trajectories per call (the vocabulary is padded to a multiple)
SHARD_SCENES = 64            # scenes per array_record shard (the unit of resuming)
VOCAB_SEED = 0
KMEANS_ITERS = 25           # Lloyd iterations (K = 8,192 on 16,384 points: ~5 s each on 2 cores)
KMEANS_MAX_POINTS = 16384
AUGMENT_SCALES = (0.9, 1.1, 0.8, 1.25, 0.7, 1.4, 0.6, 1.6)
VOCAB_FILE = "vocab_{k}.npy"
SCORES_DIR = "vocab_scores_{split}_{k}"
META_FILE = "vocab_scores.json"
ORDER_FILE = "scene_order.npz"
FORMAT = 1
WRITER_OPTIONS = "group_size:1,zstd:1"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _atomic_write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------
# The vocabulary

def _augment(futures: np.ndarray, want: int) -> np.ndarray:
    """Distinct futures plus mirrored / uniformly scaled variants until ``want`` distinct ones (or all)."""
    mirror = futures * np.asarray([1.0, -1.0, -1.0], np.float32)
    variants = [futures, mirror]
    pool = np.unique(np.concatenate(variants), axis=0)
    for s in AUGMENT_SCALES:
        if len(pool) >= want:
            break
        scale = np.asarray([s, s, 1.0], np.float32)
        pool = np.unique(np.concatenate([pool, futures * scale, mirror * scale]), axis=0)
    return pool


def build_vocab(futures: np.ndarray, k: int, seed: int = VOCAB_SEED, iters: int = KMEANS_ITERS,
                max_points: int = KMEANS_MAX_POINTS, log=print) -> np.ndarray:
    """Expert futures [N, 8, 3] -> vocabulary [k, 8, 3] float32 (k-means; see the module doc)."""
    from irlvla_jax.data.anchors import kmeans
    ef = np.asarray(futures, np.float32)
    if ef.ndim != 3 or ef.shape[1:] != (8, 3):
        raise ValueError(f"vocabulary: expected expert futures [N, 8, 3], got {ef.shape}")
    k = int(k)
    distinct = np.unique(ef, axis=0)
    if len(distinct) < k:
        pool = _augment(distinct, 2 * k)
        log(f"score-vocab: {len(ef)} expert futures ({len(distinct)} distinct) are fewer than K={k}: "
            f"k-means runs on {len(pool)} distinct futures incl. mirrored and uniformly scaled variants")
        if len(pool) < k:
            raise UserError(f"score-vocab: only {len(pool)} distinct trajectories even with mirrored / scaled "
                            f"variants of the {len(distinct)} distinct expert futures, fewer than --vocab {k}; "
                            "lower --vocab or use a larger train split")
    else:
        pool = ef
    cap = max(int(max_points), 2 * k)
    if len(pool) > cap:
        rng = np.random.default_rng(seed)
        pool = pool[np.sort(rng.choice(len(pool), cap, replace=False))]
    return kmeans(pool, k, seed=seed, iters=iters)


def _check_vocab_file(path: str, k: int) -> np.ndarray:
    try:
        v = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - unreadable / not an .npy
        raise UserError(f"vocabulary {path} cannot be read ({type(e).__name__}); delete it to rebuild it") from None
    if not isinstance(v, np.ndarray) or v.shape != (k, 8, 3) or v.dtype != np.float32 or not np.all(np.isfinite(v)):
        raise UserError(f"vocabulary {path} has shape {getattr(v, 'shape', None)} dtype {getattr(v, 'dtype', None)}, "
                        f"expected finite ({k}, 8, 3) float32; delete it to rebuild it")
    return v


def _train_futures(config, data_dir: str, split: str = "train", batch: int = 256) -> np.ndarray:
    """Every expert future of a split [N, 8, 3] (decoded one batch at a time)."""
    from irlvla_jax.data import loader
    parts = [np.asarray(b.expert_future, np.float32)
             for b in loader.iter_split(config, split, batch, data_dir=data_dir)]
    return np.concatenate(parts)


def vocab_for(config, data_dir: str, meta: Dict, split: str, k: int, world_name: str,
              log=print) -> Tuple[np.ndarray, str, str]:
    """The vocabulary of a scoring run -> (vocab [k, 8, 3], its file, where it came from). See module doc."""
    import copy
    from irlvla_jax.data import loader
    from irlvla_jax.data.tfds_builder import dataset_path
    if not loader.is_converted(meta):
        sources = [(config, meta["path"], "train")]
    else:
        sources = []
        wpath = dataset_path(data_dir, world_name)
        if world_name != config.data.name and os.path.isdir(wpath):
            wcfg = copy.deepcopy(config)
            wcfg.data.name = world_name
            sources.append((wcfg, wpath, "train"))
        sources.append((config, meta["path"], split))
    for i, (cfg, path, src_split) in enumerate(sources):
        f = os.path.join(path, VOCAB_FILE.format(k=k))
        if os.path.isfile(f):
            return _check_vocab_file(f, k), f, f"{os.path.basename(path)}/{src_split}"
        last = i == len(sources) - 1
        try:
            wmeta = loader.open_dataset(cfg, data_dir)
        except loader.DatasetError as e:
            if last:
                raise
            log(f"score-vocab: note: the world dataset {path} does not open with this config "
                f"({str(e).splitlines()[0]}); the vocabulary comes from the scored split '{split}'")
            continue
        if loader.is_converted(wmeta) and src_split == "train":
            continue                                   # --name of a converted dataset given as the world
        t0 = time.perf_counter()
        futures = _train_futures(cfg, data_dir, src_split)
        vocab = build_vocab(futures, k, log=log)
        buf = io.BytesIO()
        np.save(buf, vocab)
        _atomic_write(f, buf.getvalue())
        log(f"score-vocab: vocabulary of {k} trajectories = k-means of {len(futures)} expert futures of "
            f"{os.path.basename(path)}/{src_split} ({time.perf_counter() - t0:.1f} s) -> {f}")
        return vocab, f, f"{os.path.basename(path)}/{src_split}"
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------------------------------
# Records

def encode_record(scene_id: int, scores: Dict[str, np.ndarray]) -> bytes:
    """One scene's record: an uncompressed .npz of scene_id and FIELDS (each [K], dtype DTYPES)."""
    buf = io.BytesIO()
    np.savez(buf, scene_id=np.asarray(int(scene_id), np.int64),
             **{f: np.asarray(scores[f]).astype(DTYPES[f], copy=False) for f in FIELDS})
    return buf.getvalue()


def decode_record(raw: bytes) -> Tuple[int, Dict[str, np.ndarray]]:
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        return int(z["scene_id"]), {f: z[f] for f in FIELDS}


def _reader(path: str):
    from array_record.python.array_record_module import ArrayRecordReader
    return ArrayRecordReader(path, "readahead_buffer_size:0")


def _shard_complete(path: str, ids: np.ndarray) -> bool:
    """The shard file reads back, holds len(ids) records, and its first and last records are ids[0], ids[-1]."""
    if not os.path.isfile(path):
        return False
    try:
        r = _reader(path)
    except Exception:  # noqa: BLE001 - unreadable: rescore it
        return False
    try:
        if not r.ok() or r.num_records() != len(ids):
            return False
        first, last = r.read([0, len(ids) - 1]) if len(ids) > 1 else r.read([0]) * 2
        return decode_record(first)[0] == int(ids[0]) and decode_record(last)[0] == int(ids[-1])
    except Exception:  # noqa: BLE001 - a damaged record: rescore the shard
        return False
    finally:
        try:
            r.close()
        except Exception:  # noqa: BLE001
            pass


def _write_shard(path: str, ids, scores: Dict[str, np.ndarray]) -> None:
    from array_record.python.array_record_module import ArrayRecordWriter
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}")
    w = ArrayRecordWriter(tmp, WRITER_OPTIONS)
    for j, sid in enumerate(ids):
        w.write(encode_record(int(sid), {f: scores[f][j] for f in FIELDS}))
    w.close()
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def shard_name(i: int) -> str:
    return f"shard_{i:05d}.array_record"


def read_meta(path: str) -> Dict:
    f = os.path.join(path, META_FILE)
    if not os.path.isfile(f):
        raise UserError(f"{path} holds no vocabulary scores ({META_FILE} is missing); run `irlvla score-vocab`")
    with open(f, encoding="utf-8") as fh:
        return json.load(fh)


def iter_vocab_scores(path: str, allow_partial: bool = False) -> Iterator[Tuple[int, Dict[str, np.ndarray]]]:
    """Yield (scene_id, {field: [K]}) for every scene of a ``vocab_scores_<split>_<K>`` folder, in scene-id
    order. An unfinished folder is refused unless ``allow_partial`` (then its finished shards are read)."""
    meta = read_meta(path)
    if not meta.get("complete") and not allow_partial:
        raise UserError(f"{path}: only {meta.get('scenes_done')} of {meta.get('scenes')} scenes are scored; "
                        "rerun `irlvla score-vocab` to finish (or pass allow_partial=True)")
    for i in range(int(meta["shards"])):
        f = os.path.join(path, shard_name(i))
        if not os.path.isfile(f):
            if allow_partial:
                continue
            raise UserError(f"{path}: shard {shard_name(i)} is missing; rerun `irlvla score-vocab`")
        r = _reader(f)
        try:
            for raw in r.read_all():
                yield decode_record(raw)
        finally:
            r.close()


def read_vocab_scores(path: str, fields=FIELDS, allow_partial: bool = False) -> Dict[str, np.ndarray]:
    """A ``vocab_scores_<split>_<K>`` folder -> {"scene_id": [S] int64, field: [S, K] (stored dtype)} for
    ``fields`` (default all: EPDMS and the nine sub-scores). Holds them all in memory (navtrain at
    K = 8,192: ~20 GB for all fields): read fewer fields, or use :func:`iter_vocab_scores`."""
    ids, out = [], {f: [] for f in fields}
    for sid, sc in iter_vocab_scores(path, allow_partial):
        ids.append(sid)
        for f in fields:
            out[f].append(sc[f])
    k = int(read_meta(path)["K"])
    res = {"scene_id": np.asarray(ids, np.int64)}
    for f in fields:
        res[f] = np.stack(out[f]) if out[f] else np.zeros((0, k), DTYPES[f])
    return res


# ----------------------------------------------------------------------------------------------------
# Scoring

def _split_order(meta: Dict, split: str, out: str):
    """(raw record source, record indices in scene-id order, sorted scene ids). The ids are read without
    decoding the scenes, once: they are kept in ``<out>/scene_order.npz`` for reruns (reading every record
    of a large split again on each restart would cost minutes)."""
    from irlvla_jax.data import loader
    raw = loader._RawSource(loader._data_source(meta, split), split)   # noqa: SLF001 - ids without decoding
    cache = os.path.join(out, ORDER_FILE)
    if os.path.isfile(cache):
        try:
            with np.load(cache, allow_pickle=False) as z:
                order, ids = z["order"], z["scene_id"]
            if len(order) == len(raw) == len(ids):
                return raw, order, ids
        except Exception:  # noqa: BLE001 - a damaged cache: read the ids again
            pass
    ids = np.asarray([int(raw[i][1]["scene_id"]) for i in range(len(raw))], np.int64)
    order = np.argsort(ids, kind="stable")
    buf = io.BytesIO()
    np.savez(buf, order=order, scene_id=ids[order])
    _atomic_write(cache, buf.getvalue())
    return raw, order, ids[order]


def _decode(config, raw, split: str, rows):
    from irlvla_jax.data import loader
    from irlvla_jax.scene import SceneSpec
    return loader.decode_records(SceneSpec.from_config(config.scene), split, (raw[int(i)] for i in rows))


def score_split(config, data_dir: str, split: str, k: int, *, world_name: Optional[str] = None, scorer=None,
                n_devices: int = 1, mode: Optional[str] = None, scenes_per_call: int = SCENES_PER_CALL,
                traj_per_call: int = TRAJ_PER_CALL, shard_scenes: int = SHARD_SCENES,
                progress: bool = True, log=print) -> Dict:
    """Score the K-trajectory vocabulary on every scene of ``split`` of the config's dataset, resumably.
    ``scorer``: a jitted scorer (default :func:`~irlvla_jax.scoring.epdms.scorer_from_config`; its
    ``n_devices`` then come with it). Returns the summary printed as the final JSON line."""
    from irlvla_jax.data import loader
    from irlvla_jax.scene import SPLITS
    k = int(k)
    if k <= 0:
        raise UserError(f"--vocab must be a positive number of trajectories (e.g. 8192), got {k}")
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {SPLITS}")
    for name, v in (("scenes_per_call", scenes_per_call), ("traj_per_call", traj_per_call),
                    ("shard_scenes", shard_scenes)):
        if int(v) < 1:
            raise UserError(f"score-vocab: {name} must be >= 1, got {v}")
    meta = loader.open_dataset(config, data_dir)
    if split not in loader.dataset_splits(meta):
        raise UserError(f"dataset {meta['path']} has no split {split!r} (it holds "
                        f"{'/'.join(loader.dataset_splits(meta))})")
    mode = str(mode or config.scoring.mode)
    hf = bool(config.scoring.human_filter)
    if scorer is None:
        from irlvla_jax.scoring import epdms
        scorer, n_devices = epdms.scorer_from_config(config, mode)
    from irlvla_jax import workdir as workdir_lib
    with workdir_lib.hold(data_dir, f"score-vocab-{config.data.name}-{split}-{k}"):
        vocab, vfile, vsource = vocab_for(config, data_dir, meta, split, k, world_name or config.data.name, log)
        return _score(config, meta, split, vocab, vfile, vsource, scorer, int(n_devices), mode, hf,
                      int(scenes_per_call), int(traj_per_call), int(shard_scenes), progress, log)


def _score(config, meta, split, vocab, vfile, vsource, scorer, n_devices, mode, hf, b_call, n_call, shard_scenes,
           progress, log):
    import jax
    from irlvla_jax.scene import index
    from irlvla_jax.scoring.epdms import round_chunk
    k = int(vocab.shape[0])
    out = os.path.join(meta["path"], SCORES_DIR.format(split=split, k=k))
    os.makedirs(out, exist_ok=True)
    for f in glob.glob(os.path.join(out, ".*.tmp-*")) + glob.glob(os.path.join(out, "*.tmp-*")):
        os.remove(f)                                  # left by a killed run (we hold the lock)
    raw, order, ids = _split_order(meta, split, out)
    n = len(ids)
    n_shards = -(-n // shard_scenes)
    vsha = _sha256(vfile)
    ident = {"format": FORMAT, "K": k, "split": split, "dataset": os.path.basename(meta["path"]),
             "vocab_file": vfile, "vocab_sha256": vsha, "vocab_source": vsource, "mode": mode, "human_filter": hf,
             "fields": list(FIELDS), "dtypes": {f: np.dtype(DTYPES[f]).name for f in FIELDS},
             "shard_scenes": shard_scenes, "scenes": n, "shards": n_shards}
    mfile = os.path.join(out, META_FILE)
    if os.path.isfile(mfile):
        old = read_meta(out)
        diff = [key for key in ("format", "K", "vocab_sha256", "mode", "human_filter", "shard_scenes", "scenes")
                if old.get(key) != ident[key]]
        if diff:
            key = diff[0]
            raise UserError(f"{out} holds scores made with {key}={old.get(key)!r}, this run has {ident[key]!r}; "
                            "delete the folder to rescore (or run with the same settings)")
    shard_ids = [ids[i * shard_scenes:(i + 1) * shard_scenes] for i in range(n_shards)]
    done = [_shard_complete(os.path.join(out, shard_name(i)), shard_ids[i]) for i in range(n_shards)]

    def write_meta():
        d = sum(len(shard_ids[i]) for i in range(n_shards) if done[i])
        m = dict(ident, scenes_done=d, shards_done=int(sum(done)), complete=bool(all(done)))
        _atomic_write(mfile, (json.dumps(m, indent=1) + "\n").encode())

    write_meta()
    # Static shapes: b_call scenes x n_call trajectories per call; the vocabulary padded to a multiple.
    b_call = round_chunk(b_call, n_devices)
    n_call = min(n_call, k)
    kp = -(-k // n_call) * n_call
    vpad = np.concatenate([vocab, np.repeat(vocab[-1:], kp - k, 0)]) if kp > k else vocab
    chunks = [np.ascontiguousarray(np.broadcast_to(vpad[v0:v0 + n_call], (b_call, n_call, 8, 3)))
              for v0 in range(0, kp, n_call)]
    if n_devices == 1:
        chunks = [jax.device_put(c) for c in chunks]
    scenes_before = sum(len(shard_ids[i]) for i in range(n_shards) if done[i])
    log(f"score-vocab: {n} scenes of {os.path.basename(meta['path'])}/{split} x {k} trajectories "
        f"(vocabulary {vsource}), mode {mode}; {scenes_before} scenes already scored; {b_call} scenes x "
        f"{n_call} trajectories per call, shards of {shard_scenes} scenes -> {out}")
    from tqdm import tqdm
    bar = tqdm(total=n, initial=scenes_before, desc=f"score-vocab {split} K={k}", unit="scene", disable=not progress)
    compile_s, t_start, timed_traj, scored = 0.0, None, 0, 0
    for si in range(n_shards):
        if done[si]:
            continue
        rows = order[si * shard_scenes:(si + 1) * shard_scenes]
        scenes = _decode(config, raw, split, rows)
        m_sh = len(rows)
        res = {f: np.empty((m_sh, k), np.float32) for f in FIELDS}
        for s0 in range(0, m_sh, b_call):
            idx = np.minimum(np.arange(s0, s0 + b_call), m_sh - 1)
            batch = index(scenes, idx)
            if n_devices == 1:
                batch = jax.device_put(batch)
            m = min(b_call, m_sh - s0)
            pending = []
            for ci, tr in enumerate(chunks):
                if t_start is None:                   # the first call of the run compiles: timed apart
                    t0 = time.perf_counter()
                    r = jax.block_until_ready(scorer(batch, tr))
                    compile_s = time.perf_counter() - t0
                    t_start = time.perf_counter()
                    timed_traj -= m * min(n_call, k)
                else:
                    r = scorer(batch, tr)
                pending.append((ci * n_call, r))
            for v0, r in pending:                    # calls dispatched asynchronously, collected here
                nv = min(n_call, k - v0)
                for f in FIELDS:
                    res[f][s0:s0 + m, v0:v0 + nv] = np.asarray(getattr(r, f))[:m, :nv]
            timed_traj += m * k
            scored += m * k
            bar.update(m)
        _write_shard(os.path.join(out, shard_name(si)), shard_ids[si], res)
        done[si] = True
        write_meta()
    bar.close()
    elapsed = (time.perf_counter() - t_start) if t_start is not None else 0.0
    summary = {"scenes": n, "scenes_scored": scored // k, "K": k, "trajectories_scored": scored,
               "trajectories_per_s": round(timed_traj / elapsed, 1) if elapsed > 0 and timed_traj > 0 else None,
               "compile_s": round(compile_s, 2), "peak_rss_mb": round(_rss_mb(), 1), "path": out,
               "vocab": vfile, "mode": mode, "scenes_per_call": b_call, "traj_per_call": n_call,
               "shard_scenes": shard_scenes}
    return summary


def score_vocab(config, workdir, args):
    """``irlvla score-vocab --vocab K [--split SPLIT] [--name NAME] [--mode tracked|direct]``."""
    from irlvla_jax.data import loader
    from irlvla_jax.data.commands import dataset_name
    rest = list(getattr(args, "rest", []) or [])
    if rest:
        raise UserError(f"score-vocab: unexpected argument(s) {rest}; usage: irlvla score-vocab --config C "
                        "--workdir DIR --vocab K [--split SPLIT] [--name NAME] [--mode tracked|direct]")
    k = getattr(args, "vocab", None)
    if k is None:
        raise UserError("score-vocab: --vocab K is required (the vocabulary size, e.g. 8192)")
    if int(k) <= 0:
        raise UserError(f"--vocab must be a positive number of trajectories (e.g. 8192), got {k}")
    mode = getattr(args, "mode", None)
    if mode is not None and mode not in ("tracked", "direct"):
        raise UserError(f"--mode must be 'tracked' or 'direct', got {mode!r}")
    d = loader.resolve_data_dir(config, workdir)
    world_name = str(config.data.name)
    if getattr(args, "name", None):
        config.data.name = dataset_name(args.name)
    split = getattr(args, "split", None)
    if split is None:
        meta = loader.open_dataset(config, d)
        split = "real" if loader.is_converted(meta) else "train"
    summary = score_split(config, d, split, int(k), world_name=world_name, mode=mode)
    print(json.dumps(summary))
    return summary
