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

    def save(self, path: str | Path, retriever_fingerprint: str) -> None:
        """Write the index atomically (write to a temporary file, then rename) with its gallery ids, case ids
        and the fingerprint of the retriever that made the embeddings."""
        state = {
            "format": FORMAT_VERSION,
            "backend": self.backend,
            "dim": self.dim,
            "ids": self.ids,
            "case_ids": self.case_ids,
            "retriever_fingerprint": str(retriever_fingerprint),
            **self._state(),
        }
        atomic_save(state, path)

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
    """Exact cosine top-k by matrix product over the gallery, in chunks of ``chunk`` gallery rows.

    Scoring one query against a large gallery is bound by memory bandwidth, so small query batches (fewer than
    ``prefilter_below`` queries) are first scored against a float16 copy of the gallery, and every item whose
    float16 score is within ``PREFILTER_MARGIN`` of the k-th best is rescored exactly in float32. The float16 score
    of unit vectors is off by at most about 1.5e-3 (input rounding 2 x 2^-11 plus output rounding 2^-11), well
    inside the margin, so the result is the exact float32 top-k; larger batches use the float32 product directly.

    Args:
        dim: embedding width.
        chunk: gallery rows scored at once (bounds memory for large galleries).
        prefilter_below: query batches smaller than this use the float16 prefilter (0 disables it).
    """

    backend = "torch"
    PREFILTER_MARGIN = 4e-3

    def __init__(self, dim: int, chunk: int = 262144, prefilter_below: int = 8):
        super().__init__(dim)
        self.chunk, self.prefilter_below = chunk, prefilter_below
        self.embeddings = torch.empty(0, dim)
        self._half = torch.empty(0, dim, dtype=torch.float16)

    def _add(self, embeddings: torch.Tensor) -> None:
        self.embeddings = torch.cat([self.embeddings, embeddings.contiguous()], 0)
        self._half = torch.cat([self._half, embeddings.half()], 0)

    def _scores(self, queries: torch.Tensor, start: int, k: int, excluded: list[list[int]]) -> torch.Tensor:
        """Float32 cosine scores (Q, chunk) of one gallery chunk; excluded rows and, with the prefilter, rows
        that cannot reach the top-k are ``-inf``."""
        gallery = self.embeddings[start : start + self.chunk]
        prefilter = queries.shape[0] < self.prefilter_below
        sims = (queries.half() @ self._half[start : start + self.chunk].T).float() if prefilter else queries @ gallery.T
        for q, rows in enumerate(excluded):
            local = [r - start for r in rows if start <= r < start + sims.shape[1]]
            if local:
                sims[q, local] = float("-inf")
        if not prefilter:
            return sims
        kth = sims.topk(min(k, sims.shape[1]), dim=1).values[:, -1:]
        q_rows, g_rows = torch.nonzero((sims >= kth - self.PREFILTER_MARGIN) & (sims > float("-inf")), as_tuple=True)
        exact = torch.full_like(sims, float("-inf"))
        exact[q_rows, g_rows] = (queries[q_rows] * gallery[g_rows]).sum(1)
        return exact

    @torch.no_grad()
    def _search(self, queries, k, excluded):
        n = self.embeddings.shape[0]
        best_s = torch.full((queries.shape[0], 0), float("-inf"))
        best_i = torch.zeros((queries.shape[0], 0), dtype=torch.long)
        for start in range(0, n, self.chunk):
            sims = self._scores(queries, start, k, excluded)
            top = min(k, sims.shape[1])
            s, i = sims.topk(top, dim=1)
            best_s, order = torch.cat([best_s, s], 1).topk(min(k, best_s.shape[1] + top), dim=1)
            best_i = torch.cat([best_i, i + start], 1).gather(1, order)
        best_i = torch.where(torch.isfinite(best_s), best_i, torch.full_like(best_i, -1))
        return _pad(best_s, best_i, k)

    def _state(self) -> dict:
        return {"embeddings": self.embeddings}

    def _load_state(self, state: dict) -> None:
        embeddings = state["embeddings"]
        expected = (len(self.ids), self.dim)
        if not isinstance(embeddings, torch.Tensor) or tuple(embeddings.shape) != expected:
            shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
            raise ValueError(f"embeddings are {shape}, expected {expected} (one row per id)")
        self.embeddings = embeddings.float()
        self._half = self.embeddings.half()

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.embeddings, self._half))


class FaissIndex(RetrievalIndex):
    """FAISS inner-product index over normalised embeddings.

    Args:
        dim: embedding width.
        kind: ``flat`` (exact), ``ivf`` (inverted lists; trained on the first ``add``) or ``hnsw`` (graph).
        nlist: IVF lists (default: about 4 sqrt(N) at the first add, at most N / 39).
        nprobe: IVF lists visited per query.
        hnsw_m: HNSW neighbours per node.
        ef_search: HNSW search breadth.
    """

    backend = "faiss"

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        nlist: int | None = None,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 128,
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
