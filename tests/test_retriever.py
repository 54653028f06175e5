import pytest
import torch
from monai.losses import ContrastiveLoss

from lmseg_components.fingerprint import weights_fingerprint
from lmseg_components.retrieval import MaskEmbeddingRetriever, Retriever, create_index


def test_embeddings_are_unit_norm_and_shaped():
    net = Retriever(in_channels=1, backbone="resnet10", embed_dim=32, widen_factor=0.25)
    z = net(torch.rand(3, 1, 48, 48))
    assert z.shape == (3, 32)
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)


def test_grid_pooling_keeps_where_features_are():
    """pool_grid=2: the head sees the trunk's last feature map averaged over each of 2 x 2 cells, not over the
    whole image, so an embedding can tell where the anatomy lies."""
    torch.manual_seed(0)
    net = Retriever(in_channels=1, embed_dim=8, widen_factor=0.25, pool_grid=2).eval()
    trunk = net.trunk
    image = torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        x = trunk.maxpool(trunk.act(trunk.bn1(trunk.conv1(image))))
        fmap = trunk.layer4(trunk.layer3(trunk.layer2(trunk.layer1(x))))  # (2, F, 8, 8)
        cells = fmap.unflatten(2, (2, -1)).unflatten(4, (2, -1)).mean((3, 5))  # (2, F, 2, 2) cell means
        assert torch.allclose(trunk(image), cells.flatten(1), atol=1e-6)
    assert net.head[0].in_features == 4 * fmap.shape[1]
    with pytest.raises(ValueError, match="pool_grid"):
        Retriever(pool_grid=0)


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


def test_mask_embedding_is_the_pooled_foreground_of_the_predicted_masks():
    net = MaskEmbeddingRetriever(1, num_classes=3, channels=(4, 8), strides=(2,), num_res_units=0, pool_grid=2)
    images = torch.rand(3, 1, 8, 8)
    assert net.segment(images).shape == (3, 3, 8, 8)
    z = net(images)
    assert z.shape == (3, 2 * 2 * 2) == (3, net.embed_dim) and torch.allclose(z.norm(dim=1), torch.ones(3))

    left, top = torch.zeros(4, 4), torch.zeros(4, 4)
    left[:, :2], top[:2] = 1, 1
    # confident logits: class 1 where the mask is, background elsewhere, class 2 nowhere
    logits = torch.stack([torch.stack([30 * (1 - m), 30 * m, torch.zeros(4, 4) - 30]) for m in (left, top)])
    a, b = net.embed(logits)
    s = 0.5**0.5  # pooled class-1 cells (row-major): left half [1, 0, 1, 0], top half [1, 1, 0, 0]; class 2 zero
    assert torch.allclose(a, torch.tensor([s, 0, s, 0, 0, 0, 0, 0]), atol=1e-6)
    assert torch.allclose(b, torch.tensor([s, s, 0, 0, 0, 0, 0, 0]), atol=1e-6)
    assert torch.isclose(a @ b, torch.tensor(0.5))  # the masks share one cell of two


def test_mask_embedding_retriever_bad_arguments():
    with pytest.raises(ValueError, match="foreground"):
        MaskEmbeddingRetriever(num_classes=1)
    with pytest.raises(ValueError, match="strides"):
        MaskEmbeddingRetriever(channels=(4, 8, 16), strides=(2,))
    with pytest.raises(ValueError, match="pool_grid"):
        MaskEmbeddingRetriever(pool_grid=0)
