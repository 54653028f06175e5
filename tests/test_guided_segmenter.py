import pytest
import torch

from lmseg_components.networks import GuidedSegmenter, blend_guides


def test_multiclass_guides_blend_one_hot_not_averaged():
    labels = torch.zeros(1, 2, 1, 2, 2, dtype=torch.long)
    labels[0, 0, 0, 0, 0] = 1  # guide 0 says class 1
    labels[0, 1, 0, 0, 0] = 3  # guide 1 says class 3
    images = torch.rand(1, 2, 1, 2, 2)
    image, mask = blend_guides(torch.tensor([[0.5, 0.5]]), images, labels, num_classes=4)
    assert torch.allclose(mask[0, :, 0, 0], torch.tensor([0.0, 0.5, 0.0, 0.5]))  # never class 2
    assert torch.allclose(mask.sum(1), torch.ones(1, 2, 2))
    assert torch.allclose(image, images.mean(1))


def test_softmax_temperature_weights_the_most_similar_guide():
    labels = torch.stack([torch.full((1, 2, 2), 1), torch.full((1, 2, 2), 2)])[None]
    _, mask = blend_guides(torch.tensor([[0.9, 0.1]]), torch.rand(1, 2, 1, 2, 2), labels, 3, temperature=0.1)
    expected = torch.softmax(torch.tensor([9.0, 1.0]), 0)
    assert torch.allclose(mask[0, 1:, 0, 0], expected, atol=1e-6)


@pytest.mark.parametrize("backbone", ["unet", "segformer"])
def test_backbones_with_and_without_retrieval(backbone):
    image = torch.rand(2, 1, 32, 32)
    labels = torch.randint(0, 4, (2, 2, 1, 32, 32))
    guide_image, guide_mask = blend_guides(torch.rand(2, 2), torch.rand(2, 2, 1, 32, 32), labels, 4)
    with_guides = GuidedSegmenter(1, 4, backbone, use_retrieval=True)
    out = with_guides(with_guides.guided_input(image, guide_image, guide_mask))
    assert out.shape == (2, 4, 32, 32)
    out.sum().backward()
    assert all(p.grad is not None for p in with_guides.parameters() if p.requires_grad)
    plain = GuidedSegmenter(1, 4, backbone, use_retrieval=False)
    assert plain(image).shape == (2, 4, 32, 32)
    with pytest.raises(ValueError, match="pass guide_image and guide_mask"):
        with_guides.guided_input(image)
    with pytest.raises(ValueError, match="expected 6 input channels"):
        with_guides(image)


def test_bad_arguments():
    with pytest.raises(ValueError, match="backbone must be one of"):
        GuidedSegmenter(backbone="sam")
    with pytest.raises(TypeError, match="use_retrieval must be True or False"):
        GuidedSegmenter(use_retrieval="false")  # what "--use_retrieval false" gives: truthy, so refused
    with pytest.raises(ValueError, match="must match similarities"):
        blend_guides(torch.rand(1, 2), torch.rand(1, 3, 1, 4, 4), torch.zeros(1, 3, 1, 4, 4, dtype=torch.long), 2)
