"""No command deletes or overwrites what it did not create (issue 13, item 4), and a ``--device`` never reaches a
config expression unchecked (item 10)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bundle_cli import TIRNET_TINY, small_record

from lmseg_components.apps import cli
from lmseg_components.apps.deploy import make_deploy_app
from lmseg_components.export import export_bundle
from lmseg_components.files import prepare_output_dir, prepare_output_file
from lmseg_components.workflows import BUNDLES_DIR, copy_bundle, device_expression, load_bundle

pytestmark = pytest.mark.bundle  # spawns python -m monai.bundle / torchrun / lmseg processes

REPO = Path(__file__).resolve().parents[1]
BUNDLES = BUNDLES_DIR
HOSTILE_DEVICE = "cpu') if print('INJECTED') else torch.device('cpu"


def _lmseg(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "lmseg_components.apps.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd)


def _refused(run: subprocess.CompletedProcess, message: str) -> bool:
    return run.returncode == 1 and f"error: {message}" in run.stderr and "Traceback" not in run.stderr


def _exit_message(command, *args, **kwargs) -> str:
    """The message a command (in process) exits with: ``sys.exit("error: ...")`` prints it and exits with 1."""
    with pytest.raises(SystemExit) as exited:
        command(*args, **kwargs)
    return str(exited.value.code)


@pytest.fixture
def occupied(tmp_path) -> Path:
    """A folder holding a user's file."""
    folder = tmp_path / "occupied"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep me")
    return folder


def test_prepare_output_dir_rules(tmp_path, occupied):
    assert prepare_output_dir(tmp_path / "new" / "app") == (tmp_path / "new" / "app").resolve()
    assert (tmp_path / "new" / "app").is_dir()
    with pytest.raises(FileExistsError, match="is not empty.*--overwrite"):
        prepare_output_dir(occupied)
    assert prepare_output_dir(occupied, overwrite=True) == occupied.resolve()
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    for target in (source, tmp_path, source / "sub" / "out"):  # equal to, holding, inside the source
        with pytest.raises(ValueError, match="overlaps the input"):
            prepare_output_dir(target, overwrite=True, sources=[source])
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        prepare_output_dir(tmp_path / "file", overwrite=True)
    assert (occupied / "mine.txt").read_text() == "keep me"


def test_prepare_output_file_rules(tmp_path):
    target = tmp_path / "models" / "model.pt2"
    assert prepare_output_file(target) == target.resolve() and target.parent.is_dir()
    target.write_bytes(b"program")
    with pytest.raises(FileExistsError, match="exists.*--overwrite"):
        prepare_output_file(target)
    assert prepare_output_file(target, overwrite=True) == target.resolve()
    with pytest.raises(ValueError, match="overlaps the input"):
        prepare_output_file(target, overwrite=True, sources=[target])
    assert target.read_bytes() == b"program"


def test_make_synthetic_refuses_an_occupied_folder(occupied):
    run = _lmseg("make-synthetic", "--out", str(occupied), "--size", "32", "--n-train", "2", "--n-val", "1")
    assert _refused(run, "output folder"), run.stderr
    assert sorted(p.name for p in occupied.iterdir()) == ["mine.txt"]
    run = _lmseg(
        "make-synthetic", "--out", str(occupied), "--size", "32", "--n-train", "2", "--n-val", "1", "--overwrite"
    )
    assert run.returncode == 0, run.stderr
    assert (occupied / "mine.txt").read_text() == "keep me" and (occupied / "Train_Folder").is_dir()
    # a short summary naming the manifest, not the manifest (thousands of lines at the default size)
    assert len(run.stdout.splitlines()) == 1 and str(occupied / "synthetic.json") in run.stdout


def test_copy_bundle_never_deletes_the_target(occupied):
    with pytest.raises(FileExistsError, match="not empty"):
        copy_bundle(BUNDLES / "tirnet_lmis", occupied)
    copy_bundle(BUNDLES / "tirnet_lmis", occupied, overwrite=True)
    assert (occupied / "mine.txt").read_text() == "keep me" and (occupied / "configs" / "inference.json").is_file()
    with pytest.raises(ValueError, match="overlaps the input"):
        copy_bundle(BUNDLES / "tirnet_lmis", BUNDLES / "tirnet_lmis" / "copy", overwrite=True)


def test_label_app_refuses_an_occupied_folder(occupied):
    assert _exit_message(cli.label_app, str(occupied), "tirnet_lmis").startswith("error: output folder")
    assert sorted(p.name for p in occupied.iterdir()) == ["mine.txt"]
    message = _exit_message(cli.label_app, str(BUNDLES), "tirnet_lmis", overwrite=True)
    assert message.startswith("error: output folder") and "overlaps the input" in message
    assert not (BUNDLES / "model").exists() and not (BUNDLES / "main.py").exists()


def test_deploy_app_never_writes_over_its_sources(tmp_path, occupied):
    model = tmp_path / "model.ts"
    model.write_bytes(b"program")
    package = REPO / "lmseg_components"
    files = sorted(p.relative_to(package) for p in package.rglob("*.py"))
    run = _lmseg("deploy-app", "--out", ".", "--bundle", "bundles/tirnet_lmis", "--model", str(model), cwd=REPO)
    assert _refused(run, f"output folder {REPO} overlaps the input"), run.stderr
    assert sorted(p.relative_to(package) for p in package.rglob("*.py")) == files
    with pytest.raises(ValueError, match="overlaps the input"):
        make_deploy_app(tmp_path, BUNDLES / "tirnet_lmis", model, overwrite=True)  # holds the model
    with pytest.raises(FileExistsError, match="not empty"):
        make_deploy_app(occupied, BUNDLES / "tirnet_lmis", model)
    app = make_deploy_app(occupied, BUNDLES / "tirnet_lmis", model, overwrite=True)
    assert (app / "mine.txt").read_text() == "keep me" and (
        app / "models" / "tirnet_lmis" / "models" / "model.ts"
    ).is_file()
    assert (app / "lmseg_components" / "files.py").is_file()


def test_export_refuses_an_existing_program(tmp_path):
    tiny = {"bundle_root": str(tmp_path), **TIRNET_TINY}
    (tmp_path / "models").mkdir()
    record = {**small_record("tirnet_lmis"), **TIRNET_TINY}  # as training at small.json leaves it
    (tmp_path / "models" / "run_record.json").write_text(json.dumps(record))
    network = load_bundle(BUNDLES / "tirnet_lmis", ["inference.json"], tiny).get_parsed_content("network_def")
    torch.save(network.state_dict(), tmp_path / "models" / "model.pt")
    program = tmp_path / "models" / "model.pt2"
    program.write_bytes(b"an earlier export")
    with pytest.raises(FileExistsError, match="exists"):
        export_bundle(BUNDLES / "tirnet_lmis", overrides=tiny)
    assert program.read_bytes() == b"an earlier export"
    with pytest.raises(ValueError, match="overlaps the input"):
        export_bundle(BUNDLES / "tirnet_lmis", out=tmp_path / "models" / "model.pt", overrides=tiny, overwrite=True)
    assert export_bundle(BUNDLES / "tirnet_lmis", overrides=tiny, overwrite=True) == program.resolve()
    assert program.stat().st_size > 1000


def test_demo_refuses_a_foreign_folder_and_a_hostile_device(tmp_path, occupied):
    assert _exit_message(cli.demo, str(occupied), epochs=1).startswith("error: output folder")
    assert sorted(p.name for p in occupied.iterdir()) == ["mine.txt"]
    run = _lmseg("demo", "--out", str(tmp_path / "demo"), "--device", HOSTILE_DEVICE)
    assert _refused(run, "device must be"), run.stderr
    assert "INJECTED" not in run.stdout and not (tmp_path / "demo").exists()


@pytest.mark.parametrize("script", ["text_grounding.py", "ct_organs.py", "throughput.py"])
def test_benchmarks_refuse_a_hostile_device(tmp_path, script, capsys):
    spec = importlib.util.spec_from_file_location(script[:-3], REPO / "benchmarks" / script)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    assert _exit_message(benchmark.run, out=str(tmp_path), device=HOSTILE_DEVICE).startswith("error: device must be")
    assert "INJECTED" not in capsys.readouterr().out and not (tmp_path / "data").exists()


def test_device_expression():
    assert device_expression("cuda:1") == "$torch.device('cuda:1')"
    with pytest.raises(ValueError, match="device must be"):
        device_expression(HOSTILE_DEVICE)
