"""The MONAI Deploy application: images + text prompts in, masks out, with an exported lmseg bundle.

Run as plain Python (``python app.py -i input -o output -m models``) or packaged into a MAP with
``monai-deploy package`` (see ``lmseg deploy-app``). ``-i``: an image (PNG / NIfTI) or a folder of images with
``prompts.json``; ``-m``: the bundle folder (or a folder holding one bundle); ``-o``: masks + ``results.json``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from monai.deploy.conditions import CountCondition
from monai.deploy.core import Application

from lmseg_components.deploy.operators import (
    MaskWriterOperator,
    PromptedImageLoaderOperator,
    TextBundleInferenceOperator,
)

__all__ = ["DEVICE_ENV", "LmsegDeployApp", "main"]

DEVICE_ENV = "LMSEG_DEVICE"


class LmsegDeployApp(Application):
    """Loader -> exported-bundle inference -> mask writer, run once over the input.

    The device is the bundle's default (CUDA when available) unless ``LMSEG_DEVICE`` names one (``cpu``,
    ``cuda``, ``cuda:N``). Text features are cached under the work folder (``-w`` / ``HOLOSCAN_WORKDIR``) when
    one is given, so a MAP's read-only model folder is never written.
    """

    name = "lmseg_text_segmentation"
    description = "Text-guided segmentation with an exported lmseg MONAI Bundle."
    version = "0.1.0"

    def compose(self):
        context = Application.init_app_context(self.argv)
        overrides = {}
        if context.workdir:
            overrides["text_cache_dir"] = str(Path(context.workdir) / "text_cache")
        logging.getLogger(__name__).info(
            "input %s, model %s, output %s", context.input_path, context.model_path, context.output_path
        )
        loader = PromptedImageLoaderOperator(
            self, CountCondition(self, 1), input_path=context.input_path, name="prompted_image_loader"
        )
        inference = TextBundleInferenceOperator(
            self,
            bundle_path=context.model_path,
            device=os.environ.get(DEVICE_ENV) or None,
            overrides=overrides,
            name="text_bundle_inference",
        )
        writer = MaskWriterOperator(self, output_folder=context.output_path, name="mask_writer")
        self.add_flow(loader, inference, {("records", "records")})
        self.add_flow(inference, writer, {("predictions", "predictions")})


def main() -> None:
    """Run :class:`LmsegDeployApp`; bad input (a missing file, a bad ``prompts.json``, a wrong number of prompts)
    exits with status 1 and the message that names the file, without a Python traceback."""
    try:
        LmsegDeployApp().run()
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
