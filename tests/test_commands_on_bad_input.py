"""``lmseg segment`` and ``lmseg publish`` on bad input end with one line naming the file / key / value and the
cause: exit status 1, no traceback and no object repr on stderr (#27's acceptance sweep; ``jras-bank`` and
``export`` have theirs in test_jras_bank.py and test_safe_outputs.py). The cases run in this process through
``cli.main`` (a process start costs ~12 s); one runs as a real ``lmseg`` process to check what the shell sees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from test_segment import PROMPT, _chest, _model

from lmseg_components.apps.cli import main
from lmseg_components.errors import user_input_error

pytestmark = pytest.mark.bundle  # runs lmseg commands end to end


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_inputs")
    model = _model(root / "run", "tirnet_lmis")
    Image.fromarray(_chest()).save(root / "x.png")
    Image.fromarray(np.full((1, 40), 100, np.uint8)).save(root / "line.png")
    (root / "broken.png").write_bytes(b"not a PNG at all")
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 4), np.float32), np.eye(4)), str(root / "ct.nii.gz"))
    (root / "latin").mkdir()
    Image.fromarray(_chest()).save(root / "latin" / "x.png")
    (root / "latin" / "prompts.csv").write_bytes("image,text\nx.png,opacité\n".encode("latin-1"))
    jras = root / "jras" / "models"
    jras.mkdir(parents=True)
    (jras / "model.pt").write_bytes(model.read_bytes())
    (jras / "run_record.json").write_text(json.dumps({"dataset": "0123abcd", "backbone": "unet", "k": 3}))
    return {"root": root, "model": model, "jras": jras / "model.pt"}


CASES = {
    "segment: missing image": ["segment", "--model", "{model}", "{root}/nope.png", "--text", PROMPT],
    "segment: a volume to a 2-D bundle": ["segment", "--model", "{model}", "{root}/ct.nii.gz", "--text", PROMPT],
    "segment: a side of one pixel": ["segment", "--model", "{model}", "{root}/line.png", "--text", PROMPT],
    "segment: a file that is not an image": ["segment", "--model", "{model}", "{root}/broken.png", "--text", PROMPT],
    "segment: prompts.csv not UTF-8": ["segment", "--model", "{model}", "{root}/latin"],
    "segment: another bundle's checkpoint": ["segment", "--model", "{jras}", "{root}/x.png", "--text", PROMPT],
    "segment: a threshold outside [0, 1]": [
        *("segment", "--model", "{model}", "{root}/x.png", "--text", PROMPT, "--presence_threshold", "2"),
    ],
    "segment: an unknown device": [
        "segment",
        "--model",
        "{model}",
        "{root}/x.png",
        "--text",
        PROMPT,
        "--device",
        "gpu0",
    ],
    "publish: not an http(s) url": ["publish", "--run", "{root}/run", "--url", "file:///etc/passwd"],
    "publish: a run another bundle trained": ["publish", "--run", "{root}/jras", "--url", "https://host/model.pt"],
}
EXPECTED = {
    "segment: missing image": "nope.png does not exist",
    "segment: a volume to a 2-D bundle": "ct.nii.gz is a 3-D volume",
    "segment: a side of one pixel": "line.png: 40 x 1 pixels",
    "segment: a file that is not an image": "broken.png: tirnet_lmis cannot segment it (not a readable PNG / JPEG "
    "file: cannot identify image file",
    "segment: prompts.csv not UTF-8": "prompts.csv: not UTF-8 text",
    "segment: another bundle's checkpoint": "it was trained with jras_segmentation",
    "segment: a threshold outside [0, 1]": "presence_threshold must be a number in [0, 1]",
    "segment: an unknown device": "device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu0'",
    "publish: not an http(s) url": "is not an http(s) address",
    "publish: a run another bundle trained": "it was trained with jras_segmentation, not tirnet_lmis",
}

RAISED = {"segment: a threshold outside [0, 1]"}  # raised inside MONAI's config resolution, which wraps it


def _argv(case: str, inputs: dict[str, Path], out: Path) -> list[str]:
    command, *rest = [a.format(**inputs) for a in CASES[case]]
    return [command, "--bundle", "tirnet_lmis", *rest, "--out", str(out)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_ends_with_one_line(inputs, case, tmp_path, capsys):
    with pytest.raises(Exception if case in RAISED else SystemExit) as stop:
        main(_argv(case, inputs, tmp_path / "out"))
    err = capsys.readouterr().err
    if case in RAISED:  # left uncaught: UserInputError's excepthook prints "error: <message>", status 1
        found = user_input_error(stop.value)
        assert found is not None, (case, repr(stop.value))
        message = f"error: {found}"
    else:  # sys.exit("error: ..."): the interpreter prints the message and exits with status 1
        assert isinstance(stop.value.code, str), (case, stop.value.code, err[-2000:])
        message = stop.value.code
    assert "\n" not in message and message.startswith("error: ") and EXPECTED[case] in message, message
    assert " object at 0x" not in err + message, err[-2000:]
    assert not (tmp_path / "out").exists(), "a failed command leaves its output folder behind"


def test_the_shell_sees_status_1_and_one_line(inputs, tmp_path):
    argv = _argv("segment: a threshold outside [0, 1]", inputs, tmp_path / "out")
    run = subprocess.run([sys.executable, "-m", "lmseg_components.apps.cli", *argv], capture_output=True, text=True)
    last = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ""
    assert run.returncode == 1, (run.stdout[-1000:], run.stderr[-2000:])
    assert "Traceback" not in run.stderr and " object at 0x" not in run.stderr, run.stderr[-2000:]
    assert last.startswith("error: ") and EXPECTED["segment: a threshold outside [0, 1]"] in last, last
