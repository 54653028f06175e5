"""The MONAI Deploy application: images + text prompts in, masks out, with an exported lmseg bundle; or, for J-RAS,
images in (ACDC frames, BUSI images), label maps and the guides of each slice out, with the trained checkpoint and
its memory bank.

Run as plain Python (``python app.py -i input -o output -m models``) or packaged into a MAP with
``monai-deploy package`` (see ``lmseg deploy-app``). ``-i``: an image (PNG / JPEG / DICOM / NIfTI) or a folder of
images (with ``prompts.json`` for a text bundle); ``-m``: the bundle folder (or a folder holding one bundle); ``-o``:
masks + ``results.json`` (and a DICOM SEG beside the mask of each DICOM input).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from monai.deploy.conditions import CountCondition
from monai.deploy.core import Application

from lmseg_components.apps.deploy.operators import (
    MaskWriterOperator,
    PromptedImageLoaderOperator,
    RetrievalBundleInferenceOperator,
    TextBundleInferenceOperator,
)

__all__ = ["DEVICE_ENV", "LmsegDeployApp", "main"]

DEVICE_ENV = "LMSEG_DEVICE"


class LmsegDeployApp(Application):
    """Loader -> bundle inference -> mask writer, run once over the input.

    The device is the bundle's default (CUDA when available) unless ``LMSEG_DEVICE`` names one (``cpu``,
    ``cuda``, ``cuda:N``). Text features are cached under the work folder (``-w`` / ``HOLOSCAN_WORKDIR``) when
    one is given, so a MAP's read-only model folder is never written. With ``retrieval`` set (the J-RAS app that
    ``lmseg deploy-app`` writes), the inference is :class:`RetrievalBundleInferenceOperator` and the input needs
    no prompts.
    """

    name = "lmseg_segmentation"
    description = "Text-guided or retrieval-augmented segmentation with an lmseg MONAI Bundle."
    version = "0.1.0"
    retrieval = False

    def compose(self):
        context = Application.init_app_context(self.argv)
        logging.getLogger(__name__).info(
            "input %s, model %s, output %s", context.input_path, context.model_path, context.output_path
        )
        loader = PromptedImageLoaderOperator(
            self,
            CountCondition(self, 1),
            input_path=context.input_path,
            prompts=not self.retrieval,
            name="image_loader",
        )
        device = os.environ.get(DEVICE_ENV) or None
        if self.retrieval:
            inference = RetrievalBundleInferenceOperator(
                self, bundle_path=context.model_path, device=device, name="retrieval_bundle_inference"
            )
        else:
            overrides = {"text_cache_dir": str(Path(context.workdir) / "text_cache")} if context.workdir else {}
            inference = TextBundleInferenceOperator(
                self, bundle_path=context.model_path, device=device, overrides=overrides, name="text_bundle_inference"
            )
        writer = MaskWriterOperator(
            self, output_folder=context.output_path, bundle_path=context.model_path, name="mask_writer"
        )
        self.add_flow(loader, inference, {("records", "records")})
        self.add_flow(inference, writer, {("predictions", "predictions")})


def main(retrieval: bool = False) -> None:
    """Run :class:`LmsegDeployApp` (``retrieval``: the J-RAS app); bad input (a missing file, a bad
    ``prompts.json``, a wrong number of prompts, an image of the wrong kind) exits with status 1 and the message
    that names the file, without a Python traceback."""
    app = LmsegDeployApp()
    app.retrieval = retrieval
    try:
        app.run()
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
