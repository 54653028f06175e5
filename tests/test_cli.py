import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lmseg_components.apps import cli
from lmseg_components.apps.cli import main

pytestmark = pytest.mark.bundle  # spawns python -m monai.bundle / torchrun / lmseg processes

REPO = Path(__file__).resolve().parent.parent


def _lmseg(*args):
    return subprocess.run([sys.executable, "-m", "lmseg_components.apps.cli", *args], capture_output=True, text=True)


def test_make_synthetic_then_check_data(tmp_path):
    run = _lmseg(
        "make-synthetic",
        "--out",
        str(tmp_path / "lvit"),
        "--size",
        "40",
        "--n-train",
        "3",
        "--n-val",
        "1",
        "--n-test",
        "1",
        "--seed",
        "5",
    )
    assert run.returncode == 0, run.stderr
    assert "text-ignoring oracle m-Dice" in run.stdout and "synthetic.json" in run.stdout
    check = _lmseg("check-data", str(tmp_path / "lvit"))
    assert check.returncode == 0 and "valid lvit dataset" in check.stdout

    run = _lmseg("make-synthetic", "--out", str(tmp_path / "msd"), "--kind", "msd", "--n-cases", "3")  # 1 per part
    assert run.returncode == 0, run.stderr
    assert _lmseg("check-data", str(tmp_path / "msd")).returncode == 0


def test_check_data_failure_is_a_clear_message(tmp_path):
    _lmseg(
        "make-synthetic",
        "--out",
        str(tmp_path),
        "--size",
        "40",
        "--n-train",
        "2",
        "--n-val",
        "1",
        "--n-test",
        "1",
    )
    (tmp_path / "Test_Folder" / "img" / "syn_test_0000.png").write_bytes(b"broken")
    check = _lmseg("check-data", str(tmp_path))
    assert check.returncode == 1
    assert "Traceback" not in check.stdout + check.stderr
    assert "syn_test_0000.png (row 2): unreadable or corrupt image" in check.stdout


def test_unknown_kind_and_acdc(tmp_path):
    run = _lmseg("make-synthetic", "--out", str(tmp_path), "--kind", "ultrasound")
    assert run.returncode != 0 and "--kind must be" in run.stderr
    run = _lmseg("make-synthetic", "--out", str(tmp_path / "acdc"), "--kind", "acdc", "--n-patients", "2")
    assert run.returncode == 0 and sorted(p.name for p in (tmp_path / "acdc").iterdir()) == ["patient001", "patient002"]
    # an option of another kind is refused, not ignored: naming it and what this kind takes; nothing is written
    run = _lmseg("make-synthetic", "--out", str(tmp_path / "msd"), "--kind", "msd", "--n-train", "3")
    assert run.returncode != 0 and "Traceback" not in run.stderr and not (tmp_path / "msd").exists()
    assert "--kind msd does not take --n-train; it takes --seed, --n-cases" in run.stderr


def test_label_app_writes_the_training_overrides(tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    run = _lmseg(
        "label-app",
        "--out",
        str(tmp_path / "app"),
        "--bundles",
        "tirnet_lmis",
        "--tirnet_lmis",
        str(model),
        "--overrides",
        '{"tirnet_lmis": {"width": 8, "image_size": 96}}',
    )
    assert run.returncode == 0, run.stderr
    bundle = tmp_path / "app" / "model" / "tirnet_lmis"
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    assert config["width"] == 8 and config["image_size"] == 96 and "network_def" in config
    assert (bundle / "models" / "model.pt").read_bytes() == b"weights" and (tmp_path / "app" / "main.py").is_file()
    common = ["label-app", "--out", str(tmp_path / "b"), "--bundles", "tirnet_lmis", "--overrides"]
    with pytest.raises(SystemExit, match=r"^error: .*overrides given for \['x'\]"):  # status 1, this one line
        main([*common, '{"x": {}}'])
    with pytest.raises(SystemExit, match=r"^error: .*must map config ids to values"):
        main([*common, '{"tirnet_lmis": 3}'])


COMMANDS = [
    "make-synthetic",
    "check-data",
    "demo",
    "segment",
    "export",
    "publish",
    "label-app",
    "deploy-app",
    "jras-bank",
    "verify-bundles",
]
# runs main() in a fresh interpreter and reports whether torch or MONAI got imported
IN_FRESH_PYTHON = """
import sys
from lmseg_components.apps.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    print("exit", e.code)
print("heavy imports:", sorted(m for m in ("torch", "monai", "numpy", "fire") if m in sys.modules))
"""


def _fresh(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", IN_FRESH_PYTHON, *argv], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_exits_0_reads_plainly_and_imports_nothing_heavy(command):
    run = _fresh(command, "--help")
    assert run.returncode == 0 and "\nexit " not in run.stdout, run.stdout + run.stderr
    assert run.stdout.startswith(f"usage: lmseg {command}")
    assert "``" not in run.stdout and ":class:" not in run.stdout and ":func:" not in run.stdout
    assert run.stdout.rstrip().endswith("heavy imports: []")


def test_overview_and_version_without_torch_or_monai():
    overview = _fresh("--help")
    assert all(f"  {command}" in overview.stdout for command in COMMANDS)
    assert overview.stdout.rstrip().endswith("heavy imports: []")
    version = subprocess.run(
        [sys.executable, "-m", "lmseg_components.apps.cli", "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.strip() == f"lmseg {importlib.metadata.version('lmseg')}"


def test_mistyped_command_or_option_is_refused_with_the_closest_name(tmp_path):
    """``--txt`` was taken as a config override and the run went on without a prompt; nothing is written now."""
    command = _fresh("segmnt", "--bundle", "tirnet_lmis")
    assert "exit 2" in command.stdout and "unknown command 'segmnt'; did you mean segment?" in command.stderr
    out = tmp_path / "masks"
    typo = _fresh("segment", "--bundle", "tirnet_lmis", "--model", "m.pt", "a.png", "--txt", "hi", "--out", str(out))
    assert "exit 2" in typo.stdout and "unknown option --txt; did you mean --text?" in typo.stderr
    assert typo.stdout.rstrip().endswith("heavy imports: []") and not out.exists()
    for argv, expected in (
        (["make-synthetic", str(tmp_path / "d"), "--n-train", "3", "--sead", "1"], "--sead; did you mean --seed?"),
        (["label-app", "--out", str(tmp_path / "app"), "--tirnet_lmsi", "m.pt"], "did you mean --tirnet_lmis?"),
        (["export", "tirnet_lmis", "--widht", "8"], "did you mean --width?"),
    ):
        run = _fresh(*argv)
        assert "exit 2" in run.stdout and expected in run.stderr, run.stderr
    assert not (tmp_path / "d").exists() and not (tmp_path / "app").exists()


def test_config_ids_still_pass_as_overrides(monkeypatch):
    """``--text_cache_dir`` is an id of the bundle's configs: the check lets it through to the command."""
    seen = {}
    monkeypatch.setitem(cli.COMMANDS, "segment", lambda *images, bundle=None, **overrides: seen.update(overrides))
    cli.main(["segment", "--bundle", "tirnet_lmis", "x.png", "--text_cache_dir", "runs/cache", "--width=8"])
    assert seen == {"text_cache_dir": "runs/cache", "width": 8}


@pytest.mark.parametrize(
    "call",
    [
        "from lmseg_components.apps.cli import main; main(['segment', '--help'])",
        "from benchmarks.script import run_script; run_script(lambda **kwargs: None, 'usage: bench', ['--help'])",
    ],
)
def test_help_into_a_reader_that_stopped_ends_quietly(call):
    """``lmseg segment --help | head`` and a benchmark's ``--help | head``: the reader has gone, nothing to say."""
    closed = "import os; r, w = os.pipe(); os.close(r); os.dup2(w, 1); "  # stdout: a pipe nobody reads any more
    run = subprocess.run([sys.executable, "-c", closed + call], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0 and "BrokenPipeError" not in run.stderr, run.stderr[-2000:]
