"""Retrieval index backends at 10k / 100k random embeddings of dim 128 (default): build time, ms per query at
batch 1 and batch 64, memory, and recall@k of each backend against exact search (same run, same data).
The 1M rows of the J-RAS docs leave out the HNSW build, which was never finished on 2 CPU cores:

    python benchmarks/retrieval_index.py --k 10
    python benchmarks/retrieval_index.py --sizes "[1000000]" --backends torch,faiss-flat,faiss-ivf
"""

from __future__ import annotations

import time

import fire
import torch

from lmseg_components.retrieval import create_index


def _time_search(index, queries: torch.Tensor, k: int, batch: int, repeats: int) -> float:
    index.search(queries[:batch], k)  # warm-up: first touch of freshly built memory
    start = time.perf_counter()
    done = 0
    for _ in range(repeats):
        for i in range(0, queries.shape[0], batch):
            index.search(queries[i : i + batch], k)
            done += min(batch, queries.shape[0] - i)
    return (time.perf_counter() - start) / done * 1e3


def main(
    sizes=(10_000, 100_000),
    backends="torch,faiss-flat,faiss-ivf,faiss-hnsw",
    dim: int = 128,
    k: int = 10,
    n_queries: int = 128,
    seed: int = 0,
):
    """Print one row per size and backend; ``backends`` is comma-separated (recall is against the first one,
    so keep ``torch`` or ``faiss-flat`` first)."""
    backends = backends.split(",") if isinstance(backends, str) else list(backends)
    g = torch.Generator().manual_seed(seed)
    print(f"dim={dim} k={k} queries={n_queries} threads={torch.get_num_threads()}")
    print(f"{'N':>9} {'backend':<11} {'build s':>8} {'ms/q b=1':>9} {'ms/q b=64':>10} {'MiB':>8} {'recall@k':>9}")
    for n in sizes:
        gallery = torch.randn(n, dim, generator=g)
        ids = [str(i) for i in range(n)]
        queries = gallery[torch.randint(0, n, (n_queries,), generator=g)] + 0.5 * torch.randn(
            n_queries, dim, generator=g
        )
        exact = None
        for backend in backends:
            start = time.perf_counter()
            index = create_index(dim, backend)
            index.add(gallery, ids)
            build = time.perf_counter() - start
            single = _time_search(index, queries[:32], k, 1, 1)
            batched = _time_search(index, queries, k, 64, 1)
            found = index.search(queries, k).indices
            if exact is None:
                exact = found
            recall = (
                sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, exact, strict=True)) / exact.numel()
            )
            print(
                f"{n:>9} {backend:<11} {build:>8.2f} {single:>9.3f} {batched:>10.3f} "
                f"{index.memory_bytes() / 2**20:>8.1f} {recall:>9.3f}",
                flush=True,
            )


if __name__ == "__main__":
    fire.Fire(main)
