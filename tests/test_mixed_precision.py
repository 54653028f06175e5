"""Mixed precision: the bundles train and evaluate under autocast on CUDA (``amp``). MONAI's trainer only autocasts
on CUDA, so these tests run the same networks and losses under CPU autocast (bfloat16): the losses stay float32
and finite, every trainable parameter gets a finite gradient, and the probabilities match float32's."""

import pytest
import torch
import torch.nn.functional as F

from lmseg_components.losses import MSISLoss
from lmseg_components.networks import GuidedSegmenter, TGCNet, TIRNet

TOLERANCE = 0.05  # largest probability difference allowed between bfloat16 autocast and float32


def _tirnet():
    return TIRNet(in_channels=1, width=8, text_dim=32), (torch.randn(2, 12, 32),)


def _tgcnet():
    net = TGCNet(text_dim=24, clip_model="ViT-B-16-quickgelu", clip_image_size=64, dim=32, cnn_width=8, n_heads=4)
    return net, (torch.randn(2, 6, 24), torch.randn(2, 6, 24))


def _guided():
    return GuidedSegmenter(1, 4, "unet", use_retrieval=False), ()


def _loss(net, out, target):
    if isinstance(net, TIRNet):
        return MSISLoss()(out, target)
    return F.binary_cross_entropy_with_logits(out.float(), target.expand_as(out))


@pytest.mark.parametrize("build", [_tirnet, _tgcnet, _guided], ids=["tirnet", "tgcnet", "jras_segmenter"])
def test_autocast_training_step_and_inference_match_float32(build):
    torch.manual_seed(0)
    net, extra = build()
    image = torch.rand(2, 1, 64, 64)
    target = (image > 0.6).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = _loss(net, net(image, *extra), target)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    net.eval()
    with torch.no_grad():
        reference = torch.sigmoid(net(image, *extra).float())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = torch.sigmoid(net(image, *extra).float())
    assert (mixed - reference).abs().max() <= TOLERANCE


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_frozen_tower_matches_float32_and_trains_the_rest(dtype):
    torch.manual_seed(0)
    reference, extra = _tgcnet()
    net = TGCNet(
        text_dim=24,
        clip_model="ViT-B-16-quickgelu",
        clip_image_size=64,
        dim=32,
        cnn_width=8,
        n_heads=4,
        clip_dtype=dtype,
    )
    net.load_state_dict(reference.state_dict())
    assert {p.dtype for p in net.sse.vit.parameters()} == {getattr(torch, dtype)}
    assert {p.dtype for p in net.parameters() if p.requires_grad} == {torch.float32}
    image = torch.rand(2, 1, 64, 64)
    net.eval(), reference.eval()
    with torch.no_grad():
        grids = net.sse.vit(image)
        assert {g.dtype for g in grids} == {torch.float32}
        assert (torch.sigmoid(net(image, *extra)) - torch.sigmoid(reference(image, *extra))).abs().max() <= TOLERANCE
    net.train()
    _loss(net, net(image, *extra), (image > 0.6).float()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters() if p.requires_grad)
    assert all(p.grad is None for p in net.sse.vit.parameters())


def test_half_precision_tower_refuses_fine_tuning():
    with pytest.raises(ValueError, match="frozen tower; fine-tuning .* set clip_dtype to null"):
        TGCNet(text_dim=24, clip_image_size=64, dim=32, clip_trainable_blocks=2, clip_dtype="float16")
    with pytest.raises(ValueError, match="dtype must be one of"):
        TGCNet(text_dim=24, clip_image_size=64, dim=32, clip_dtype="float64")
