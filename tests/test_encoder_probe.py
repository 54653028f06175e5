"""benchmarks/encoder_probe.py tells an encoder that maps the held-out words to their meaning from one that does
not: the probe reads through the features it is given, and no better."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch

from benchmarks.encoder_probe import probe
from lmseg_components.text.phrasing import AUGMENTATION, HELD_OUT

MEANINGS = {"left": 0, "right": 1}
for level, index in (("upper", 2), ("middle", 3), ("lower", 4)):
    for grammar in (AUGMENTATION, HELD_OUT):
        for word in grammar.levels[level]:
            MEANINGS[word] = index


class WordEncoder:
    """Token features from a lexicon: a word of known meaning gets that meaning's vector (``knows_held_out``: the
    held-out level words too), any other word a fixed random vector of its own, orthogonal to every meaning."""

    def __init__(self, knows_held_out: bool, length: int = 24, dim: int = 16):
        held_out = {w for words in HELD_OUT.levels.values() for w in words}
        self.meanings = {w: m for w, m in MEANINGS.items() if knows_held_out or w not in held_out}
        self.length, self.dim = length, dim

    def _vector(self, word: str) -> torch.Tensor:
        if word in self.meanings:
            return torch.nn.functional.one_hot(torch.tensor(self.meanings[word]), self.dim).float() * 3
        generator = torch.Generator().manual_seed(sum(ord(c) * 31**i for i, c in enumerate(word)) % 2**31)
        vector = torch.randn(self.dim, generator=generator)
        vector[: len(set(MEANINGS.values()))] = 0  # no part of any meaning
        return vector

    def encode(self, texts: list[str]) -> SimpleNamespace:
        tokens = torch.zeros(len(texts), self.length, self.dim)
        for i, text in enumerate(texts):
            for j, word in enumerate(re.findall(r"[a-z]+", text.lower())[: self.length]):
                tokens[i, j] = self._vector(word)
        return SimpleNamespace(tokens=tokens)


@pytest.mark.parametrize("knows_held_out", [True, False])
def test_probe_follows_what_the_encoder_knows(knows_held_out):
    result = probe(WordEncoder(knows_held_out), seed=0, n_train=600, n_test=300, steps=300)
    assert result["augmentation_side"] > 0.95 and result["augmentation_level"] > 0.95
    assert result["held_out_side"] > 0.8  # "left" and "right" are the same words in both grammars
    if knows_held_out:
        assert result["held_out_level"] > 0.9
    else:
        assert result["held_out_level"] < 0.6  # chance is 1/3: the unknown words carry no level
