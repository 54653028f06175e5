"""Retrieval index: cosine top-k over L2-normalised embeddings, persisted with its gallery ids and the
fingerprint of the retriever that produced them.

Two backends behind one interface:

- ``torch`` (default): exact search by matrix product, chunked over the gallery.
- ``faiss`` (``pip install 'lmseg[faiss]'``): ``flat`` (exact, IndexFlatIP), ``ivf`` (IndexIVFFlat, approximate)
  or ``hnsw`` (IndexHNSWFlat, approximate).

Queries can exclude given item ids (self-retrieval during training) and, optionally, every item of the
query's case (other slices of the same patient).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lmseg_components.files import atomic_save

__all__ = [
    "SearchResult",
    "StaleIndexError",
    "RetrievalIndex",
    "TorchIndex",
    "FaissIndex",
    "create_index",
    "load_index",
    "rebuild_command",
]

FORMAT_VERSION = 1
_STATE_KEYS = frozenset({"format", "backend", "dim", "ids", "case_ids", "retriever_fingerprint"})


class StaleIndexError(ValueError):
    """The saved index does not belong to the current retriever or gallery."""


@dataclass
class SearchResult:
    """Top-k results for Q queries: ``scores`` (Q, k) cosine similarities (descending), ``indices`` (Q, k)
    gallery rows and ``ids`` the matching gallery ids (a list of k ids per query). Rows with fewer than k
    admissible items are padded with score ``-inf``, index -1 and id None."""

    scores: torch.Tensor
    indices: torch.Tensor
    ids: list[list[str | None]]


class RetrievalIndex(ABC):
    """Common logic: gallery ids and cases, exclusion masks, persistence.

    Args:
        dim: embedding width D.
    """

    backend: str = ""

    def __init__(self, dim: int):
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}.")
        self.dim = dim
        self.ids: list[str] = []
        self.case_ids: list[str] = []
        self._row_of: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, embeddings: torch.Tensor, ids: Sequence[str], case_ids: Sequence[str] | None = None) -> None:
        """Add N items: ``embeddings`` (N, D) (normalised here), unique string ``ids``, optional ``case_ids``."""
        embeddings = torch.as_tensor(embeddings, dtype=torch.float32).as_subclass(torch.Tensor)  # no MetaTensor
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"embeddings must be (N, {self.dim}), got {tuple(embeddings.shape)}.")
        ids = [str(i) for i in ids]
        case_ids = [str(c) for c in case_ids] if case_ids is not None else list(ids)
        if len(ids) != embeddings.shape[0] or len(case_ids) != len(ids):
            raise ValueError(f"got {embeddings.shape[0]} embeddings, {len(ids)} ids and {len(case_ids)} case ids.")
        repeated = {i for i, n in Counter(ids).items() if n > 1}
        duplicates = sorted(repeated | {i for i in ids if i in self._row_of})
        if duplicates:
            raise ValueError(f"ids must be unique; already present or repeated: {duplicates[:5]}")
        for i in ids:
            self._row_of[i] = len(self._row_of)
        self.ids += ids
        self.case_ids += case_ids
        self._add(F.normalize(embeddings, dim=1))

    def search(
        self,
        queries: torch.Tensor,
        k: int,
        exclude_ids: Sequence[str | None] | None = None,
        exclude_cases: Sequence[str | None] | None = None,
    ) -> SearchResult:
        """Top-k gallery items for each of Q ``queries`` (Q, D).

        Args:
            k: results per query.
            exclude_ids: per query, a gallery id it must not retrieve (itself), or None.
            exclude_cases: per query, a case id whose items it must not retrieve, or None.
        """
        queries = torch.as_tensor(queries, dtype=torch.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be (Q, {self.dim}), got {tuple(queries.shape)}.")
        if k < 1:
            raise ValueError(f"k must be positive, got {k}.")
        n_queries = queries.shape[0]
        for name, values in (("exclude_ids", exclude_ids), ("exclude_cases", exclude_cases)):
            if values is not None and len(values) != n_queries:
                raise ValueError(f"{name} must have one entry per query ({n_queries}), got {len(values)}.")
        excluded = self._excluded_rows(n_queries, exclude_ids, exclude_cases)
        scores, indices = self._search(F.normalize(queries, dim=1), k, excluded)
        ids = [[self.ids[j] if j >= 0 else None for j in row] for row in indices.tolist()]
        return SearchResult(scores, indices, ids)

    def _excluded_rows(self, n_queries, exclude_ids, exclude_cases) -> list[list[int]]:
        rows: list[list[int]] = [[] for _ in range(n_queries)]
        if exclude_cases is not None:
            members: dict[str, list[int]] = {}
            for row, case in enumerate(self.case_ids):
                members.setdefault(case, []).append(row)
            for q, case in enumerate(exclude_cases):
                if case is not None:
                    rows[q] += members.get(str(case), [])
        if exclude_ids is not None:
            for q, item in enumerate(exclude_ids):
                if item is not None and str(item) in self._row_of:
                    rows[q].append(self._row_of[str(item)])
        return rows

    def state(self, retriever_fingerprint: str) -> dict:
        """What :meth:`save` writes and :func:`load_index` reads: the index with its gallery ids, case ids and the
        fingerprint of the retriever that made the embeddings."""
        return {
            "format": FORMAT_VERSION,
            "backend": self.backend,
            "dim": self.dim,
            "ids": self.ids,
            "case_ids": self.case_ids,
            "retriever_fingerprint": str(retriever_fingerprint),
            **self._state(),
        }

    def save(self, path: str | Path, retriever_fingerprint: str) -> None:
        """Write :meth:`state` atomically (to a temporary file, then renamed)."""
        atomic_save(self.state(retriever_fingerprint), path)

    @abstractmethod
    def _add(self, embeddings: torch.Tensor) -> None: ...

    @abstractmethod
    def _search(self, queries: torch.Tensor, k: int, excluded: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, indices), each (Q, k), for normalised queries, never returning excluded rows."""

    @abstractmethod
    def _state(self) -> dict: ...

    @abstractmethod
    def _load_state(self, state: dict) -> None: ...

    def memory_bytes(self) -> int:
        """Bytes held by the index structure (embeddings and any graph / lists)."""
        return 0


def _pad(scores: torch.Tensor, indices: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    missing = k - scores.shape[1]
    if missing <= 0:
        return scores, indices
    fill_s = torch.full((scores.shape[0], missing), float("-inf"))
    fill_i = torch.full((scores.shape[0], missing), -1, dtype=torch.long)
    return torch.cat([scores, fill_s], 1), torch.cat([indices, fill_i], 1)


class TorchIndex(RetrievalIndex):
    """Exact cosine top-k over the gallery, in chunks of ``chunk`` gallery rows.

    Scoring queries against a large gallery is bound by memory bandwidth, so each chunk is first scored against a
    low-precision copy of the gallery (``scan_dtype``; bfloat16 halves the bytes of float32 and its products run
    on the bf16 units of current CPUs and GPUs), and every item whose approximate score is within twice the
    error bound of the k-th best approximate score is rescored in float32: the result is the exact float32 top-k.
    For unit vectors the bound is ``2u + u^2`` (inputs rounded with unit roundoff u, Cauchy-Schwarz) plus
    ``u (1 + 2u + u^2)`` (the product rounded once more) plus ``D 2^-24`` (accumulation in float32, as oneDNN
    and cuBLAS do): 0.0118 for bfloat16, 0.0015 for float16. The k best approximate scores are found by block:
    the k blocks of :attr:`BLOCK` items with the highest maxima hold the k best items.

    Args:
        dim: embedding width D.
        chunk: gallery rows scored at once (bounds memory for large galleries).
        scan_dtype: ``torch.bfloat16`` (default), ``torch.float16``, or ``torch.float32`` (no second copy).
    """

    backend = "torch"
    BLOCK = 64

    def __init__(self, dim: int, chunk: int = 262144, scan_dtype: torch.dtype = torch.bfloat16):
        super().__init__(dim)
        if scan_dtype not in (torch.bfloat16, torch.float16, torch.float32):
            raise ValueError(f"scan_dtype must be torch.bfloat16, torch.float16 or torch.float32, got {scan_dtype}.")
        self.chunk, self.scan_dtype = chunk, scan_dtype
        u = torch.finfo(scan_dtype).eps / 2
        self.error = 2 * u + u**2 + u * (1 + 2 * u + u**2) + dim * 2.0**-24
        self.embeddings = torch.empty(0, dim)
        self._scan = self.embeddings.to(scan_dtype)

    def _add(self, embeddings: torch.Tensor) -> None:
        self.embeddings = torch.cat([self.embeddings, embeddings.contiguous()], 0)
        self._scan = self.embeddings.to(self.scan_dtype)  # the same tensor for float32

    def _chunk_top(self, queries: torch.Tensor, start: int, k: int, excluded: list[list[int]]):
        """Exact (scores, rows) of the k best items of one gallery chunk, each (Q, k), ``-inf`` / -1 padded."""
        gallery, scan = self.embeddings[start : start + self.chunk], self._scan[start : start + self.chunk]
        n_q, size = queries.shape[0], gallery.shape[0]
        low = queries.to(self.scan_dtype)
        approx = torch.mv(scan, low[0])[None] if n_q == 1 else low @ scan.T  # (Q, C) in scan_dtype
        for q, rows in enumerate(excluded):
            local = [r - start for r in rows if start <= r < start + size]
            if local:
                approx[q, local] = float("-inf")
        if size % self.BLOCK:
            approx = F.pad(approx, (0, -size % self.BLOCK), value=float("-inf"))
        approx = approx.view(n_q, -1, self.BLOCK)
        maxima = approx.amax(2)  # (Q, blocks)
        best = maxima.topk(min(k, maxima.shape[1]), dim=1).indices
        held = approx.gather(1, best[..., None].expand(-1, -1, self.BLOCK)).flatten(1)
        kth = held.topk(min(k, size), dim=1).values[:, -1:].float()  # k-th best approximate score (Q, 1)
        threshold = kth - 2 * self.error
        q_rows, blocks = torch.nonzero(maxima >= threshold, as_tuple=True)
        values = approx[q_rows, blocks]  # (P, BLOCK) blocks that may hold a top-k item
        pairs, offsets = torch.nonzero((values >= threshold[q_rows]) & (values > float("-inf")), as_tuple=True)
        q_rows, g_rows = q_rows[pairs], blocks[pairs] * self.BLOCK + offsets
        exact = (queries[q_rows] * gallery[g_rows]).sum(1)
        order = torch.sort(exact, descending=True, stable=True).indices
        order = order[torch.sort(q_rows[order], stable=True).indices]  # by query, best first
        q_rows, g_rows, exact = q_rows[order], g_rows[order], exact[order]
        counts = torch.bincount(q_rows, minlength=n_q)
        rank = torch.arange(q_rows.shape[0]) - (counts.cumsum(0) - counts)[q_rows]
        keep = rank < k
        scores = torch.full((n_q, k), float("-inf"))
        rows = torch.full((n_q, k), -1, dtype=torch.long)
        scores[q_rows[keep], rank[keep]] = exact[keep]
        rows[q_rows[keep], rank[keep]] = g_rows[keep] + start
        return scores, rows

    @torch.no_grad()
    def _search(self, queries, k, excluded):
        best_s = torch.full((queries.shape[0], k), float("-inf"))
        best_i = torch.full((queries.shape[0], k), -1, dtype=torch.long)
        for start in range(0, self.embeddings.shape[0], self.chunk):
            s, i = self._chunk_top(queries, start, k, excluded)
            best_s, order = torch.cat([best_s, s], 1).topk(k, dim=1)
            best_i = torch.cat([best_i, i], 1).gather(1, order)
        best_i = torch.where(torch.isfinite(best_s), best_i, torch.full_like(best_i, -1))
        return best_s, best_i

    def _state(self) -> dict:
        return {"embeddings": self.embeddings}

    def _load_state(self, state: dict) -> None:
        embeddings = state["embeddings"]
        expected = (len(self.ids), self.dim)
        if not isinstance(embeddings, torch.Tensor) or tuple(embeddings.shape) != expected:
            shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
            raise ValueError(f"embeddings are {shape}, expected {expected} (one row per id)")
        self.embeddings = embeddings.float()
        self._scan = self.embeddings.to(self.scan_dtype)  # the same tensor for float32

    def memory_bytes(self) -> int:
        copies = (self.embeddings,) if self._scan is self.embeddings else (self.embeddings, self._scan)
        return sum(t.numel() * t.element_size() for t in copies)


class FaissIndex(RetrievalIndex):
    """FAISS inner-product index over normalised embeddings.

    Args:
        dim: embedding width.
        kind: ``flat`` (exact), ``ivf`` (inverted lists; k-means trained on at most ``TRAIN_PER_LIST * nlist``
            vectors of the first ``add``) or ``hnsw`` (graph).
        nlist: IVF lists (default: about 4 sqrt(N) at the first add, at most N / 39).
        nprobe: IVF lists visited per query.
        hnsw_m: HNSW neighbours per node.
        ef_search: HNSW search breadth.

    Defaults from the sweep of ``benchmarks/retrieval_index.py`` (J-RAS docs): at 1M clustered embeddings of dim
    128 on 2 CPU cores, IVF with nprobe 16 finds every exact top-10 item (0.7 ms per query) and HNSW with
    ef_search 256 finds 0.956 of them (0.6 ms; 0.940 at 128). :meth:`set_search` changes both without
    rebuilding.
    """

    backend = "faiss"
    TRAIN_PER_LIST = 64  # IVF k-means sample per list (FAISS warns below 39)

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        nlist: int | None = None,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 256,
    ):
        super().__init__(dim)
        try:
            import faiss  # noqa: F401
        except ImportError as e:
            raise ImportError("the faiss backend needs faiss-cpu: pip install 'lmseg[faiss]'") from e
        if kind not in ("flat", "ivf", "hnsw"):
            raise ValueError(f"kind must be 'flat', 'ivf' or 'hnsw', got {kind!r}.")
        self.kind, self.nlist, self.nprobe, self.hnsw_m, self.ef_search = kind, nlist, nprobe, hnsw_m, ef_search
        self.index = None

    def _build(self, first: np.ndarray):
        import faiss

        if self.kind == "flat":
            return faiss.IndexFlatIP(self.dim)
        if self.kind == "hnsw":
            return faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        nlist = self.nlist or max(1, min(int(4 * np.sqrt(len(first))), len(first) // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        if len(first) > self.TRAIN_PER_LIST * nlist:  # k-means on a fixed random sample: minutes saved at 1M
            first = first[np.random.default_rng(0).choice(len(first), self.TRAIN_PER_LIST * nlist, replace=False)]
        index.train(first)
        self.nlist = nlist
        return index

    def _add(self, embeddings: torch.Tensor) -> None:
        data = np.ascontiguousarray(embeddings.numpy(), dtype=np.float32)
        if self.index is None:
            self.index = self._build(data)
            self.set_search()
        self.index.add(data)

    def set_search(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Set the search breadth (IVF lists visited, HNSW candidate list), given values or the stored ones, on
        the built index; no rebuild. Wider finds more of the exact top-k at more time per query."""
        for name, value in (("nprobe", nprobe), ("ef_search", ef_search)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive, got {value}.")
        self.nprobe, self.ef_search = nprobe or self.nprobe, ef_search or self.ef_search
        if self.index is not None and self.kind == "ivf":
            self.index.nprobe = min(self.nprobe, self.nlist or self.nprobe)
        if self.index is not None and self.kind == "hnsw":
            self.index.hnsw.efSearch = self.ef_search

    def _search(self, queries, k, excluded):
        if self.index is None:
            return _pad(torch.zeros(queries.shape[0], 0), torch.zeros(queries.shape[0], 0, dtype=torch.long), k)
        data = np.ascontiguousarray(queries.numpy(), dtype=np.float32)
        extra = max((len(r) for r in excluded), default=0)
        fetch = min(k + extra, len(self))
        scores, indices = self.index.search(data, fetch)
        out_s, out_i = [], []
        for q, rows in enumerate(excluded):
            banned = set(rows)
            keep = [(s, i) for s, i in zip(scores[q], indices[q], strict=True) if i >= 0 and i not in banned][:k]
            keep += [(float("-inf"), -1)] * (k - len(keep))
            out_s.append([s for s, _ in keep])
            out_i.append([i for _, i in keep])
        return torch.tensor(out_s, dtype=torch.float32), torch.tensor(out_i, dtype=torch.long)

    def _state(self) -> dict:
        import faiss

        blob = faiss.serialize_index(self.index) if self.index is not None else np.zeros(0, np.uint8)
        params = {"kind": self.kind, "nlist": self.nlist, "nprobe": self.nprobe, "hnsw_m": self.hnsw_m}
        return {
            "faiss_index": torch.from_numpy(np.asarray(blob).copy()),
            "params": {**params, "ef_search": self.ef_search},
        }

    def _load_state(self, state: dict) -> None:
        import faiss

        blob = state["faiss_index"].numpy()
        self.index = faiss.deserialize_index(blob) if blob.size else None
        size, dim = (self.index.ntotal, self.index.d) if self.index is not None else (0, self.dim)
        if (size, dim) != (len(self.ids), self.dim):
            raise ValueError(f"faiss index holds {size} vectors of dim {dim}, expected {len(self.ids)} of {self.dim}")
        self.set_search()

    def memory_bytes(self) -> int:
        import faiss

        return int(faiss.serialize_index(self.index).size) if self.index is not None else 0


def create_index(dim: int, backend: str = "torch", **kwargs) -> RetrievalIndex:
    """``torch`` (exact) or ``faiss`` / ``faiss-flat`` / ``faiss-ivf`` / ``faiss-hnsw``; kwargs go to the class."""
    if backend == "torch":
        return TorchIndex(dim, **kwargs)
    if backend in ("faiss", "faiss-flat", "faiss-ivf", "faiss-hnsw"):
        kind = backend.split("-", 1)[1] if "-" in backend else kwargs.pop("kind", "flat")
        return FaissIndex(dim, kind=kind, **kwargs)
    raise ValueError(f"unknown index backend {backend!r}: use 'torch', 'faiss-flat', 'faiss-ivf' or 'faiss-hnsw'.")


def load_index(
    path: str | Path, retriever_fingerprint: str, gallery_ids: Sequence[str] | None = None
) -> RetrievalIndex:
    """Load a saved index, refusing it when it was built by another retriever or over another gallery.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``{path}: ...`` when the file is not a readable index (truncated, corrupt, not written by
            :meth:`RetrievalIndex.save`) or is inconsistent (ids, case ids and embeddings of different lengths).
        StaleIndexError: the fingerprint or the gallery ids differ; the message says which, and to rebuild.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no retrieval index at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises OSError, EOFError, RuntimeError or UnpicklingError for a torn file
        reason = (str(e).splitlines() or [""])[0]
        raise ValueError(f"{path}: not a readable retrieval index ({type(e).__name__}: {reason}); rebuild it.") from e
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a retrieval index (holds a {type(state).__name__}); rebuild it.")
    if state.get("format") != FORMAT_VERSION:
        raise StaleIndexError(f"{path}: index format {state.get('format')} is not {FORMAT_VERSION}; rebuild it.")
    missing = sorted(_STATE_KEYS - set(state))
    if missing:
        raise ValueError(f"{path}: not a retrieval index (missing {missing}); rebuild it.")
    if state["retriever_fingerprint"] != str(retriever_fingerprint):
        raise StaleIndexError(
            f"{path} was built by retriever {state['retriever_fingerprint']} but the current retriever is "
            f"{retriever_fingerprint}: rebuild the index from the current retriever."
        )
    if gallery_ids is not None and list(map(str, gallery_ids)) != state["ids"]:
        raise StaleIndexError(
            f"{path} indexes a different gallery ({len(state['ids'])} items) than the one given "
            f"({len(gallery_ids)} items): rebuild the index."
        )
    ids, case_ids = list(state["ids"]), list(state["case_ids"])
    if len(case_ids) != len(ids) or len(set(ids)) != len(ids):
        raise ValueError(
            f"{path}: inconsistent retrieval index ({len(ids)} ids, {len(set(ids))} distinct, {len(case_ids)} "
            "case ids); rebuild it."
        )
    try:
        if state["backend"] == "torch":
            index: RetrievalIndex = TorchIndex(state["dim"])
        else:
            index = FaissIndex(state["dim"], **state["params"])
        index.ids, index.case_ids = ids, case_ids
        index._row_of = {item: row for row, item in enumerate(index.ids)}
        index._load_state(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path}: inconsistent retrieval index ({type(e).__name__}: {e}); rebuild it.") from e
    return index


def rebuild_command(bundle_root: str | Path) -> str:
    """The command that re-embeds a bundle's gallery into a new index (``lmseg jras-bank``)."""
    return f"lmseg jras-bank rebuild --bundle_root {bundle_root}"
