"""``lmseg publish``: a trained run becomes a bundle folder that runs as it is (the trained values in its configs),
with the checkpoint's SHA-256 at the user's URL in ``large_files.yml`` and a model card; bad input is named."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from bundle_cli import BUNDLES, small_record, small_values, tiny_network

from lmseg_components.apps.bundle_checks import check_config_consistency, check_large_files
from lmseg_components.apps.publish import MODEL_CARD, publish
from lmseg_components.data import make_synthetic_lvit
from lmseg_components.workflows import load_bundle

pytestmark = pytest.mark.bundle

URL = "https://models.example.org/tirnet/model.pt"
TINY = tiny_network("tirnet_lmis")


@pytest.fixture
def run(tmp_path) -> Path:
    """A run folder as training at small.json leaves it: model.pt, run_record.json and eval/metrics.csv."""
    root = tmp_path / "run"
    values = {**small_record("tirnet_lmis"), **TINY}
    (root / "models").mkdir(parents=True)
    (root / "models" / "run_record.json").write_text(json.dumps({"dataset": "0123abcd", **values, "seed": 7}))
    parser = load_bundle(BUNDLES / "tirnet_lmis", ["inference.json"], {"bundle_root": str(root)})
    torch.save(parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
    (root / "eval").mkdir()
    (root / "eval" / "metrics.csv").write_text("mean_dice,0.7125\nglobal_dice,0.8031\n")
    return root


def test_published_bundle_runs_as_it_is_and_says_what_it_is(tmp_path, run):
    out = publish(BUNDLES / "tirnet_lmis", run, tmp_path / "shared", URL)
    model = out / "models" / "model.pt"
    assert model.read_bytes() == (run / "models" / "model.pt").read_bytes()
    entry = yaml.safe_load((out / "large_files.yml").read_text())["large_files"][0]
    assert entry == {
        "path": "models/model.pt",
        "url": URL,
        "hash_val": hashlib.sha256(model.read_bytes()).hexdigest(),
        "hash_type": "sha256",
    }
    inference = json.loads((out / "configs" / "inference.json").read_text())
    train = json.loads((out / "configs" / "train.json").read_text())
    for key in ("image_size", "width", "in_channels", "text_encoder_name", "text_context_length"):
        assert train[key] == {**small_values("tirnet_lmis"), **TINY}[key] and inference[key] == f"$@trained['{key}']"
    assert train["seed"] == 7
    check_config_consistency(out, {})
    check_large_files(out, {})
    card = (out / MODEL_CARD).read_text()
    assert "| mean_dice | 0.7125 |" in card and URL in card and "`0123abcd`" in card and "| `width` | `4` |" in card

    # the published folder alone, with no override of the trained values: the card's command runs its inference
    make_synthetic_lvit(tmp_path / "data", seed=0, size=32, n_train=2, n_val=1, n_test=2)
    images = tmp_path / "data" / "Test_Folder" / "img"
    (tmp_path / "prompts.csv").write_text('image,text\ndefault,"Opacity in the left lower zone."\n')
    shown = card.split("```bash\n")[1].split("\n```")[0]
    assert shown.startswith("python -m monai.bundle run inference") and "--images /path/to/images" in shown
    shown = shown.replace("/path/to/images", str(images)).replace("/path/to/prompts.csv", str(tmp_path / "prompts.csv"))
    command = [sys.executable, *shlex.split(shown)[1:], "--bundle_root", str(out)]
    result = subprocess.run(command, cwd=out, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((out / "eval" / "inference").glob("*_mask.png"))) == 2


def test_publish_refuses_without_url_record_or_room(tmp_path, run):
    with pytest.raises(ValueError, match="give --url"):
        publish(BUNDLES / "tirnet_lmis", run, tmp_path / "a", " ")
    for url in ("not a url", "file:///etc/passwd", "https://"):
        with pytest.raises(ValueError, match=f"--url '{url}' is not an http\\(s\\) address"):
            publish(BUNDLES / "tirnet_lmis", run, tmp_path / "a", url)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        publish(BUNDLES / "tirnet_lmis", run, tmp_path / "b", URL)
    with pytest.raises(ValueError, match="overlaps the input"):
        publish(BUNDLES / "tirnet_lmis", run, run / "shared", URL)
    with pytest.raises(ValueError, match="which jras_segmentation does not set: it was trained with tirnet_lmis"):
        publish(BUNDLES / "jras_segmentation", run, tmp_path / "e", URL)  # a TIRNet run in J-RAS configs
    assert not (tmp_path / "e").exists()
    (run / "models" / "run_record.json").unlink()
    with pytest.raises(ValueError, match="no run_record.json"):
        publish(BUNDLES / "tirnet_lmis", run, tmp_path / "c", URL)
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        publish(BUNDLES / "tirnet_lmis", tmp_path / "nowhere", tmp_path / "d", URL)
    assert (tmp_path / "b" / "mine.txt").read_text() == "keep" and not (tmp_path / "a").exists()
