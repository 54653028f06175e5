"""Inference on a user's own images: a bundle as a function ``record -> prediction`` (trained checkpoint or
exported network), the mask writer that keeps the input's geometry, and ``lmseg segment``."""

from lmseg_components.inference.predictor import (
    EXPORTED_CONFIG,
    TextBundlePredictor,
    class_names,
    class_prompts,
    find_bundle,
    takes_text,
)
from lmseg_components.inference.retrieval import RetrievalBundlePredictor
from lmseg_components.inference.segmenter import Segmentation, Segmenter
from lmseg_components.inference.writer import check_mask_paths, describe_mask, mask_path, write_mask

__all__ = [
    "EXPORTED_CONFIG",
    "RetrievalBundlePredictor",
    "Segmentation",
    "Segmenter",
    "TextBundlePredictor",
    "check_mask_paths",
    "class_names",
    "class_prompts",
    "describe_mask",
    "find_bundle",
    "mask_path",
    "takes_text",
    "write_mask",
]
