"""End the experiment-tracking runs that MONAI's ``--tracking`` settings leave open in an evaluation."""

from __future__ import annotations

from collections.abc import Sequence

from monai.handlers import MLFlowHandler

__all__ = ["end_tracking_runs"]


def end_tracking_runs(handlers: Sequence[object]) -> None:
    """End the MLflow run of every :class:`monai.handlers.MLFlowHandler` in ``handlers``.

    ``--tracking mlflow`` gives ``validate#evaluator`` MONAI's *validator* handler, which does not end its run:
    during training the trainer's handler ends the run. The ``evaluating`` workflow runs that same evaluator on
    its own, so its ``finalize`` step calls this with ``@validate#handlers``; without it the run stays
    ``RUNNING``. Other handlers are left alone; without tracking there is nothing to do.
    """
    for handler in handlers:
        if isinstance(handler, MLFlowHandler):
            handler.close()
