"""The TIRNet acceptance run (nightly, ``-m slow``): the small CPU setting must read the text."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_tirnet_learns_from_text_on_cpu(tmp_path):
    import text_grounding

    rows = text_grounding.run(out=str(tmp_path), epochs=30, image_size=64, width=16, variants="full")
    name, minutes, result = rows[0]
    assert minutes <= 15
    assert result["correct"]["val_mean_dice"] >= 0.80
    assert result["correct"]["val_mean_dice"] - result["shuffled"]["val_mean_dice"] >= 0.25
