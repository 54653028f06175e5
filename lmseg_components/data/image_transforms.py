"""Image transforms MONAI lacks."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from pathlib import Path

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type

from lmseg_components.data.lvit import binary_mask_problem

__all__ = [
    "AsGreyd",
    "BinaryMaskd",
    "MultiLabelToIndexd",
    "OneHotForegroundd",
    "PerSliced",
    "SelectSliced",
    "UniteChannelsd",
]


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


class UniteChannelsd(MapTransform):
    """The union (maximum) of the channels of channel-first masks, as one channel: (C, *spatial) -> (1, *spatial),
    e.g. the several lesion masks of one BUSI image, loaded as channels."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = d[key].amax(0, keepdim=True)
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


class PerSliced(MapTransform):
    """Apply a 2D array ``transform`` to each axial slice of channel-first volumes on its own: (C, X, Y, Z) ->
    (C, X, Y, Z), slice ``z`` being ``transform(volume[..., z])``. Metadata is kept.

    A 2D network trained on slices that were each scaled by their own intensity percentiles (ACDC with
    :class:`SelectSliced`) needs a volume's slices scaled the same way; MONAI's intensity transforms scale the
    whole volume or each channel.

    Args:
        keys: the volume keys.
        transform: a MONAI array transform of (C, X, Y) slices that keeps their shape (e.g.
            ``ScaleIntensityRangePercentiles``).
    """

    def __init__(self, keys: KeysCollection, transform: Callable, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}.")
        self.transform = transform

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            volume = d[key]
            if volume.ndim != 4:
                raise ValueError(
                    f"{_source(d, key)}: expected a channel-first volume (C, X, Y, Z), got shape {tuple(volume.shape)}."
                )
            slices = [
                torch.as_tensor(self.transform(volume[..., z])).as_subclass(torch.Tensor)
                for z in range(volume.shape[-1])
            ]
            d[key] = convert_to_dst_type(torch.stack(slices, -1), volume, dtype=slices[0].dtype)[0]
        return d


def _source(data: Mapping[Hashable, object], key: Hashable) -> str:
    meta = getattr(data[key], "meta", {})
    return str(meta.get("filename_or_obj", key))


class BinaryMaskd(MapTransform):
    """Binary mask of any encoding (0/1, 0/255, boolean, palette indices) -> float 0/1, shape kept (1, *spatial).

    Background is 0 and any single foreground value becomes 1, so a 0/1 mask is not thresholded to empty as
    ``AsDiscreted(threshold=127)`` would. The rule is :func:`~lmseg_components.data.lvit.binary_mask_problem`,
    the one ``lmseg check-data`` applies. Metadata is kept.

    Args:
        keys: mask keys (after ``LoadImaged`` + ``EnsureChannelFirstd`` + ``AsGreyd``).

    Raises:
        ValueError: naming the file (from the image metadata) when a mask has more than one foreground value or
            no background 0.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            mask = torch.as_tensor(d[key]).as_subclass(torch.Tensor)
            problem = binary_mask_problem(mask.unique().tolist())
            if problem is not None:
                raise ValueError(f"{_source(d, key)}: {problem}.")
            d[key] = convert_to_dst_type((mask != 0).float(), d[key], dtype=torch.float32)[0]
        return d


class OneHotForegroundd(MapTransform):
    """Integer label map (1, *spatial) -> one float channel per foreground class (num_classes - 1, *spatial).

    Channel ``c`` is ``label == c + 1``; background has no channel, so the result matches a network that gives
    one sigmoid logit map per prompt (one prompt per foreground class). Metadata is kept.

    Args:
        keys: label keys.
        num_classes: classes including background (label 0).

    Raises:
        ValueError: naming the file when the label has several channels or values outside ``[0, num_classes)``.
    """

    def __init__(self, keys: KeysCollection, num_classes: int, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if num_classes < 2:
            raise ValueError(f"num_classes must count background and at least one class, got {num_classes}.")
        self.num_classes = num_classes

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = torch.as_tensor(d[key])
            if label.ndim < 3 or label.shape[0] != 1:
                raise ValueError(f"{_source(d, key)}: expected a (1, *spatial) label map, got {tuple(label.shape)}.")
            values = label.round().long()
            if values.min() < 0 or values.max() >= self.num_classes:
                raise ValueError(
                    f"{_source(d, key)}: label values {sorted(values.unique().tolist())} are outside "
                    f"[0, {self.num_classes}); check the dataset's labels map."
                )
            channels = torch.cat([values == c for c in range(1, self.num_classes)]).float()
            d[key] = convert_to_dst_type(channels, d[key], dtype=torch.float32)[0]
        return d


class MultiLabelToIndexd(MapTransform):
    """Per-class probabilities (P, *spatial) -> integer label map (1, *spatial): the most probable class
    (1..P) where its probability reaches ``threshold``, background 0 elsewhere. Metadata is kept.

    Args:
        keys: probability keys (after a sigmoid).
        threshold: minimum probability of a foreground label.
    """

    def __init__(self, keys: KeysCollection, threshold: float = 0.5, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.threshold = threshold

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            probs = torch.as_tensor(d[key]).as_subclass(torch.Tensor)
            best, index = probs.max(0, keepdim=True)
            labels = torch.where(best >= self.threshold, index + 1, 0).to(torch.uint8)
            d[key] = convert_to_dst_type(labels, d[key], dtype=torch.uint8)[0]
        return d
