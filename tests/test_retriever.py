import pytest
import torch
from monai.losses import ContrastiveLoss

from lmseg_components.fingerprint import weights_fingerprint
from lmseg_components.retrieval import Retriever, create_index


def test_embeddings_are_unit_norm_and_shaped():
    net = Retriever(in_channels=1, backbone="resnet10", embed_dim=32, widen_factor=0.25)
    z = net(torch.rand(3, 1, 48, 48))
    assert z.shape == (3, 32)
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)


def test_contrastive_training_makes_positives_retrievable():
    """A few NT-Xent steps on two noisy views of 8 images: each view then retrieves its own image."""
    torch.manual_seed(0)
    images = torch.rand(8, 1, 32, 32)
    net = Retriever(in_channels=1, embed_dim=16, widen_factor=0.25)
    loss_fn = ContrastiveLoss(temperature=0.2)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    fingerprint = weights_fingerprint(net)
    for _ in range(40):
        a = images + 0.05 * torch.randn_like(images)
        b = images + 0.05 * torch.randn_like(images)
        optimizer.zero_grad()
        loss = loss_fn(net(a), net(b))
        loss.backward()
        optimizer.step()
    assert weights_fingerprint(net) != fingerprint  # a stale index would now be refused
    net.eval()
    with torch.no_grad():
        gallery = net(images)
        queries = net(images + 0.05 * torch.randn_like(images))
    index = create_index(16, "torch")
    index.add(gallery, [f"img{i}" for i in range(8)])
    hits = [row[0] == f"img{i}" for i, row in enumerate(index.search(queries, 1).ids)]
    assert sum(hits) >= 7


def test_bad_backbone():
    with pytest.raises(ValueError, match="backbone must be one of"):
        Retriever(backbone="vgg")
