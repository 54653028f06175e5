"""The presence decision of a text-guided bundle: whether the finding a prompt names is in the image at all.

:class:`PresenceCalibration` chooses the score threshold on the validation split when training ends and writes it
into the run record beside the checkpoint (``presence_threshold`` in ``run_record.json``); inference reads it from
there like every other trained value (:func:`recorded_presence_threshold`), and
:class:`~lmseg_components.outputs.PresenceDecisiond` decides with it.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from pathlib import Path

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from lmseg_components.engines.checkpoint import RUN_RECORD_FILE, trained_values
from lmseg_components.files import atomic_write
from lmseg_components.metrics.presence import choose_presence_threshold, presence_auroc, presence_score

__all__ = [
    "PRESENCE_THRESHOLD",
    "PresenceCalibration",
    "VALIDATION_AUROC",
    "recorded_presence_threshold",
]

PRESENCE_THRESHOLD = "presence_threshold"  # the run-record key (and inference config id) of the threshold
VALIDATION_AUROC = "presence_validation_auroc"  # beside the threshold: how well the score separates on validation

logger = logging.getLogger(__name__)


def recorded_presence_threshold(ckpt_dir: str | Path) -> float | None:
    """The presence threshold in the run record of the checkpoints in ``ckpt_dir`` (:func:`trained_values`), or
    None where training chose none (a run from before the presence decision, or no validation prompts of both
    kinds): the default of the bundles' ``presence_threshold``."""
    return trained_values(ckpt_dir).get(PRESENCE_THRESHOLD)


class PresenceCalibration:
    """When training completes, choose the presence threshold on validation prompts with the best model and
    write it into ``run_record.json`` beside it (:data:`PRESENCE_THRESHOLD`), where inference reads the values
    the model was trained with, with the validation AUROC (:data:`VALIDATION_AUROC`: what settings are chosen
    by).

    The prompts are the validation reports (present where the mask is not empty) and prompts that name nothing in
    the same images (absent), one per image and channel 0 (the 2D bundles' one prompt);
    :func:`~lmseg_components.data.presence_records` marks each with ``present``. The threshold maximises
    Youden's J (:func:`~lmseg_components.metrics.choose_presence_threshold`). Only rank 0 calibrates under
    DDP. MONAI's evaluators compute metrics per iteration from ``pred`` and ``label``; this pass needs the raw
    logits of the best checkpoint against a per-prompt ``present`` flag, so it is one plain loop.

    Args:
        network: the trained network (a DDP wrapper is unwrapped); copied, never modified.
        data_loader: the validation prompts, preprocessed as for validation, each with ``present``.
        prepare_batch: the bundle's ``prepare_batch`` (``PrepareBatchExtraInput``).
        inferer: the validation inferer.
        model_path: the best model's weights (``models/model.pt``); the network as trained when there is none.
        device: where to run.
        amp: autocast on CUDA.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        data_loader,
        prepare_batch: Callable,
        inferer: Callable,
        model_path: str | Path,
        device: torch.device | str,
        amp: bool = False,
    ):
        self.network, self.data_loader = network, data_loader
        self.prepare_batch, self.inferer = prepare_batch, inferer
        self.model_path, self.device, self.amp = Path(model_path), torch.device(device), amp

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def _network(self) -> torch.nn.Module:
        network = self.network.module if hasattr(self.network, "module") else self.network
        network = copy.deepcopy(network)
        if self.model_path.is_file():
            state = torch.load(self.model_path, map_location=self.device, weights_only=True)
            consume_prefix_in_state_dict_if_present(state, "module.")
            network.load_state_dict(state)
        return network.eval()

    @torch.no_grad()
    def scores(self) -> tuple[list[float], list[float]]:
        """The scores of the validation prompts whose finding is present and absent."""
        network = self._network()
        present, absent = [], []
        for batch in self.data_loader:
            inputs, _, args, kwargs = self.prepare_batch(batch, self.device, non_blocking=False)
            with torch.autocast(self.device.type, enabled=self.amp and self.device.type == "cuda"):
                logits = self.inferer(inputs, network, *args, **kwargs)
            # a report names a finding that is there where its mask is not empty
            found = batch["label"].flatten(1).amax(1) > 0
            named = torch.as_tensor(batch["present"]).bool() & found.cpu()
            for score, is_present in zip(presence_score(logits.float())[:, 0].tolist(), named.tolist(), strict=True):
                (present if is_present else absent).append(score)
        return present, absent

    def __call__(self, engine: Engine | None = None) -> None:
        """Choose the threshold and write it into the run record (rank 0 only); ``engine`` is the trainer
        (unused), or None to calibrate a model trained before the presence decision."""
        if idist.get_rank() != 0:
            return
        present, absent = self.scores()
        if not present or not absent:
            logger.warning(
                "presence threshold not chosen: the validation prompts are %d present and %d absent (need both); "
                "inference will keep every mask",
                len(present),
                len(absent),
            )
            return
        threshold = choose_presence_threshold(present, absent)
        auroc = presence_auroc(present, absent)
        path = self.model_path.parent / RUN_RECORD_FILE
        record = json.loads(path.read_text()) if path.is_file() else {}
        record.update({PRESENCE_THRESHOLD: threshold, VALIDATION_AUROC: auroc})
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
        logger.info(
            "presence threshold %.4f chosen on %d validation prompts (AUROC %.3f), written to %s",
            threshold,
            len(present) + len(absent),
            auroc,
            path,
        )
