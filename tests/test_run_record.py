"""Every value that shapes a saved network is in its run record, so that inference, the apps, ``lmseg export`` and
``lmseg jras-bank`` rebuild the network a run trained from the record alone (a value left out is silently the
default: a run trained with other widths would not load)."""

from __future__ import annotations

import json
import re

import pytest
from bundle_cli import BUNDLES

from lmseg_components.runs import RUN_RECORD_FILE, TrainedValueError, TrainedValues

REFERENCE = re.compile(r"@(\w+)")
NOT_SHAPING = {"bundle_root"}  # where caches live (CLIP weights), not what the network is


def _references(node) -> list[str]:
    if isinstance(node, dict):
        return [r for value in node.values() for r in _references(value)]
    if isinstance(node, list):
        return [r for value in node for r in _references(value)]
    return REFERENCE.findall(node) if isinstance(node, str) else []


def shaping_values(config: dict, root: str = "network_def") -> set[str]:
    """The ids of plain values (not components, not expressions) that ``root`` reads, directly or through the
    components and expressions it refers to."""
    seen, todo = set(), _references(config[root])
    while todo:
        key = todo.pop()
        if key not in seen:
            seen.add(key)
            todo += _references(config.get(key))
    return {
        key
        for key in seen
        if key in config and not isinstance(config[key], dict) and not str(config[key]).startswith(("$", "@"))
    }


@pytest.mark.parametrize("bundle", ["tirnet_lmis", "tgcnet_lmis", "tgcnet_ct_organs", "jras_segmentation"])
def test_the_run_record_holds_every_value_that_shapes_the_network(bundle):
    config = json.loads((BUNDLES / bundle / "configs" / "train.json").read_text())
    record = set(config["train"]["checkpoint"]["run_record"])
    missing = sorted(shaping_values(config) - record - NOT_SHAPING)
    assert not missing, f"{bundle}: network_def reads {missing}, which its run record does not hold"


def test_the_closure_follows_components_and_expressions():
    config = {
        "width": 8,
        "depth": [1, 2],
        "encoder": {"_target_": "E", "dim": "$@dim * 2"},
        "dim": 4,
        "unused": 3,
        "network_def": {"_target_": "N", "encoder": "@encoder", "width": "@width", "depth": "@depth"},
    }
    assert shaping_values(config) == {"width", "depth", "dim"}


def test_inference_reads_the_run_record_or_the_bundles_own_train_json(tmp_path, caplog):
    """A trained run's record wins; with nothing trained, the plain values (not components or expressions) of
    bundle_root's own train.json, or else of the named bundle's; a value an older run's record lacks is the named
    bundle's default, with a warning; with nothing to read, a lookup names where it looked and the override."""
    bundle = BUNDLES / "tirnet_lmis"
    train = json.loads((bundle / "configs" / "train.json").read_text())
    for untrained in (TrainedValues(bundle / "models", bundle), TrainedValues(tmp_path, tmp_path, "tirnet_lmis")):
        assert untrained["width"] == train["width"] and untrained["text_encoder_name"] == train["text_encoder_name"]
        assert "network_def" not in untrained and "ckpt_dir" not in untrained  # a component, an expression
    (tmp_path / RUN_RECORD_FILE).write_text(json.dumps({"width": 4, "image_size": 32}))
    trained = TrainedValues(tmp_path, tmp_path, "tirnet_lmis")
    assert dict(trained) == {"width": 4, "image_size": 32}
    with caplog.at_level("WARNING"):
        assert trained["use_rtmb"] == train["use_rtmb"]
    assert f"has no 'use_rtmb': using {bundle / 'configs' / 'train.json'}'s {train['use_rtmb']!r}" in caplog.text
    with pytest.raises(TrainedValueError, match=rf"{RUN_RECORD_FILE} has no 'use_rtmb'.*pass --use_rtmb <value>"):
        TrainedValues(tmp_path, tmp_path)["use_rtmb"]
    with pytest.raises(TrainedValueError, match=r"holds no trained run \(run_record.json\) to read 'width'"):
        TrainedValues(tmp_path / "empty", tmp_path)["width"]
