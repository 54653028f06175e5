"""The presence decision's pieces on known values: the score of a probability map, the threshold chosen on
validation scores, the AUROC."""

import pytest
import torch

from lmseg_components.metrics import choose_presence_threshold, presence_auroc, presence_score


def test_score_is_the_mean_of_the_most_probable_pixels():
    prob = torch.zeros(2, 1, 20, 20)  # 400 pixels: the top 0.25 % is 1 pixel, the top 5 % is 20
    prob[0, 0, :2, :5] = 0.9  # a 10-pixel lesion
    prob[0, 0, 10, 10] = 1.0
    prob[1, 0] = 0.1
    assert presence_score(prob)[:, 0].tolist() == pytest.approx([1.0, 0.1])
    assert presence_score(prob, top_fraction=0.05)[0, 0].item() == pytest.approx((1.0 + 10 * 0.9) / 20)
    assert presence_score(torch.rand(3, 4, 8, 8, 8)).shape == (3, 4)
    with pytest.raises(ValueError, match="top_fraction"):
        presence_score(prob, top_fraction=0.0)
    with pytest.raises(ValueError, match=r"\(B, C, \*spatial\)"):
        presence_score(torch.rand(4, 4))


def test_threshold_separates_validation_scores():
    assert choose_presence_threshold([0.8, 0.9, 0.7], [0.1, 0.3, 0.2]) == pytest.approx(0.5)
    # overlap: J is best at 0.55 (TPR 3/4, FPR 0) against 0.35 (TPR 1, FPR 1/3)
    assert choose_presence_threshold([0.4, 0.6, 0.7, 0.9], [0.1, 0.2, 0.5]) == pytest.approx(0.55)
    with pytest.raises(ValueError, match="both kinds"):
        choose_presence_threshold([0.5], [])


def test_auroc_on_known_orders():
    assert presence_auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert presence_auroc([0.1, 0.2], [0.9, 0.8]) == 0.0
    assert presence_auroc([0.9, 0.3], [0.5, 0.1]) == pytest.approx(0.75)
