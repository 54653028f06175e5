"""The method networks, one subpackage each (``tirnet``, ``tgcnet``, ``jras``), and the blocks they share
(``blocks``). Every public name is re-exported here: configs say ``lmseg_components.networks.TIRNet``."""

from lmseg_components.networks.accelerate import accelerate
from lmseg_components.networks.blocks import (
    MSDeformAttn,
    masked_attention,
    masked_mean,
    ms_deform_attn_core,
    reference_points,
    token_mask,
)
from lmseg_components.networks.jras import SEGMENTER_BACKBONES, GuidedSegmenter, SegFormer2D, blend_guides
from lmseg_components.networks.tgcnet import (
    CALIBRATIONS,
    DATE,
    GUIDANCES,
    SSE,
    TEXT_MODES,
    VLCM,
    CLIPImageTower,
    CNNBranch,
    CostAggregationDecoder,
    TGCNet,
    cosine_cost,
    count_parameters,
)
from lmseg_components.networks.tirnet import CDCB, RTMB, TextTokenPooling, TIRNet

__all__ = [
    "CALIBRATIONS",
    "CDCB",
    "CLIPImageTower",
    "CNNBranch",
    "CostAggregationDecoder",
    "DATE",
    "GUIDANCES",
    "MSDeformAttn",
    "RTMB",
    "SEGMENTER_BACKBONES",
    "SSE",
    "TEXT_MODES",
    "TGCNet",
    "VLCM",
    "GuidedSegmenter",
    "SegFormer2D",
    "TIRNet",
    "TextTokenPooling",
    "accelerate",
    "blend_guides",
    "cosine_cost",
    "count_parameters",
    "masked_attention",
    "masked_mean",
    "ms_deform_attn_core",
    "reference_points",
    "token_mask",
]
