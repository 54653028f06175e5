"""Network blocks and the method networks."""

from lmseg_components.networks.cdcb import CDCB
from lmseg_components.networks.rtmb import RTMB
from lmseg_components.networks.tirnet import TextTokenPooling, TIRNet

__all__ = ["CDCB", "RTMB", "TIRNet", "TextTokenPooling"]
