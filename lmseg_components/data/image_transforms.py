"""Image transforms MONAI lacks."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path

from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["AsGreyd", "SelectSliced"]


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


class SelectSliced(MapTransform):
    """Keep one axial slice of channel-first volumes: (C, X, Y, Z) -> (C, X, Y), at ``data[slice_key]``.

    Used after ``LoadImaged`` + ``EnsureChannelFirstd`` on ACDC slice records (see ``read_acdc_slices``). The
    slice's ``filename_or_obj`` becomes ``<volume stem>_z<NN>`` so that writers name each slice's output
    apart; the volume path stays in ``source_filename``.

    Args:
        keys: the volume keys (image and label).
        slice_key: the record key holding the z index.
    """

    def __init__(self, keys: KeysCollection, slice_key: str = "slice", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.slice_key = slice_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        z = int(d[self.slice_key])
        for key in self.key_iterator(d):
            volume = d[key]
            if volume.ndim != 4:
                raise ValueError(
                    f"{key}: expected a channel-first volume (C, X, Y, Z), got shape {tuple(volume.shape)}."
                )
            if not 0 <= z < volume.shape[-1]:
                raise ValueError(f"{key}: slice {z} is outside the volume's {volume.shape[-1]} slices.")
            out = volume[..., z]
            meta = getattr(out, "meta", None)
            if meta is not None:
                source = str(meta.get("filename_or_obj", key))
                stem = Path(source).name.split(".")[0]
                meta["source_filename"] = source
                meta["filename_or_obj"] = str(Path(source).with_name(f"{stem}_z{z:02d}"))
                meta["spatial_shape"] = tuple(out.shape[1:])
            d[key] = out
        return d
