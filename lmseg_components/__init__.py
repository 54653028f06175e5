"""lmseg: shared components for language-guided and retrieval-augmented segmentation bundles.

Subpackages are imported on first attribute access, so ``import lmseg_components`` stays cheap and bundle
configs can write ``$lmseg_components.data.read_lvit_split(...)`` after a plain ``$import lmseg_components``.
"""

import importlib

__version__ = "0.1.0"

LAZY_UNITS = (
    "data",
    "devices",
    "engines",
    "export",
    "fingerprint",
    "inference",
    "inferers",
    "losses",
    "metrics",
    "networks",
    "outputs",
    "retrieval",
    "runs",
    "text",
)


def __getattr__(name: str):
    if name in ("Segmenter", "Segmentation"):  # the Python API: from lmseg_components import Segmenter
        return getattr(importlib.import_module(f"{__name__}.inference"), name)
    if name in LAZY_UNITS:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
