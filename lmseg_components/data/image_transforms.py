"""Image transforms MONAI lacks."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["AsGreyd"]


class AsGreyd(MapTransform):
    """Average the colour channels of channel-first images to one channel (RGB or RGBA PNGs of grey scans).

    One-channel arrays pass unchanged; an alpha channel (4 channels) is dropped before averaging.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            if x.shape[0] == 4:
                x = x[:3]
            d[key] = x.mean(0, keepdim=True) if x.shape[0] > 1 else x
        return d
