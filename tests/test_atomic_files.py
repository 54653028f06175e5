"""lmseg_components.files: atomic writes keep the umask's mode, never leave a torn target, and clean up the
temporary files of killed writers (only theirs)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import torch

from lmseg_components.export import export_program
from lmseg_components.files import atomic_save, atomic_write, remove_stale_temps


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_get_the_umask_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_save({"x": torch.ones(2)}, tmp_path / "a.pt")
        export_program(torch.nn.Linear(2, 2), [torch.rand(1, 2)], tmp_path / "m.pt2")
    finally:
        os.umask(old)
    for name in ("a.pt", "m.pt2"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_a_failed_write_leaves_the_target_and_no_temp(tmp_path):
    target = tmp_path / "a.pt"
    atomic_save({"x": torch.ones(2)}, target)

    def fail(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert torch.equal(torch.load(target, weights_only=True)["x"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_temps_of_killed_writers_are_removed_and_nothing_else(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".checkpoint.{dead_pid}.0123abcd.tmp.pt"
    onnx_data = tmp_path / f".model.{dead_pid}.0123abcd.tmp.onnx.data"  # weights torch.onnx kept beside a temp
    live = tmp_path / f".checkpoint.{os.getpid()}.0123abcd.tmp.pt"  # a write in progress in this process
    user = [tmp_path / "notes.tmp", tmp_path / f".x.{dead_pid}.tmp", tmp_path / "model.pt", tmp_path / "a.onnx.data"]
    for path in (stale, onnx_data, live, *user):
        path.write_bytes(b"x")
    assert sorted(remove_stale_temps(tmp_path)) == sorted([stale, onnx_data])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (live, *user))
    stale.write_bytes(b"x")
    atomic_save({}, tmp_path / "checkpoint.pt")  # a process's first write to a folder also cleans up
    assert not stale.exists() and live.exists()
