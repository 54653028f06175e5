"""The oracle guide source of RetrievalAugmentedSegmenter: guides chosen by the query's own mask (benchmark upper
bound), never from the query's own slice or (with exclude_same_case) its patient."""

import pytest
import torch

from lmseg_components.networks import GuidedSegmenter
from lmseg_components.retrieval import RetrievalAugmentedSegmenter, Retriever


def _oracle_network(k: int = 1, exclude_same_case: bool = True) -> tuple[RetrievalAugmentedSegmenter, torch.Tensor]:
    """Gallery of 4 slices (32 x 32 px): p1_z0 carries the query's mask, p1_z1 the same with one more LV row
    (Dice 0.8), p2's is the query's LV block shifted by one column (Dice 0.5), p3's an RV block elsewhere (Dice 0).
    Returns the network and the query."""
    query = torch.zeros(1, 1, 32, 32, dtype=torch.long)
    query[..., :2, :2] = 3
    taller = query.clone()
    taller[..., 2, :2] = 3
    shifted = torch.zeros_like(query)
    shifted[..., :2, 1:3] = 3
    other = torch.zeros_like(query)
    other[..., 4:8, 4:8] = 1
    net = RetrievalAugmentedSegmenter(
        Retriever(1, embed_dim=8, hidden_dim=8, widen_factor=0.25),
        GuidedSegmenter(1, 4, "unet", features=(4, 4, 32, 32, 8, 4)),
        k=k,
        exclude_same_case=exclude_same_case,
        guide_source="oracle",
    )
    gallery_labels = torch.cat([query, taller, shifted, other])
    net.set_gallery(
        torch.rand(4, 1, 32, 32), gallery_labels, ["p1_z0", "p1_z1", "p2_z0", "p3_z0"], ["p1"] * 2 + ["p2", "p3"]
    )
    return net, query


def test_oracle_guides_are_the_best_matching_masks_of_other_patients():
    net, query = _oracle_network(k=2)
    net.eval()
    with torch.no_grad():
        out = net(torch.rand(1, 1, 32, 32), exclude_ids=["p1_z0"], exclude_cases=["p1"], oracle_labels=query)
    assert out.shape == (1, 4, 32, 32)
    assert net.last_indices.tolist() == [[2, 3]]  # p1's identical masks are never guides of a p1 query
    assert torch.allclose(net.last_scores, torch.tensor([[0.5, 0.0]]))


def test_oracle_without_case_exclusion_still_skips_the_query_itself():
    net, query = _oracle_network(k=1, exclude_same_case=False)
    net.eval()
    with torch.no_grad():
        net(torch.rand(1, 1, 32, 32), exclude_ids=["p1_z0"], exclude_cases=["p1"], oracle_labels=query)
    assert net.last_indices.tolist() == [[1]]  # the same patient's other slice, not p1_z0 itself
    assert torch.allclose(net.last_scores, torch.tensor([[0.8]]))


def test_oracle_accepts_one_hot_labels_and_needs_labels():
    net, query = _oracle_network(k=1)
    net.eval()
    one_hot = torch.nn.functional.one_hot(query[:, 0], 4).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        net(torch.rand(1, 1, 32, 32), exclude_ids=["q"], exclude_cases=["p1"], oracle_labels=one_hot)
    assert net.last_indices.tolist() == [[2]]
    with pytest.raises(ValueError, match="oracle_labels"):
        net(torch.rand(1, 1, 32, 32), exclude_ids=["q"], exclude_cases=["p1"])
    with pytest.raises(ValueError, match="guide_source"):
        RetrievalAugmentedSegmenter(net.retriever, net.segmenter, guide_source="labels")
