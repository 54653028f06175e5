"""The TGC-Net 2D acceptance run (nightly, ``-m slow``): the docs' CPU setting (128 px, 20 epochs) must read the text
and say "not found" for a sentence that names nothing. Thresholds from the 5-seed table in the bundle docs (correct
m-Dice 0.728-0.776, shuffled 0.266-0.302, unrelated prompts found 0-0.02; 8-21 min of training on 2 cores)."""

import pytest

from benchmarks import text_grounding


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_tgcnet_learns_from_text_on_cpu(tmp_path):
    results = text_grounding.run(
        out=str(tmp_path), bundle="tgcnet_lmis", epochs=20, image_size=128, variants="full", results_dir=str(tmp_path)
    )
    (result,) = results["full"]
    assert result["train_minutes"] <= 30
    assert result["correct_mdice"] >= 0.70
    assert result["correct_mdice"] - result["shuffled_mdice"] >= 0.35  # shuffled reports lose most of it
    assert result["found_unrelated"] <= 0.1
