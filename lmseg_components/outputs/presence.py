"""What inference writes of the presence decision: :class:`PresenceDecisiond` scores each prompt, decides
``found`` with the threshold training chose (:class:`~lmseg_components.engines.PresenceCalibration`) and empties
the mask of a prompt whose finding is not there; :class:`SaveResultsd` writes each prompt's decision as it goes."""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from pathlib import Path

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from lmseg_components.errors import UserInputError
from lmseg_components.metrics.presence import presence_score

__all__ = ["NOT_FOUND_LOGIT", "RESULTS_LINES", "PresenceDecisiond", "PresenceThresholdError", "SaveResultsd"]

# the logit a prompt that is not found gets everywhere: sigmoid 0 in float16 and float32 alike
NOT_FOUND_LOGIT = -1e4
RESULTS_LINES = "results.jsonl"


class PresenceThresholdError(UserInputError, ValueError):
    """A ``presence_threshold`` that is not a number in [0, 1] (or null)."""


class PresenceDecisiond(MapTransform):
    """Score each prompt's channel of the logits and decide whether its finding is there.

    Adds ``score`` (:func:`~lmseg_components.metrics.presence_score`: a float for one prompt, a list with one per
    channel) and ``found`` (``score >= threshold``: a bool or a list; None without a threshold). A channel whose
    prompt is not found is set to :data:`NOT_FOUND_LOGIT`, so the postprocessing after it writes an empty mask.
    Place it first in the postprocessing, on the logits (before ``Activationsd``).

    Args:
        keys: the logits key, ``pred``: (C, *spatial), one channel per prompt.
        threshold: the score threshold chosen on validation data (:class:`PresenceCalibration`); None scores
            without deciding and keeps every mask.
        score_key, found_key: where the score and the decision go.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        threshold: float | None = None,
        score_key: str = "score",
        found_key: str = "found",
    ):
        super().__init__(keys)
        numeric = isinstance(threshold, int | float) and not isinstance(threshold, bool)
        if threshold is not None and (not numeric or not 0.0 <= threshold <= 1.0):
            raise PresenceThresholdError(
                f"presence_threshold must be a number in [0, 1], or null to keep every mask; got {threshold!r}"
            )
        self.threshold = None if threshold is None else float(threshold)
        self.score_key, self.found_key = score_key, found_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            logits = d[key]
            scores = presence_score(logits[None])[0]
            found = None if self.threshold is None else scores >= self.threshold
            if found is not None and not bool(found.all()):
                logits = logits.clone()
                logits[~found.to(logits.device)] = NOT_FOUND_LOGIT
                d[key] = logits
            one = scores.numel() == 1
            d[self.score_key] = scores.item() if one else scores.tolist()
            if found is None:
                d[self.found_key] = None
            else:
                d[self.found_key] = bool(found.item()) if one else [bool(f) for f in found]
        return d


class SaveResultsd(MapTransform):
    """Append each item's prompt and presence decision to ``<output_dir>/results.jsonl``, one JSON object per
    line, written as the item completes (a crash keeps the lines before it): ``image`` (the input file), then
    ``keys`` (``text``, ``score``, ``found``). The first item of a run starts the file afresh.

    MONAI's ``ClassificationSaver`` writes numbers per file name only when the run completes; this keeps the
    prompt and writes as it goes.

    Args:
        keys: the item keys written after ``image``.
        output_dir: the folder of ``results.jsonl`` (the bundle's ``output_dir``, beside the masks).
        image_key: the input image, whose ``filename_or_obj`` names the line.
    """

    def __init__(self, keys: KeysCollection, output_dir: str | Path, image_key: str = "image"):
        super().__init__(keys, allow_missing_keys=True)
        self.path = Path(output_dir) / RESULTS_LINES
        self.image_key = image_key
        self._started = False

    def __call__(self, data: Mapping[Hashable, object]) -> Mapping[Hashable, object]:
        image = data.get(self.image_key)
        meta = getattr(image, "meta", None) or {}
        line = {"image": str(meta.get("filename_or_obj", image if isinstance(image, str) else ""))}
        line.update({key: data[key] for key in self.key_iterator(data)})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a" if self._started else "w") as f:
            f.write(json.dumps(line) + "\n")
        self._started = True
        return data
