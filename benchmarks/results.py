"""Benchmark results as data: each benchmark writes ``benchmarks/results/<name>.json`` (its rows per seed, mean ±
sample std, and how it was measured: the exact command, seeds, commit, bundle version, torch / MONAI versions,
device, wall time), and the docs' result tables are rendered from those files between markers::

    <!-- results: text_grounding_tirnet_lmis -->
    ... the rendered table ...
    <!-- /results -->

A marker may select variants and columns, ``<!-- results: NAME variants=full columns=correct_mdice,shuffled_mdice
-->`` (the README's short tables). ``python benchmarks/results.py`` rewrites every marked table of the README, its
``docs/`` pages and the bundle docs; ``--check`` lists the tables that differ from their rendering
(``tests/test_results_tables.py`` runs it). A table measured at another bundle version than today's says so in its
caption.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "bundles").glob("*/docs/README.md")))
BLOCK = re.compile(
    r"(?P<open><!-- results: (?P<name>[\w.-]+)(?P<options>(?: \w+=[\w,.-]+)*) -->\n)"
    r"(?P<body>.*?)(?P<close><!-- /results -->)",
    re.S,
)


def bundle_version(bundle: str) -> str:
    """The version in ``bundles/<bundle>/configs/metadata.json``."""
    return json.loads((ROOT / "bundles" / bundle / "configs" / "metadata.json").read_text())["version"]


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(bundle: str, device: str, seeds: Sequence[int], started: float) -> dict:
    """How a result was measured: command, seeds, commit (``+dirty`` with uncommitted changes other than docs),
    bundle version, torch / MONAI / Python versions, device, wall time since ``started`` (``time.perf_counter()``)."""
    import monai
    import torch

    commit = _git("rev-parse", "--short=12", "HEAD")
    if _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!*.md"):  # docs do not change a number
        commit += "+dirty"
    return {
        "command": " ".join(["python", *sys.argv]),
        "seeds": list(seeds),
        "commit": commit,
        "bundle": bundle,
        "bundle_version": bundle_version(bundle),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "device": device,
        "wall_minutes": round((time.perf_counter() - started) / 60, 2),
        "date": time.strftime("%Y-%m-%d"),
    }


def summarise(rows: Sequence[dict], keys: Sequence[str]) -> tuple[dict, dict]:
    """Mean and sample standard deviation (ddof 1; 0 for one seed) over ``rows`` of each key every row has."""
    mean, std = {}, {}
    for key in keys:
        values = np.array([r[key] for r in rows if r.get(key) is not None], dtype=float)
        if len(values) == len(rows) and len(values):
            mean[key] = float(values.mean())
            std[key] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return mean, std


def save_results(
    name: str,
    variants: dict[str, list[dict]],
    columns: Sequence[tuple[str, str]],
    measured: dict,
    caption: str,
    settings: dict,
    directory: Path = RESULTS_DIR,
    paired: Sequence[tuple[str, str]] = (),
    measured_by_variant: dict[str, dict] | None = None,
) -> Path:
    """Write ``<directory>/<name>.json``: per variant the rows of each seed, their mean and std, and
    :func:`provenance`. Variants of an earlier run with the same ``settings`` and ``columns`` stay (a benchmark
    run variant by variant fills one table); with other settings the file is replaced.

    Args:
        name: the result's name (``text_grounding_tirnet_lmis``), the docs marker's.
        variants: variant -> one result dict per seed.
        columns: (result key, column title) of the rendered table, in order.
        measured: :func:`provenance` of this run.
        caption: what was measured, one sentence (data, epochs, image size); rendered above the table.
        settings: what makes two runs comparable (epochs, image size, data, overrides).
        paired: (variant, baseline) pairs whose difference in the first column, paired by the rows' ``seed``, is
            rendered below the table with a paired t-test (:func:`paired_differences`); pairs of an earlier run of
            the same table stay.
        measured_by_variant: the provenance of the variants it names, instead of ``measured`` (a table collected
            from runs done earlier, each variant with its own seeds and minutes).
    """
    keys = [key for key, _ in columns]
    path = directory / f"{name}.json"
    columns = [list(c) for c in columns]
    table, pairs = {}, [list(pair) for pair in paired]
    earlier = kept_table(path, settings, columns)
    if earlier:
        table = earlier["variants"]
        pairs = [pair for pair in earlier.get("paired", []) if pair not in pairs] + pairs
    for variant, rows in variants.items():
        mean, std = summarise(rows, keys)
        table[variant] = {
            "seeds": rows,
            "mean": mean,
            "std": std,
            "measured": (measured_by_variant or {}).get(variant, measured),
        }
    result = {"name": name, "caption": caption, "settings": settings, "columns": columns, "variants": table}
    if pairs:
        result["paired"] = pairs
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


def kept_table(path: Path, settings: dict, columns: Sequence[Sequence[str]]) -> dict | None:
    """The results file ``path`` as :func:`save_results` wrote it, if it was measured with the same ``settings`` and
    ``columns`` (its rows stay when a run adds others); None otherwise or when there is none."""
    if not path.is_file():
        return None
    earlier = json.loads(path.read_text())
    if earlier.get("settings") != settings or earlier.get("columns") != [list(c) for c in columns]:
        return None
    return earlier


def _measured(runs: dict[str, dict], current_version: str) -> str:
    """One sentence per group of variants measured alike: seeds, bundle version, commit, date, device, versions,
    wall time; a bundle version other than ``current_version`` in bold."""
    groups: dict[str, list[str]] = {}
    for variant, m in runs.items():
        stale = "" if m["bundle_version"] == current_version else f" **(today's is {current_version})**"
        text = (
            f"seeds {', '.join(map(str, m['seeds']))}, {m['bundle']} {m['bundle_version']}{stale}, commit "
            f"`{m['commit']}`, {m['date']}, {m['device']}, torch {m['torch']}, MONAI {m['monai']}"
        )
        groups.setdefault(text, []).append(variant)
    if len(groups) == 1:
        return f"Measured with {next(iter(groups))}."
    return " ".join(f"{', '.join(f'`{v}`' for v in variants)}: {text}." for text, variants in groups.items())


def render(result: dict, current_version: str | None = None) -> str:
    """The markdown of a result: a caption (what was measured; seeds, bundle version, commit, date, device and
    versions per group of variants measured alike), the commands, and a table of mean ± sample std per variant
    (the value alone for a variant of one run).
    A variant measured at another bundle version than ``current_version`` (default: today's) says so in bold."""
    runs = {variant: row["measured"] for variant, row in result["variants"].items()}
    first = next(iter(runs.values()))
    current = current_version if current_version is not None else bundle_version(first["bundle"])
    commands = "\n".join(dict.fromkeys(m["command"] for m in runs.values()))
    several = any(len(row["seeds"]) > 1 for row in result["variants"].values())
    spread = " Cells: mean ± sample std over the seeds." if several else ""
    lines = [
        f"{result['caption']}{spread} {_measured(runs, current)}",
        "",
        f'<!-- docs-test: skip reason="a benchmark run" -->\n```bash\n{commands}\n```',
        "",
        "| variant | " + " | ".join(title for _, title in result["columns"]) + " | minutes |",
        "|---|" + "---|" * (len(result["columns"]) + 1),
    ]
    for variant, row in result["variants"].items():
        one = len(row["seeds"]) == 1  # one run: no spread to show
        cells = [
            "—" if key not in row["mean"] else f"{row['mean'][key]:.3f}" + ("" if one else f" ± {row['std'][key]:.3f}")
            for key, _ in result["columns"]
        ]
        lines.append(f"| `{variant}` | " + " | ".join(cells) + f" | {row['measured']['wall_minutes']:.0f} |")
    differences = paired_differences(result)
    if differences:
        key, title = result["columns"][0]
        lines += [
            "",
            f"Paired by seed (same seeds, splits and data): the difference in {title}, mean ± sample std over the "
            "seeds both rows have, and the paired t-test's two-sided p.",
            "",
            f"| comparison | {title} difference | seeds | p |",
            "|---|---|---|---|",
        ]
        for (variant, baseline), d in differences.items():
            p = "—" if np.isnan(d["p"]) else f"{d['p']:.3f}"
            spread = "" if d["n"] == 1 else f" ± {d['std']:.3f}"  # one seed: no spread to show
            lines.append(f"| `{variant}` − `{baseline}` | {d['mean']:+.3f}{spread} | {d['n']} | {p} |")
    return "\n".join(lines) + "\n"


def paired_differences(result: dict) -> dict[tuple[str, str], dict]:
    """For each ``paired`` (variant, baseline) of ``result`` whose variants are both in its table: the differences
    of the first column between rows with the same ``seed`` — ``mean``, sample ``std``, ``n`` seeds, and ``p`` of
    the paired t-test (NaN below two seeds or with identical differences)."""
    key = result["columns"][0][0]
    differences = {}
    for variant, baseline in result.get("paired", []):
        if variant not in result["variants"] or baseline not in result["variants"]:
            continue
        by_seed = {row["seed"]: row[key] for row in result["variants"][baseline]["seeds"] if key in row}
        matched = [
            (row[key], by_seed[row["seed"]])
            for row in result["variants"][variant]["seeds"]
            if key in row and row.get("seed") in by_seed
        ]
        if not matched:
            continue
        a, b = (np.array(values, dtype=float) for values in zip(*matched, strict=True))
        differences[(variant, baseline)] = paired_difference(a, b)
    return differences


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict:
    """``a - b`` of values paired by seed: ``mean``, sample ``std`` (0 for one seed), ``n`` and ``p`` of the
    paired t-test (NaN below two seeds or with identical differences)."""
    from scipy.stats import ttest_rel

    diff = a - b
    several = len(diff) > 1
    p = float(ttest_rel(a, b).pvalue) if several and diff.std() > 0 else float("nan")
    std = float(diff.std(ddof=1)) if several else 0.0
    return {"mean": float(diff.mean()), "std": std, "n": len(diff), "p": p}


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def select(result: dict, options: str) -> dict:
    """``result`` with only the variants and columns a marker's ``variants=a,b columns=x,y`` options name (in their
    order); without options, all of them.

    Raises:
        ValueError: an unknown option, variant or column (naming it and the choices).
    """
    chosen = dict(option.split("=", 1) for option in options.split())
    unknown = sorted(set(chosen) - {"variants", "columns"})
    if unknown:
        raise ValueError(f"unknown options {unknown}; a marker takes variants=... and columns=...")
    result = dict(result)
    if "variants" in chosen:
        names = chosen["variants"].split(",")
        missing = [n for n in names if n not in result["variants"]]
        if missing:
            raise ValueError(f"no variants {missing}; the file has {list(result['variants'])}")
        result["variants"] = {n: result["variants"][n] for n in names}
    if "columns" in chosen:
        titles = dict(result["columns"])
        keys = chosen["columns"].split(",")
        missing = [k for k in keys if k not in titles]
        if missing:
            raise ValueError(f"no columns {missing}; the file has {list(titles)}")
        result["columns"] = [[k, titles[k]] for k in keys]
    return result


def render_docs(docs: Sequence[Path] = DOCS, directory: Path = RESULTS_DIR, check: bool = False) -> list[str]:
    """Render every ``<!-- results: NAME -->`` block of ``docs`` from ``<directory>/NAME.json``; with ``check``,
    change nothing and return ``file: NAME`` for each block that differs from its rendering (or names no file)."""
    differing = []
    for doc in docs:
        text = doc.read_text()
        new = BLOCK.sub(lambda match, doc=doc: _rendered(match, doc, directory, differing), text)
        if not check and new != text:
            doc.write_text(new)
    return differing


def _rendered(match: re.Match, doc: Path, directory: Path, differing: list[str]) -> str:
    """The block of ``match`` rendered from its result file (unchanged when there is none); ``doc: NAME`` is added
    to ``differing`` when the block differs from its rendering."""
    path = directory / f"{match['name']}.json"
    if not path.is_file():
        differing.append(f"{_shown(doc)}: {match['name']} (no {_shown(path)})")
        return match[0]
    try:
        body = render(select(json.loads(path.read_text()), match["options"]))
    except ValueError as e:
        raise ValueError(f"{_shown(doc)}: results block {match['name']}: {e}") from None
    if body != match["body"]:
        differing.append(f"{_shown(doc)}: {match['name']}")
    return match["open"] + body + match["close"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/results.py`` renders the docs' result tables; ``--check`` only reports differences."""
    check = "--check" in (sys.argv[1:] if argv is None else argv)
    differing = render_docs(check=check)
    for line in differing:
        print(f"{'differs' if check else 'rendered'}: {line}")
    return 1 if check and differing else 0


if __name__ == "__main__":
    sys.exit(main())
