"""Crash-safe file writing: write to a temporary file beside the target, then rename.

A kill never leaves a torn target; the file gets the mode the user's umask gives a new file (``tempfile`` would
leave 0600, which breaks a shared cache or a non-root container); the temporary name carries the writer's pid, so
leftovers of a killed writer are recognised and removed by the next process's first write to the same folder.

Files that must agree (a J-RAS gallery and its index) are written by :func:`save_together`: a journal naming them
is the commit point, and :func:`finish_saves` completes a committed write that a kill cut short.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

__all__ = [
    "atomic_write",
    "atomic_save",
    "remove_stale_temps",
    "save_together",
    "finish_saves",
    "current_umask",
    "prepare_output_dir",
    "prepare_output_file",
]

# .<target stem>.<pid>.<random>.tmp<target suffix>: the suffix stays last for writers that check it (torch.export)
# `.model.<pid>.<hex>.tmp.onnx`, and `.tmp.onnx.data`: the weights torch.onnx once wrote beside a temporary file
_TEMP = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp(\.[^.]+)?(\.data)?$")
# .<target name>.<pid>.<random>.pending: written by save_together, renamed onto the target once its journal exists
_PENDING = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.pending$")
# .<first target name>.<pid>.commit.json: the journal of one save_together, {"renames": [[pending, target], ...]}
_JOURNAL = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.commit\.json$")
# folders this process has cleaned of stale temporary files
_CLEANED: set[Path] = set()


def current_umask() -> int:
    """The process umask, read without changing it where ``/proc`` tells it (``os.umask`` alone must set it,
    which races with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(directory: str | Path) -> list[Path]:
    """Remove the temporary files that :func:`atomic_write` left in ``directory`` when its writer was killed
    (the pid in the name is no longer running); return what was removed. Other files are never touched."""
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for path in directory.iterdir():
        match = _TEMP.match(path.name)
        if match and not _pid_alive(int(match["pid"])):
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass
    return removed


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file beside ``path``, give it the umask's mode and rename it onto
    ``path``; on any error the temporary file is removed and ``path`` is unchanged. The first write of a process
    to a folder also removes the temporary files killed writers left there. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent.resolve()
    if folder not in _CLEANED:  # once per folder and process: a cache folder may hold many thousand files
        remove_stale_temps(folder)
        _CLEANED.add(folder)
    tmp = path.parent / f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}"
    try:
        write(str(tmp))
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` through :func:`atomic_write`."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_together(objects: Mapping[str | Path, object]) -> list[Path]:
    """``torch.save`` each object to its path so that a kill leaves either every old file or every new one.

    Each object is written to a pending file beside its target; then a journal naming the (pending, target) pairs is
    written atomically (the commit); then each pending file is renamed onto its target and the journal removed. A
    kill before the journal exists leaves the old files (and pending ones that :func:`finish_saves` removes); a
    kill after it leaves a journal that :func:`finish_saves` completes. Readers of the files call
    :func:`finish_saves` first.

    Args:
        objects: target path -> object; every target in one folder (a rename across folders is not atomic).

    Returns:
        the targets, in the order given.
    """
    targets = [Path(p) for p in objects]
    folders = {t.parent.resolve() for t in targets}
    if len(folders) != 1:
        raise ValueError(f"save_together writes into one folder, got {sorted(map(str, folders))}")
    folder = targets[0].parent
    folder.mkdir(parents=True, exist_ok=True)
    finish_saves(folder)
    renames = []
    try:
        for target, obj in zip(targets, objects.values(), strict=True):
            pending = folder / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.pending"
            renames.append((pending, target))
            torch.save(obj, pending)
            os.chmod(pending, 0o666 & ~current_umask())
        journal = folder / f".{targets[0].name}.{os.getpid()}.commit.json"
        names = [[pending.name, target.name] for pending, target in renames]
        atomic_write(journal, lambda tmp: Path(tmp).write_text(json.dumps({"renames": names})))
    except BaseException:
        for pending, _ in renames:
            pending.unlink(missing_ok=True)
        raise
    _complete(journal)
    return targets


def _complete(journal: Path) -> None:
    """Rename the journal's pending files onto their targets (those still pending), then remove the journal."""
    for pending, target in json.loads(journal.read_text())["renames"]:
        if (journal.parent / pending).exists():
            os.replace(journal.parent / pending, journal.parent / target)
    journal.unlink()


def finish_saves(folder: str | Path) -> list[Path]:
    """Complete the :func:`save_together` writes a killed writer committed in ``folder`` and remove the pending
    files of those it had not; return the targets completed. Writes of running processes are left alone."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    completed, journaled = [], set()
    for journal in sorted(folder.iterdir()):
        match = _JOURNAL.match(journal.name)
        if match is None:
            continue
        renames = json.loads(journal.read_text())["renames"]
        journaled.update(pending for pending, _ in renames)
        if not _pid_alive(int(match["pid"])):
            _complete(journal)
            completed += [folder / target for _, target in renames]
    for path in folder.iterdir():
        match = _PENDING.match(path.name)
        if match and path.name not in journaled and not _pid_alive(int(match["pid"])):
            path.unlink(missing_ok=True)
    return completed


def _overlapping(target: Path, sources: Sequence[str | Path]) -> list[Path]:
    """The ``sources`` that ``target`` equals, lies inside, or holds (all compared as resolved paths)."""
    return [
        source
        for source in (Path(s).resolve() for s in sources)
        if target == source or target in source.parents or source in target.parents
    ]


def prepare_output_dir(target: str | Path, overwrite: bool = False, sources: Sequence[str | Path] = ()) -> Path:
    """Check that a command may write into the folder ``target``, then create it; return it.

    A command writes only into a folder that is new or empty, unless the user passes ``overwrite`` (then files of
    the same names are replaced; nothing else in the folder is touched). Whatever ``overwrite`` says, the folder
    may not be, lie inside or hold one of ``sources`` (what the command copies or reads), so that a command never
    writes over its own input.

    Args:
        target: the output folder.
        overwrite: allow a non-empty ``target``.
        sources: the files and folders the command copies or reads.

    Raises:
        ValueError: ``target`` is, holds or lies inside a source (the message names both).
        FileExistsError: ``target`` is a file, or a non-empty folder and ``overwrite`` is false.
    """
    target = Path(target).resolve()
    clash = _overlapping(target, sources)
    if clash:
        raise ValueError(f"output folder {target} overlaps the input {clash[0]}: choose a folder outside it")
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"output folder {target} is a file")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output folder {target} is not empty: choose a new or empty folder, or pass --overwrite to replace the "
            "files of the same names in it"
        )
    target.mkdir(parents=True, exist_ok=True)
    return target


def prepare_output_file(target: str | Path, overwrite: bool = False, sources: Sequence[str | Path] = ()) -> Path:
    """Check that a command may write the file ``target`` (the rules of :func:`prepare_output_dir`: an existing
    file only with ``overwrite``, never one of ``sources`` or a path inside or around one) and create its folder;
    return the resolved path.

    Raises:
        ValueError: ``target`` is, holds or lies inside a source.
        FileExistsError: ``target`` is a folder, or an existing file and ``overwrite`` is false.
    """
    target = Path(target).resolve()
    clash = _overlapping(target, sources)
    if clash:
        raise ValueError(f"output file {target} overlaps the input {clash[0]}: choose another path")
    if target.is_dir():
        raise FileExistsError(f"output file {target} is a folder")
    if target.exists() and not overwrite:
        raise FileExistsError(f"output file {target} exists: choose another path, or pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target
