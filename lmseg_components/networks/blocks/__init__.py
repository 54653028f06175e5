"""Blocks shared by the method networks: masked token attention and pooling, multi-scale deformable attention."""

from lmseg_components.networks.blocks.attention import masked_attention, masked_mean, token_mask
from lmseg_components.networks.blocks.deformable_attention import MSDeformAttn, ms_deform_attn_core, reference_points
from lmseg_components.networks.blocks.pooling import avg_pool3x3

__all__ = [
    "MSDeformAttn",
    "avg_pool3x3",
    "masked_attention",
    "masked_mean",
    "ms_deform_attn_core",
    "reference_points",
    "token_mask",
]
