import math

import pytest
import torch
import torch.nn.functional as F

from lmseg_components.networks import CDCB, RTMB, TextTokenPooling, TIRNet


def _text(batch=2, length=12, dim=32, valid=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(batch, length, dim, generator=g)
    t[:, valid:] = 0
    return t


@pytest.mark.parametrize("width,size", [(8, 64), (16, 32)])
def test_shapes_at_two_widths(width, size):
    net = TIRNet(in_channels=1, width=width, text_dim=32)
    image = torch.rand(2, 1, size, size)
    logits, sims, l_negs = net(image, _text())
    assert logits.shape == (2, 1, size, size)
    assert [s.shape[-1] for s in sims] == [size // 8, size // 4, size // 2, size]
    assert [m.shape for m in l_negs] == [s.shape for s in sims]
    assert all(s.shape[:2] == (2, 1) for s in sims)
    net.eval()
    assert net(image, _text()).shape == (2, 1, size, size)
    assert net.stages[0].reduce.out_channels == 8 * width and net.stages[3].reduce.out_channels == width


def test_rtmb_scalars_start_at_spec_values_and_stay_in_range():
    block = RTMB(8, text_dim=16)
    assert math.isclose(block.beta.item(), 1.0, rel_tol=1e-5)
    assert math.isclose(block.rho.item(), 1.0, rel_tol=1e-6)
    assert math.isclose(block.kappa.item(), 0.5, rel_tol=1e-6)
    assert math.isclose(block.gamma.item(), 0.5, rel_tol=1e-6)
    with torch.no_grad():
        for p in (block.beta_raw, block.rho_raw, block.kappa_raw, block.gamma_raw):
            p.fill_(-1e4)
    assert block.beta.item() > 0 and block.rho.item() >= 0 and block.kappa.item() >= 0 and block.gamma.item() >= 0
    with torch.no_grad():
        for p in (block.beta_raw, block.rho_raw, block.kappa_raw, block.gamma_raw):
            p.fill_(1e4)
    assert block.rho.item() <= 2.0 and block.kappa.item() <= 1.0 and block.gamma.item() <= 1.0


def test_rtmb_matches_its_formula():
    torch.manual_seed(0)
    block = RTMB(4, text_dim=3, tau=0.1)
    x, t = torch.randn(1, 4, 5, 5), torch.randn(1, 3)
    out, sim, l_pos, l_neg = block(x, t)
    t_hat = block.text_proj(t)[0]
    expected_sim = torch.einsum("chw,c->hw", x[0], t_hat) / (x[0].norm(dim=0) * t_hat.norm()) / 0.1
    assert torch.allclose(sim[0, 0], expected_sim, atol=1e-4)
    center = sim[0, 0, 1:4, 1:4].mean()
    assert torch.allclose(l_pos[0, 0, 2, 2], torch.sigmoid(center), atol=1e-6)
    assert torch.allclose(l_neg, torch.sigmoid(-sim), atol=1e-5)
    expected = x * (1 + 1.0 * l_pos) * (1 - 0.5 * l_neg) + 0.5 * x
    assert torch.allclose(out, expected, atol=1e-5)


def test_cdcb_shape_and_zero_detail():
    block = CDCB(8)
    d, l_pos = torch.randn(2, 8, 6, 6), torch.rand(2, 1, 6, 6)
    flat_skip = torch.zeros(2, 8, 6, 6)  # no high-frequency detail: out is the base path alone
    assert torch.allclose(block(d, flat_skip, l_pos), block.base(d), atol=1e-6)
    assert block(d, torch.randn(2, 8, 6, 6), l_pos).shape == (2, 8, 6, 6)


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def _avg_pool3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 mean with zero padding counted, from the nine shifted copies."""
    padded, (h, w) = F.pad(x, (1, 1, 1, 1)), x.shape[-2:]
    return sum(padded[..., i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9


def _norm_per_channel(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """GroupNorm with one channel per group (CDCB(2) has 2 groups), before its affine step."""
    mean, var = x.mean((-2, -1), keepdim=True), x.var((-2, -1), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def test_cdcb_matches_a_hand_computation():
    """CDCB(2) with weights set by hand (3x3 convolutions reduced to their centre tap) against its formulas
    written out channel by channel: B, D_raw, W with delta and both GroupNorms, the gate G on [B, W D_raw, L+]."""
    block = CDCB(2)  # gate hidden width 1; GroupNorm(2, 2)
    with torch.no_grad():
        for p in block.parameters():
            p.zero_()
        block.base[0].weight[:, :, 1, 1] = torch.tensor([[1.0, 0.0], [0.5, 1.0]])
        block.base[2].weight[:, :, 1, 1] = torch.tensor([[2.0, 0.0], [0.0, -1.0]])
        block.base[2].bias.copy_(torch.tensor([0.1, 0.0]))
        block.base_proj[0].weight[:, :, 0, 0] = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
        block.base_proj[1].weight.fill_(1.0)
        block.detail_proj[0].weight[:, :, 0, 0] = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        block.detail_proj[1].weight.copy_(torch.tensor([1.0, 2.0]))
        block.detail_proj[1].bias.copy_(torch.tensor([0.0, 0.5]))
        block.delta.fill_(0.7)
        block.gate[0].weight[0, :, 1, 1] = torch.tensor([0.5, 0.0, 1.0, -1.0, 2.0])  # [B_0, B_1, WD_0, WD_1, L+]
        block.gate[0].bias.fill_(-0.3)
        block.gate[2].weight[:, 0, 0, 0] = torch.tensor([1.0, -2.0])
        block.gate[2].bias.copy_(torch.tensor([0.0, 0.5]))
    g = torch.Generator().manual_seed(0)
    d, e, l_pos = torch.randn(1, 2, 4, 4, generator=g), torch.randn(1, 2, 4, 4, generator=g), torch.rand(1, 1, 4, 4)

    hidden = torch.stack([d[:, 0], 0.5 * d[:, 0] + d[:, 1]], 1)
    base = torch.stack([2 * _gelu(hidden[:, 0]) + 0.1, -_gelu(hidden[:, 1])], 1)
    detail = e - _avg_pool3x3(e)
    base_norm = _norm_per_channel(torch.stack([base[:, 0], base[:, 0] + base[:, 1]], 1))
    detail_norm = _norm_per_channel(detail.flip(1)) * torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    detail_norm = detail_norm + torch.tensor([0.0, 0.5]).view(1, 2, 1, 1)
    consistency = torch.sigmoid(0.7 * (base_norm * detail_norm).sum(1, keepdim=True))
    weighted = consistency * detail
    gate_hidden = _gelu(0.5 * base[:, 0] + weighted[:, 0] - weighted[:, 1] + 2 * l_pos[:, 0] - 0.3)
    gate = torch.sigmoid(torch.stack([gate_hidden, 0.5 - 2 * gate_hidden], 1))
    expected = base + gate * weighted

    with torch.no_grad():
        out = block(d, e, l_pos)
    assert torch.allclose(out, expected, atol=1e-5)
    assert not torch.allclose(out, base, atol=1e-2)  # the detail branch contributes


def test_text_pooling_equals_conv1d_then_masked_mean():
    pool = TextTokenPooling(32, 16)
    t = _text(3, 12, 32, valid=5)
    t[1, 7:] = 0
    t[1, 5:7] = torch.randn(2, 32)  # the second text has 7 tokens
    mask = (t.abs().sum(-1) > 0).float().unsqueeze(1)
    reference = (pool.conv(t.transpose(1, 2)) * mask).sum(-1) / mask.sum(-1)
    assert torch.allclose(pool(t), reference, atol=1e-5)


def test_text_pooling_ignores_padding():
    pool = TextTokenPooling(32, 16)
    t = _text(1, 12, 32, valid=5)
    longer = torch.cat([t, torch.zeros(1, 20, 32)], dim=1)
    assert torch.allclose(pool(t), pool(longer), atol=1e-6)
    assert torch.allclose(pool(torch.zeros(1, 4, 32)), torch.zeros(1, 16))


def test_gradients_reach_every_trainable_parameter_and_never_the_frozen_text_encoder(minilm):
    from lmseg_components.losses import MSISLoss

    net = TIRNet(in_channels=1, width=4, text_dim=minilm.token_dim)
    features = minilm.encode(["upper left lung", "lower right lung"]).tokens
    target = torch.zeros(2, 1, 32, 32)
    target[:, :, 4:12, 20:28] = 1
    loss = MSISLoss()(net(torch.rand(2, 1, 32, 32), features), target)
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    assert all(p.grad is None and not p.requires_grad for p in minilm.parameters())
    assert not features.requires_grad


def test_changing_the_text_changes_the_output():
    torch.manual_seed(0)
    net = TIRNet(in_channels=1, width=4, text_dim=32).eval()
    image = torch.rand(1, 1, 32, 32)
    a, b = net(image, _text(1, seed=1)), net(image, _text(1, seed=2))
    assert not torch.allclose(a, b, atol=1e-4)
    assert torch.allclose(net(image, None), net(image, torch.zeros(1, 3, 32)))


def test_ablations_and_torchscript():
    image, text = torch.rand(1, 1, 32, 32), _text(1)
    for kwargs in ({}, {"use_rtmb": False}, {"use_cdcb": False}):
        net = TIRNet(in_channels=1, width=4, text_dim=32, **kwargs)
        logits, sims, _ = net(image, text)
        assert len(sims) == (0 if kwargs.get("use_rtmb") is False else 4)
        net.eval()
        scripted = torch.jit.script(net)
        assert torch.allclose(scripted(image, text), net(image, text), atol=1e-5)


def test_bad_inputs():
    net = TIRNet(in_channels=1, width=4, text_dim=32)
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.rand(1, 1, 30, 32), _text(1))
    with pytest.raises(ValueError, match=r"text must be \(B, L, 32\)"):
        net(torch.rand(1, 1, 32, 32), torch.rand(1, 5, 16))
    with pytest.raises(ValueError, match="five positive widths"):
        TIRNet(features=(8, 16))


def test_training_steps_raise_dice_on_synthetic_images(tmp_path, minilm):
    """A few optimisation steps on synthetic LViT images must lift Dice well above the untrained network's."""
    import numpy as np
    from PIL import Image

    from lmseg_components.data import make_synthetic_lvit, read_lvit_split
    from lmseg_components.losses import MSISLoss
    from lmseg_components.metrics import PerImageOverlapMetric

    make_synthetic_lvit(tmp_path, seed=0, size=32, n_train=8, n_val=0, n_test=0)
    records = read_lvit_split(tmp_path, "Train")
    image = torch.stack([torch.from_numpy(np.asarray(Image.open(r["image"]), np.float32) / 255)[None] for r in records])
    mask = torch.stack(
        [torch.from_numpy((np.asarray(Image.open(r["label"])) > 0).astype(np.float32))[None] for r in records]
    )
    text = minilm.encode([r["text"] for r in records]).tokens
    torch.manual_seed(0)
    net = TIRNet(in_channels=1, width=8, text_dim=minilm.token_dim)
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    loss_fn = MSISLoss()

    def dice() -> float:
        metric = PerImageOverlapMetric("dice")
        net.eval()
        with torch.no_grad():
            metric((torch.sigmoid(net(image, text)) > 0.5).float(), mask)
        net.train()
        return metric.aggregate().item()

    before = dice()
    for _ in range(60):
        optimizer.zero_grad()
        loss_fn(net(image, text), mask).backward()
        optimizer.step()
    after = dice()
    assert after > 0.5 and after > before + 0.3
