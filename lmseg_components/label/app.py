"""A MONAI Label app serving local text-guided bundles (no Model Zoo download)."""

from __future__ import annotations

import logging
from pathlib import Path

from monailabel.interfaces.app import MONAILabelApp

from lmseg_components.label.infer import TextBundleInferTask

__all__ = ["LmsegLabelApp"]

logger = logging.getLogger(__name__)


class LmsegLabelApp(MONAILabelApp):
    """Serves every bundle under ``<app_dir>/model/<name>`` that has ``configs/inference.json`` and a trained
    ``models/model.pt``, as infer model ``<name>``; ``--conf models a,b`` serves a subset.

    Request params: ``text`` (the prompt; a list of prompts for one-prompt-per-organ bundles), optional
    ``aux_text``.
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
            task = TextBundleInferTask(str(self.model_dir / name), self.conf)
            if not task.is_valid():
                raise ValueError(f"{self.model_dir / name}: no models/model.pt or configs/inference.json to serve")
            infers[name] = task
            logger.info(f"+++ serving text-guided bundle {name}")
        return infers
