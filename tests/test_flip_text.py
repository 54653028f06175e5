import numpy as np
import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from lmseg_components.data import RandLeftRightFlipd, make_synthetic_lvit, read_lvit_split, swap_left_right


def test_swap_left_right_keeps_case_and_whole_words():
    text = "Bilateral infection, Left upper lung and RIGHT lower lung; leftover rightward."
    assert swap_left_right(text) == "Bilateral infection, Right upper lung and LEFT lower lung; leftover rightward."
    assert swap_left_right(swap_left_right(text)) == text


def test_flip_moves_lesion_to_the_side_the_new_text_names(tmp_path):
    """After a flip of a MONAI-loaded PNG, the mask must lie on the side that the rewritten text names
    (patient's left = image right = high x; MONAI loads PNGs as (W, H) so x is spatial axis 0)."""
    make_synthetic_lvit(tmp_path, seed=11, size=64, n_train=20, n_val=0, n_test=0)
    records = [r for r in read_lvit_split(tmp_path, "Train") if r["text"].lower().count("left") == 1]
    records = [r for r in records if "right" not in r["text"].lower()]
    assert records
    load = Compose(
        [LoadImaged(["image", "label"], reader="PILReader", image_only=True), EnsureChannelFirstd(["image", "label"])]
    )
    flip = RandLeftRightFlipd(["image", "label"], text_key="text", spatial_axis=0, prob=1.0)
    for record in records:
        loaded = load(record)
        x_before = torch.nonzero(loaded["label"][0] > 0)[:, 0].float().mean().item()
        assert x_before > 32  # "left" lesion on the image's right
        flipped = flip(loaded)
        x_after = torch.nonzero(flipped["label"][0] > 0)[:, 0].float().mean().item()
        assert x_after < 32 and "right" in flipped["text"].lower() and "left" not in flipped["text"].lower()
        assert np.allclose(flipped["image"][0].numpy(), loaded["image"][0].numpy()[::-1])


def test_no_flip_leaves_everything():
    flip = RandLeftRightFlipd(["image"], prob=0.0)
    d = {"image": torch.arange(6.0).reshape(1, 3, 2), "text": "left lung"}
    out = flip(d)
    assert out["text"] == "left lung" and torch.equal(out["image"], d["image"])


def test_overlay_is_legible_and_marks_the_mask():
    from lmseg_components.outputs import render_overlay

    mask = np.zeros((64, 64), bool)
    mask[10:20, 40:50] = True
    caption = "Bilateral pulmonary infection, two infected areas, upper left lung and upper right lung."
    out = np.asarray(render_overlay(np.full((64, 64), 0.5), mask, caption))
    assert out.shape[1] == 256 and out.shape[0] > 256  # enlarged 4x, caption rows below
    assert out[60, 180, 0] > out[60, 180, 2] + 50  # mask pixel (row 15, col 45) x4 is tinted red
    assert out[200, 20, 0] == out[200, 20, 2]  # outside the mask stays grey
    assert out[260:, :, :].max() > 200  # caption drawn in white


def test_overlay_colours_each_label_from_the_palette():
    from lmseg_components.outputs import render_overlay
    from lmseg_components.outputs.overlay import PALETTE

    labels = np.zeros((8, 8), int)
    for value in (1, 2, 3, 7):  # 7 wraps around the six colours
        labels[value, value] = value
    out = np.asarray(render_overlay(np.full((8, 8), 0.5), labels, "organs", alpha=0.45, min_width=8))
    for value in (1, 2, 3, 7):
        expected = 0.55 * 127.5 + 0.45 * np.asarray(PALETTE[(value - 1) % len(PALETTE)])
        assert np.abs(out[value, value] - expected).max() <= 1, value
    assert (out[0, 0] == 128).all()  # background: the grey image
