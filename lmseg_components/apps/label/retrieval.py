"""A MONAI Label infer task for J-RAS: the bundle's own inference with its memory bank, and the annotators' saved
labels added to that bank."""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import HTTPException
from monai.transforms import SaveImage
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from lmseg_components.devices import is_device_name
from lmseg_components.inference.predictor import class_names
from lmseg_components.inference.retrieval import REQUIRED_BANK_FILES, RetrievalBundlePredictor, segments_volumes

__all__ = ["RetrievalBundleInferTask"]


class RetrievalBundleInferTask(InferTask):
    """J-RAS served by MONAI Label.

    ``/infer/<name>?image=<id>`` runs :class:`~lmseg_components.inference.RetrievalBundlePredictor` (model, gallery
    and index loaded once and checked against each other; the values the model was trained with from its run
    record) on the image: an ACDC frame slice by slice, a 2D image for a model trained on BUSI. The label (a NIfTI
    volume on the image's grid, or a PNG) is the result file; the result JSON carries ``structures`` (voxels and mL
    per structure) and ``slices`` (the gallery cases that guided each slice, with their similarity).

    :meth:`add_label` puts an image and its (corrected) label into the bank (``models/user_gallery.pt`` and the
    index); the next request retrieves from the grown bank. Requests and bank updates run one at a time: the network
    keeps each forward's retrievals until the results are read, and the bank files are rewritten in place.

    Args:
        path: the bundle folder (``configs/``, ``models/model.pt``, ``gallery.pt``, ``index.pt``).
        conf: the app's ``conf``; ``device`` (``cpu``, ``cuda[:N]``) places the network (default: CUDA when
            available).
    """

    def __init__(self, path: str | Path, conf: dict[str, str] | None = None):
        self.path = Path(path)
        self.conf = dict(conf or {})
        meta = json.loads((self.path / "configs" / "metadata.json").read_text())
        self.segments_volumes = segments_volumes(self.path / "models")  # no run record yet: ACDC frames
        names = class_names(meta) if self.segments_volumes else ["background", "lesion"]
        super().__init__(
            type=InferType.SEGMENTATION,
            labels={name: value for value, name in enumerate(names) if value},
            dimension=3 if self.segments_volumes else 2,
            description=f"{meta.get('name', self.path.name)}: segmentation guided by the cases of its memory bank",
            config={"device": self.conf.get("device", "")},
        )
        self._lock = threading.Lock()
        self._predictor: RetrievalBundlePredictor | None = None

    def is_valid(self) -> bool:
        return all((self.path / "models" / name).is_file() for name in ("model.pt", *REQUIRED_BANK_FILES))

    def _loaded(self) -> RetrievalBundlePredictor:
        """The predictor, loaded on first use and after each change of the bank (call under the lock)."""
        if self._predictor is None:
            device = self.conf.get("device") or None
            if device is not None and not is_device_name(device):
                raise HTTPException(500, f"the app's conf device must be cpu or cuda[:N], got {device!r}")
            overrides = {"bundle_root": str(self.path)}
            self._predictor = RetrievalBundlePredictor(self.path, self.path / "models" / "model.pt", device, overrides)
        return self._predictor

    def __call__(self, request: dict[str, Any], callbacks=None) -> tuple[str, dict]:
        image = request.get("image")
        if not isinstance(image, str) or not Path(image).is_file():
            raise HTTPException(422, f"no image file for the request: {image!r}")
        with self._lock:
            predictor = self._loaded()
            try:
                predictor.check_kind(image)
                item = predictor({"image": image})
            except (ValueError, RuntimeError) as e:
                raise HTTPException(422, f"{Path(image).name}: {e}") from None
        return str(_write_label(item["pred"], Path(tempfile.mkdtemp(prefix="lmseg_label_")))), item["retrieval"]

    def add_label(self, image: str | Path, label: str | Path, case_id: str) -> dict:
        """Add ``image`` with its ``label`` to the bank as case ``case_id`` (replacing an earlier label of that case);
        returns ``{"case_id", "slices"}`` (gallery items added).

        Raises:
            fastapi.HTTPException: 422 naming the file when the label does not fit the bank (shape, label values).
        """
        from lmseg_components.apps.bank import add_labelled_image  # pulls in the config parser and readers

        configs = [self.path / "configs" / "train.json"]
        if not self.segments_volumes:
            configs.append(self.path / "configs" / "busi.json")
        with self._lock:
            try:
                case = add_labelled_image(self.path, image, label, case_id, replace=True, config_file=configs)
            except (ValueError, FileNotFoundError) as e:
                raise HTTPException(422, str(e)) from None
            self._predictor = None  # the next request loads the grown bank
        return {"case_id": case.case_id, "slices": case.slices}


def _write_label(pred, folder: Path) -> Path:
    """The label map (1, H, W[, D]) as MONAI Label's clients read it: label values (not scaled), uint8, a NIfTI
    volume with the image's affine or a PNG, named after the image."""
    ext = ".nii.gz" if pred.ndim == 4 else ".png"
    saver = SaveImage(
        output_dir=str(folder),
        output_postfix="label",
        output_ext=ext,
        output_dtype=np.uint8,
        resample=False,
        separate_folder=False,
        print_log=False,
    )
    saver(pred)
    return next(folder.glob(f"*_label{ext}"))
