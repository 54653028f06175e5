"""A MONAI Label app serving local lmseg bundles (no Model Zoo download): the text-guided ones and J-RAS, whose
memory bank grows with the labels the annotators save."""

from __future__ import annotations

import logging
from pathlib import Path

from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import DefaultLabelTag

from lmseg_components.apps.label.infer import TextBundleInferTask
from lmseg_components.apps.label.retrieval import RetrievalBundleInferTask
from lmseg_components.inference.predictor import takes_text

__all__ = ["LmsegLabelApp"]

logger = logging.getLogger(__name__)


class LmsegLabelApp(MONAILabelApp):
    """Serves every bundle under ``<app_dir>/model/<name>`` that has ``configs/inference.json`` and a trained
    ``models/model.pt``, as infer model ``<name>``; ``--conf models a,b`` serves a subset.

    Request params of the text bundles: ``text`` (the prompt; a list of prompts for one-prompt-per-organ bundles),
    optional ``aux_text``. J-RAS (:class:`RetrievalBundleInferTask`) takes none; a label saved for an image
    (``PUT /datastore/label``, MONAI Label's "submit label") is added to the bank of every J-RAS bundle served, as
    the case named by the image id, and the response says so (``bank``: per bundle the case and its gallery items).
    """

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]):
        self.model_dir = Path(app_dir) / "model"
        available = sorted(p.name for p in self.model_dir.iterdir() if (p / "configs" / "inference.json").is_file())
        wanted = [m.strip() for m in conf.get("models", "").split(",") if m.strip()] or available
        unknown = sorted(set(wanted) - set(available))
        if unknown:
            raise ValueError(f"--conf models names {unknown}, not under {self.model_dir}; available: {available}")
        self.models = wanted
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="lmseg",
            description="Text-guided segmentation with lmseg bundles",
            version="0.1.0",
        )

    def init_infers(self):
        infers = {}
        for name in self.models:
            path = self.model_dir / name
            text = takes_text(path)
            task = TextBundleInferTask(str(path), self.conf) if text else RetrievalBundleInferTask(path, self.conf)
            if not task.is_valid():
                needs = "models/model.pt" if text else "models/model.pt, gallery.pt and index.pt"
                raise ValueError(f"{path}: no {needs} or configs/inference.json to serve")
            infers[name] = task
            logger.info(f"+++ serving {'text-guided' if text else 'retrieval-augmented'} bundle {name}")
        return infers

    def on_save_label(self, image_id: str, label_id: str) -> dict:
        """Add the saved label and its image to the bank of each J-RAS bundle served (case id: the image id)."""
        banks = {}
        for name, task in self._infers.items():  # MONAILabelApp keeps its infer tasks there
            if isinstance(task, RetrievalBundleInferTask):
                image = self.datastore().get_image_uri(image_id)
                label = self.datastore().get_label_uri(label_id, DefaultLabelTag.FINAL)
                banks[name] = task.add_label(image, label, image_id)
                logger.info(f"label of {image_id} added to the bank of {name}: {banks[name]}")
        return {"bank": banks} if banks else super().on_save_label(image_id, label_id) or {}
