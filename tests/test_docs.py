"""Every documented command works as written: each fenced ``bash`` block of ``README.md``, ``docs/*.md`` and
``bundles/*/docs/README.md`` is marked ``<!-- docs-test: run -->`` (run here), ``<!-- docs-test: run slow -->``
(run by the slow job) or ``<!-- docs-test: skip reason="..." -->`` (network, Docker, GPU or its own venv).

The blocks of one document run in order with ``bash -e`` in one temporary copy of the repository (the bundle docs
from the bundle's folder, as their quick starts say), after the substitutions of :data:`SMALL`: ``/data/...``

pytestmark = pytest.mark.bundle  # spawns python -m monai.bundle / torchrun / lmseg processes
paths become synthetic sets made with ``lmseg make-synthetic``, datasets shrink, and every
``python -m monai.bundle`` command loads the bundle's CPU setting ``configs/small.json`` after its base config (the
documented commands use the paper defaults, which need the model hub) and gets the tiny settings of
the bundle checks' settings (``lmseg_components/resources/bundle_checks.json``: one epoch, small image size and
widths)."""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import fire
import pytest
from bundle_cli import with_small

from benchmarks.script import run_script
from lmseg_components.apps.bundle_checks import CHECK_SETTINGS
from lmseg_components.workflows import BUNDLES_DIR

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(BUNDLES_DIR.glob("*/docs/README.md"))]
BUNDLE_DOCS = sorted(BUNDLES_DIR.glob("*/docs/README.md"))
MARKER = re.compile(r'<!-- docs-test: (?:(run(?: slow)?)|skip reason="([^"]+)") -->')

# (pattern, replacement) applied to every line of a run block; {data} is the folder of the synthetic sets
SMALL = [
    (r"/data/QaTa-COV19", "{data}/lvit"),
    (r"/data/ACDC|/data/new_patients", "{data}/acdc"),
    (r"patient101", "patient001"),  # a patient of ACDC's testing set -> one of the synthetic set
    (r"/data/x\.png", "{data}/x.png"),
    (r"--image_size 224", "--image_size 32"),
    (r" --n[-_](?:train|val|test|cases|patients) \d+", ""),
    (r"(lmseg make-synthetic .*--kind lvit.*)", r"\1 --n-train 8 --n-val 4 --n-test 4"),
    (r"(lmseg make-synthetic .*--kind msd.*)", r"\1 --n-cases 6"),
    (r"(lmseg make-synthetic .*--kind acdc.*)", r"\1 --n-patients 6"),
]
# the bundles' tiny settings, less sw_batch_size: inference_exported.json sets 1 for the batch-1 exported program
TINY = {
    bundle: {k: v for k, v in s["overrides"].items() if k != "sw_batch_size"}
    for bundle, s in json.loads(CHECK_SETTINGS.read_text()).items()
}


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    code: str
    mode: str | None  # "run", "run slow", "skip"; None: unmarked
    reason: str | None

    def __str__(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def bash_blocks(doc: Path) -> list[Block]:
    """The fenced ``bash`` blocks of ``doc`` with the docs-test marker among the comment lines just above."""
    lines = doc.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if not lines[i].startswith("```"):
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if lines[i] == "```bash":
            mode = reason = None
            k = i - 1
            while k >= 0 and lines[k].startswith("<!--") and lines[k].endswith("-->"):
                found = MARKER.fullmatch(lines[k])
                if found:
                    mode, reason = found[1] or "skip", found[2]
                k -= 1
            blocks.append(Block(doc, i + 1, "\n".join(lines[i + 1 : end]) + "\n", mode, reason))
        i = end + 1
    return blocks


BLOCKS = [block for doc in DOCS for block in bash_blocks(doc)]


def _with_small(found: re.Match) -> str:
    """A ``--config_file`` value with ``configs/small.json`` (the CPU setting, no model hub) after its base config."""
    value = found[1].strip('"')
    configs = with_small(ast.literal_eval(value) if value.startswith("[") else [value])
    return '--config_file "[' + ",".join(f"'{c}'" for c in configs) + ']"'


def small(code: str, data: Path, overrides: dict) -> str:
    """``code`` with continuation lines joined, :data:`SMALL` applied to every command line and ``overrides``
    replacing or added to the options of every ``python -m monai.bundle`` command."""
    lines = []
    for line in code.replace("\\\n", " ").splitlines():
        command, comment = re.match(r"(.*?)(\s+#.*)?$", line).groups()
        for pattern, replacement in SMALL:
            command = re.sub(pattern, replacement.replace("{data}", str(data)), command)
        if "-m monai.bundle " in command:
            command = re.sub(r"--config_file (\"[^\"]*\"|\S+)", _with_small, command)
            for key, value in overrides.items():
                command = re.sub(rf" --{key} \S+", "", command) + f" --{key} {shlex.quote(json.dumps(value))}"
        lines.append(command + (comment or ""))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def docs_data(tmp_path_factory) -> Path:
    """The synthetic sets the ``/data/...`` paths of the docs point to, made as a user would."""
    data = tmp_path_factory.mktemp("docs_data")
    for kind, extra in (
        ("lvit", ["--size", "48", "--n-train", "8", "--n-val", "4", "--n-test", "4"]),
        ("acdc", ["--n-patients", "6"]),
    ):
        run = subprocess.run(
            ["lmseg", "make-synthetic", "--out", str(data / kind), "--kind", kind, *extra],
            env=_env(REPO),
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr[-2000:]
    shutil.copy(next((data / "lvit" / "Test_Folder" / "img").glob("*.png")), data / "x.png")
    return data


def _env(repo: Path) -> dict:
    """This interpreter's venv first on PATH (``python``, ``lmseg``, ``ruff``, ``torchrun``) and ``repo``'s
    ``lmseg_components`` first on the import path."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH")) if p)
    return env


def _copy_repository(dest: Path) -> Path:
    """The working tree as a fresh clone with local changes has it: tracked and untracked, not ignored files."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def _run_doc(doc: Path, modes: tuple[str, ...], tmp_path: Path, data: Path) -> None:
    repo = _copy_repository(tmp_path / "repo")
    cwd = repo / doc.parent.relative_to(REPO).parent if doc in BUNDLE_DOCS else repo
    blocks = [b for b in bash_blocks(doc) if b.mode in modes]
    assert blocks, f"no block of {doc} is run"
    for block in blocks:
        bundle = cwd.name if cwd != repo else re.search(r"cd bundles/(\w+)|$", block.code)[1]
        script = small(block.code, data, TINY.get(bundle, {}))
        run = subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=_env(repo), capture_output=True, text=True)
        assert run.returncode == 0, f"{block} failed:\n{script}\n{(run.stdout + run.stderr)[-4000:]}"


DEFAULT_DOCS = [d for d in DOCS if any(b.mode == "run" for b in bash_blocks(d))]
SLOW_DOCS = [d for d in DOCS if any(b.mode == "run slow" for b in bash_blocks(d))]


def _doc_id(doc: Path) -> str:
    return str(doc.relative_to(REPO).parent) if doc in BUNDLE_DOCS else str(doc.relative_to(REPO))


@pytest.mark.bundle  # runs the documented monai.bundle / lmseg commands
@pytest.mark.parametrize("doc", DEFAULT_DOCS, ids=_doc_id)
def test_documented_commands_run(doc, tmp_path, docs_data):
    _run_doc(doc, ("run",), tmp_path, docs_data)


@pytest.mark.slow
@pytest.mark.bundle
@pytest.mark.parametrize("doc", SLOW_DOCS, ids=_doc_id)
def test_documented_commands_run_slow(doc, tmp_path, docs_data):
    _run_doc(doc, ("run", "run slow"), tmp_path, docs_data)


NIGHTLY_QUICK_STARTS = {"tgcnet_lmis", "tgcnet_ct_organs"}


def test_every_bash_block_is_marked():
    unmarked = [str(b) for b in BLOCKS if b.mode is None]
    assert not unmarked, f"bash blocks without <!-- docs-test: run --> or skip reason: {unmarked}"
    # the README's training, segmenting and data blocks, the development checks and each bundle's quick start run
    # by default, TGC-Net's nightly (their bundle tests run the same train -> evaluate -> infer workflows by default)
    readme = [(REPO / "README.md", h) for h in ("## Train on your data", "## Segment your own images", "## Data")]
    for doc, heading in [*readme, (REPO / "docs" / "development.md", "## Checks")] + [
        (doc, "## Quick start") for doc in BUNDLE_DOCS
    ]:
        text = doc.read_text()
        section = text[text.index(heading) :]
        section = section[: section.find("\n## ", 1) if "\n## " in section[1:] else None]
        mode = "run slow" if doc.parent.parent.name in NIGHTLY_QUICK_STARTS else "run"
        assert f"<!-- docs-test: {mode} -->\n```bash" in section, f"{doc}: {heading} has no {mode!r} block"


def test_small_settings():
    code = (
        "lmseg make-synthetic --out data/s --kind lvit --seed 0 --size 128 --n-train 300 --n-val 50 --n-test 100\n"
        "python -m monai.bundle run training --config_file configs/train.json \\\n  --dataset_dir /data/ACDC"
        " --image_size 224  # trains\n"
        "python -m monai.bundle run evaluating --config_file \"['configs/train.json','configs/evaluate.json']\"\n"
    )
    assert small(code, Path("synthetic"), {"image_size": 32, "features": [8, 16]}) == (
        "lmseg make-synthetic --out data/s --kind lvit --seed 0 --size 128 --n-train 8 --n-val 4 --n-test 4\n"
        "python -m monai.bundle run training --config_file \"['configs/train.json','configs/small.json']\"    "
        "--dataset_dir synthetic/acdc --image_size 32 --features '[8, 16]'  # trains\n"
        "python -m monai.bundle run evaluating --config_file "
        "\"['configs/train.json','configs/small.json','configs/evaluate.json']\" --image_size 32 --features '[8, 16]'\n"
    )


def test_no_double_quoted_dollar_expression():
    """bash expands ``$torch``, ``$lmseg_components`` and ``$[...]`` inside double quotes before MONAI sees them:
    config expressions on a command line go in single quotes."""
    found = [
        f"{doc.relative_to(REPO)}:{n}: {line.strip()}"
        for doc in DOCS
        for n, line in enumerate(doc.read_text().splitlines(), 1)
        if re.search(r"\"\$[\w\[({]", line)
    ]
    assert not found, "\n".join(found)


def test_ci_reads_the_readme_install_commands():
    """``.ci/run`` takes the first line of the block after ``<!-- ci:main -->`` / ``<!-- ci:test -->``."""
    script = REPO / ".ci" / "run"
    function = re.search(r"^readme_command\(\) \{.*?^\}", script.read_text(), re.S | re.M)[0]
    for name, ends_with in (("main", "lmseg demo --out runs/demo"), ("test", "python -m pytest")):
        run = subprocess.run(
            ["bash", "-c", f"{function}\nreadme_command {name}"], cwd=REPO, capture_output=True, text=True
        )
        assert run.stdout.strip().startswith("python3 -m venv .venv") and run.stdout.strip().endswith(ends_with)


def _benchmark(name: str):
    return importlib.import_module(f"benchmarks.{name}")


def test_text_grounding_refuses_space_separated_variants(tmp_path):
    """``--variants cnn_off vit_off`` used to train ``cnn_off`` and then exit 2 on ``vit_off``."""
    bench = _benchmark("text_grounding")
    command = ["--bundle", "tgcnet_lmis", "--variants", "cnn_off", "vit_off", "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match=r"unexpected arguments \['vit_off'\]: give lists comma-separated"):
        run_script(bench.run, bench.__doc__, command)
    assert not any(tmp_path.iterdir())  # refused before making data or training


def test_an_option_the_script_does_not_take_is_named_not_a_traceback(capsys):
    """``config_repeats.py --verbose`` ended in fire's ``TypeError`` traceback."""
    bench = _benchmark("config_repeats")
    with pytest.raises(SystemExit, match=r"^unknown option\(s\) --verbose; this script takes --revisions$"):
        run_script(bench.run, bench.__doc__, ["--verbose"])
    assert capsys.readouterr().out == ""  # refused before counting anything


@pytest.mark.parametrize(
    "name", ["ct_organs", "encoder_probe", "inference_time", "jras_retrieval", "text_grounding", "throughput"]
)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_benchmark_help_prints_the_docstring_and_runs_nothing(name, flag, capsys, monkeypatch):
    """fire passed ``--help`` on to ``run(**overrides)`` as ``help=True``: the J-RAS benchmark started training."""
    bench = _benchmark(name)
    monkeypatch.setattr(bench, "run", lambda **kwargs: pytest.fail(f"{name} ran with {kwargs}"))
    run_script(bench.run, bench.__doc__, [flag])
    assert capsys.readouterr().out.strip() == bench.__doc__.strip()


def test_throughput_runs_the_bundle_training_and_prints_a_row(tmp_path, capsys):
    bench = _benchmark("throughput")
    command = ["--out", str(tmp_path), "--bundles", "tirnet_lmis", "--settings", "small", "--iterations", "2"]
    run_script(bench.run, bench.__doc__, command)
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tirnet_lmis | small |")]
    cells = [c.strip() for c in row[0].strip("|").split("|")]
    assert cells[2] == "8x1x64x64" and float(cells[3]) > 0 and cells[5].endswith("img/s")  # the small.json batch
    assert float(cells[8].split()[0]) > 0 and float(cells[9]) > 0  # ratios to BasicUNet
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # each run in a temporary folder, then removed


def test_retrieval_index_reports_recall_against_exact_search_and_sweeps_faiss(capsys):
    bench = _benchmark("retrieval_index")
    assert 1_000_000 not in bench.main.__defaults__[0]  # the 1M rows take minutes: asked for with --sizes
    fire.Fire(bench.main, ["--sizes", "[2000]", "--backends", "torch,faiss-flat,faiss-ivf", "--n_queries", "16"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("2000", "clustered", "torch", "exact"),
        ("2000", "clustered", "faiss-flat", "exact"),
        ("2000", "clustered", "faiss-ivf", "nprobe=16"),
    ]
    assert rows[0][8] == rows[1][8] == "1.000" and len(rows[0]) == 11  # exact rows, torch with its two bounds
    fire.Fire(bench.main, ["--sizes", "[2000]", "--backends", "faiss-ivf", "--n_queries", "16", "--sweep"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [r[3] for r in rows] == [f"nprobe={n}" for n in (8, 16, 32, 64, 128)]
    recalls = [float(r[8]) for r in rows]
    assert recalls == sorted(recalls) and recalls[-1] == 1.0  # more lists visited, never less found


def test_the_readme_is_a_users_page():
    """At most 150 lines; its first screen (50 lines) says what lmseg does, shows a result picture that exists and
    holds the two commands; the internals live in docs/ (each linked page exists)."""
    text = (REPO / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) <= 150, len(lines)
    first = "\n".join(lines[:50])
    picture = re.search(r"!\[[^\]]+\]\(([^)]+\.png)\)", first)
    assert picture and (REPO / picture[1]).is_file(), "no result picture on the first screen"
    assert "<!-- ci:main -->" in first and "<!-- ci:test -->" in first
    for link in re.findall(r"\]\(((?:docs|bundles)/[^)#]+)\)", text):
        assert (REPO / link).is_file(), f"README links {link}, which does not exist"
