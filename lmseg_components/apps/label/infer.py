"""A MONAI Label infer task for text-guided bundles."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from fastapi import HTTPException
from monai.transforms import SqueezeDimd
from monailabel.tasks.infer.bundle import BundleInferTask
from torch import nn

from lmseg_components.devices import is_device_name
from lmseg_components.inference.predictor import class_prompts, takes_empty_text
from lmseg_components.workflows import FILE_WRITERS

__all__ = ["MAX_PROMPTS", "MAX_TEXT_LENGTH", "TextBundleInferTask", "TextConditionedNetwork", "validate_text_request"]

# the bounds of one request's prompts: characters per prompt, prompts per param (a list: one prompt per class)
MAX_TEXT_LENGTH = 2000
MAX_PROMPTS = 64


def validate_text_request(request: Mapping[str, Any], text_keys: Mapping[str, str], required: str = "text") -> dict:
    """Check the request's prompt params; they stay plain data (never parsed as bundle config expressions).

    Args:
        request: MONAI Label request (the ``params`` of ``/infer/<model>`` merged with ``image`` etc.).
        text_keys: request key -> feature key of the bundle's preprocessing (e.g. ``text`` -> ``text_features``).
        required: the key that must be present.

    Returns:
        a copy of the request with ``device`` restricted to ``cpu`` / ``cuda[:n]``.

    Raises:
        fastapi.HTTPException: 422 naming the bad param (MONAI Label's server returns it to the client): a prompt
            that is not a string or is longer than ``MAX_TEXT_LENGTH`` characters, an empty list or one of more
            than ``MAX_PROMPTS`` prompts, a device that is not ``cpu`` / ``cuda[:N]``.
    """
    out = dict(request)
    if required not in out:
        raise HTTPException(422, f"the request params need a {required!r} prompt.")
    for key in text_keys:
        if key not in out:
            continue
        value = out[key]
        values = value if isinstance(value, list) else [value]
        if not 0 < len(values) <= MAX_PROMPTS or not all(
            isinstance(v, str) and len(v) <= MAX_TEXT_LENGTH for v in values
        ):
            raise HTTPException(
                422,
                f"param {key!r} must be a string or a list of 1 to {MAX_PROMPTS} strings, each of at most "
                f"{MAX_TEXT_LENGTH} characters.",
            )
    device = out.get("device")
    if isinstance(device, list):  # the task's config lists the devices; a request may pick one
        device = device[0] if device else None
    if device is not None and not is_device_name(device):
        raise HTTPException(422, f"param 'device' must be cpu or cuda[:N], got {device!r}.")
    if device is not None:
        out["device"] = device
    return out


def _check_model_filename(request: Mapping[str, Any], allowed: list[str]) -> None:
    """MONAI Label joins a ``model_filename`` param to the model folder; accept only the listed checkpoints."""
    name = request.get("model_filename")
    name = name[0] if isinstance(name, list) and name else name
    if name is not None and name not in allowed:
        raise HTTPException(422, f"param 'model_filename' must be one of {allowed}.")


class TextConditionedNetwork(nn.Module):
    """``network(x, **features)`` as a one-input module, so MONAI Label's inferer call ``inferer(x, network)`` reaches
    the text-guided forward (the same keyword inputs ``PrepareBatchExtraInput`` gives the bundle's evaluator)."""

    def __init__(self, network: nn.Module, **features: torch.Tensor):
        super().__init__()
        self.network = network
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x, **self.features)


class TextBundleInferTask(BundleInferTask):
    """MONAI Label's :class:`BundleInferTask` for text-guided bundles.

    The request's ``text`` (and optional ``aux_text``) params go through the bundle's own ``preprocessing`` (its
    ``EncodeTextd`` writes the token features), then reach the network as keyword inputs. The response JSON
    carries the bundle's presence decision, ``score`` and ``found`` (a prompt not found gets an empty label).
    Params are validated and never evaluated as config expressions (the base task would put a ``device`` param
    into the config). Requests run one at a time per task (the base task edits ``sys.path`` and the parsed config
    per request).

    The prompt is also the task's ``text`` config option, which ``/info`` lists and MONAI Label clients (3D Slicer,
    OHIF) show as an editable field and send with each request: empty for the bundles whose prompt describes the
    image, the organ prompts separated by ``;`` for a bundle with one prompt per class (a string option stays a
    text field in the clients; a list would become a drop-down).

    Args:
        path: the bundle folder (``configs/inference.json``, ``configs/metadata.json``, ``models/model.pt``).
        conf: the app's ``conf`` (``preload`` etc.).
        text_keys: request key -> feature key written by the bundle's preprocessing -> network keyword.
        kwargs: :class:`BundleInferTask` options.
    """

    def __init__(
        self,
        path: str,
        conf: dict[str, str],
        text_keys: Mapping[str, str] | None = None,
        **kwargs: Any,
    ):
        kwargs.setdefault("post_filter", list(FILE_WRITERS))
        super().__init__(path, conf, **kwargs)
        if not self.valid:
            return
        # label maps hold 1..P (sigmoid channel k -> label k + 1; 0 is background), written as uint8
        self.labels = {name: value + 1 for name, value in self.labels.items()}
        self._config["result_dtype"] = "uint8"
        self.text_keys = dict(text_keys or {"text": "text_features", "aux_text": "aux_text_features"})
        meta = json.loads((Path(path) / "configs" / "metadata.json").read_text())
        self.class_prompts = class_prompts(meta)
        self._config["text"] = "; ".join(self.class_prompts or [])
        self.takes_empty_text = takes_empty_text(Path(path) / "models")
        self._lock = threading.Lock()

    def __call__(self, request, callbacks=None):
        request = validate_text_request(self._prompts(request), self.text_keys)
        _check_model_filename(request, list(self._config.get("model_filename", [])))
        with self._lock:
            return super().__call__(request, callbacks)

    def _prompts(self, request: Mapping[str, Any]) -> dict:
        """``request`` with its ``text`` as the bundle takes it: a ``;``-separated string (the config option)
        becomes the list of prompts of a bundle with one prompt per class (empty: every class); an empty prompt
        is refused unless the model was trained with text dropout."""
        request = dict(request)
        text = request.get("text")
        if not isinstance(text, str):
            return request
        if self.class_prompts is not None:
            request["text"] = [p.strip() for p in text.split(";") if p.strip()] or list(self.class_prompts)
        elif not text.strip() and not self.takes_empty_text:
            raise HTTPException(
                422, "param 'text' is empty: type the prompt (the model's 'text' option in MONAI Label clients)."
            )
        return request

    def post_transforms(self, data=None):
        post = list(super().post_transforms(data))
        if self.dimension == 2:  # MONAI Label's writer takes a 2D label map (H, W), not (1, H, W)
            post.append(SqueezeDimd(keys=self.key_pred, dim=0))
        return post

    def writer(self, data, extension=None, dtype=None):
        # the presence decision of the bundle's postprocessing (PresenceDecisiond) joins the response JSON
        result = data.setdefault(self.output_json_key, {})
        result.update({key: data[key] for key in ("score", "found") if key in data})
        return super().writer(data, extension, dtype)

    def _update_device(self, data):
        device = data.get("device") if data else None
        super()._update_device({"device": str(device)} if isinstance(device, torch.device) else {})

    def _get_network(self, device, data):
        network = super()._get_network(device, data)
        if network is None or not data:
            return network
        features = {}
        for argument, key in self.text_keys.items():
            if key in data:
                features[argument] = torch.as_tensor(data[key])[None].to(device)
        return TextConditionedNetwork(network, **features)
