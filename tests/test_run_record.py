"""Every value that shapes a saved network is in its run record, so that inference, the apps, ``lmseg export`` and
``lmseg jras-bank`` rebuild the network a run trained from the record alone (a value left out is silently the
default: a run trained with other widths would not load)."""

from __future__ import annotations

import json
import re

import pytest
from bundle_cli import BUNDLES

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
