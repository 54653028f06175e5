"""Each bundle's conformance table names, for every row it calls FAITHFUL or CHOICE, the config keys that set it and
their defaults (``key: value``), or ``—`` where the code fixes it; the defaults must be the bundle's configs', so a
default that drifts from its documented value fails here."""

from __future__ import annotations

import json
import re

import pytest
from bundle_cli import BUNDLES

HEADER = "| spec point | module | config (key: default) | status |"
ITEM = re.compile(r"`(?P<key>[A-Za-z_][\w#]*): (?P<value>[^`]+)`")
CONFIGS = ("train.json", "inference.json")


def conformance_rows(bundle: str) -> list[tuple[str, str, str]]:
    """(spec point, config cell, status) of each row of the bundle's conformance table."""
    lines = (BUNDLES / bundle / "docs" / "README.md").read_text().splitlines()
    if lines.count(HEADER) != 1:
        raise AssertionError(f"{bundle}: docs/README.md needs one conformance table headed {HEADER!r}")
    rows = []
    for line in lines[lines.index(HEADER) + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == 4, f"{bundle}: a conformance row needs 4 cells: {line}"
        rows.append((cells[0], cells[2], cells[3]))
    return rows


def config_value(bundle: str, key: str):
    """The value at ``key`` (``#``-separated ids, list indices as numbers) in ``train.json``, else
    ``inference.json``; KeyError when neither has it."""
    for name in CONFIGS:
        value = json.loads((BUNDLES / bundle / "configs" / name).read_text())
        try:
            for part in key.split("#"):
                value = value[int(part)] if isinstance(value, list) else value[part]
        except (KeyError, IndexError, ValueError, TypeError):
            continue
        return value
    raise KeyError(f"{bundle}: no config key {key!r} in {CONFIGS}")


def parse(value: str):
    """A documented default as JSON (numbers, true / false / null, lists), else the text itself."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


@pytest.mark.parametrize("bundle", ["tirnet_lmis", "tgcnet_lmis", "tgcnet_ct_organs", "jras_segmentation"])
def test_documented_defaults_are_the_configs(bundle):
    checked = 0
    for point, config, status in conformance_rows(bundle):
        if "FAITHFUL" not in status and "CHOICE" not in status:
            continue
        if config == "—":
            continue
        items = list(ITEM.finditer(config))
        rest = ITEM.sub("", config).replace(",", "").strip()
        assert items and not rest, f"{bundle}, {point!r}: the config cell must be `key: default` items or —: {config}"
        for item in items:
            documented, actual = parse(item["value"]), config_value(bundle, item["key"])
            assert documented == actual, f"{bundle}, {point!r}: the table says {item[0]}, the config has {actual!r}"
            checked += 1
    assert checked >= 5, f"{bundle}: only {checked} documented defaults"
