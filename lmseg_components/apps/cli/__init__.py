"""The ``lmseg`` command line, one module per command group: :mod:`.data` (``make-synthetic``, ``check-data``,
``demo``), :mod:`.models` (``segment``, ``serve``, ``export``, ``publish``, ``jras-bank``), :mod:`.integrations`
(``label-app``, ``deploy-app``), :mod:`.checks` (``verify-bundles``); :mod:`.main` dispatches (``lmseg --help``
without importing torch or MONAI)."""

from lmseg_components.apps.cli.checks import verify_bundles
from lmseg_components.apps.cli.data import check_data, demo, make_synthetic
from lmseg_components.apps.cli.integrations import deploy_app, label_app
from lmseg_components.apps.cli.main import COMMANDS, main
from lmseg_components.apps.cli.models import export, jras_bank, publish, segment, serve

__all__ = [
    "COMMANDS",
    "check_data",
    "demo",
    "deploy_app",
    "export",
    "jras_bank",
    "label_app",
    "main",
    "make_synthetic",
    "publish",
    "segment",
    "serve",
    "verify_bundles",
]
