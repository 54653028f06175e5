"""Network blocks and the method networks."""

from lmseg_components.networks.cdcb import CDCB
from lmseg_components.networks.guided import SEGMENTER_BACKBONES, GuidedSegmenter, SegFormer2D, blend_guides
from lmseg_components.networks.rtmb import RTMB
from lmseg_components.networks.tirnet import TextTokenPooling, TIRNet

__all__ = [
    "CDCB",
    "RTMB",
    "SEGMENTER_BACKBONES",
    "GuidedSegmenter",
    "SegFormer2D",
    "TIRNet",
    "TextTokenPooling",
    "blend_guides",
]
