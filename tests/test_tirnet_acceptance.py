"""The TIRNet acceptance run (nightly, ``-m slow``): the small CPU setting must read the text and say "not found"
for a sentence that names nothing."""

import pytest

from benchmarks import text_grounding


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_tirnet_learns_from_text_on_cpu(tmp_path):
    results = text_grounding.run(
        out=str(tmp_path), epochs=30, image_size=64, width=16, variants="full", results_dir=str(tmp_path)
    )  # its own results file: the committed one is the docs table's
    (result,) = results["full"]
    assert result["train_minutes"] <= 15
    assert result["correct_mdice"] >= 0.80
    assert result["correct_mdice"] - result["shuffled_mdice"] >= 0.25
    assert result["found_unrelated"] <= 0.1  # the presence decision of the run record's threshold
