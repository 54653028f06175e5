import math

import pytest
import torch
import torch.nn.functional as F

from lmseg_components.losses import BSLoss, MSISLoss, RGCLoss, resize_mask


def test_rgc_hand_computed():
    sim = torch.tensor([[[[2.0, 0.0], [0.0, 1.0]]]])  # (1, 1, 2, 2)
    gt = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    cover, leak = math.exp(2.0), (1 + 1 + math.e) / 3
    expected = -math.log(cover / (cover + leak))
    assert math.isclose(RGCLoss()([sim], gt).item(), expected, rel_tol=1e-5)


def test_rgc_clamps_and_skips_empty_masks():
    sim = torch.tensor([[[[100.0, 0.0], [0.0, 0.0]]], [[[5.0, 5.0], [5.0, 5.0]]]])
    gt = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    cover, leak = math.exp(20.0), 1.0  # 100 clamped to 20; the second image has an empty mask: skipped
    assert math.isclose(RGCLoss()([sim], gt).item(), -math.log(cover / (cover + leak)), rel_tol=1e-5)
    empty = torch.zeros(2, 1, 2, 2)
    loss = RGCLoss()([sim.requires_grad_()], empty)
    assert loss.item() == 0.0
    loss.backward()  # still part of the graph


def test_rgc_averages_over_stages_with_resized_gt():
    gt = torch.zeros(1, 1, 4, 4)
    gt[..., :2, :2] = 1
    small = torch.tensor([[[[3.0, 0.0], [0.0, 0.0]]]])
    full = torch.zeros(1, 1, 4, 4)
    expected_small = -math.log(math.exp(3) / (math.exp(3) + 1))
    expected_full = -math.log(0.5)
    assert torch.equal(resize_mask(gt, (2, 2)), torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]))
    value = RGCLoss()([small, full], gt).item()
    assert math.isclose(value, (expected_small + expected_full) / 2, rel_tol=1e-5)


def test_bs_hand_computed():
    l_neg = torch.tensor([[[[0.2, 0.9], [0.7, 0.6]]]])
    gt = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    target = 1 - gt  # [[0, 1], [1, 0]]
    expected = -(math.log(0.8) + math.log(0.9) + math.log(0.7) + math.log(0.4)) / 4
    assert torch.equal(target, torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]]))
    assert math.isclose(BSLoss()([l_neg], gt).item(), expected, rel_tol=1e-5)


def test_msis_weights_combine_terms():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8)
    sims = [torch.randn(2, 1, 4, 4), torch.randn(2, 1, 8, 8)]
    l_negs = [torch.sigmoid(-s) for s in sims]
    gt = (torch.rand(2, 1, 8, 8) > 0.6).float()
    dice = 1 - (2 * (torch.sigmoid(logits) * gt).sum((1, 2, 3)) + 1e-5) / (
        torch.sigmoid(logits).sum((1, 2, 3)) + gt.sum((1, 2, 3)) + 1e-5
    )
    seg = 0.5 * dice.mean() + 0.5 * F.binary_cross_entropy_with_logits(logits, gt)
    expected = seg + 1.0 * RGCLoss()(sims, gt) + 0.5 * BSLoss()(l_negs, gt)
    assert torch.allclose(MSISLoss()((logits, sims, l_negs), gt), expected, atol=1e-5)
    assert torch.allclose(MSISLoss()(logits, gt), seg, atol=1e-5)
    assert torch.allclose(MSISLoss(rgc_weight=0, bs_weight=0)((logits, sims, l_negs), gt), seg, atol=1e-5)


def _bce(p: float, y: float) -> float:
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_bs_sums_stages_by_default_and_averages_on_request():
    gt = torch.zeros(1, 1, 4, 4)
    gt[..., 0, 0] = 1  # one lesion pixel: the 2x2 stage's top-left cell is a quarter lesion
    coarse = torch.tensor([[[[0.2, 0.9], [0.7, 0.6]]]])
    fine = torch.full((1, 1, 4, 4), 0.8)
    # coarse: targets 1 - f = [[0.75, 1], [1, 1]]; fine: target 0 at the lesion pixel, 1 elsewhere
    coarse_bce = (_bce(0.2, 0.75) + _bce(0.9, 1) + _bce(0.7, 1) + _bce(0.6, 1)) / 4
    fine_bce = (_bce(0.8, 0) + 15 * _bce(0.8, 1)) / 16
    assert math.isclose(BSLoss()([coarse, fine], gt).item(), coarse_bce + fine_bce, rel_tol=1e-5)
    assert math.isclose(BSLoss(reduction="mean")([coarse, fine], gt).item(), (coarse_bce + fine_bce) / 2, rel_tol=1e-5)
    # MSIS passes the reduction on: with the segmentation and RGC terms off, 0.5 * BS
    maps = (torch.zeros(1, 1, 4, 4), [torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 4, 4)], [coarse, fine])
    for reduction, expected in (("sum", coarse_bce + fine_bce), ("mean", (coarse_bce + fine_bce) / 2)):
        loss = MSISLoss(seg_weight=0, rgc_weight=0, bs_reduction=reduction)(maps, gt)
        assert math.isclose(loss.item(), 0.5 * expected, rel_tol=1e-5)


def test_resize_mask_fraction_and_threshold():
    gt = torch.zeros(1, 1, 4, 4)
    gt[..., :2, :2] = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # 3 of the top-left cell's 4 pixels
    gt[..., 0, 3] = 1  # 1 of the top-right cell's 4
    fraction = torch.tensor([[[[0.75, 0.25], [0.0, 0.0]]]])
    assert torch.equal(resize_mask(gt, (2, 2)), fraction)
    assert torch.equal(resize_mask(gt.to(torch.uint8), (2, 2)), fraction)  # an integer mask keeps its fractions
    assert torch.equal(resize_mask(gt, (2, 2), "threshold"), torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]))
    assert torch.equal(resize_mask(gt, (4, 4)), gt)
    assert resize_mask(gt, (1, 1)).item() == 0.25  # the lesion's area (4 of 16 pixels) at every size


def test_rgc_weights_cells_by_their_lesion_fraction():
    gt = torch.zeros(1, 1, 4, 4)
    gt[..., 0, 0] = 1
    sim = torch.tensor([[[[2.0, 0.0], [1.0, -1.0]]]])
    # f = [[0.25, 0], [0, 0]]: cover = exp(2); leak = (0.75 exp(2) + exp(0) + exp(1) + exp(-1)) / 3.75
    cover = math.exp(2.0)
    leak = (0.75 * math.exp(2.0) + 1 + math.e + math.exp(-1)) / 3.75
    assert math.isclose(RGCLoss()([sim], gt).item(), -math.log(cover / (cover + leak)), rel_tol=1e-5)
    # with the old threshold the quarter-lesion cell is background: the image is skipped
    assert RGCLoss(stage_target="threshold")([sim], gt).item() == 0.0


def test_three_pixel_lesion_reaches_every_stage():
    """At 224 px TIRNet's stages are 28, 56, 112 and 224; a 3-pixel lesion must give an RGC and a BS signal at
    each (the old > 0.5 threshold erased it below full resolution)."""
    gt = torch.zeros(1, 1, 224, 224)
    gt[..., 100, 100:103] = 1
    for size in (28, 56, 112, 224):
        f = resize_mask(gt, (size, size))
        assert math.isclose(f.sum().item() * (224 // size) ** 2, 3.0, rel_tol=1e-5)
        sim = torch.zeros(1, 1, size, size, requires_grad=True)
        l_neg = torch.full((1, 1, size, size), 0.5, requires_grad=True)
        RGCLoss()([sim], gt).backward()
        BSLoss()([l_neg], gt).backward()
        lesion = f[0, 0] > 0
        assert bool((sim.grad[0, 0][lesion] < 0).all()), f"RGC does not raise A on the lesion at {size}x{size}"
        # BS pushes L- towards 1 on the background, less so where the lesion is
        assert bool((l_neg.grad[0, 0][lesion] > l_neg.grad[0, 0][~lesion].max()).all()), size
        if size < 224:
            assert resize_mask(gt, (size, size), "threshold").sum() == 0  # what the threshold lost


def test_bad_choices_are_refused():
    with pytest.raises(ValueError, match=r"reduction must be one of \['sum', 'mean'\], got 'max'"):
        BSLoss(reduction="max")
    with pytest.raises(ValueError, match="stage_target must be one of"):
        MSISLoss(stage_target="nearest")
    with pytest.raises(ValueError, match=r"non-negative, got \{'bs_weight': -1\}"):
        MSISLoss(bs_weight=-1)


def test_bs_runs_in_float32_with_autocast_off(monkeypatch):
    """Mixed-precision training: CUDA autocast refuses ``F.binary_cross_entropy`` (CPU autocast does not, so the
    refusal is reproduced here), and half-precision inputs would round ``log(1 - p)``: BS computes its BCE with
    autocast off, in float32."""
    g = torch.Generator().manual_seed(0)
    l_neg = torch.rand(2, 1, 8, 8, generator=g)
    gt = (torch.rand(2, 1, 32, 32, generator=g) > 0.7).float()
    reference = BSLoss()([l_neg], gt)
    assert torch.allclose(reference, F.binary_cross_entropy(l_neg, 1 - resize_mask(gt, (8, 8), "fraction")))
    bce = F.binary_cross_entropy

    def refused_under_autocast(*args, **kwargs):
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("torch.nn.functional.binary_cross_entropy is unsafe to autocast")
        return bce(*args, **kwargs)

    monkeypatch.setattr(F, "binary_cross_entropy", refused_under_autocast)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = BSLoss()([l_neg.bfloat16()], gt)
    assert mixed.dtype == torch.float32 and torch.allclose(mixed, reference, rtol=1e-2)
    half = BSLoss()([l_neg.bfloat16()], gt.bfloat16())  # bfloat16 stage maps and mask outside autocast
    assert half.dtype == torch.float32 and torch.allclose(half, BSLoss()([l_neg.bfloat16().float()], gt), atol=1e-6)
