"""The TIRNet acceptance run (nightly, ``-m slow``): the small CPU setting must read the text."""

import pytest

from benchmarks import text_grounding


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_tirnet_learns_from_text_on_cpu(tmp_path):
    rows = text_grounding.run(out=str(tmp_path), epochs=30, image_size=64, width=16, variants="full")
    name, minutes, result, _ = rows[0]
    assert minutes <= 15
    assert result["correct"]["val_mean_dice"] >= 0.80
    assert result["correct"]["val_mean_dice"] - result["shuffled"]["val_mean_dice"] >= 0.25
