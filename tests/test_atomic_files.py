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
from lmseg_components.files import atomic_save, atomic_write, finish_saves, remove_stale_temps, save_together


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


# A writer of two files that dies (os._exit: no cleanup, like SIGKILL) at its n-th call of `step`.
KILLED_WRITER = """
import os, sys, torch
import lmseg_components.files as files
step, die_at = sys.argv[2], int(sys.argv[3])
calls = []
real = getattr(files.os, step) if step == "replace" else getattr(files, step)
def dying(*args, **kwargs):
    calls.append(1)
    if len(calls) == die_at:
        os._exit(9)
    return real(*args, **kwargs)
if step == "replace":
    files.os.replace = dying
else:
    setattr(files, step, dying)
folder = sys.argv[1]
files.save_together({f"{folder}/gallery.pt": {"v": torch.full((3,), 2.0)}, f"{folder}/index.pt": {"v": 2}})
"""


@pytest.mark.parametrize(
    "step, die_at, expected",
    [
        ("atomic_write", 1, 1),  # after both pending files, before the journal: the old pair
        ("replace", 2, 2),  # the journal's rename done (the commit), neither target renamed: the new pair
        ("replace", 3, 2),  # between the gallery's rename and the index's: the new pair
    ],
)
def test_files_saved_together_are_both_old_or_both_new_after_a_kill(tmp_path, step, die_at, expected):
    save_together({tmp_path / "gallery.pt": {"v": torch.full((3,), 1.0)}, tmp_path / "index.pt": {"v": 1}})
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path), step, str(die_at)])
    assert killed.returncode == 9
    assert any(p.name.endswith(".pending") for p in tmp_path.iterdir())  # the kill left work behind
    finish_saves(tmp_path)  # what every reader runs first
    gallery, index = (torch.load(tmp_path / name, weights_only=True) for name in ("gallery.pt", "index.pt"))
    assert torch.equal(gallery["v"], torch.full((3,), float(expected))) and index["v"] == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery.pt", "index.pt"]


def test_save_together_refuses_two_folders_and_leaves_a_live_writers_journal(tmp_path):
    with pytest.raises(ValueError, match="one folder"):
        save_together({tmp_path / "a.pt": 1, tmp_path / "sub" / "b.pt": 2})
    journal = tmp_path / f".a.pt.{os.getpid()}.commit.json"  # a write of this (running) process
    journal.write_text('{"renames": []}')
    assert finish_saves(tmp_path) == [] and journal.exists()
