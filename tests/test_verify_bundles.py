import json
import shutil
from pathlib import Path

import pytest

from lmseg_components.apps.bundle_checks import CHECK_SETTINGS, verify_bundles
from lmseg_components.workflows import BUNDLES_DIR

REPO = Path(__file__).resolve().parents[1]
STATIC = ["files", "metadata", "json_style", "config_consistency", "large_files"]


@pytest.fixture
def bundles(tmp_path):
    shutil.copytree(BUNDLES_DIR / "tirnet_lmis" / "configs", tmp_path / "tirnet_lmis" / "configs")
    for name in ("LICENSE", "large_files.yml", "docs"):
        source = BUNDLES_DIR / "tirnet_lmis" / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / "tirnet_lmis" / name)
    return tmp_path


def test_static_checks_pass_on_the_real_bundle(bundles, capsys):
    assert verify_bundles(bundles, CHECK_SETTINGS, STATIC) == 0
    assert "tirnet_lmis  PASS" in capsys.readouterr().out


def test_failures_are_reported_per_check(bundles, capsys):
    (bundles / "tirnet_lmis" / "LICENSE").unlink()
    meta_path = bundles / "tirnet_lmis" / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["version"] = "0.2.0"
    del meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    meta_path.write_text(json.dumps(meta, indent=4) + "\n")
    assert verify_bundles(bundles, CHECK_SETTINGS, STATIC) == 1
    out = capsys.readouterr().out
    assert "FAIL tirnet_lmis / files: missing ['LICENSE']" in out
    assert "FAIL tirnet_lmis / metadata: configs/metadata.json: network_data_format/outputs/pred:" in out
    assert "'channel_def' is a required property" in out


@pytest.mark.parametrize(
    "package, version, message",
    [
        (
            "lmseg-components",
            "0.1.0",
            "required_packages_version names no installed distribution: ['lmseg-components']",
        ),
        ("lmseg", "9.9.9", "required_packages_version lmseg 9.9.9, but this lmseg is"),
    ],
)
def test_required_packages_must_be_installable_as_written(bundles, capsys, package, version, message):
    meta_path = bundles / "tirnet_lmis" / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["required_packages_version"][package] = version
    meta_path.write_text(json.dumps(meta, indent=4) + "\n")
    assert verify_bundles(bundles, CHECK_SETTINGS, ["metadata"]) == 1
    assert f"FAIL tirnet_lmis / metadata: {message}" in capsys.readouterr().out


def test_config_consistency_names_each_value_inference_sets_differently(bundles, capsys):
    configs = bundles / "tirnet_lmis" / "configs"
    infer = json.loads((configs / "inference.json").read_text())
    train = json.loads((configs / "train.json").read_text())
    infer["image_size"] = train["image_size"] * 2
    infer["network_def"]["out_channels"] = 2
    (configs / "inference.json").write_text(json.dumps(infer, indent=4) + "\n")
    assert verify_bundles(bundles, CHECK_SETTINGS, ["config_consistency"]) == 1
    out = capsys.readouterr().out
    assert f"image_size: {train['image_size'] * 2} in inference, {train['image_size']} in training" in out
    assert "network_def#out_channels: 2 in inference, 1 in training" in out

    del infer["network_def"]["out_channels"]  # an argument inference leaves out (training-only) is not drift
    infer["image_size"] = train["image_size"]  # the same value, but written twice: the run record holds it
    infer["in_channels"] = "$@trained['width']"  # a trained value read under another id
    infer["num_workers"] = "$@trained['num_workers']"  # a value the run record does not hold
    (configs / "inference.json").write_text(json.dumps(infer, indent=4) + "\n")
    assert verify_bundles(bundles, CHECK_SETTINGS, ["config_consistency"]) == 1
    out = capsys.readouterr().out
    assert "image_size: written again in inference; read it from the run record: \"$@trained['image_size']\"" in out
    assert "in_channels: $@trained['width'] in inference reads a value train.json's run_record does not hold" in out
    assert "num_workers: $@trained['num_workers'] in inference reads a value" in out

    for key in ("image_size", "in_channels"):
        infer[key] = f"$@trained['{key}']"
    infer["num_workers"] = train["num_workers"]
    infer["output_dir"] = "elsewhere"  # nor are the workflow's own ids
    (configs / "inference.json").write_text(json.dumps(infer, indent=4) + "\n")
    assert verify_bundles(bundles, CHECK_SETTINGS, ["config_consistency"]) == 0


def test_bad_options_are_named_in_one_line(tmp_path):
    from tests.bundle_cli import lmseg

    for args, message in (
        (["--checks", "lint"], "error: --checks: unknown ['lint']; choose from files,metadata,"),
        (["--bundles_dir", str(tmp_path / "none")], f"error: --bundles_dir {tmp_path / 'none'}: no such folder"),
        (["--settings_file", str(tmp_path / "s.json")], f"error: --settings_file {tmp_path / 's.json'}: no such file"),
    ):
        run = lmseg("verify-bundles", *args)
        assert run.returncode == 1 and run.stderr.startswith(message) and "Traceback" not in run.stderr, run.stderr


def test_checks_keep_their_console_output_off_the_table(bundles):
    """MONAI's input summaries, the bundle's logging config and library warnings go to a log, not the console; a
    failed check shows the last lines of its own output under its reason."""
    from tests.bundle_cli import lmseg

    run = lmseg("verify-bundles", "--bundles_dir", str(bundles), "--checks", "files,properties")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[0] == "checking tirnet_lmis ..."
    assert "tirnet_lmis  PASS   PASS" in run.stdout
    assert "Setting logging properties" not in run.stdout + run.stderr  # ConfigWorkflow's, in the properties check

    (bundles / "tirnet_lmis" / "configs" / "train.json").write_text('{"trainer": "$undefined_name + 1"}\n')
    run = lmseg("verify-bundles", "--bundles_dir", str(bundles), "--checks", "properties")
    assert run.returncode == 1
    failed = run.stdout.split("FAIL tirnet_lmis / properties: ", 1)[1]
    assert "Setting logging properties" in failed.split("\n    | ", 1)[1]  # the check's own output, under it
