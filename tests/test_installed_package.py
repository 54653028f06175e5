"""lmseg installed from its wheel, outside a source checkout: the bundles travel inside the package, so a bundle is
found by name (``lmseg segment --bundle tirnet_lmis``) with no ``bundles/`` folder around. A fresh venv with the
wheel alone (no dependencies: the lookup and the option checks use the standard library)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _bundles_in_repo() -> list[str]:
    return sorted(p.parent.parent.name for p in (REPO / "bundles").glob("*/configs/metadata.json"))


def test_a_wheel_installed_in_a_fresh_venv_finds_every_bundle_by_name(tmp_path):
    # built from a copy: setuptools builds in place (build/, *.egg-info), which would leave files in the checkout
    # and let a stale build/ hide a missing copy step
    source = tmp_path / "source"
    ignored = shutil.ignore_patterns(".git", ".venv*", "runs", "build", "*.egg-info", "__pycache__", ".*_cache")
    shutil.copytree(REPO, source, ignore=ignored)
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels)]
    built = subprocess.run([*build, str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("lmseg-*.whl")
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)]
    installed = subprocess.run(install, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"  # no bundles/ here, nor above
    elsewhere.mkdir()
    where = "import json; from lmseg_components.locations import BUNDLES_DIR as b; "
    where += "print(json.dumps([str(b), sorted(p.parent.parent.name for p in b.glob('*/configs/metadata.json'))]))"
    found = subprocess.run([str(python), "-c", where], capture_output=True, text=True, cwd=elsewhere)
    assert found.returncode == 0, found.stderr[-2000:]
    folder, names = json.loads(found.stdout)
    assert Path(folder).is_relative_to(tmp_path / "venv") and names == _bundles_in_repo()
    assert not list(Path(folder).glob("*/models"))  # a local run's outputs never ship
    # the command's option check reads the installed bundle's config ids: a mistyped flag is named, not run
    lmseg = tmp_path / "venv" / "bin" / "lmseg"
    typo = [str(lmseg), "segment", "--bundle", "tirnet_lmis", "--model", "m.pt", "a.png", "--txt", "a lesion"]
    run = subprocess.run(typo, capture_output=True, text=True, cwd=elsewhere)
    assert run.returncode == 2 and "unknown option --txt; did you mean --text?" in run.stderr, run.stderr[-2000:]
