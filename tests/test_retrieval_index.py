import pytest
import torch

from lmseg_components.fingerprint import weights_fingerprint
from lmseg_components.retrieval import StaleIndexError, TorchIndex, create_index, load_index

BACKENDS = ["torch", "faiss-flat", "faiss-hnsw", "faiss-ivf"]


def _gallery(n=200, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(n, dim, generator=g)
    ids = [f"case{i // 4:03d}_slice{i % 4}" for i in range(n)]
    cases = [f"case{i // 4:03d}" for i in range(n)]
    return embeddings, ids, cases


@pytest.mark.parametrize("backend", BACKENDS)
def test_query_never_retrieves_itself_nor_its_case(backend):
    embeddings, ids, cases = _gallery()
    index = create_index(16, backend)
    index.add(embeddings, ids, cases)
    plain = index.search(embeddings[:20], k=3)
    if backend != "faiss-ivf":  # approximate IVF may miss; the others must find the item itself first
        assert [row[0] for row in plain.ids] == ids[:20]
    no_self = index.search(embeddings[:20], k=3, exclude_ids=ids[:20])
    assert all(ids[q] not in row for q, row in enumerate(no_self.ids))
    no_case = index.search(embeddings[:20], k=3, exclude_ids=ids[:20], exclude_cases=cases[:20])
    for q, row in enumerate(no_case.ids):
        assert all(item is not None and not item.startswith(cases[q]) for item in row)
    assert torch.all(no_case.scores[:, :-1] >= no_case.scores[:, 1:])


def test_exact_matches_brute_force():
    embeddings, ids, cases = _gallery(n=1000)
    index = create_index(16, "torch", chunk=128)  # several chunks
    index.add(embeddings, ids, cases)
    queries = torch.randn(7, 16)
    result = index.search(queries, k=5)
    normed = torch.nn.functional.normalize
    expected = (normed(queries, dim=1) @ normed(embeddings, dim=1).T).topk(5, dim=1)
    assert torch.equal(result.indices, expected.indices)
    assert torch.allclose(result.scores, expected.values, atol=1e-6)


def test_fewer_admissible_items_than_k_are_padded():
    index = create_index(4, "torch")
    index.add(torch.eye(4)[:2], ["a", "b"], ["c1", "c1"])
    result = index.search(torch.eye(4)[:1], k=3, exclude_ids=["a"])
    assert result.ids == [["b", None, None]] and result.indices[0].tolist() == [1, -1, -1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_load_roundtrip_identical(tmp_path, backend):
    embeddings, ids, cases = _gallery()
    retriever = torch.nn.Linear(16, 16)
    fingerprint = weights_fingerprint(retriever)
    index = create_index(16, backend)
    index.add(embeddings, ids, cases)
    path = tmp_path / "index.pt"
    index.save(path, fingerprint)
    assert not list(tmp_path.glob("*.tmp"))  # atomic: no leftovers
    loaded = load_index(path, fingerprint, gallery_ids=ids)
    queries = torch.randn(9, 16)
    a = index.search(queries, 4, exclude_cases=cases[:9])
    b = loaded.search(queries, 4, exclude_cases=cases[:9])
    assert a.ids == b.ids and torch.equal(a.indices, b.indices) and torch.allclose(a.scores, b.scores)


def test_stale_index_is_refused(tmp_path):
    embeddings, ids, cases = _gallery()
    retriever = torch.nn.Linear(16, 16)
    index = create_index(16, "torch")
    index.add(embeddings, ids, cases)
    index.save(tmp_path / "index.pt", weights_fingerprint(retriever))
    original = retriever.weight.detach().clone()
    with torch.no_grad():
        retriever.weight.add_(1e-3)  # one optimisation step later
    with pytest.raises(StaleIndexError, match="rebuild the index from the current retriever"):
        load_index(tmp_path / "index.pt", weights_fingerprint(retriever))
    with torch.no_grad():
        retriever.weight.copy_(original)
    fingerprint = weights_fingerprint(retriever)
    with pytest.raises(StaleIndexError, match="different gallery"):
        load_index(tmp_path / "index.pt", fingerprint, gallery_ids=ids[:-1])
    with pytest.raises(FileNotFoundError):
        load_index(tmp_path / "missing.pt", fingerprint)


def test_bad_input():
    index = create_index(8, "torch")
    with pytest.raises(ValueError, match=r"embeddings must be \(N, 8\)"):
        index.add(torch.zeros(3, 4), ["a", "b", "c"])
    index.add(torch.randn(2, 8), ["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        index.add(torch.randn(1, 8), ["a"])
    with pytest.raises(ValueError, match="one entry per query"):
        index.search(torch.randn(2, 8), 1, exclude_ids=["a"])
    with pytest.raises(ValueError, match="unknown index backend"):
        create_index(8, "annoy")


@pytest.mark.parametrize("scan_dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_low_precision_scan_gives_the_exact_float32_top_k(scan_dtype):
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(20, 32, generator=g)  # clustered: many near-ties around the k-th score
    gallery = centres[torch.randint(0, 20, (5000,), generator=g)] + 0.2 * torch.randn(5000, 32, generator=g)
    ids = [str(i) for i in range(5000)]
    index = TorchIndex(32, chunk=1500, scan_dtype=scan_dtype)  # 4 chunks, the last 500 rows (not whole blocks)
    index.add(gallery, ids)
    queries = gallery[:40] + 0.05 * torch.randn(40, 32, generator=g)
    normed = torch.nn.functional.normalize
    sims = normed(queries, dim=1) @ normed(gallery, dim=1).T
    sims[torch.arange(40), torch.arange(40)] = float("-inf")  # each query excludes its own item
    expected = sims.topk(10, dim=1)
    batched = index.search(queries, 10, exclude_ids=ids[:40])
    assert batched.indices.tolist() == expected.indices.tolist()
    assert torch.allclose(batched.scores, expected.values, atol=1e-6)
    for q in range(40):  # one query: the matrix-vector path
        single = index.search(queries[q : q + 1], 10, exclude_ids=[str(q)])
        assert single.indices.tolist() == expected.indices[q : q + 1].tolist()
    low = (normed(queries, dim=1).to(scan_dtype) @ normed(gallery, dim=1).to(scan_dtype).T).float()
    assert (low - normed(queries, dim=1) @ normed(gallery, dim=1).T).abs().max() <= index.error  # the bound holds


def test_faiss_search_breadth_is_set_without_rebuilding_and_kept_on_reload(tmp_path):
    g = torch.Generator().manual_seed(0)
    gallery = torch.randn(4000, 16, generator=g)
    ids = [str(i) for i in range(4000)]
    queries = gallery[:50] + 0.3 * torch.randn(50, 16, generator=g)
    exact = create_index(16, "torch")
    exact.add(gallery, ids)
    truth = exact.search(queries, 10).indices
    index = create_index(16, "faiss-ivf", nprobe=1)
    index.add(gallery, ids)

    def recall(found):
        return sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, truth, strict=True)) / truth.numel()

    narrow = recall(index.search(queries, 10).indices)
    index.set_search(nprobe=index.nlist)  # every list: exact
    assert narrow < 0.9 and recall(index.search(queries, 10).indices) == 1.0
    index.save(tmp_path / "index.pt", "f")
    assert load_index(tmp_path / "index.pt", "f").index.nprobe == index.nlist
    with pytest.raises(ValueError, match="ef_search must be positive"):
        index.set_search(ef_search=0)
