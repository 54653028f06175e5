"""The TGC-Net CT acceptance run (nightly, ``-m slow``): mean organ Dice >= 0.8 on held-out synthetic MSD volumes."""

import pytest

from benchmarks import ct_organs


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_ct_organs_mean_organ_dice_at_least_0_8(tmp_path):
    correct, rotated = ct_organs.run(out=str(tmp_path), epochs=40, image_size=64, results_dir=str(tmp_path))
    assert correct["val_mean_dice"] >= 0.8, correct
    assert rotated["val_mean_dice"] < correct["val_mean_dice"] - 0.2, rotated  # the prompts pick the organ
