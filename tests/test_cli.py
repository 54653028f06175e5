import json
import subprocess
import sys

import pytest

from lmseg_components.cli import main

pytestmark = pytest.mark.bundle  # spawns python -m monai.bundle / torchrun / lmseg processes


def _lmseg(*args):
    return subprocess.run([sys.executable, "-m", "lmseg_components.cli", *args], capture_output=True, text=True)


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
