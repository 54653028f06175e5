"""A resumable training checkpoint at one fixed path: saved atomically, loaded automatically on restart."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

__all__ = ["ResumableCheckpoint"]


class ResumableCheckpoint:
    """Save ``save_dict`` (trainer, network, optimizer, scheduler, ...) to ``<save_dir>/<filename>`` every
    ``save_interval`` iterations, at each epoch end and when an exception stops training; on start, load it if
    it exists, so a killed run restarted with the same command continues where it stopped.

    MONAI's ``CheckpointSaver`` names interval checkpoints by iteration and ``CheckpointLoader`` needs a path
    that exists; this handler keeps one path, written with write-then-rename so a kill never leaves a torn file.
    Under distributed training only rank 0 writes; every rank loads.

    Args:
        save_dir: checkpoint directory.
        save_dict: objects with ``state_dict`` / ``load_state_dict``; must include the engine to resume its
            iteration and epoch.
        filename: checkpoint file name.
        save_interval: iterations between saves (0: only at epoch ends and on exceptions).
        resume: load an existing checkpoint at start.
        map_location: where tensors are loaded (``cpu`` lets GPU checkpoints resume on CPU).
    """

    def __init__(
        self,
        save_dir: str | Path,
        save_dict: dict,
        filename: str = "checkpoint.pt",
        save_interval: int = 50,
        resume: bool = True,
        map_location: str | torch.device = "cpu",
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
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        if self.resume:
            engine.add_event_handler(Events.STARTED, self.load)
        if self.save_interval > 0:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_interval), self.save)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._save_and_raise)

    def load(self, engine: Engine) -> None:
        if not self.path.is_file():
            return
        max_epochs = engine.state.max_epochs
        checkpoint = torch.load(self.path, map_location=self.map_location, weights_only=True)
        Checkpoint.load_objects(to_load=self.save_dict, checkpoint=checkpoint)
        if max_epochs is not None:
            engine.state.max_epochs = max(max_epochs, engine.state.epoch)
        self.logger.info(f"Resumed from {self.path} at epoch {engine.state.epoch}, iteration {engine.state.iteration}.")

    def save(self, engine: Engine) -> None:
        if idist.get_rank() != 0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {name: obj.state_dict() for name, obj in self.save_dict.items()}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        os.close(fd)
        try:
            torch.save(state, tmp)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def _save_and_raise(self, engine: Engine, e: BaseException) -> None:
        self.save(engine)
        raise e
