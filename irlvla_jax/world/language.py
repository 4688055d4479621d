"""Instruction language of the embedded world: a fixed vocabulary and a word-level tokenizer.

The instruction carries real information the planner needs: the route (turn left / right / straight
at an intersection and its distance, a lane change and its side, the road curving), the speed limit in
km/h, and map hints (a pedestrian crossing ahead, two-way road). Example:
``"turn left at the intersection in 25 m, speed limit 50 km/h"``.

Contract: ``VOCAB`` (tuple of tokens; id = index), ``encode(text, length) -> (ids int32 [length],
valid bool [length])`` with ``<bos> ... <eos>`` then padding (id 0, valid False); ``decode(ids, valid)
-> str`` (the normalised text: lower case, single spaces, "," attached to the previous word), so
``decode(*encode(t, n)) == normalize(t)`` whenever the text fits in ``n - 2`` tokens.
Unknown words map to ``<unk>``.
"""
from __future__ import annotations

import re
from typing import Tuple

import numpy as np

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"

_WORDS = (
    ",", ".", "turn", "left", "right", "go", "straight", "through", "at", "the", "intersection", "in",
    "m", "speed", "limit", "km/h", "follow", "road", "as", "it", "curves", "change", "to", "lane",
    "move", "into", "keep", "your", "continue", "on", "this", "ahead", "pedestrian", "crossing",
    "two-way", "watch", "for", "traffic", "oncoming", "stay", "merge", "next", "light", "signalised",
    "and", "a", "of", "drive", "along", "take", "exit", "cones", "obstacle", "parked", "car", "blocked",
    "slow", "down", "cyclist", "sharp", "gentle", "bend", "one-way",
)
_NUMBERS = tuple(str(i) for i in range(0, 205, 5))
VOCAB: Tuple[str, ...] = (PAD, BOS, EOS, UNK) + _WORDS + tuple(n for n in _NUMBERS if n not in _WORDS)
_ID = {w: i for i, w in enumerate(VOCAB)}

_TOKEN_RE = re.compile(r"[a-z0-9/\-]+|[,.]")


def normalize(text: str) -> str:
    """Lower case, one space between tokens, punctuation attached to the previous word."""
    return _join(_TOKEN_RE.findall(text.lower()))


def _join(tokens) -> str:
    out = ""
    for tok in tokens:
        if tok in (",", ".") and out:
            out += tok
        else:
            out += (" " if out else "") + tok
    return out


def tokenize(text: str):
    return _TOKEN_RE.findall(text.lower())


def encode(text: str, length: int) -> Tuple[np.ndarray, np.ndarray]:
    """Text -> (ids int32 [length], valid bool [length]). Truncates (keeping <eos>) if too long."""
    if not isinstance(text, str):
        raise ValueError(f"language.encode: text must be a str, got {type(text).__name__}")
    if length < 2:
        raise ValueError(f"language.encode: length must be >= 2 (room for <bos> and <eos>), got {length}")
    toks = [_ID.get(t, _ID[UNK]) for t in tokenize(text)]
    toks = [_ID[BOS]] + toks[: length - 2] + [_ID[EOS]]
    ids = np.zeros(length, np.int32)
    valid = np.zeros(length, bool)
    ids[: len(toks)] = toks
    valid[: len(toks)] = True
    return ids, valid


def decode(ids, valid) -> str:
    """(ids [T], valid [T]) -> text; special tokens are dropped."""
    ids = np.asarray(ids).reshape(-1)
    valid = np.asarray(valid, bool).reshape(-1)
    if ids.shape != valid.shape:
        raise ValueError(f"language.decode: ids {ids.shape} and valid {valid.shape} must have the same shape")
    words = []
    for i, ok in zip(ids.tolist(), valid.tolist()):
        if not ok:
            continue
        if not 0 <= i < len(VOCAB):
            raise ValueError(f"language.decode: token id {i} outside the vocabulary [0, {len(VOCAB)})")
        w = VOCAB[i]
        if w in (PAD, BOS, EOS):
            continue
        words.append(w)
    return _join(words)


def kmh(speed_mps: float) -> int:
    """Speed limit in km/h rounded to a multiple of 5 (as on a sign)."""
    return int(5 * round(speed_mps * 3.6 / 5))


def round5(x: float) -> int:
    return int(min(200, max(0, 5 * round(x / 5))))
