import math

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
