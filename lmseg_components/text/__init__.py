"""Frozen text encoders behind one interface, a factory, an on-disk feature cache, and auxiliary-prompt
generators."""

from lmseg_components.text.auxiliary import GLOSSARY, CausalLMGenerator, GlossaryExpander, create_aux_generator
from lmseg_components.text.base import TextEncoder, TextFeatures
from lmseg_components.text.cache import TextFeatureCache
from lmseg_components.text.factory import create_text_encoder
from lmseg_components.text.hf import HFTextEncoder, minilm_path
from lmseg_components.text.open_clip_tower import OpenCLIPTextEncoder

__all__ = [
    "GLOSSARY",
    "CausalLMGenerator",
    "GlossaryExpander",
    "create_aux_generator",
    "TextEncoder",
    "TextFeatures",
    "TextFeatureCache",
    "create_text_encoder",
    "HFTextEncoder",
    "OpenCLIPTextEncoder",
    "minilm_path",
]
