"""TGC-Net's hybrid pyramid reaches the decoder (``decoder_guidance``) and the ViT fine-tuning ablation
(``clip_trainable_blocks``) trains exactly the blocks it names, at its own learning rate."""

from __future__ import annotations

import pytest
import torch

from lmseg_components.networks import SSE, CLIPImageTower, TGCNet

CLIP = "ViT-B-16-quickgelu"
SMALL = {"text_dim": 24, "clip_model": CLIP, "clip_image_size": 64, "dim": 32, "cnn_width": 8, "n_heads": 4}


def _keep_grad(outputs: dict[str, list[torch.Tensor]], name: str, detach: bool = False):
    """A forward hook that stores a module's output tensors under ``name`` with their gradients kept;
    ``detach`` makes no-grad outputs (the frozen tower's) leaves that require grad."""

    def hook(module, inputs, output):
        tensors = output[0] if isinstance(output, tuple) else output
        if detach:
            tensors = [t.detach().requires_grad_() for t in tensors]
        for t in tensors:
            t.retain_grad()
        outputs[name] = tensors
        return (tensors, *output[1:]) if isinstance(output, tuple) else tensors

    return hook


@pytest.mark.parametrize("guidance", ["hybrid", "cnn"])
def test_fused_levels_reach_the_decoder_only_with_hybrid_guidance(guidance):
    torch.manual_seed(0)
    image, text = torch.rand(1, 1, 64, 64), torch.randn(1, 6, 24)
    # the fused (ViT + CNN, deformable-refined) stride-8 and stride-16 levels themselves
    net = TGCNet(**SMALL, decoder_guidance=guidance)
    seen: dict[str, list[torch.Tensor]] = {}
    net.sse.register_forward_hook(_keep_grad(seen, "pyramid"))
    net(image, text).sum().backward()
    fine, middle, coarse = seen["pyramid"]
    assert coarse.grad is not None and coarse.grad.abs().sum() > 0  # the cost level, calibrated by VLCM
    if guidance == "hybrid":
        assert all(level.grad is not None and level.grad.abs().sum() > 0 for level in (fine, middle))
    else:
        assert fine.grad is None and middle.grad is None
    # without deformable layers, the ViT's stride-8 grid reaches the output through the guidance alone
    net = TGCNet(**SMALL, n_deform_layers=0, decoder_guidance=guidance)
    net.sse.vit.register_forward_hook(_keep_grad(seen, "vit", detach=True))
    net(image, text).sum().backward()
    shallow, _, deep = seen["vit"]
    assert deep.grad is not None and deep.grad.abs().sum() > 0
    if guidance == "hybrid":
        assert shallow.grad is not None and shallow.grad.abs().sum() > 0
    else:  # the concatenated tokens pass it back as zeros
        assert shallow.grad is None or not shallow.grad.any()


def test_guidance_switch_errors():
    with pytest.raises(ValueError, match="guidance must be one of"):
        SSE(None, use_vit=False, guidance="vit")
    with pytest.raises(ValueError, match="use_cnn is False"):
        SSE(CLIPImageTower(CLIP, image_size=64), use_cnn=False, guidance="cnn")


def _trainable_names(tower: CLIPImageTower) -> set[str]:
    return {name for name, p in tower.visual.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("n_blocks", [0, 2, -1])
def test_clip_trainable_blocks_train_exactly_the_last_blocks(n_blocks):
    tower = CLIPImageTower(CLIP, image_size=64, trainable_blocks=n_blocks)
    names = {name for name, _ in tower.visual.named_parameters()}
    if n_blocks == 0:
        expected = set()
    elif n_blocks == 2:
        expected = {n for n in names if n.startswith(("transformer.resblocks.10.", "transformer.resblocks.11."))}
    else:  # everything the tapped grids pass through; ln_post and proj act after the last block only
        expected = names - {"ln_post.weight", "ln_post.bias", "proj"}
        assert "conv1.weight" in expected and "positional_embedding" in expected
    assert _trainable_names(tower) == expected
    tower.train()
    assert tower.visual.training == (n_blocks != 0)
    grids = tower(torch.rand(1, 1, 64, 64))
    if n_blocks == 0:
        assert not any(g.requires_grad for g in grids)
        return
    sum(g.square().mean() for g in grids).backward()
    reached = {n for n, p in tower.visual.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert reached == expected


def test_clip_trainable_blocks_out_of_range():
    with pytest.raises(ValueError, match="trainable_blocks must be -1"):
        CLIPImageTower(CLIP, image_size=64, trainable_blocks=13)
    with pytest.raises(ValueError, match="at most 8"):
        CLIPImageTower(CLIP, image_size=64, indices=(1, 4, 7), trainable_blocks=9)


@pytest.mark.parametrize("n_blocks", [0, 1])
def test_parameter_groups_give_the_tower_its_own_learning_rate(n_blocks):
    torch.manual_seed(0)
    net = TGCNet(**SMALL, clip_trainable_blocks=n_blocks)
    groups = net.parameter_groups(clip_learning_rate=1e-2)
    rest, clip = ({id(p) for p in g["params"]} for g in groups)
    tower = {id(p) for p in net.sse.vit.parameters() if p.requires_grad}
    assert clip == tower and len(tower) == 12 * n_blocks  # a ViT block has 12 parameter tensors
    assert rest == {id(p) for p in net.parameters() if p.requires_grad} - tower and groups[1]["lr"] == 1e-2
    before = {k: v.clone() for k, v in net.sse.vit.visual.transformer.resblocks.state_dict().items()}
    optimizer = torch.optim.SGD(groups, lr=0.0)  # only the tower's group has a learning rate
    net(torch.rand(2, 1, 64, 64), torch.randn(2, 6, 24)).square().mean().backward()
    optimizer.step()
    after = net.sse.vit.visual.transformer.resblocks.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == ({"11"} if n_blocks else set())
    assert all(p.grad is not None for p in net.decoder.parameters())
