"""The bundles default to their papers' settings; ``configs/small.json`` is the CPU setting (what the demo, tests, CI
and benchmarks load); without the model hub the default fails with one line that names the way out."""

from __future__ import annotations

import json
import os

import pytest
from bundle_cli import BUNDLES, bundle_args, small_values

from lmseg_components.data import make_synthetic_lvit
from lmseg_components.workflows import run_monai_bundle

# the papers' settings (seeds and specs), as the default train.json must hold them
PAPER = {
    "tirnet_lmis": {
        "image_size": 224,
        "width": 64,
        "batch_size": 32,
        "epochs": 200,
        "in_channels": 3,
        "text_encoder_name": "open_clip:ViT-B-32",
        "text_pretrained": "openai",
        "text_context_length": 18,
    },
    "tgcnet_lmis": {
        "image_size": 768,
        "clip_model": "ViT-L-14-336-quickgelu",
        "clip_pretrained": "openai",
        "clip_image_size": None,
        "dim": 256,
        "cnn_width": 64,
        "n_heads": 8,
        "n_deform_layers": 2,
        "cost_dim": 128,
        "text_encoder_name": "open_clip:ViT-L-14-336-quickgelu",
        "text_pretrained": "openai",
    },
    "tgcnet_ct_organs": {"image_size": 512, "clip_model": "ViT-L-14-336-quickgelu", "clip_pretrained": "openai"},
    "jras_segmentation": {"image_size": 224, "batch_size": 32, "epochs": 100},
}


def _config(bundle: str, name: str) -> dict:
    return json.loads((BUNDLES / bundle / "configs" / name).read_text())


@pytest.mark.parametrize("bundle", sorted(PAPER))
def test_defaults_are_the_papers_and_small_json_overrides_only_known_values(bundle):
    train, inference, small = _config(bundle, "train.json"), _config(bundle, "inference.json"), small_values(bundle)
    assert {k: train[k] for k in PAPER[bundle]} == PAPER[bundle]
    # inference builds with the trained values: the run record, or train.json's for a bundle not trained yet
    assert all(inference[k] == f"$@trained['{k}']" for k in PAPER[bundle] if k in inference)
    unknown = sorted(set(small) - set(train))
    assert not unknown, f"small.json sets ids train.json does not have: {unknown}"
    unchanged = sorted(k for k, v in small.items() if train[k] == v)
    assert not unchanged, f"small.json repeats defaults: {unchanged}"


@pytest.mark.bundle
@pytest.mark.parametrize(
    "bundle, extra, key, model",
    [
        ("tirnet_lmis", [], "text_pretrained", "ViT-B-32"),
        ("tgcnet_lmis", ["--text_encoder_name", "minilm", "--text_pretrained", "None"], "clip_pretrained", "ViT-L-14"),
    ],
)
def test_paper_default_without_the_hub_fails_with_one_line_naming_small_json(tmp_path, bundle, extra, key, model):
    make_synthetic_lvit(tmp_path / "data", seed=0, size=32, n_train=2, n_val=1, n_test=1)
    args = bundle_args("training", ["configs/train.json"], tmp_path, "--num_workers", "0", *extra, small=False)
    env = dict(os.environ, HF_HUB_OFFLINE="1")  # the hub answers at once that it cannot be reached
    run = run_monai_bundle(BUNDLES / bundle, args, env=env, timeout=600)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: the pretrained weights 'openai' of open_clip {model}")
    assert "--config_file \"['configs/train.json','configs/small.json']\"" in last and f"--{key} /path/to/" in last
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "models").exists()
