"""Network blocks and the method networks."""

from lmseg_components.networks.attention import masked_attention, masked_mean, token_mask
from lmseg_components.networks.cdcb import CDCB
from lmseg_components.networks.cost_decoder import CostAggregationDecoder, cosine_cost
from lmseg_components.networks.date import DATE, TEXT_MODES
from lmseg_components.networks.deformable_attention import MSDeformAttn, ms_deform_attn_core, reference_points
from lmseg_components.networks.guided import SEGMENTER_BACKBONES, GuidedSegmenter, SegFormer2D, blend_guides
from lmseg_components.networks.rtmb import RTMB
from lmseg_components.networks.sse import GUIDANCES, SSE, CLIPImageTower, CNNBranch
from lmseg_components.networks.tgcnet import TGCNet, count_parameters
from lmseg_components.networks.tirnet import TextTokenPooling, TIRNet
from lmseg_components.networks.vlcm import CALIBRATIONS, VLCM

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
    "blend_guides",
    "cosine_cost",
    "count_parameters",
    "masked_attention",
    "masked_mean",
    "ms_deform_attn_core",
    "reference_points",
    "token_mask",
]
