"""Images per second of an Ignite engine (a MONAI trainer or evaluator), and the share of its step time spent
waiting for data."""

from __future__ import annotations

import time

import torch
from ignite.engine import Engine, Events

__all__ = ["ThroughputMeter"]


class ThroughputMeter:
    """Time the iterations of an engine: each one from the end of the previous (the start of the epoch's first batch
    fetch for the first) to its ``ITERATION_COMPLETED``, so handlers and the data wait count; the data wait is
    ``GET_BATCH_STARTED`` to ``GET_BATCH_COMPLETED`` (worker start-up included for an epoch's first batch). The time
    between epochs (validation, checkpoints) is not counted.

    Args:
        warmup: iterations not counted at the start of a run (compilation, cuDNN autotuning, allocator growth).
        batch_key: the key whose first dimension (or, for a decollated batch, the list length) counts the images.

    ``summary()`` gives ``iterations``, ``images``, ``seconds``, ``images_per_s``, ``step_ms`` (per iteration) and
    ``data_wait_share`` (data wait / step time) over the counted iterations. On CUDA each step end is
    synchronised, so the time is the device's.
    """

    def __init__(self, warmup: int = 2, batch_key: str = "image"):
        if warmup < 0:
            raise ValueError(f"warmup must be at least 0, got {warmup}.")
        self.warmup, self.batch_key = warmup, batch_key
        self.steps: list[float] = []
        self.waits: list[float] = []
        self.images: list[int] = []
        self._seen = 0
        self._step_start: float | None = None
        self._wait_start = 0.0
        self._wait = 0.0

    def attach(self, engine: Engine) -> ThroughputMeter:
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.GET_BATCH_STARTED, self._batch_started)
        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self._batch_completed)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        return self

    def _epoch_started(self, engine: Engine) -> None:
        self._step_start = None

    def _batch_started(self, engine: Engine) -> None:
        self._wait_start = time.perf_counter()
        if self._step_start is None:
            self._step_start = self._wait_start

    def _batch_completed(self, engine: Engine) -> None:
        self._wait = time.perf_counter() - self._wait_start

    def _iteration_completed(self, engine: Engine) -> None:
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()
        now = time.perf_counter()
        step, self._step_start = now - self._step_start, now
        self._seen += 1
        if self._seen <= self.warmup:
            return
        batch = engine.state.batch
        self.steps.append(step)
        self.waits.append(self._wait)
        self.images.append(len(batch) if isinstance(batch, list) else int(batch[self.batch_key].shape[0]))

    def summary(self) -> dict[str, float]:
        seconds = sum(self.steps)
        if not self.steps:
            raise RuntimeError(f"no iteration was counted: the engine ran {self._seen}, the warm-up is {self.warmup}.")
        return {
            "iterations": len(self.steps),
            "images": sum(self.images),
            "seconds": seconds,
            "images_per_s": sum(self.images) / seconds,
            "step_ms": 1e3 * seconds / len(self.steps),
            "data_wait_share": sum(self.waits) / seconds,
        }
