"""Instruction language: vocabulary, encode/decode round trip, content of generated instructions."""
import re

import numpy as np
import pytest

from irlvla_jax.world import language
from irlvla_jax.world.language import VOCAB, decode, encode, normalize


def test_vocab_is_fixed_and_unique():
    assert len(set(VOCAB)) == len(VOCAB)
    assert VOCAB[:4] == ("<pad>", "<bos>", "<eos>", "<unk>")
    assert "km/h" in VOCAB and "50" in VOCAB and "intersection" in VOCAB


def test_roundtrip():
    for text in ("turn left at the intersection in 25 m, speed limit 50 km/h",
                 "Follow the road, sharp bend to the right ahead, speed limit 40 km/h",
                 "change to the left lane, speed limit 70 km/h"):
        ids, valid = encode(text, 24)
        assert ids.dtype == np.int32 and valid.dtype == bool and ids.shape == (24,)
        assert decode(ids, valid) == normalize(text)
        assert np.all(ids[~valid] == 0) and valid[0] and not valid[-1]


def test_unknown_and_truncation():
    ids, valid = encode("turn purple at the intersection", 10)
    assert VOCAB[ids[2]] == "<unk>"
    ids, valid = encode(" ".join(["left"] * 50), 8)
    assert valid.all() and VOCAB[ids[-1]] == "<eos>" and VOCAB[ids[0]] == "<bos>"
    with pytest.raises(ValueError, match="length"):
        encode("left", 1)
    with pytest.raises(ValueError, match="vocabulary"):
        decode(np.array([len(VOCAB) + 3]), np.array([True]))


def test_generated_instructions_carry_route_and_speed_limit(family_scenes):
    for fam, scenes in family_scenes.items():
        for sc in scenes:
            text = decode(sc.instruction, sc.instruction_valid)
            m = re.search(r"speed limit (\d+) km/h", text)
            assert m, text
            assert int(m.group(1)) == language.kmh(float(sc.speed_limit)), text
            cmd = int(np.argmax(sc.command))
            if fam == "intersection":
                word = {0: "turn left", 1: "straight", 2: "turn right"}[cmd]
                assert word in text, text
            if fam == "lane_change":
                assert {0: "left lane", 2: "right lane"}[cmd] in text, text
            assert "<unk>" not in text
