"""Retrieval index backends: build time, ms per query at batch 1 and batch 64, memory, and recall@k of each backend
against exact search (same run, same data), on three kinds of embeddings of dim 128 (default):

- ``clustered`` (default): a Gaussian mixture (``n_clusters`` unit-norm centres, ``spread`` noise per unit of
  norm), queries new draws from the same mixture, as real embeddings of similar slices group;
- ``gaussian``: i.i.d. Gaussian vectors, queries gallery items plus noise: no structure, the worst case for
  approximate search;
- ``--index <run>/models/index.pt``: the embeddings a trained J-RAS retriever gave its gallery (the cases of
  ``n_query_cases`` patients become the queries and leave the gallery).

The exact torch index is compared with the memory-bandwidth bound of this machine: the bytes it scans per query
(its bfloat16 copy of the gallery; at batch 64 one scan is shared by the 64 queries) divided by the measured
copy bandwidth (STREAM convention: bytes read + written per second). ``--sweep`` adds the FAISS
search-breadth settings (IVF ``nprobe``, HNSW ``ef_search``) without rebuilding, which is how the defaults of
``FaissIndex`` were chosen (J-RAS docs)::

    python benchmarks/retrieval_index.py
    python benchmarks/retrieval_index.py --data gaussian
    python benchmarks/retrieval_index.py --sizes "[1000000]" --sweep
    python benchmarks/retrieval_index.py --index runs/jras/models/index.pt --sizes "[0]"
"""

from __future__ import annotations

import time

import fire
import torch

from lmseg_components.retrieval import FaissIndex, create_index

SWEEP = {"faiss-ivf": ("nprobe", (8, 16, 32, 64, 128)), "faiss-hnsw": ("ef_search", (32, 64, 128, 256, 512))}


def clustered(
    n: int, n_queries: int, dim: int, g: torch.Generator, n_clusters: int = 1000, spread: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """(gallery (n, dim), queries (n_queries, dim)) drawn from one Gaussian mixture with unit-norm centres; each
    point is its centre plus ``spread`` times a noise vector of expected norm 1."""
    centres = torch.nn.functional.normalize(torch.randn(n_clusters, dim, generator=g), dim=1)

    def draw(m: int) -> torch.Tensor:
        members = torch.randint(0, n_clusters, (m,), generator=g)
        return centres[members] + spread * torch.randn(m, dim, generator=g) / dim**0.5

    return draw(n), draw(n_queries)


def gaussian(n: int, n_queries: int, dim: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(gallery, queries): i.i.d. Gaussian gallery; queries are gallery items plus noise of half their scale."""
    gallery = torch.randn(n, dim, generator=g)
    queries = gallery[torch.randint(0, n, (n_queries,), generator=g)] + 0.5 * torch.randn(n_queries, dim, generator=g)
    return gallery, queries


def trained(path: str, n_query_cases: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(gallery, queries) from a saved torch index: the slices of ``n_query_cases`` random cases are the queries."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("backend") != "torch":
        raise SystemExit(
            f"{path}: need an index of the torch backend (it holds the embeddings), got {state['backend']}"
        )
    cases = sorted(set(state["case_ids"]))
    chosen = {cases[i] for i in torch.randperm(len(cases), generator=g)[:n_query_cases].tolist()}
    is_query = torch.tensor([c in chosen for c in state["case_ids"]])
    return state["embeddings"][~is_query], state["embeddings"][is_query]


def copy_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """Best of ``repeats`` copies of a ``megabytes`` buffer, in bytes read + written per second."""
    src = torch.ones(megabytes * 2**20 // 4)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * 4 / best


def _ms_per_query(index, queries: torch.Tensor, k: int, batch: int) -> float:
    index.search(queries[:batch], k)  # warm-up: first touch of freshly built memory
    start = time.perf_counter()
    for i in range(0, queries.shape[0], batch):
        index.search(queries[i : i + batch], k)
    return (time.perf_counter() - start) / queries.shape[0] * 1e3


def _recall(found: torch.Tensor, exact: torch.Tensor) -> float:
    return sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, exact, strict=True)) / exact.numel()


def _setting(index) -> str:
    if isinstance(index, FaissIndex) and index.kind == "ivf":
        return f"nprobe={index.nprobe}"
    if isinstance(index, FaissIndex) and index.kind == "hnsw":
        return f"ef_search={index.ef_search}"
    return "exact"


def main(
    sizes=(10_000, 100_000),
    data: str = "clustered",
    backends: str = "torch,faiss-flat,faiss-ivf,faiss-hnsw",
    dim: int = 128,
    k: int = 10,
    n_queries: int = 128,
    n_clusters: int = 1000,
    spread: float = 0.5,
    index: str | None = None,
    n_query_cases: int = 10,
    sweep: bool = False,
    seed: int = 0,
):
    """Print one row per size, backend (and, with ``sweep``, FAISS search setting); ``backends`` is
    comma-separated. Recall is against exact torch search. ``index`` (a J-RAS ``models/index.pt``) replaces the
    generated data (``sizes`` is then ignored)."""
    backends = backends.split(",") if isinstance(backends, str) else list(backends)
    if data not in ("clustered", "gaussian"):
        raise SystemExit(f"--data must be 'clustered' or 'gaussian', got {data!r}")
    g = torch.Generator().manual_seed(seed)
    bandwidth = copy_bandwidth()
    loaded = trained(index, n_query_cases, g) if index else None
    dim = loaded[0].shape[1] if loaded else dim
    print(f"dim={dim} k={k} queries={n_queries} threads={torch.get_num_threads()} copy={bandwidth / 1e9:.1f} GB/s")
    header = f"{'N':>9} {'data':<9} {'backend':<11} {'setting':<14} {'build s':>8} {'ms/q b=1':>9} {'ms/q b=64':>10}"
    print(f"{header} {'MiB':>8} {'recall@k':>9} {'bound b=1':>10} {'bound b=64':>11}")
    for n in [0] if loaded else sizes:
        if loaded:
            gallery, queries = loaded
            n, kind = gallery.shape[0], "trained"
        elif data == "clustered":
            gallery, queries = clustered(n, n_queries, dim, g, n_clusters, spread)
            kind = data
        else:
            gallery, queries = gaussian(n, n_queries, dim, g)
            kind = data
        exact = create_index(gallery.shape[1], "torch")
        exact.add(gallery, [str(i) for i in range(n)])
        truth = exact.search(queries, k).indices
        for backend in backends:
            start = time.perf_counter()
            built = create_index(gallery.shape[1], backend)
            built.add(gallery, [str(i) for i in range(n)])
            build = time.perf_counter() - start
            name, values = SWEEP.get(backend, (None, (None,))) if sweep else (None, (None,))
            for value in values:
                if name is not None:
                    built.set_search(**{name: value})
                setting = f"{name}={value}" if name else _setting(built)
                single = _ms_per_query(built, queries[:32], k, 1)
                batched = _ms_per_query(built, queries, k, 64)
                row = f"{n:>9} {kind:<9} {backend:<11} {setting:<14} {build:>8.2f} {single:>9.3f} {batched:>10.3f}"
                bound = ""
                if backend == "torch":  # bytes of the scan copy per query / copy bandwidth, in ms (b=64: shared)
                    b1 = gallery.numel() * torch.finfo(built.scan_dtype).bits / 8 / bandwidth * 1e3
                    bound = f"{b1:>10.3f} {b1 / 64:>11.3f}"
                recall = _recall(built.search(queries, k).indices, truth)
                print(f"{row} {built.memory_bytes() / 2**20:>8.1f} {recall:>9.3f} {bound}", flush=True)


if __name__ == "__main__":
    fire.Fire(main)
