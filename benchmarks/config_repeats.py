"""How often a bundle's configs write the same thing twice, at one or more git revisions (default: the files as
they are, ``worktree``):

- ``same file``: values written more than once inside one config file;
- ``overlays``: values written in two config files loaded together (``train.json`` with ``small.json``,
  ``evaluate.json``, ``multi_gpu_train.json``, ``busi.json``, ...; ``inference.json`` with its overlays);
- ``train vs inference``: values ``train.json`` and ``inference.json`` both write;
- ``restated hyperparameters``: top-level plain values (numbers, names, flags) that the run record holds and that
  ``inference.json`` writes again instead of reading them from the trained run;
- ``same top-level ids``: the top-level ids ``train.json`` and ``inference.json`` both write with the same value
  (any value; #32 counted these, 20-39 per bundle when it was filed).

A "value" of the first three columns is a string of at least 24 characters that is not a plain ``@id`` reference
(a reference is how a value is written once), or a whole list or component; of the repeats only the largest
count (a repeated component is one repeat, not one per argument).

    python benchmarks/config_repeats.py
    python benchmarks/config_repeats.py --revisions 7d2b47c,80278cc,worktree
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root holds the benchmarks package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.script import run_script  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MIN_LENGTH = 24
REFERENCE = re.compile(r"^@[\w#]+$")
WORKTREE = "worktree"
COLUMNS = ("same file", "overlays", "train vs inference", "restated hyperparameters", "same top-level ids")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def bundle_configs(revision: str) -> dict[str, dict[str, dict]]:
    """bundle -> config file name -> content, for every ``bundles/*/configs/*.json`` but ``metadata.json``, at
    ``revision`` (``worktree``: the files as they are now)."""
    bundles: dict[str, dict[str, dict]] = {}
    if revision == WORKTREE:
        for path in sorted((ROOT / "bundles").glob("*/configs/*.json")):
            if path.name != "metadata.json":
                bundles.setdefault(path.parent.parent.name, {})[path.name] = json.loads(path.read_text())
        return bundles
    for path in _git("ls-tree", "-r", "--name-only", revision, "bundles").split():
        parts = path.split("/")
        if len(parts) == 4 and parts[2] == "configs" and parts[3].endswith(".json") and parts[3] != "metadata.json":
            bundles.setdefault(parts[1], {})[parts[3]] = json.loads(_git("show", f"{revision}:{path}"))
    return bundles


def values(node: object, top: bool = True) -> list[str]:
    """Every countable value inside ``node`` (serialised): long strings and, below the top level, lists and dicts."""
    found = []
    if isinstance(node, dict | list):
        if not top and node:
            found.append(json.dumps(node, sort_keys=True))
        for child in node.values() if isinstance(node, dict) else node:
            found += values(child, top=False)
    elif isinstance(node, str) and len(node) >= MIN_LENGTH and not REFERENCE.match(node):
        found.append(json.dumps(node))
    return found


def _largest(repeated: set[str]) -> set[str]:
    return {v for v in repeated if not any(v != w and v in w for w in repeated)}


def _inference_side(name: str) -> bool:
    return "inference" in name


def count(configs: dict[str, dict]) -> dict[str, int]:
    """The four columns of one bundle."""
    found = {name: values(config) for name, config in configs.items()}
    same = set().union(*({v for v, n in Counter(vs).items() if n > 1} for vs in found.values()))
    overlays = set()
    for a, b in itertools.combinations(found, 2):
        if _inference_side(a) == _inference_side(b) and {a, b} != {"train.json", "inference.json"}:
            overlays |= set(found[a]) & set(found[b])
    train, inference = configs.get("train.json", {}), configs.get("inference.json", {})
    recorded = train.get("train", {}).get("checkpoint", {}).get("run_record", {})
    restated = [
        k for k, v in inference.items() if k in recorded and k in train and v == train[k] and not isinstance(v, dict)
    ]
    return {
        "same file": len(_largest(same)),
        "overlays": len(_largest(overlays)),
        "train vs inference": len(_largest(set(found.get("train.json", [])) & set(found.get("inference.json", [])))),
        "restated hyperparameters": len(restated),
        "same top-level ids": sum(1 for k, v in inference.items() if k in train and v == train[k]),
    }


def run(revisions: str | tuple = WORKTREE) -> dict[str, dict[str, dict[str, int]]]:
    names = revisions.split(",") if isinstance(revisions, str) else [str(r) for r in revisions]
    for name in names:
        if (
            name != WORKTREE
            and subprocess.run(
                ["git", "rev-parse", "--verify", "-q", f"{name}^{{commit}}"], cwd=ROOT, capture_output=True
            ).returncode
        ):
            raise SystemExit(f"--revisions: {name!r} is no commit of this repository")
    table = {revision: {b: count(c) for b, c in sorted(bundle_configs(revision).items())} for revision in names}
    print("| revision | bundle | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for revision, bundles in table.items():
        for bundle, counts in bundles.items():
            print(f"| `{revision}` | {bundle} | " + " | ".join(str(counts[c]) for c in COLUMNS) + " |")
    return table


if __name__ == "__main__":
    run_script(run, __doc__)
