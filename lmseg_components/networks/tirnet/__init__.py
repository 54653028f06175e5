"""TIRNet (``../shared/specs/tirnet.md``): a U-Net whose decoder stages are lit by the text (RTMB) and calibrated
by it (CDCB)."""

from lmseg_components.networks.tirnet.cdcb import CDCB
from lmseg_components.networks.tirnet.network import TextTokenPooling, TIRNet
from lmseg_components.networks.tirnet.rtmb import RTMB

__all__ = ["CDCB", "RTMB", "TIRNet", "TextTokenPooling"]
