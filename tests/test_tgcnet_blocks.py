"""TGC-Net blocks: shape contracts, masking, deformable attention against a naive reference, gradients only into
trainable parts, frozen towers unchanged by a training step."""

from __future__ import annotations

import math

import open_clip
import pytest
import torch

from lmseg_components.networks import (
    DATE,
    SSE,
    VLCM,
    CLIPImageTower,
    CostAggregationDecoder,
    MSDeformAttn,
    TGCNet,
    cosine_cost,
    count_parameters,
    ms_deform_attn_core,
)

CLIP = "ViT-B-16-quickgelu"


def _naive_bilinear(value: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Sample (D, H, W) at normalised (x, y) like grid_sample(align_corners=False, zero padding), by hand."""
    d, h, w = value.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(d)
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * value[:, yy, xx]
    return out


def test_deformable_attention_equals_naive_reference():
    g = torch.Generator().manual_seed(0)
    b, q, m, d, points = 2, 3, 2, 4, 2
    shapes = [(5, 6), (3, 2)]
    values = [torch.randn(b, m, d, h, w, generator=g) for h, w in shapes]
    locations = torch.rand(b, q, m, len(shapes), points, 2, generator=g) * 1.4 - 0.2  # some outside [0, 1]
    weights = torch.rand(b, q, m, len(shapes), points, generator=g)
    weights = weights / weights.sum((-1, -2), keepdim=True)
    fast = ms_deform_attn_core(values, locations, weights)
    naive = torch.zeros(b, q, m * d)
    for bi in range(b):
        for qi in range(q):
            for mi in range(m):
                acc = torch.zeros(d)
                for level in range(len(shapes)):
                    for p in range(points):
                        x, y = locations[bi, qi, mi, level, p].tolist()
                        acc += weights[bi, qi, mi, level, p] * _naive_bilinear(values[level][bi, mi], x, y)
                naive[bi, qi, mi * d : (mi + 1) * d] = acc
    assert torch.allclose(fast, naive, atol=1e-5)


def test_msdeformattn_shapes_and_errors():
    attn = MSDeformAttn(dim=16, n_levels=2, n_heads=4, n_points=3)
    shapes = [(4, 4), (2, 2)]
    value = torch.randn(2, 20, 16)
    out = attn(torch.randn(2, 7, 16), torch.rand(1, 7, 2), value, shapes)
    assert out.shape == (2, 7, 16)
    with pytest.raises(ValueError, match="tokens"):
        attn(torch.randn(2, 7, 16), torch.rand(1, 7, 2), torch.randn(2, 19, 16), shapes)
    with pytest.raises(ValueError, match="divisible"):
        MSDeformAttn(dim=10, n_heads=4)


@pytest.fixture(scope="module")
def tower():
    return CLIPImageTower(CLIP, image_size=64)


def test_clip_tower_is_frozen_and_reloads_a_local_checkpoint(tower, tmp_path):
    grids = tower(torch.rand(2, 1, 80, 80))
    assert [tuple(g.shape) for g in grids] == [(2, 768, 4, 4)] * 3 and tower.indices == (3, 7, 11)
    assert not any(p.requires_grad for p in tower.parameters())
    tower.train()
    assert not tower.visual.training
    torch.save(open_clip.create_model(CLIP, force_image_size=64).state_dict(), tmp_path / "clip.pt")
    a = CLIPImageTower(CLIP, pretrained=str(tmp_path / "clip.pt"), image_size=64)
    b = CLIPImageTower(CLIP, pretrained=str(tmp_path / "clip.pt"), image_size=64)
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(a(x)[2], b(x)[2]) and not torch.equal(a(x)[2], tower(x)[2])


@pytest.mark.parametrize(("use_vit", "use_cnn"), [(True, True), (False, True), (True, False)])
def test_sse_pyramid_shapes(tower, use_vit, use_cnn):
    sse = SSE(tower if use_vit else None, 1, dim=32, cnn_width=8, n_heads=4, use_vit=use_vit, use_cnn=use_cnn)
    pyramid, guidance = sse(torch.rand(2, 1, 128, 128))
    assert [tuple(p.shape) for p in pyramid] == [(2, 32, 16, 16), (2, 32, 8, 8), (2, 32, 4, 4)]
    assert [tuple(g.shape) for g in guidance] == [(2, 32, 16, 16), (2, 32, 8, 8)]
    with pytest.raises(ValueError, match="divisible by 32"):
        sse(torch.rand(1, 1, 100, 100))


def test_sse_guidance_is_the_hybrid_pyramid_or_the_cnn_levels(tower):
    """``hybrid`` hands the decoder the fused, deformable-refined stride-8/16 levels; ``cnn`` the projected CNN
    levels before fusion (same weights, same pyramid, other guidance)."""
    torch.manual_seed(0)
    hybrid = SSE(tower, 1, dim=32, cnn_width=8, n_heads=4, guidance="hybrid")
    cnn = SSE(tower, 1, dim=32, cnn_width=8, n_heads=4, guidance="cnn")
    cnn.load_state_dict(hybrid.state_dict())
    x = torch.rand(2, 1, 64, 64)
    (pyramid, from_hybrid), (pyramid_cnn, from_cnn) = hybrid(x), cnn(x)
    assert all(torch.equal(a, b) for a, b in zip(pyramid, pyramid_cnn, strict=True))
    assert all(torch.equal(g, p) for g, p in zip(from_hybrid, pyramid[:2], strict=True))
    projected = [proj(f) for proj, f in zip(cnn.cnn_proj, cnn.cnn(x), strict=True)][:2]
    assert all(torch.equal(g, c) for g, c in zip(from_cnn, projected, strict=True))
    assert not any(torch.allclose(g, p, atol=1e-3) for g, p in zip(from_cnn, pyramid[:2], strict=True))


def test_sse_needs_a_branch():
    with pytest.raises(ValueError, match="both False"):
        SSE(None, use_vit=False, use_cnn=False)


def _text(b=2, length=6, dim=24, valid=4, seed=0):
    t = torch.randn(b, length, dim, generator=torch.Generator().manual_seed(seed))
    t[:, valid:] = 0  # padding is all zero
    return t


def _date_by_hand(date: DATE, primary: torch.Tensor, auxiliary: torch.Tensor) -> torch.Tensor:
    """DATE's ``both`` mode written out for one prompt: ``auxiliary`` (La, D) tokens are the Query, ``primary``
    (Lp, D) tokens the Key/Value (its all-zero padding excluded), the attention output is added to the projected
    auxiliary tokens, then the feed-forward block -> (La, dim)."""
    attn = date.cross
    q, kv = date.proj(auxiliary), date.proj(primary)
    heads, width = attn.num_heads, q.shape[-1] // attn.num_heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)

    def split(x: torch.Tensor) -> torch.Tensor:  # (L, C) -> (heads, L, width)
        return x.view(x.shape[0], heads, width).transpose(0, 1)

    query = split(date.norm_q(q) @ w_q.T + b_q)
    key, value = split(date.norm_kv(kv) @ w_k.T + b_k), split(date.norm_kv(kv) @ w_v.T + b_v)
    scores = (query @ key.transpose(1, 2) / math.sqrt(width)).masked_fill(primary.abs().amax(-1) == 0, -math.inf)
    mixed = (scores.softmax(-1) @ value).transpose(0, 1).reshape(q.shape)
    tokens = q + mixed @ attn.out_proj.weight.T + attn.out_proj.bias
    return tokens + date.ffn(date.norm_ffn(tokens))


def test_date_auxiliary_tokens_query_the_primary_tokens():
    torch.manual_seed(0)
    date = DATE(text_dim=24, dim=16, n_heads=4, mode="both").eval()
    primary = _text(b=1, length=7, valid=5, seed=1)[:, None]  # (B, P, Lp, D): 5 tokens + 2 padding
    aux = _text(b=1, length=4, valid=2, seed=2)[:, None]  # (B, P, La, D): 2 tokens + 2 padding
    with torch.no_grad():
        tokens, valid, emb = date(primary, aux)
        # one output token per auxiliary (Query) token, valid where the auxiliary prompt is
        assert tokens.shape == (1, 1, 4, 16) and valid[0, 0].tolist() == [True, True, False, False]
        assert torch.allclose(tokens[0, 0], _date_by_hand(date, primary[0, 0], aux[0, 0]), atol=1e-5)
        assert torch.allclose(emb[0, 0], tokens[0, 0, :2].mean(0), atol=1e-6)
        # a token's output depends on its own auxiliary token and on every valid primary token
        moved = aux.clone()
        moved[..., 0, :] += 1.0
        out = date(primary, moved)[0]
        assert not torch.allclose(out[..., 0, :], tokens[..., 0, :]) and torch.allclose(
            out[..., 1, :], tokens[..., 1, :]
        )
        moved = primary.clone()
        moved[..., 4, :] += 1.0  # the last valid primary token
        out = date(primary=moved, auxiliary=aux)[0]
        assert not torch.allclose(out[..., 0, :], tokens[..., 0, :]) and not torch.allclose(
            out[..., 1, :], tokens[..., 1, :]
        )
        # the primary prompt's padding is no key: more padding changes nothing
        padded = torch.cat([primary, torch.zeros(1, 1, 3, 24)], 2)
        assert torch.allclose(date(padded, aux)[0], tokens, atol=1e-6)


def test_date_modes_and_missing_auxiliary_prompt():
    torch.manual_seed(0)
    date = DATE(text_dim=24, dim=16, n_heads=4, mode="both").eval()
    primary, aux = _text(seed=1), _text(seed=2)
    with torch.no_grad():
        tokens, valid, emb = date(primary, aux)
        assert tokens.shape == (2, 1, 6, 16) and valid.shape == (2, 1, 6) and emb.shape == (2, 1, 16)
        assert not torch.allclose(emb, date(_text(seed=3), aux)[2])  # the primary prompt matters
        assert not torch.allclose(emb, date(primary, _text(seed=4))[2])  # so does the auxiliary one
        # no auxiliary prompt: the primary prompt queries itself through the same cross-attention
        fallback = date(primary, None)[0]
        for i in range(2):
            assert torch.allclose(fallback[i, 0], _date_by_hand(date, primary[i], primary[i]), atol=1e-5)
        only_primary = DATE(24, 16, 4, mode="primary").eval()
        only_primary.load_state_dict(date.state_dict())
        assert not torch.allclose(only_primary(primary)[0], fallback, atol=1e-3)  # the fallback is not "primary"
        assert torch.allclose(only_primary(primary, aux)[2], only_primary(primary, _text(seed=5))[2])
        only_aux = DATE(24, 16, 4, mode="auxiliary").eval()
        assert torch.allclose(only_aux(primary, aux)[2], only_aux(_text(seed=6), aux)[2])
        empty = torch.zeros(2, 6, 24)
        assert torch.isfinite(date(empty, empty)[2]).all()
    with pytest.raises(ValueError, match="mode must be one of"):
        DATE(24, mode="llm")


@pytest.mark.parametrize("mode", ["vlcm", "bidirectional"])
def test_vlcm_shapes_and_padding_is_ignored(mode):
    vlcm = VLCM(dim=16, n_context=4, n_heads=4, mode=mode).eval()
    visual, text = torch.randn(2, 9, 16), torch.randn(2, 5, 16)
    valid = torch.tensor([[True, True, True, False, False]] * 2)
    v, t = vlcm(visual, text, valid)
    assert v.shape == visual.shape and t.shape == text.shape
    changed = text.clone()
    changed[:, 3:] = torch.randn(2, 2, 16)
    assert torch.allclose(vlcm(visual, changed, valid)[0], v, atol=1e-6)  # masked tokens do not reach the image
    assert not torch.allclose(vlcm(visual, text * 2, valid)[0], v)


def _update_is_shared(calibrated: torch.Tensor, tokens: torch.Tensor) -> bool:
    """Whether every token of each sample received the same residual update."""
    update = calibrated - tokens
    return torch.allclose(update, update[:, :1].expand_as(update), atol=1e-5)


def test_vlcm_calibrates_through_a_gated_shared_context_bidirectional_attends_directly():
    torch.manual_seed(0)
    visual, text = torch.randn(2, 9, 16), torch.randn(2, 5, 16)
    valid = torch.tensor([[True] * 5, [True, True, True, False, False]])
    moved = visual.clone()
    moved[:, 0] += 1.0
    with torch.no_grad():
        # one context token: each modality attends to it alone, so all its tokens receive one and the same update
        one = VLCM(dim=16, n_context=1, n_heads=4, mode="vlcm").eval()
        v, t = one(visual, text, valid)
        assert _update_is_shared(v, visual) and _update_is_shared(t, text)
        # bidirectional: each visual token attends to the text tokens itself, and to nothing else
        direct = VLCM(dim=16, n_heads=4, mode="bidirectional").eval()
        v, t = direct(visual, text, valid)
        assert not _update_is_shared(v, visual) and not _update_is_shared(t, text)
        assert torch.allclose(direct(moved, text, valid)[0][:, 1:], v[:, 1:], atol=1e-6)
        # vlcm: the context is distilled from every visual token, so moving one moves the others
        vlcm = VLCM(dim=16, n_context=4, n_heads=4, mode="vlcm").eval()
        v = vlcm(visual, text, valid)[0]
        assert not torch.allclose(vlcm(moved, text, valid)[0][:, 1:], v[:, 1:], atol=1e-4)
        # the text reaches the image only through its sigmoid gate: a closed gate cuts it off
        vlcm.gate_t.weight.zero_()
        vlcm.gate_t.bias.fill_(-1e4)
        v = vlcm(visual, text, valid)[0]
        assert torch.allclose(vlcm(visual, torch.randn(2, 5, 16), valid)[0], v, atol=1e-6)


def test_cost_volume_and_decoder_shapes():
    visual = torch.zeros(1, 2, 1, 2)
    visual[0, :, 0, 0] = torch.tensor([1.0, 0.0])
    visual[0, :, 0, 1] = torch.tensor([1.0, 1.0])
    text = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]])
    cost = cosine_cost(visual, text)
    expected = torch.tensor([[[[1.0, 1 / math.sqrt(2)]], [[0.0, 1 / math.sqrt(2)]]]])
    assert torch.allclose(cost, expected, atol=1e-6)
    decoder = CostAggregationDecoder(dim=16, cost_dim=8, n_heads=2)
    guidance = [torch.randn(2, 16, 8, 8), torch.randn(2, 16, 16, 16)]
    out = decoder(torch.randn(2, 16, 4, 4), torch.randn(2, 3, 16), guidance, (64, 64))
    assert out.shape == (2, 3, 64, 64)


def test_tgcnet_gradients_only_into_trainable_parts_and_frozen_tower_unchanged():
    torch.manual_seed(0)
    net = TGCNet(text_dim=24, clip_model=CLIP, clip_image_size=64, dim=32, cnn_width=8, n_heads=4, cost_dim=16)
    counts = count_parameters(net)
    assert counts["frozen"] == sum(p.numel() for p in net.sse.vit.parameters()) and counts["trainable"] > 0
    frozen_before = {k: v.clone() for k, v in net.sse.vit.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], 1e-3)
    image, text, aux = torch.rand(2, 1, 128, 128), _text(), _text(seed=9)
    out = net(image, text, aux)
    assert out.shape == (2, 1, 128, 128)
    torch.nn.functional.binary_cross_entropy_with_logits(out, (image > 0.5).float()).backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    assert all(p.grad is None for p in net.sse.vit.parameters())
    optimizer.step()
    assert all(torch.equal(frozen_before[k], v) for k, v in net.sse.vit.state_dict().items())
    net.eval()
    with torch.no_grad():
        assert not torch.allclose(net(image, text, aux), net(image, _text(seed=7), aux))  # the text matters
        assert net(image, torch.randn(2, 3, 6, 24)).shape == (2, 3, 128, 128)  # one map per prompt


def test_tgcnet_text_batch_of_one_applies_to_every_image_and_prompts_are_unordered():
    torch.manual_seed(0)
    net = TGCNet(text_dim=24, clip_model=CLIP, clip_image_size=64, dim=32, cnn_width=8, n_heads=4, cost_dim=16).eval()
    image, text = torch.rand(3, 1, 64, 64), torch.randn(1, 3, 6, 24)
    with torch.no_grad():
        shared = net(image, text)
        assert torch.allclose(shared, net(image, text.expand(3, -1, -1, -1)), atol=1e-5)
        order = [2, 0, 1]  # one map per prompt, whatever the prompt order
        assert torch.allclose(net(image, text[:, order]), shared[:, order], atol=1e-4)
    with pytest.raises(ValueError, match="batch size 2"):
        net(image, torch.randn(2, 3, 6, 24))
