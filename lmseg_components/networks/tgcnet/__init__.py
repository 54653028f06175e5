"""TGC-Net (``../shared/specs/tgcnet.md``): frozen CLIP ViT + CNN branch (SSE), LLM-augmented text (DATE), gated
calibration (VLCM) and a cost-aggregating decoder."""

from lmseg_components.networks.tgcnet.cost_decoder import CostAggregationDecoder, cosine_cost
from lmseg_components.networks.tgcnet.date import DATE, TEXT_MODES
from lmseg_components.networks.tgcnet.network import TGCNet, count_parameters
from lmseg_components.networks.tgcnet.sse import GUIDANCES, SSE, CLIPImageTower, CNNBranch
from lmseg_components.networks.tgcnet.vlcm import CALIBRATIONS, VLCM

__all__ = [
    "CALIBRATIONS",
    "CLIPImageTower",
    "CNNBranch",
    "CostAggregationDecoder",
    "DATE",
    "GUIDANCES",
    "SSE",
    "TEXT_MODES",
    "TGCNet",
    "VLCM",
    "cosine_cost",
    "count_parameters",
]
