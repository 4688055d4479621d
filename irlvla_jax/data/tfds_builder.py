"""The TFDS dataset of world scenes (array_record files, no TensorFlow) and its atomic, parallel writer.

On-disk layout of one dataset (``<data_dir>`` is ``<workdir>/data`` unless ``config.data.data_dir``)::

    <data_dir>/<config.data.name>/
        irlvla_dataset.json          completion marker + metadata (written last; readers require it)
        anchors.npy                  [K, 8, 3] k-means anchors of the train expert futures
        tfds/irlvla_world/1.0.0/     TFDS files: dataset_info.json, features.json, *.array_record-*

TFDS features (per record): ``scene_id`` int32, ``family`` int32 and ``record`` bytes (the whole Scene,
encoded by :mod:`irlvla_jax.data.records`). TFDS shuffles records at write time (record index !=
generation index), so the scene id is stored in the record; readers that need a canonical order sort by it.

Generation (:func:`generate_dataset`): scenes come from ``generate_scene(spec, seed, index, split)``
(:mod:`irlvla_jax.world.generate`), computed in ``config.data.workers`` spawned processes
(``imap`` in index order), each scene validated and encoded in the worker; the parent writes through
TFDS. A scene depends only on (seed, split, index) and every example is serialised canonically (feature
map in key order: ``_CanonicalExampleWriter``), so the array_record files (and dataset_info.json,
features.json, anchors.npy) are byte-identical for a given seed whatever the worker count or process;
only irlvla_dataset.json differs (timings, worker count). Workers die with the generate process, even
when it is killed with SIGKILL (:func:`irlvla_jax.data.records.die_with_parent`). Writing is atomic:
everything goes to ``<data_dir>/.<name>.incomplete-*``, the metadata JSON is written last, and the
directory is renamed into place only then. An interrupted run leaves at most an ``.incomplete-*``
directory, which readers never open (and the next generate deletes: so do not run two generates of the
same dataset name into the same data_dir at once).

The converter of real logs (:mod:`irlvla_jax.data.converted`, ``irlvla convert``) writes through the same
builder and the same atomic steps (:func:`start_write`, :func:`write_tfds` with ``WritePlan.examples``,
:func:`publish`): one split, ``real``, and no anchors.

Cost (tiny spec, measured by benchmarks/generate.py): the world takes ~13 ms CPU per scene; validation
+ encoding ~1 ms in the worker; the writer process ~1 ms per scene (TFDS serialisation, array_record
write); each spawned worker pays ~2 s of imports (jax via flax.struct in scene.py, scipy in the world).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import io
import json
import multiprocessing
import os
import re
import resource
import shutil
import time
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from irlvla_jax.data import records
from irlvla_jax.data.anchors import compute_anchors
from irlvla_jax.scene import FAMILIES, WORLD_SPLITS, SceneError, SceneSpec

TFDS_NAME = "irlvla_world"
TFDS_VERSION = "1.0.0"
META_FILE = "irlvla_dataset.json"
ANCHORS_FILE = "anchors.npy"
FORMAT_VERSION = 1
SPLIT_KEYS = {"train": "num_train", "val": "num_val", "test": "num_test", "hard": "num_hard"}


def world_seed(config) -> int:
    """The seed the dataset is generated from: ``config.data.world_seed`` when >= 0, else ``config.seed``.
    (``irlvla pipeline --seeds`` pins it to the dataset's seed, so training seeds vary alone.)"""
    ws = int(config.data.world_seed)
    return ws if ws >= 0 else int(config.seed)


def split_sizes(config) -> Dict[str, int]:
    """{split: number of scenes} from ``config.data``."""
    return {s: int(config.data[k]) for s, k in SPLIT_KEYS.items()}


def dataset_path(data_dir: str, name: str) -> str:
    return os.path.join(os.path.abspath(data_dir), name)


def tfds_dir(path: str) -> str:
    """The TFDS builder directory inside a dataset directory."""
    return os.path.join(path, "tfds", TFDS_NAME, TFDS_VERSION)


def check_name(name: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", str(name)):
        raise ValueError(f"config.data.name must match [a-z][a-z0-9_]* (a directory name), got {name!r}")
    return str(name)


@dataclasses.dataclass
class WritePlan:
    """What the builder's generators need (set by generate_dataset / the converter; not part of the TFDS
    config). The splits written are the keys of ``sizes``. ``examples`` (the converter's) maps a split to
    an iterator of (record bytes, summary with scene_id and family); without it the world generator runs."""
    sizes: Dict[str, int]
    pool: Any            # multiprocessing Pool or None (in-process)
    workers: int
    progress: Any        # tqdm or None
    summaries: Dict[str, List[Dict[str, Any]]] = dataclasses.field(default_factory=dict)
    examples: Optional[Callable[[str], Iterator[Tuple[bytes, Dict[str, Any]]]]] = None


def _builder_class():
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import writer as tfds_writer

    class IrlvlaWorld(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Scene records: the embedded world's train / val / test / hard, or a converted dataset's real."""
        name = TFDS_NAME
        VERSION = tfds.core.Version(TFDS_VERSION)
        RELEASE_NOTES = {TFDS_VERSION: "Scene records (irlvla_jax.data.records, format 1)."}

        # TFDS derives code_path through `importlib_resources` (a backport not installed here) for classes
        # in packages; the answer is just this file.
        @tfds.core.utils.classproperty
        @classmethod
        def code_path(cls):
            from etils import epath
            return epath.Path(__file__)

        def __init__(self, *, plan: Optional[WritePlan] = None, **kwargs):
            self._plan = plan
            super().__init__(**kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                description="irlvla-jax driving scenes: one zlib-compressed Scene record per example.",
                features=tfds.features.FeaturesDict({
                    "scene_id": tfds.features.Scalar(np.int32),
                    "family": tfds.features.Scalar(np.int32),
                    "record": tfds.features.Tensor(shape=(), dtype=np.object_),
                }),
                supervised_keys=None)

        def _example_writer(self):
            return _CanonicalExampleWriter(file_format=self.info.file_format)

        def _split_generators(self, dl_manager):
            return {s: self._generate_examples(s) for s in self._plan.sizes}

        def _generate_examples(self, split):
            plan = self._plan
            n = plan.sizes[split]
            tasks = [(split, i) for i in range(n)]
            if plan.examples is not None:       # the converter: n is not known before the end
                it = plan.examples(split)
            elif plan.pool is None:
                it = map(records.make_record, tasks)
            else:
                chunk = max(1, min(16, n // (plan.workers * 4) or 1))
                it = _ordered_map(plan.pool, tasks, chunk, window=4 * plan.workers)
            out = plan.summaries.setdefault(split, [])
            for i, (rec, summ) in enumerate(it):
                out.append(summ)
                if plan.progress is not None:
                    plan.progress.update(1)
                yield i, {"scene_id": summ["scene_id"], "family": summ["family"], "record": rec}

    class _CanonicalExampleWriter(tfds_writer.ExampleWriter):
        """Writes each example in canonical (deterministic) protobuf form.

        TFDS serialises an example as a tf.train.Example whose features are a protobuf map; the upb
        runtime emits map entries in hash-table order, and its hash seed differs per process, so the
        same example gives different bytes in different processes. Re-serialising with
        ``deterministic=True`` sorts the entries by key (family, record, scene_id): the same seed gives
        byte-identical files. Parsing the same bytes back gives the same example either way.
        """

        def write(self, path, examples):
            return super().write(path, ((k, canonical_example(v)) for k, v in examples))

    return IrlvlaWorld


def canonical_example(serialized: bytes) -> bytes:
    """A serialized tf.train.Example -> the same example with its feature map serialised in key order."""
    from tensorflow_datasets.proto import tf_example_pb2
    return tf_example_pb2.Example.FromString(serialized).SerializeToString(deterministic=True)


def _ordered_map(executor, tasks, chunk: int, window: int):
    """make_record over tasks in a process pool, in order, with at most ``window`` chunks in flight.

    A ProcessPoolExecutor (unlike multiprocessing.Pool, which silently respawns dead workers) raises
    BrokenProcessPool if a worker dies, so a crash cannot hang the generation.
    """
    import collections
    chunks = [tasks[i:i + chunk] for i in range(0, len(tasks), chunk)]
    pending = collections.deque()
    nxt = 0
    while nxt < len(chunks) or pending:
        while nxt < len(chunks) and len(pending) < window:
            pending.append(executor.submit(records.make_records, chunks[nxt]))
            nxt += 1
        yield from pending.popleft().result()


_CLASS = None


def builder_class():
    """The TFDS builder class (created on first use so that importing this module stays cheap)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _builder_class()
    return _CLASS


def expected_metadata(config, generator: str = records.DEFAULT_GENERATOR) -> Dict[str, Any]:
    """The fields of the metadata JSON that identify a dataset (compared to skip a regeneration)."""
    spec = SceneSpec.from_config(config.scene)
    return {"format": FORMAT_VERSION, "name": check_name(config.data.name), "seed": world_seed(config),
            "spec": json.loads(json.dumps(dataclasses.asdict(spec))), "sizes": split_sizes(config),
            "num_anchors": int(config.data.num_anchors), "generator": generator}


def read_metadata(path: str) -> Optional[Dict[str, Any]]:
    f = os.path.join(path, META_FILE)
    if not os.path.exists(f):
        return None
    with open(f) as fh:
        return json.load(fh)


def _dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def generate_dataset(config, data_dir: str, *, generator: str = records.DEFAULT_GENERATOR,
                     workers: Optional[int] = None, force: bool = False, progress: bool = True) -> Dict[str, Any]:
    """Generate every split of ``config.data`` into ``<data_dir>/<config.data.name>``; return the metadata.

    ``generator`` is the 'module:function' scene generator (tests pass a stand-in).
    ``workers`` overrides ``config.data.workers`` (<= 1: in this process). An existing complete dataset
    with the same identity (seed, spec, sizes, anchors, generator) is kept unless ``force``.
    """
    want = expected_metadata(config, generator)
    name = want["name"]
    spec = SceneSpec.from_config(config.scene)
    sizes = want["sizes"]
    workers = int(config.data.workers if workers is None else workers)
    data_dir = os.path.abspath(data_dir)
    final = dataset_path(data_dir, name)
    old = read_metadata(final) if os.path.isdir(final) else None
    if old is not None and not force and all(old.get(k) == v for k, v in want.items()):
        old["skipped"] = True
        return old
    tmp = start_write(data_dir, name)
    records.load_generator(generator)  # fail early, in this process, with a clear message
    from tqdm import tqdm
    pool = None
    t0 = time.time()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    bar = tqdm(total=sum(sizes.values()), desc=f"generate {name}", unit="scene", disable=not progress,
               smoothing=0.05)
    try:
        if workers > 1:
            pool = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"), initializer=records.init_worker,
                initargs=(spec, want["seed"], generator, os.getpid()))
        else:
            records.init_worker(spec, want["seed"], generator)
        plan = WritePlan(sizes=sizes, pool=pool, workers=max(workers, 1), progress=bar)
        write_tfds(tmp, plan)
        if pool is not None:
            pool.shutdown()
            pool = None
        bar.close()
        gen_s = time.time() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = [round((b.ru_utime + b.ru_stime) - (a.ru_utime + a.ru_stime), 2) for a, b in zip(cpu0, cpu1)]
        ids = [s["scene_id"] for split in WORLD_SPLITS for s in plan.summaries[split]]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})[:3]
            raise SceneError("scene_id", "unique ids over all splits", f"duplicates {dup}", "generate")
        train_ef = np.stack([s["expert_future"] for s in plan.summaries["train"]])
        anchors = compute_anchors(train_ef, want["num_anchors"], seed=want["seed"])
        np.save(os.path.join(tmp, ANCHORS_FILE), anchors)
        meta = dict(want)
        meta.update(
            complete=True, tfds_dir=os.path.relpath(tfds_dir(tmp), tmp),
            families={split: {f: int(sum(s["family"] == i for s in plan.summaries[split]))
                              for i, f in enumerate(FAMILIES)} for split in WORLD_SPLITS},
            stats={split: split_stats(plan.summaries[split]) for split in WORLD_SPLITS},
            anchors_shape=list(anchors.shape), workers=workers, generate_seconds=round(gen_s, 2),
            cpu_seconds={"writer_process": cpu[0], "worker_processes": cpu[1]},
            scenes_per_second=round(sum(sizes.values()) / max(gen_s, 1e-9), 2))
        publish(tmp, final, meta)
        meta["skipped"] = False
        return meta
    except BaseException:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def start_write(data_dir: str, name: str) -> str:
    """Delete stale leftovers of interrupted writes of dataset ``name`` in ``data_dir`` and create the temp
    directory ``<data_dir>/.<name>.incomplete-<pid>-<random>`` the dataset is written into; return it."""
    os.makedirs(data_dir, exist_ok=True)
    for d in os.listdir(data_dir):  # stale leftovers of interrupted runs
        if d.startswith(f".{name}.incomplete-") or d.startswith(f".{name}.old-"):
            shutil.rmtree(os.path.join(data_dir, d), ignore_errors=True)
    tmp = os.path.join(data_dir, f".{name}.incomplete-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    return tmp


def write_tfds(tmp: str, plan: WritePlan) -> None:
    """Write the TFDS array_record files of ``plan``'s splits under ``<tmp>/tfds`` (see :func:`tfds_dir`)."""
    import tensorflow_datasets as tfds
    tfds.disable_progress_bar()
    builder = builder_class()(plan=plan, data_dir=os.path.join(tmp, "tfds"), file_format="array_record")
    with contextlib.redirect_stdout(io.StringIO()):  # TFDS prints "Downloading and preparing ..."
        builder.download_and_prepare(download_dir=os.path.join(tmp, "tfds", "downloads"))
    shutil.rmtree(os.path.join(tmp, "tfds", "downloads"), ignore_errors=True)


def publish(tmp: str, final: str, meta: Dict[str, Any]) -> None:
    """Write ``meta`` as the completion marker (last, fsynced) into ``tmp`` and rename ``tmp`` to ``final``
    (an older ``final`` is moved aside first and deleted after). Sets ``meta["bytes_on_disk"]``."""
    meta["bytes_on_disk"] = _dir_size(tmp)
    with open(os.path.join(tmp, META_FILE), "w") as fh:  # the completion marker: written last
        json.dump(meta, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    data_dir, name = os.path.split(final)
    trash = None
    if os.path.exists(final):
        trash = os.path.join(data_dir, f".{name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(final, trash)
    os.rename(tmp, final)
    if trash:
        shutil.rmtree(trash, ignore_errors=True)


def split_stats(summ: List[Dict[str, Any]]) -> Dict[str, Any]:
    out = {}
    for k in ("ego_speed", "num_agents", "expert_progress"):
        v = np.array([s[k] for s in summ], np.float64)
        out[k] = {"min": round(float(v.min()), 3), "mean": round(float(v.mean()), 3),
                  "max": round(float(v.max()), 3)} if len(v) else {}
    return out
