"""Locate the official EPDMS test vectors: $IRLVLA_SHARED/epdms_vectors, ../shared/epdms_vectors, or the
committed copy tests/data/epdms_vectors.tar.gz (extracted once per session into a temporary folder)."""
from __future__ import annotations

import functools
import os
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TARBALL = os.path.join(REPO, "tests", "data", "epdms_vectors.tar.gz")


def _ok(d: str) -> bool:
    return os.path.isdir(os.path.join(d, "scenes")) and os.path.exists(os.path.join(d, "official_tracked.json"))


@functools.lru_cache(maxsize=None)
def vectors_dir() -> str:
    cands = []
    if os.environ.get("IRLVLA_SHARED"):
        cands.append(os.path.join(os.environ["IRLVLA_SHARED"], "epdms_vectors"))
    cands.append(os.path.join(REPO, "..", "shared", "epdms_vectors"))
    for c in cands:
        if _ok(c):
            return os.path.abspath(c)
    if not os.path.exists(TARBALL):
        raise FileNotFoundError(f"EPDMS vectors not found in {cands} nor {TARBALL}")
    out = tempfile.mkdtemp(prefix="epdms_vectors_")
    with tarfile.open(TARBALL) as tf:
        tf.extractall(out, filter="data")
    d = os.path.join(out, "epdms_vectors")
    assert _ok(d), f"{TARBALL} does not hold epdms_vectors/scenes and official_tracked.json"
    return d
