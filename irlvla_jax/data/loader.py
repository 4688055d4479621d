"""Reading datasets: grain loaders sharded per process, whole splits, anchors, host -> mesh batches.

Public API::

    data_dir(config, workdir) -> str
        config.data.data_dir if set, else <workdir>/data. Commands resolve it once and store it back into
        config.data.data_dir (``resolve_data_dir``), so the functions below find it in the config.
    make_loader(config, split, batch_size, *, shuffle=True, seed=None, num_epochs=None, data_dir=None,
                num_threads=4, prefetch=None, check=True) -> grain DatasetIterator
        yields numpy ``Scene`` batches [batch_size, ...] of this process's shard only; the iterator has
        get_state() / set_state() (exact resume; saves with grain.checkpoint.CheckpointSave).
        num_epochs=None repeats forever (each epoch reshuffled); an int stops after that many epochs.
        seed=None uses config.data.shuffle_seed.
    load_split(config, split, *, data_dir=None, limit=None) -> Scene
        the whole split (or its first ``limit`` scenes by scene id), stacked, sorted by scene_id.
        Holds the whole split in memory (base spec: ~1.5 MB per scene): use ``limit`` or make_loader there.
    iter_split(config, split, batch_size, *, data_dir=None) -> iterator of Scene batches in scene_id order
        (one batch decoded at a time; the last one smaller).
    decode_records(spec, split, items, check=True) -> Scene
        (record index, TFDS example) pairs -> one stacked, validated numpy Scene (what the readers above use).
    load_anchors(config, *, data_dir=None) -> np.ndarray [K, 8, 3] float32 (world datasets only)
    load_metadata(config, *, data_dir=None) -> dict  (the dataset's irlvla_dataset.json)
    to_global(batch, mesh, axis="data") -> Scene of jax.Arrays sharded over ``axis`` (multi-process safe)

Pipeline: ``grain.MapDataset.source(records).seed(s).shuffle()[:n_even][process_index::process_count]
.repeat(num_epochs).map(decode).batch(batch_size, drop_remainder=True).map(validate).to_iter_dataset()``.
The shuffled split is first cut to a multiple of ``process_count`` so every process gets the same number
of scenes (and of batches: no multi-host hang at the end of an epoch); at most process_count - 1 scenes
per epoch are skipped, different ones each epoch. Sharding is by process only; devices within a process
get their slice through :func:`to_global`.

Datasets are of two kinds (``kind`` in irlvla_dataset.json): generated world datasets (``irlvla generate``;
splits train / val / test / hard, anchors.npy, matched against the config's seed, sizes and anchors) and
converted datasets (``irlvla convert``, :mod:`irlvla_jax.data.converted`; ``kind="converted"``, the one split
``real``, no anchors: matched against the config's SceneSpec only). Select one with ``config.data.name``;
asking a dataset for a split it does not hold is a one-line :class:`DatasetError` saying which has it.

Validation on open (:func:`open_dataset`, called by every reader and by ``irlvla inspect``): a missing or
malformed irlvla_dataset.json, anchors.npy (not [K, 8, 3] float32 finite), TFDS folder, dataset_info.json,
features.json, or a split's shard file (missing, truncated, empty, wrong record count) raises a one-line
:class:`DatasetError` (a :class:`irlvla_jax.errors.UserError`) naming the file and the fix, before TFDS or
grain open anything.

Validation on read: every record is decoded and checked against the config's SceneSpec (its header once
per dataset, ``records.decode_scene``), and every batch against ``scene.validate`` (one pass per batch; a
batch that fails is checked scene by scene to name the record); a malformed / truncated record, NaN, or a
wrong shape raises a one-line :class:`SceneError` naming the field, the split, the record index and the
scene id.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Optional

import numpy as np

from irlvla_jax.data import records
from irlvla_jax.errors import UserError
from irlvla_jax.data.tfds_builder import world_seed  # noqa: F401  (re-exported)
from irlvla_jax.data.tfds_builder import (ANCHORS_FILE, FORMAT_VERSION, META_FILE, TFDS_NAME, dataset_path,
                                          split_sizes)
from irlvla_jax.scene import FIELDS, SPLITS, WORLD_SPLITS, Scene, SceneError, SceneSpec, index, validate


class DatasetError(UserError, FileNotFoundError):
    """A dataset is missing, incomplete or damaged (one-line message naming the file and the fix)."""


_REGENERATE = "delete the folder and run `irlvla generate` again"


def data_dir(config, workdir: str) -> str:
    """config.data.data_dir if set, else <workdir>/data (absolute)."""
    d = str(config.data.data_dir or "")
    return os.path.abspath(d if d else os.path.join(workdir, "data"))


def resolve_data_dir(config, workdir: str) -> str:
    """:func:`data_dir`, also stored into config.data.data_dir so later calls can omit ``data_dir=``."""
    d = data_dir(config, workdir)
    config.data.data_dir = d
    return d


def _dir(config, data_dir_: Optional[str]) -> str:
    d = data_dir_ or str(config.data.data_dir or "")
    if not d:
        raise ValueError("config.data.data_dir is empty: pass data_dir=irlvla_jax.data.loader.data_dir(config, "
                         "workdir), or set --config.data.data_dir=DIR")
    return os.path.abspath(d)


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _damaged(path: str, what: str) -> DatasetError:
    return DatasetError(f"dataset {path}: {what}; {_REGENERATE}")


def _read_json(path: str, rel: str, *, hint: Optional[str] = None) -> Any:
    """The JSON file <path>/<rel>; a missing, unreadable or malformed file is a one-line DatasetError."""
    f = os.path.join(path, rel)
    if not os.path.isfile(f):
        raise DatasetError(f"dataset {path}: {rel} is missing; {hint or _REGENERATE}")
    try:
        with open(f, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as e:
        raise _damaged(path, f"{rel} is not valid JSON (line {e.lineno} column {e.colno}: {e.msg})") from e
    except (OSError, ValueError) as e:  # permissions, a directory, bytes that are not UTF-8
        raise _damaged(path, f"{rel} cannot be read ({_one_line(e)})") from e


def _check_anchors(path: str, k: int) -> np.ndarray:
    """<path>/anchors.npy, checked: shape [k, 8, 3], float32, finite."""
    f = os.path.join(path, ANCHORS_FILE)
    if not os.path.isfile(f):
        raise _damaged(path, f"{ANCHORS_FILE} is missing")
    try:
        with open(f, "rb") as fh:
            magic = fh.read(6)
    except OSError as e:
        raise _damaged(path, f"{ANCHORS_FILE} cannot be read ({_one_line(e)})") from e
    if magic != b"\x93NUMPY":
        raise _damaged(path, f"{ANCHORS_FILE} is not a .npy file")
    try:
        a = np.load(f, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - truncated / not an .npy file / unreadable
        raise _damaged(path, f"{ANCHORS_FILE} cannot be read ({_one_line(e)})") from e
    if not isinstance(a, np.ndarray) or a.shape != (k, 8, 3) or a.dtype != np.float32:
        raise _damaged(path, f"{ANCHORS_FILE} has shape {getattr(a, 'shape', None)} dtype {getattr(a, 'dtype', None)}, "
                             f"expected ({k}, 8, 3) float32 (config.data.num_anchors={k})")
    if not np.all(np.isfinite(a)):
        raise _damaged(path, f"{ANCHORS_FILE} holds {int((~np.isfinite(a)).sum())} non-finite value(s)")
    return a


def _shard_names(info: Dict[str, Any], entry: Dict[str, Any], split: str, n: int):
    template = str(entry.get("filepathTemplate") or "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}")
    fmt = str(info.get("fileFormat") or "array_record")
    for i in range(n):
        yield (template.replace("{DATASET}", str(info.get("name") or TFDS_NAME)).replace("{SPLIT}", split)
               .replace("{FILEFORMAT}", fmt).replace("{SHARD_X_OF_Y}", f"{i:05d}-of-{n:05d}")
               .replace("{SHARD_INDEX}", f"{i:05d}").replace("{NUM_SHARDS}", f"{n:05d}"))


def _check_tfds(path: str, meta: Dict[str, Any]) -> None:
    """The TFDS folder: dataset_info.json and features.json readable, every split's shard files present,
    complete (their array_record footer reads) and holding the records dataset_info.json lists."""
    rel_dir = meta.get("tfds_dir")
    if not isinstance(rel_dir, str) or not rel_dir:
        raise _damaged(path, f"{META_FILE} has no 'tfds_dir' entry")
    tdir = os.path.join(path, rel_dir)
    if not os.path.isdir(tdir):
        raise _damaged(path, f"the TFDS folder {rel_dir} is missing")
    info_rel = os.path.join(rel_dir, "dataset_info.json")
    info = _read_json(path, info_rel)
    _read_json(path, os.path.join(rel_dir, "features.json"))
    entries = {e.get("name"): e for e in info.get("splits", []) if isinstance(e, dict)} \
        if isinstance(info, dict) and isinstance(info.get("splits"), list) else None
    if entries is None:
        raise _damaged(path, f"{info_rel} has no 'splits' list")
    if info.get("fileFormat", "array_record") != "array_record":
        raise _damaged(path, f"{info_rel} has fileFormat {info.get('fileFormat')!r}, expected 'array_record'")
    from array_record.python import array_record_module as ar
    for split in dataset_splits(meta):
        if split not in entries:
            raise _damaged(path, f"{info_rel} lists no split '{split}'")
        try:
            lengths = [int(x) for x in entries[split].get("shardLengths", [])]
        except (TypeError, ValueError):
            raise _damaged(path, f"{info_rel}: split '{split}' has malformed shardLengths") from None
        want = int(meta["sizes"][split])
        if sum(lengths) == 0:
            raise _damaged(path, f"split '{split}' is empty ({info_rel} lists no records for it; "
                                 f"{META_FILE} says {want})")
        if sum(lengths) != want:
            raise _damaged(path, f"{info_rel} lists {sum(lengths)} records for split '{split}' but {META_FILE} "
                                 f"says {want}")
        for name, n in zip(_shard_names(info, entries[split], split, len(lengths)), lengths):
            rel = os.path.join(rel_dir, name)
            f = os.path.join(path, rel)
            if not os.path.isfile(f):
                raise _damaged(path, f"shard file {rel} of split '{split}' is missing")
            try:
                reader = ar.ArrayRecordReader(f, "readahead_buffer_size:0")
            except Exception as e:  # noqa: BLE001 - unreadable file
                raise _damaged(path, f"shard file {rel} cannot be read ({_one_line(e)})") from e
            try:
                ok, have = reader.ok(), (reader.num_records() if reader.ok() else 0)
            finally:
                try:
                    reader.close()
                except Exception as e:  # noqa: BLE001 - close() reports the reader's error state
                    err = e
                else:
                    err = None
            if not ok:
                why = f" ({_one_line(err)})" if err is not None else ""
                raise _damaged(path, f"shard file {rel} of split '{split}' is truncated or corrupt{why}")
            if have == 0:
                raise _damaged(path, f"split '{split}' is empty (shard file {rel} holds no records, "
                                     f"{info_rel} lists {n})")
            if have != n:
                raise _damaged(path, f"shard file {rel} of split '{split}' holds {have} records but {info_rel} "
                                     f"lists {n}")


def read_meta(path: str) -> Dict[str, Any]:
    """<path>/irlvla_dataset.json as a dict; unreadable, not JSON or not an object: one-line DatasetError."""
    meta = _read_json(path, META_FILE)
    if not isinstance(meta, dict):
        raise _damaged(path, f"{META_FILE} holds a JSON {type(meta).__name__}, not an object")
    return meta


_META_KEYS = ("format", "spec", "sizes", "seed", "num_anchors", "tfds_dir")
_CONVERTED_KEYS = ("format", "spec", "sizes", "tfds_dir", "source")
CONVERTED = "converted"
_CONVERT_HINT = ("run `irlvla convert navsim|av2|scenarionet SRC --config <config> --workdir <workdir> "
                 "--name {name}` first")


def is_converted(meta: Dict[str, Any]) -> bool:
    """Whether a dataset's metadata is that of a converted dataset (``irlvla convert``: split ``real`` only)."""
    return meta.get("kind") == CONVERTED


def dataset_splits(meta: Dict[str, Any]):
    """The splits a dataset holds: ("real",) for a converted dataset, the world's four otherwise."""
    return ("real",) if is_converted(meta) else WORLD_SPLITS


def open_dataset(config, data_dir_: Optional[str] = None) -> Dict[str, Any]:
    """Check that the config's dataset exists, is complete, undamaged and matches the config; return its metadata.

    Checked before TFDS / grain open anything, each failure a one-line :class:`DatasetError` (a
    :class:`UserError`) naming the file and the fix: irlvla_dataset.json (present, valid JSON, complete,
    matching the config), anchors.npy ([K, 8, 3] float32, finite, K = config.data.num_anchors), the TFDS
    folder's dataset_info.json and features.json, and every split's array_record shard files (present, not
    truncated, holding the listed number of records, not empty).
    """
    d = _dir(config, data_dir_)
    name = config.data.name
    path = dataset_path(d, name)
    hint = "run `irlvla generate --config <config> --workdir <workdir>` first"
    if str(name).startswith("real"):    # `irlvla convert` names its datasets real_<source> by default
        hint = _CONVERT_HINT.format(name=name)
    if not os.path.isdir(path):
        partial = [x for x in (os.listdir(d) if os.path.isdir(d) else []) if x.startswith(f".{name}.incomplete-")]
        if partial:
            raise DatasetError(f"dataset '{name}' in {d} is incomplete (an interrupted generate left {partial[0]}); "
                               f"{hint}")
        raise DatasetError(f"no dataset '{name}' in {d}; {hint}")
    if not os.path.exists(os.path.join(path, META_FILE)):
        raise DatasetError(f"dataset {path} is incomplete (no {META_FILE} completion marker); {hint}")
    meta = read_meta(path)
    if not meta.get("complete"):
        raise DatasetError(f"dataset {path} is incomplete (no {META_FILE} completion marker); {hint}")
    if meta.get("format") != FORMAT_VERSION:
        raise DatasetError(f"dataset {path} has record format {meta.get('format')}; regenerate it ({hint})")
    conv = is_converted(meta)
    splits = dataset_splits(meta)
    missing = [k for k in (_CONVERTED_KEYS if conv else _META_KEYS) if k not in meta]
    bad = [k for k in ("spec", "sizes") if k in meta and not isinstance(meta[k], dict)]
    if missing or bad or not all(s in meta["sizes"] for s in splits):
        raise _damaged(path, f"{META_FILE} lacks or has malformed entries "
                             f"{missing + bad or ['sizes.' + s for s in splits if s not in meta['sizes']]}")
    spec = SceneSpec.from_config(config.scene)
    want = json.loads(json.dumps(dataclasses.asdict(spec)))
    for k, v in want.items():
        if meta["spec"].get(k) != v:
            raise DatasetError(f"dataset {path} was {'converted' if conv else 'generated'} with "
                               f"scene.{k}={meta['spec'].get(k)} but the config has config.scene.{k}={v}; "
                               f"{'convert' if conv else 'regenerate'} it or use the matching config")
    if conv:        # no seed, split sizes or anchors of the config to match: those are the world dataset's
        _check_tfds(path, meta)
        meta["path"] = path
        return meta
    for key, have, cfg_val in [(f"data.num_{s}", meta["sizes"].get(s), n) for s, n in split_sizes(config).items()] + \
            [("seed", meta.get("seed"), world_seed(config)), ("data.num_anchors", meta.get("num_anchors"),
                                                           int(config.data.num_anchors))]:
        if have != cfg_val:
            raise DatasetError(f"dataset {path} was generated with {key}={have} but the config has "
                               f"config.{key}={cfg_val}; regenerate it (irlvla generate) or pass the same overrides")
    _check_anchors(path, int(config.data.num_anchors))
    _check_tfds(path, meta)
    meta["path"] = path
    return meta


def _check_split(meta: Dict[str, Any], split: str) -> None:
    """A split the dataset holds, else a one-line DatasetError saying which dataset has it."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if is_converted(meta) and split != "real":
        raise DatasetError(f"dataset {meta['path']} is converted from {meta.get('source')} logs and has only the "
                           f"split 'real', not {split!r}; evaluate it with `irlvla evaluate --name "
                           f"{os.path.basename(meta['path'])}` (or --config.evaluate.splits=\"('real',)\")")
    if not is_converted(meta) and split == "real":
        raise DatasetError(f"dataset {meta['path']} is a generated world dataset ({'/'.join(WORLD_SPLITS)}); the "
                           "split 'real' is in converted datasets: run `irlvla convert ...` and pass --name NAME "
                           "(or --config.data.name=NAME)")


def _data_source(meta: Dict[str, Any], split: str):
    _check_split(meta, split)
    import tensorflow_datasets as tfds
    try:
        builder = tfds.builder_from_directory(os.path.join(meta["path"], meta["tfds_dir"]))
        return builder.as_data_source(split=split)
    except Exception as e:  # noqa: BLE001 - open_dataset checked the files; anything left is still damage
        raise _damaged(meta["path"], f"TFDS cannot open split '{split}' of {meta['tfds_dir']} "
                                     f"({_one_line(e)})") from e


class _RawSource:
    """Random access to (record index, TFDS example) of one split; wraps read errors as SceneError."""

    def __init__(self, source, split: str):
        self._source, self._split = source, split

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, i: int):
        i = int(i)
        try:
            ex = self._source[i]
        except Exception as e:  # noqa: BLE001 - an unreadable record is a data error
            raise SceneError("record", "a readable array_record entry",
                             f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                             f"{self._split} record {i}") from None
        return i, ex

    def __repr__(self):
        return f"_RawSource({self._split}, n={len(self)})"


_WHERE = "_where"       # a decoded record's location ("<split> record <i> (scene_id <s>)"), carried to its batch


class _Decode:
    """(record index, example) -> dict of the record's numpy fields, decoded and checked against the spec
    (not :func:`~irlvla_jax.scene.validate`d: its batch is, :func:`_checked`), and its location."""

    def __init__(self, spec: SceneSpec, split: str):
        self.spec, self.split = spec, split

    def __call__(self, item):
        i, ex = item
        sid = ex.get("scene_id") if isinstance(ex, dict) else None
        where = f"{self.split} record {i}" + (f" (scene_id {int(sid)})" if sid is not None else "")
        rec = ex.get("record") if isinstance(ex, dict) else None
        scene = records.decode_scene(rec, self.spec, where=where, check=False)
        if sid is not None and int(scene.scene_id) != int(sid):
            raise SceneError("scene_id", f"{int(sid)} (the record's key)", f"{int(scene.scene_id)}", where)
        return dict(scene.to_dict(), **{_WHERE: where})


def _checked(scene: Scene, wheres, spec: SceneSpec) -> Scene:
    """A stacked numpy Scene of decoded records, ``validate``d as one batch (one pass of numpy calls, not one
    per scene: 2 ms per tiny scene); when the batch fails, each scene is validated alone so that the one-line
    error names the first bad record (``wheres``), as checking record by record would."""
    try:
        return validate(scene, spec, batch_dims=1)
    except SceneError:
        for j, where in enumerate(wheres):
            validate(index(scene, j), spec, where=str(where))
        raise


class _Batch:
    """A batch of :class:`_Decode` dicts (stacked by grain) -> Scene, validated when ``check``."""

    def __init__(self, spec: SceneSpec, check: bool):
        self.spec, self.check = spec, check

    def __call__(self, d: Dict[str, np.ndarray]) -> Scene:
        scene = Scene(**{n: d[n] for n in FIELDS})
        return _checked(scene, d[_WHERE], self.spec) if self.check else scene


def decode_records(spec: SceneSpec, split: str, items, check: bool = True) -> Scene:
    """(record index, example) pairs of ``split`` (``example``: the TFDS example, a dict with "record" and
    "scene_id") -> one stacked numpy Scene, decoded and (``check``) validated; a bad record is a one-line
    SceneError naming it."""
    dec = _Decode(spec, split)
    rows = [dec(item) for item in items]
    return _Batch(spec, check)({n: np.stack([r[n] for r in rows]) for n in (*FIELDS, _WHERE)})


def make_loader(config, split: str, batch_size: int, *, shuffle: bool = True, seed: Optional[int] = None,
                num_epochs: Optional[int] = None, data_dir: Optional[str] = None, num_threads: int = 4,
                prefetch: Optional[int] = None, check: bool = True, process_index: Optional[int] = None,
                process_count: Optional[int] = None):
    """A grain iterator of numpy Scene batches [batch_size, ...] (this process's shard). See module doc.

    ``seed`` None -> ``config.data.shuffle_seed``. ``process_index`` / ``process_count`` default to
    ``jax.process_index()`` / ``jax.process_count()``.
    """
    import grain
    import jax
    meta = open_dataset(config, data_dir)
    spec = SceneSpec.from_config(config.scene)
    pi = jax.process_index() if process_index is None else int(process_index)
    pc = jax.process_count() if process_count is None else int(process_count)
    if not 0 <= pi < pc:
        raise ValueError(f"process_index {pi} not in [0, process_count={pc})")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    src = _RawSource(_data_source(meta, split), split)
    n = len(src)
    per_process = n // pc
    if per_process < batch_size:
        more = "convert more logs" if split == "real" else f"generate more scenes (config.data.num_{split})"
        raise ValueError(f"split '{split}' has {n} scenes = {per_process} per process (x{pc}), fewer than "
                         f"batch_size {batch_size}; lower the batch size or {more}")
    ds = grain.MapDataset.source(src)
    if shuffle:
        ds = ds.seed(int(config.data.shuffle_seed if seed is None else seed)).shuffle()
    ds = ds[: per_process * pc][pi::pc]
    if num_epochs is None:
        ds = ds.repeat()
    elif int(num_epochs) > 1:
        ds = ds.repeat(int(num_epochs))
    ds = ds.map(_Decode(spec, split)).batch(int(batch_size), drop_remainder=True).map(_Batch(spec, check))
    opts = grain.ReadOptions(num_threads=int(num_threads),
                             prefetch_buffer_size=int(prefetch if prefetch is not None else 2 * batch_size))
    return ds.to_iter_dataset(opts).__iter__()


def load_split(config, split: str, *, data_dir: Optional[str] = None, limit: Optional[int] = None,
               check: bool = True, progress: bool = False) -> Scene:
    """The whole split as one stacked numpy Scene [N, ...], sorted by scene_id (``limit``: first N of those)."""
    meta = open_dataset(config, data_dir)
    spec = SceneSpec.from_config(config.scene)
    source = _data_source(meta, split)
    try:
        examples = source.__getitems__(list(range(len(source))))
    except Exception:  # noqa: BLE001 - fall back to one by one, which names the bad record
        raw = _RawSource(source, split)
        examples = [raw[i][1] for i in range(len(source))]
    ids = np.asarray([int(e["scene_id"]) for e in examples])
    order = np.argsort(ids, kind="stable")
    if limit is not None:
        order = order[: int(limit)]
    it = order
    if progress:
        from tqdm import tqdm
        it = tqdm(order, desc=f"load {split}", unit="scene")
    if not len(order):
        raise DatasetError(f"split '{split}' of {meta['path']} is empty")
    return decode_records(spec, split, ((int(i), examples[int(i)]) for i in it), check)


def load_anchors(config, *, data_dir: Optional[str] = None) -> np.ndarray:
    """The dataset's anchors [K, 8, 3] float32 (K = config.data.num_anchors). A converted dataset has none
    (one-line DatasetError): anchors come from the world dataset the policy was trained on."""
    meta = open_dataset(config, data_dir)
    if is_converted(meta):
        raise DatasetError(f"dataset {meta['path']} is converted from {meta.get('source')} logs and has no anchors; "
                           "anchors come from the generated world dataset (train on it: config.data.name of the "
                           "world) -- a trained policy carries its own in its checkpoint")
    return _check_anchors(meta["path"], int(config.data.num_anchors)).astype(np.float32)


def iter_split(config, split: str, batch_size: int, *, data_dir: Optional[str] = None, check: bool = True):
    """Yield the split as numpy Scene batches of at most ``batch_size`` scenes, in scene_id order (the last
    batch smaller), decoding one batch at a time (memory: one batch, not the split)."""
    meta = open_dataset(config, data_dir)
    spec = SceneSpec.from_config(config.scene)
    raw = _RawSource(_data_source(meta, split), split)
    ids = []
    for i in range(len(raw)):       # scene ids only: the "scene_id" feature, no record decoding
        ids.append(int(raw[i][1]["scene_id"]))
    order = np.argsort(np.asarray(ids, np.int64), kind="stable")
    for s0 in range(0, len(order), int(batch_size)):
        yield decode_records(spec, split, (raw[int(i)] for i in order[s0:s0 + int(batch_size)]), check)


def load_metadata(config, *, data_dir: Optional[str] = None) -> Dict[str, Any]:
    """The dataset's metadata (counts, seed, spec, family mix, stats, path)."""
    return open_dataset(config, data_dir)


def to_global(batch, mesh, axis: str = "data"):
    """Host-local numpy batch (pytree, leading batch axis) -> global jax.Arrays sharded over ``axis``.

    Each process passes its own shard (what :func:`make_loader` yields); the global batch is the
    concatenation over processes. The local batch size must be divisible by the number of this
    process's devices along ``axis``.
    """
    import jax
    from jax.sharding import NamedSharding, PartitionSpec
    if axis not in mesh.axis_names:
        raise ValueError(f"mesh has axes {mesh.axis_names}, no '{axis}' axis to shard the batch over")
    sharding = NamedSharding(mesh, PartitionSpec(axis))
    leaves = jax.tree_util.tree_leaves(batch)
    if not leaves:
        return batch
    b = np.shape(leaves[0])[0] if np.ndim(leaves[0]) else None
    ax = mesh.axis_names.index(axis)
    mine = np.vectorize(lambda d: d.process_index == jax.process_index())(mesh.devices)
    local = int(np.any(np.moveaxis(mine, ax, 0).reshape(mine.shape[ax], -1), axis=1).sum())
    if b is None or b % local:
        raise ValueError(f"local batch size {b} must be divisible by this process's {local} device(s) along "
                         f"mesh axis '{axis}' (change config.data.batch_size)")
    return jax.tree_util.tree_map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


__all__ = ["data_dir", "resolve_data_dir", "make_loader", "load_split", "iter_split", "decode_records", "load_anchors",
           "load_metadata", "to_global", "open_dataset", "read_meta", "DatasetError", "split_sizes", "is_converted",
           "dataset_splits"]
