"""On-disk cache of frozen text-encoder outputs, so a frozen encoder runs once per unique text."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch

from lmseg_components.files import atomic_save
from lmseg_components.text.base import TextEncoder, TextFeatures

__all__ = ["DEFAULT_MAX_DISK_BYTES", "DEFAULT_MAX_MEMORY_BYTES", "TextFeatureCache"]

DEFAULT_MAX_MEMORY_BYTES = 256 * 2**20
DEFAULT_MAX_DISK_BYTES = 2 * 2**30

_KEYS = ("tokens", "mask", "pooled")


def _nbytes(entry: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in entry.values())


class TextFeatureCache:
    """Memoise ``encoder.encode`` per text, in memory and (optionally) on disk, both bounded in size.

    Entries live in ``<cache_dir>/<sha256(encoder.identity)[:16]>/<sha256(text)>.pt`` as plain tensors of one text
    each (``torch.load(weights_only=True)`` compatible), written atomically, so several processes can share a
    cache directory. A different encoder, context length or set of weights never sees another's entries.

    Both stores evict the least recently used entries when they outgrow their bound: memory by use in this
    process, disk by file modification time (a hit on disk renews it, so the order holds across processes).
    A MiniLM entry (32 tokens x 384) takes about 50 KB, so the defaults hold about 5,000 entries in memory
    (256 MiB) and 40,000 on disk (2 GiB).

    Args:
        encoder: the frozen encoder.
        cache_dir: directory for the on-disk cache; None keeps the cache in memory only.
        batch_size: texts encoded per forward pass for the misses of one call.
        max_memory_bytes: bound of the in-memory entries (0 keeps none).
        max_disk_bytes: bound of this encoder's entry files in ``cache_dir`` (0 keeps none).
    """

    def __init__(
        self,
        encoder: TextEncoder,
        cache_dir: str | Path | None = None,
        batch_size: int = 64,
        max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
        max_disk_bytes: int = DEFAULT_MAX_DISK_BYTES,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        if max_memory_bytes < 0 or max_disk_bytes < 0:
            raise ValueError(
                f"max_memory_bytes and max_disk_bytes must be >= 0, got {max_memory_bytes} and {max_disk_bytes}."
            )
        self.encoder = encoder
        self.batch_size = batch_size
        self.max_memory_bytes = max_memory_bytes
        self.max_disk_bytes = max_disk_bytes
        self.directory = None
        self._disk_bytes = 0
        if cache_dir is not None:
            key = hashlib.sha256(encoder.identity.encode()).hexdigest()[:16]
            self.directory = Path(cache_dir) / key
            self.directory.mkdir(parents=True, exist_ok=True)
            self._disk_bytes = sum(size for _, size, _ in self._disk_entries())
        self._memory: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
        self._memory_bytes = 0
        self.encoder_calls = 0

    @property
    def memory_bytes(self) -> int:
        """Bytes of the entries held in memory."""
        return self._memory_bytes

    def _path(self, text: str) -> Path:
        return self.directory / f"{hashlib.sha256(text.encode()).hexdigest()}.pt"

    def _disk_entries(self) -> list[tuple[float, int, Path]]:
        """(modification time, size, path) of this encoder's entry files, oldest first."""
        entries = []
        for path in self.directory.glob("*.pt"):
            try:
                stat = path.stat()
            except FileNotFoundError:  # evicted by another process meanwhile
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        return sorted(entries)

    def _remember(self, text: str, entry: dict[str, torch.Tensor]) -> None:
        if text in self._memory:
            self._memory.move_to_end(text)
            return
        self._memory[text] = entry
        self._memory_bytes += _nbytes(entry)
        while self._memory and self._memory_bytes > self.max_memory_bytes:
            _, evicted = self._memory.popitem(last=False)
            self._memory_bytes -= _nbytes(evicted)

    def _lookup(self, text: str) -> dict[str, torch.Tensor] | None:
        if text in self._memory:
            self._memory.move_to_end(text)
            return self._memory[text]
        if self.directory is None:
            return None
        path = self._path(text)
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            return None
        with contextlib.suppress(OSError):  # renew its place in the eviction order; a read-only cache still serves
            os.utime(path)
        self._remember(text, entry)
        return entry

    def _store(self, text: str, entry: dict[str, torch.Tensor]) -> None:
        self._remember(text, entry)
        if self.directory is None or self.max_disk_bytes == 0:
            return
        path = atomic_save(entry, self._path(text))
        self._disk_bytes += path.stat().st_size
        if self._disk_bytes > self.max_disk_bytes:
            self._evict_disk()

    def _evict_disk(self) -> None:
        """Remove the least recently used entry files until this encoder's folder is within ``max_disk_bytes``
        (sizes re-read from the folder, which other processes may share)."""
        entries = self._disk_entries()
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= self.max_disk_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
        self._disk_bytes = total

    def get(self, texts: Sequence[str]) -> TextFeatures:
        """Features of ``texts`` (B texts) as CPU tensors: tokens (B, L, D), mask (B, L), pooled (B, P)."""
        texts = list(texts)
        found = {}
        for text in dict.fromkeys(texts):
            entry = self._lookup(text)
            if entry is not None:
                found[text] = entry
        missing = sorted(set(texts) - set(found))
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            features = self.encoder.encode(chunk)
            self.encoder_calls += 1
            for i, text in enumerate(chunk):
                # clone: a row of the batch is a view that would keep (and save) the whole batch's storage
                entry = {
                    "tokens": features.tokens[i].float().cpu().clone(),
                    "mask": features.mask[i].cpu().clone(),
                    "pooled": features.pooled[i].float().cpu().clone(),
                }
                found[text] = entry
                self._store(text, entry)
        return TextFeatures(*(torch.stack([found[t][k] for t in texts]) for k in _KEYS))
