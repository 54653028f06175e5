"""Overlay PNGs: the image, the predicted mask outline/fill and the text prompt as a caption."""

from __future__ import annotations

import textwrap
from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from monai.config import KeysCollection
from monai.data import FolderLayout
from monai.transforms import MapTransform
from monai.visualize import blend_images
from PIL import Image, ImageDraw

__all__ = ["PALETTE", "render_overlay", "SaveOverlayd"]


PALETTE = ((255, 64, 32), (64, 220, 64), (64, 128, 255), (255, 220, 0), (220, 64, 255), (0, 220, 220))


def render_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    caption: str,
    alpha: float = 0.45,
    min_width: int = 256,
):
    """Return an RGB PIL image: ``image`` (H, W) in [0, 1] with ``mask`` (H, W) blended in, caption below.

    ``mask`` is binary or a label map; label ``v > 0`` is drawn in ``PALETTE[(v - 1) % len(PALETTE)]`` by MONAI's
    :func:`~monai.visualize.blend_images` (PIL writes the caption). Images narrower than ``min_width`` are
    enlarged by an integer factor (nearest) so the caption stays legible.
    """
    labels = np.asarray(mask).astype(np.int64)
    top = max(int(labels.max()), 1)
    # label v as v / top on a colormap of top + 1 entries: matplotlib's int(x * N) picks entry v exactly
    colors = [(0, 0, 0)] + [tuple(c / 255 for c in PALETTE[(v - 1) % len(PALETTE)]) for v in range(1, top + 1)]
    blended = blend_images(
        np.clip(np.asarray(image, np.float32), 0, 1)[None],
        (labels / top).astype(np.float32)[None],
        alpha=alpha,
        cmap=ListedColormap(colors),
        rescale_arrays=False,
        transparent_background=True,
    )
    rgb = np.moveaxis(np.asarray(blended), 0, -1) * 255
    picture = Image.fromarray(np.clip(rgb.round(), 0, 255).astype(np.uint8))
    scale = max(1, -(-min_width // picture.width))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    w, h = picture.size
    lines = textwrap.wrap(caption, width=max(16, w // 7)) or [""]
    canvas = Image.new("RGB", (w, h + 12 * len(lines) + 6), (0, 0, 0))
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((3, h + 3 + 12 * i), line, fill=(255, 255, 255))
    return canvas


class SaveOverlayd(MapTransform):
    """Write ``<output_dir>/<image name>_overlay.png`` for each item: image, predicted mask, text caption. The name
    comes from MONAI's :class:`~monai.data.FolderLayout` (as ``SaveImaged``'s): with ``data_root_dir``, an image's
    sub-folder under it is kept under ``output_dir``.

    Arrays follow MONAI's PNG convention (channel-first, spatial axes (W, H) as ``LoadImage`` returns them), so
    they are transposed back to (H, W) for the PNG.

    Args:
        keys: the prediction key (binary mask, (1, W, H)).
        image_key: the image key ((C, W, H), intensities scaled to [0, 1]).
        text_key: the text prompt key.
        output_dir: folder for the PNGs.
        data_root_dir: the inputs' root folder (see ``SaveImaged``); empty writes every PNG into ``output_dir``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        image_key: str = "image",
        text_key: str = "text",
        output_dir: str | Path = "./overlays",
        data_root_dir: str | Path = "",
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.image_key, self.text_key = image_key, text_key
        self.folder_layout = FolderLayout(
            str(output_dir),
            postfix="overlay",
            extension=".png",
            parent=False,
            makedirs=True,
            data_root_dir=data_root_dir,
        )

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        image = d[self.image_key]
        meta = getattr(image, "meta", {})
        path = self.folder_layout.filename(subject=str(meta.get("filename_or_obj", "image")))
        for key in self.key_iterator(d):
            pred = torch.as_tensor(d[key]).detach().cpu().numpy()
            img = torch.as_tensor(image).detach().cpu().float().numpy().mean(0)
            overlay = render_overlay(img.T, pred[0].T > 0.5, str(d.get(self.text_key, "")))
            overlay.save(path)
        return d
