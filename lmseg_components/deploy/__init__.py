"""MONAI Deploy integration (optional extra ``lmseg[deploy]``): an application that runs an exported bundle on
PNG / NIfTI images with text prompts and writes the masks, and ``lmseg deploy-app`` that writes its folder.

``monai.deploy`` is imported only by :mod:`lmseg_components.deploy.operators` and
:mod:`lmseg_components.deploy.app`; the predictor, the input reader, the mask writer and the app generator need
only lmseg's own dependencies.
"""

from lmseg_components.deploy.inputs import PROMPTS_FILE, read_prompted_inputs
from lmseg_components.deploy.make_app import make_deploy_app
from lmseg_components.deploy.predictor import TextBundlePredictor, find_bundle
from lmseg_components.deploy.writer import mask_path, write_mask

__all__ = [
    "PROMPTS_FILE",
    "TextBundlePredictor",
    "find_bundle",
    "make_deploy_app",
    "mask_path",
    "read_prompted_inputs",
    "write_mask",
]
