"""MONAI Deploy integration (optional extra ``lmseg[deploy]``): an application that runs an exported bundle on
images with text prompts (:func:`lmseg_components.data.read_prompted_images`) and writes the masks
(:mod:`lmseg_components.inference`), and ``lmseg deploy-app`` that writes its folder.

``monai.deploy`` is imported only by :mod:`lmseg_components.apps.deploy.operators` and
:mod:`lmseg_components.apps.deploy.app`; the app generator needs only lmseg's own dependencies.
"""

from lmseg_components.apps.deploy.make_app import make_deploy_app

__all__ = [
    "make_deploy_app",
]
