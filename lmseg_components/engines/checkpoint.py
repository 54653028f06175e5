"""Crash-safe training state: a resumable checkpoint that replays the interrupted run exactly, and a best-model
saver whose best score survives the resume."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from monai.data.utils import set_rnd
from monai.utils import set_determinism

from lmseg_components.engines.checkpoint_loader import check_checkpoint_file
from lmseg_components.files import atomic_save, atomic_write, remove_stale_temps

__all__ = [
    "RUN_RECORD_FILE",
    "ResumableCheckpoint",
    "BestModelSaver",
    "RunMismatchError",
    "epoch_seed",
    "trained_values",
]

RUN_RECORD_FILE = "run_record.json"  # the run record as JSON beside the checkpoint: what inference and export read


class RunMismatchError(ValueError):
    """The checkpoint in ``bundle_root`` was written by a run with other data or other config values."""


def trained_values(ckpt_dir: str | Path) -> dict:
    """The config values the network in ``ckpt_dir`` was trained with: the run record (image size, text context
    length, network settings, ...; CLI overrides included) that the training workflow's ``ResumableCheckpoint``
    writes beside the model as ``run_record.json`` and keeps in ``checkpoint.pt`` (read from there for runs made
    before the JSON snapshot). Empty when there is neither."""
    ckpt_dir = Path(ckpt_dir)
    snapshot = ckpt_dir / RUN_RECORD_FILE
    if snapshot.is_file():
        try:
            return json.loads(snapshot.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{snapshot}: not valid JSON ({e}); delete it to fall back on checkpoint.pt") from None
    path = ckpt_dir / "checkpoint.pt"
    if not path.is_file():
        return {}
    return torch.load(path, map_location="cpu", weights_only=True).get("run_record") or {}


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of ``epoch``'s random streams (shuffle order, augmentation, dropout): a function of the run's
    ``seed`` and the epoch alone, so an epoch replays the same way whether or not the run was restarted."""
    return (seed * 1_000_003 + epoch) % 2**32


def _rng_state() -> dict:
    _, keys, *position = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": json.dumps(keys.tolist() + position),
        "python": json.dumps(random.getstate(), default=list),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = json.loads(state["numpy"])
    np.random.set_state(("MT19937", np.array(numpy_state[:624], dtype=np.uint32), *numpy_state[624:]))
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


class _SkipFirstBatches:
    """The trainer's data for the rest of an interrupted epoch: on the first ``iter`` it starts the loader under
    the epoch's seed, drops the ``skip`` batches the interrupted run had consumed, restores the random state
    saved with them and puts the loader back, so later epochs use it unchanged."""

    def __init__(self, engine: Engine, loader, skip: int, rng_state: dict | None):
        self.engine, self.loader, self.skip, self.rng_state = engine, loader, skip, rng_state

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        self.engine.state.dataloader = self.loader
        batches = iter(self.loader)
        for _ in range(self.skip):
            next(batches)
        if self.rng_state is not None:
            _set_rng_state(self.rng_state)
        return batches


class ResumableCheckpoint:
    """Save ``save_dict`` (trainer, network, optimizer, scheduler, ...) to ``<save_dir>/<filename>`` every
    ``save_interval`` iterations and after each epoch's handlers (validation); on start, load it if it exists,
    so a killed run restarted with the same command continues where it stopped — and, with ``seed``, as the
    same run: the final weights equal those of a run that was never interrupted.

    - **Same random streams**: with ``seed``, every epoch starts its random streams (torch, numpy, python, the
      training dataset's random transforms, hence shuffle order, augmentation, dropout) from
      :func:`epoch_seed` ``(seed, epoch)``. A checkpoint taken inside an epoch also holds the random state of
      that moment; the resumed run replays the epoch's loader, skips the batches already trained on and goes on
      from the saved state.
    - **Same run**: ``run_record`` (JSON-able values: a dataset fingerprint, the config values that shape the
      model) is stored in the checkpoint, and as ``run_record.json`` beside it (what ``lmseg segment``, the label
      and deploy apps and ``lmseg export`` read, so nobody retypes ``--width 16 --image_size 64``); resuming
      with a different record raises :class:`RunMismatchError` naming both values, instead of "resuming" a
      finished run on other data. ``epochs`` may grow on resume.
    - **Only consistent states**: nothing is saved when an exception (Ctrl-C, a crash) stops training, since
      it may strike inside an optimizer step or a validation; a rerun repeats at most ``save_interval``
      iterations, or the validation of the epoch that was cut.
    - **Nothing torn, nothing left**: saves go through :func:`lmseg_components.files.atomic_save` (temporary
      file + rename, umask mode); temporary files of killed writers are removed.

    MONAI's ``CheckpointSaver`` names interval checkpoints by iteration and ``CheckpointLoader`` needs a path
    that exists; this handler keeps one path. Under distributed training only rank 0 writes; every rank loads.

    Args:
        save_dir: checkpoint directory.
        save_dict: objects with ``state_dict`` / ``load_state_dict``; must include the engine to resume its
            iteration and epoch (and a :class:`BestModelSaver` to keep the best score).
        filename: checkpoint file name.
        save_interval: iterations between saves (0: only at epoch ends).
        resume: load an existing checkpoint at start.
        map_location: where tensors are loaded (``cpu`` lets GPU checkpoints resume on CPU).
        seed: the run's seed; None leaves the random streams alone (a resumed run then differs).
        run_record: what the run is trained on and with; compared on resume.
    """

    def __init__(
        self,
        save_dir: str | Path,
        save_dict: dict,
        filename: str = "checkpoint.pt",
        save_interval: int = 50,
        resume: bool = True,
        map_location: str | torch.device = "cpu",
        seed: int | None = None,
        run_record: dict | None = None,
    ):
        if not save_dict:
            raise ValueError("save_dict must name at least one object to checkpoint.")
        if save_interval < 0:
            raise ValueError(f"save_interval must be >= 0, got {save_interval}.")
        self.path = Path(save_dir) / filename
        self.save_dict = save_dict
        self.save_interval = save_interval
        self.resume = resume
        self.map_location = map_location
        self.seed = seed
        self.run_record = json.loads(json.dumps(run_record)) if run_record is not None else None
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        if self.save_interval > 0:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_interval), self._save_in_epoch)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)
        if self.seed is not None:
            # after the epoch's own handlers (validation, saving): the next epoch starts from its seed
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._seed_next_epoch)

    def _start(self, engine: Engine) -> None:
        remove_stale_temps(self.path.parent)
        checkpoint = self.load(engine) if self.resume else None
        if self.seed is None:
            return
        self._seed_next_epoch(engine)
        epoch_length = engine.state.epoch_length or len(engine.state.dataloader)
        done_in_epoch = engine.state.iteration % epoch_length
        if done_in_epoch:
            rng = checkpoint.get("rng") if checkpoint else None
            engine.state.dataloader = _SkipFirstBatches(engine, engine.state.dataloader, done_in_epoch, rng)

    def _seed_next_epoch(self, engine: Engine) -> None:
        seed = epoch_seed(self.seed, engine.state.epoch + 1)
        set_determinism(seed=seed)
        dataset = getattr(engine.state.dataloader, "dataset", None)
        if dataset is not None:
            set_rnd(getattr(dataset, "transform", dataset), seed)

    def _check_record(self, saved: dict | None) -> None:
        if self.run_record is None or saved == self.run_record:
            return
        if saved is None:
            raise RunMismatchError(
                f"{self.path} has no record of its run's data and config; this run has {self.run_record}. "
                f"Start fresh: use another bundle_root, or move {self.path.parent} away."
            )
        keys = sorted(k for k in set(saved) | set(self.run_record) if saved.get(k) != self.run_record.get(k))
        diff = [f"{k}: checkpoint {saved.get(k)!r} vs this run {self.run_record.get(k)!r}" for k in keys]
        raise RunMismatchError(
            f"{self.path} was trained on other data or with other config values ({'; '.join(diff)}). "
            f"Rerun with the same values to resume, or start fresh: use another bundle_root, or move "
            f"{self.path.parent} away."
        )

    def load(self, engine: Engine) -> dict | None:
        """Load the checkpoint into ``save_dict`` (after checking its run record); return it, or None if
        there is none."""
        if not self.path.is_file():
            return None
        max_epochs = engine.state.max_epochs
        checkpoint = torch.load(check_checkpoint_file(self.path), map_location=self.map_location, weights_only=True)
        self._check_record(checkpoint.get("run_record"))
        missing = sorted(set(self.save_dict) - set(checkpoint))
        if missing:
            raise ValueError(f"{self.path}: no state for {missing} (a checkpoint of another bundle or version).")
        Checkpoint.load_objects(to_load=self.save_dict, checkpoint=checkpoint)
        if max_epochs is not None:
            engine.state.max_epochs = max(max_epochs, engine.state.epoch)
        self.logger.info(f"Resumed from {self.path} at epoch {engine.state.epoch}, iteration {engine.state.iteration}.")
        return checkpoint

    def save(self, engine: Engine) -> None:
        if idist.get_rank() != 0:
            return
        state = {name: obj.state_dict() for name, obj in self.save_dict.items()}
        state["rng"] = _rng_state()
        if self.run_record is not None:
            state["run_record"] = self.run_record
            record = json.dumps(self.run_record, indent=1)
            atomic_write(self.path.parent / RUN_RECORD_FILE, lambda tmp: Path(tmp).write_text(record))
        atomic_save(state, self.path)

    def _save_in_epoch(self, engine: Engine) -> None:
        # The last iteration of an epoch is saved at the epoch's end, after validation: a checkpoint that says
        # "epoch done" before its validation ran would resume past it.
        if engine.state.iteration % engine.state.epoch_length:
            self.save(engine)


class BestModelSaver:
    """Write ``save_dict`` to ``<save_dir>/<filename>`` (atomically) whenever the attached evaluator's key
    metric reaches a new best, as MONAI's ``CheckpointSaver(save_key_metric=True, key_metric_filename=...)``
    does — and keep that best score across a restart: put this object in :class:`ResumableCheckpoint`'s
    ``save_dict``, and a resumed run restores the evaluator's ``best_metric`` / ``best_metric_epoch``, so its
    first validation replaces the saved model only if it is better.

    The best value and epoch are MONAI's own (``Workflow`` compares the key metric with ``metric_cmp_fn`` at
    each epoch end and logs "best value"); this handler writes the file when that epoch is the best one.

    Args:
        save_dir: directory of the model file.
        save_dict: what the file holds, e.g. ``{"model": network}``; a single object is written as its bare
            ``state_dict`` (the Model Zoo's ``model.pt``, what ``CheckpointLoader`` and ``ckpt_export`` read).
        filename: the model file name.
    """

    def __init__(self, save_dir: str | Path, save_dict: dict, filename: str = "model.pt"):
        if not save_dict:
            raise ValueError("save_dict must name at least one object to save.")
        self.path = Path(save_dir) / filename
        self.save_dict = save_dict
        self.engine: Engine | None = None
        self._pending: dict | None = None

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)
        if self._pending is not None:
            self.load_state_dict(self._pending)

    def __call__(self, engine: Engine) -> None:
        if engine.state.best_metric_epoch != engine.state.epoch or idist.get_rank() != 0:
            return
        state = {name: obj.state_dict() for name, obj in self.save_dict.items()}
        # one object is saved as its bare state dict, as ignite's Checkpoint does (the Model Zoo's model.pt)
        atomic_save(next(iter(state.values())) if len(state) == 1 else state, self.path)

    def state_dict(self) -> dict:
        if self.engine is None:
            return dict(self._pending or {"best_metric": -1.0, "best_metric_epoch": -1})
        return {
            "best_metric": float(self.engine.state.best_metric),
            "best_metric_epoch": int(self.engine.state.best_metric_epoch),
        }

    def load_state_dict(self, state: dict) -> None:
        if self.engine is None:
            self._pending = dict(state)
            return
        self.engine.state.best_metric = float(state["best_metric"])
        self.engine.state.best_metric_epoch = int(state["best_metric_epoch"])
