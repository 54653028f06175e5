"""The Python API: ``Segmenter.from_run(run).segment(image, text)`` on a file, a NumPy array and a tensor gives the
masks ``lmseg segment`` writes, with the presence decision, the overlay and the timing; bad input is named."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_cli import BUNDLES
from PIL import Image
from test_segment import PROMPT, _chest, _model

from lmseg_components import Segmenter
from lmseg_components.apps.segment import RESULTS_FILE, segment

pytestmark = pytest.mark.bundle


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("segmenter") / "run"
    _model(root, "tirnet_lmis")
    return root


def test_file_array_and_tensor_give_lmseg_segments_mask(run, tmp_path):
    pixels = _chest()
    Image.fromarray(pixels).save(tmp_path / "x.png")
    written = segment(tmp_path / "x.png", "tirnet_lmis", run / "models" / "model.pt", tmp_path / "masks", PROMPT)[0]
    expected = np.asarray(Image.open(tmp_path / "masks" / written["mask"])) > 0

    segmenter = Segmenter.from_run(run)  # the bundle told from the run record: tirnet_lmis
    assert segmenter.predictor.bundle.name == "tirnet_lmis"
    from_file = segmenter.segment(tmp_path / "x.png", PROMPT)
    assert from_file.mask.shape == pixels.shape and from_file.mask.dtype == bool
    assert np.array_equal(from_file.mask, expected) and 0 < expected.mean() < 1
    assert (from_file.score, from_file.found, from_file.text) == (written["score"], written["found"], PROMPT)
    assert from_file.inference_ms > 0 and from_file.overlay.size[0] >= pixels.shape[1]
    for image in (pixels, torch.from_numpy(pixels), np.repeat(pixels[..., None], 3, -1)):
        result = segmenter.segment(image, PROMPT)
        assert np.array_equal(result.mask, expected) and result.score == written["score"]
    floats = segmenter.segment(pixels.astype(np.float32) / 255.0, PROMPT)  # scaled min-max to 0-255
    assert floats.mask.shape == pixels.shape
    assert json.loads((tmp_path / "masks" / RESULTS_FILE).read_text())[0]["score"] == written["score"]


def test_bad_input_is_named(run, tmp_path):
    segmenter = Segmenter.from_run(run / "models" / "model.pt", bundle="tirnet_lmis")
    with pytest.raises(ValueError, match=r"segments 2D images, \(H, W\) or \(H, W, 3\); got shape \(4, 5, 6\)"):
        segmenter.segment(np.zeros((4, 5, 6)), PROMPT)
    with pytest.raises(ValueError, match="no text prompt"):
        segmenter.segment(_chest())
    with pytest.raises(FileNotFoundError, match="no models/model.pt"):
        Segmenter.from_run(tmp_path)
    (tmp_path / "models").mkdir()
    torch.save({}, tmp_path / "models" / "model.pt")
    (tmp_path / "models" / "run_record.json").write_text(json.dumps({"dataset": "x", "not_a_setting": 1}))
    with pytest.raises(ValueError, match="cannot tell which bundle trained this model"):
        Segmenter.from_run(tmp_path)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_segment_over_a_folder_shows_progress_on_a_terminal(run, tmp_path, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(_chest()).save(images / name)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    segment(images, "tirnet_lmis", run / "models" / "model.pt", tmp_path / "masks", PROMPT)
    # tqdm redraws at most every 0.1 s and clears the bar at the end: the bar's first frame is what is sure to show
    assert re.search(r"segment:\s+\d+%\|.*\| \d/2 ", terminal.getvalue()), terminal.getvalue()


@pytest.mark.parametrize("bundle", ["tirnet_lmis", "tgcnet_lmis", "tgcnet_ct_organs", "jras_segmentation"])
def test_bundle_evaluation_and_inference_show_progress(bundle):
    """Every inference config (checkpoint, exported, ONNX) and evaluate.json attach an ignite ProgressBar."""
    configs = BUNDLES / bundle / "configs"
    inference = json.loads((configs / "inference.json").read_text())
    assert inference["progress"]["_target_"] == "ignite.handlers.ProgressBar" and "@progress" in inference["handlers"]
    for overlay in ("inference_exported.json", "inference_onnx.json"):
        if (configs / overlay).is_file():
            handlers = json.loads((configs / overlay).read_text()).get("handlers")
            assert handlers is None or "@progress" in handlers, overlay
    evaluate = json.loads((configs / "evaluate.json").read_text())["validate#handlers"]
    assert any(h.get("_target_") == "ignite.handlers.ProgressBar" for h in evaluate if isinstance(h, dict))


def test_lmseg_segment_console_says_only_what_concerns_the_images(run, tmp_path):
    """A PNG and a DICOM through ``lmseg segment``: one line per image and the summary; no notice of an absent GPU
    decoder, no missing-orientation warning for a 2-D DICOM, no weight-loading bar, no traceback."""
    from test_segment import _dicom

    Image.fromarray(_chest()).save(tmp_path / "x.png")
    _dicom(tmp_path / "y.dcm", _chest())
    command = [sys.executable, "-m", "lmseg_components.apps.cli", "segment", "--bundle", "tirnet_lmis"]
    command += ["--model", str(run / "models" / "model.pt"), str(tmp_path / "x.png"), str(tmp_path / "y.dcm")]
    done = subprocess.run(
        [*command, "--text", PROMPT, "--out", str(tmp_path / "masks")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 3 and done.stderr == "", done.stderr
