"""The text-feature cache stores one compact file per text and stays within its bounds (issue 13, item 7)."""

from __future__ import annotations

import os
import time

import pytest
import torch

from lmseg_components.text import TextFeatureCache
from lmseg_components.text.base import TextFeatures

LENGTH, WIDTH = 16, 32
ENTRY_BYTES = LENGTH * WIDTH * 4 + LENGTH + WIDTH * 4  # tokens float32, mask bool, pooled float32


class FakeEncoder:
    """A deterministic stand-in for a frozen encoder: features derived from the text's characters."""

    identity = "fake-encoder"

    def encode(self, texts):
        codes = torch.tensor([[float(sum(map(ord, t)))] for t in texts])
        tokens = codes[:, :, None] + torch.arange(LENGTH * WIDTH, dtype=torch.float32).view(1, LENGTH, WIDTH)
        return TextFeatures(tokens, torch.ones(len(texts), LENGTH, dtype=torch.bool), tokens.mean(1))


def _files(cache: TextFeatureCache) -> list[str]:
    return [p.name for p in cache.directory.glob("*.pt")]


def test_entry_files_hold_one_entry(tmp_path):
    cache = TextFeatureCache(FakeEncoder(), tmp_path, batch_size=64)
    texts = [f"prompt {i}" for i in range(64)]
    features = cache.get(texts)
    sizes = [p.stat().st_size for p in cache.directory.glob("*.pt")]
    assert len(sizes) == 64 and max(sizes) < ENTRY_BYTES + 4096  # not the 64-text batch (> 64 * ENTRY_BYTES)
    again = TextFeatureCache(FakeEncoder(), tmp_path).get(texts[::-1])
    assert torch.equal(again.tokens, features.tokens.flip(0)) and torch.equal(again.pooled, features.pooled.flip(0))
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_memory_is_bounded_least_recently_used_first():
    cache = TextFeatureCache(FakeEncoder(), max_memory_bytes=2 * ENTRY_BYTES)
    cache.get(["a", "b"])
    cache.get(["a"])  # "a" is now the most recently used
    cache.get(["c"])
    assert list(cache._memory) == ["a", "c"] and cache.memory_bytes == 2 * ENTRY_BYTES
    calls = cache.encoder_calls
    cache.get(["a", "c"])
    assert cache.encoder_calls == calls
    cache.get(["b"])
    assert cache.encoder_calls == calls + 1


def test_a_call_larger_than_the_memory_bound_still_returns_every_text():
    cache = TextFeatureCache(FakeEncoder(), max_memory_bytes=0)
    features = cache.get(["a", "b", "a"])
    assert torch.equal(features.tokens[0], features.tokens[2]) and not torch.equal(
        features.tokens[0], features.tokens[1]
    )
    assert cache.memory_bytes == 0


def test_disk_is_bounded_least_recently_used_first(tmp_path):
    writer = TextFeatureCache(FakeEncoder(), tmp_path)
    writer.get(["a", "b"])
    past = time.time() - 100
    os.utime(writer._path("a"), (past, past))  # "a" is the older entry...
    os.utime(writer._path("b"), (past + 1, past + 1))
    size = writer._path("a").stat().st_size
    cache = TextFeatureCache(FakeEncoder(), tmp_path, max_memory_bytes=0, max_disk_bytes=int(2.5 * size))
    cache.get(["a"])  # ...until this hit renews it
    cache.get(["c"])
    assert sorted(_files(cache)) == sorted(cache._path(t).name for t in ("a", "c")) and cache.encoder_calls == 1


def test_bounds_are_checked():
    with pytest.raises(ValueError, match="max_memory_bytes and max_disk_bytes must be >= 0"):
        TextFeatureCache(FakeEncoder(), max_disk_bytes=-1)


def test_encode_textd_passes_the_bounds_to_its_cache(tmp_path):
    from lmseg_components.data import EncodeTextd

    transform = EncodeTextd("text", FakeEncoder(), tmp_path, max_memory_bytes=0, max_disk_bytes=ENTRY_BYTES)
    out = transform({"text": "a"})
    assert out["text_features"].shape == (LENGTH, WIDTH)
    assert (transform.cache.max_memory_bytes, transform.cache.max_disk_bytes) == (0, ENTRY_BYTES)
