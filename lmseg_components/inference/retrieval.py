"""Run the J-RAS bundle on one image or volume: its own preprocessing, network (a trained checkpoint with the values
it was trained with), memory bank (the gallery and index beside the checkpoint, with the cases a user added),
inferer and postprocessing without the file writers."""

from __future__ import annotations

from pathlib import Path

import torch
from monai.data import decollate_batch, list_data_collate
from monai.transforms import Compose

from lmseg_components.engines.checkpoint_loader import check_checkpoint_file
from lmseg_components.engines.jras import LoadRetrievalState, describe_retrieval
from lmseg_components.inference.predictor import VOLUME_SUFFIXES, find_bundle
from lmseg_components.inference.writer import describe_mask
from lmseg_components.runs import RUN_RECORD_FILE, check_trained_with, load_trained_bundle, trained_values
from lmseg_components.workflows import FILE_WRITERS, device_expression

__all__ = [
    "BANK_FILES",
    "BUSI_CONFIG",
    "REQUIRED_BANK_FILES",
    "RetrievalBundlePredictor",
    "bank_files",
    "describe_prediction",
    "segments_volumes",
]

BUSI_CONFIG = "busi_inference.json"  # the 2D (BUSI) overlay of the J-RAS inference config
# what travels with a J-RAS checkpoint (the memory bank and the values it was trained with); the first two it needs
REQUIRED_BANK_FILES = ("gallery.pt", "index.pt")
BANK_FILES = (*REQUIRED_BANK_FILES, "user_gallery.pt", RUN_RECORD_FILE)


def bank_files(model: str | Path, bundle: str = "jras_segmentation", required: bool = True) -> list[Path]:
    """The files of :data:`BANK_FILES` beside the checkpoint ``model`` of ``bundle`` (to copy with it into an app).

    Raises:
        FileNotFoundError: with ``required``, ``gallery.pt`` or ``index.pt`` is not beside ``model``.
    """
    folder = Path(model).parent
    missing = [name for name in REQUIRED_BANK_FILES if not (folder / name).is_file()]
    if required and missing:
        raise FileNotFoundError(f"{bundle} runs with its memory bank: no {', '.join(missing)} beside {model}")
    return [folder / name for name in BANK_FILES if (folder / name).is_file()]


def segments_volumes(ckpt_dir: str | Path) -> bool:
    """Whether the J-RAS model in ``ckpt_dir`` segments ACDC frames (volumes) rather than 2D images: a model trained
    with two classes (``busi.json``) takes 2D images."""
    return int(trained_values(ckpt_dir).get("num_classes", 4)) != 2


def describe_prediction(item: dict) -> dict:
    """The results entry of one J-RAS prediction (``lmseg segment``, the Deploy app): ``foreground_fraction``,
    ``empty``, and the ``structures`` and ``slices`` of its ``retrieval``."""
    described = describe_mask(item["pred"])
    return {k: described[k] for k in ("foreground_fraction", "empty")} | item["retrieval"]


class RetrievalBundlePredictor:
    """The J-RAS bundle as a function ``record -> record``.

    ``predictor({"image": "patient101_frame01.nii.gz"})`` returns the postprocessed record with ``pred``: the label
    map on the input's own grid (a label volume (1, X, Y, Z) with the input's affine for an ACDC frame, segmented
    slice by slice with retrieval per slice; a binary map (1, H, W) for a BUSI image), and ``retrieval``: its
    :func:`~lmseg_components.engines.describe_retrieval` (volume per structure in mL, the guides of each slice).

    A model trained with two classes (``busi.json``) segments 2D images (``busi_inference.json``); the others
    segment ACDC frames (``inference.json``).

    Args:
        bundle: the bundle folder (or a folder holding one, or ``jras_segmentation``).
        model: the trained checkpoint (``<run>/models/model.pt``); the gallery (``gallery.pt``, ``user_gallery.pt``)
            and index (``index.pt``) beside it are loaded and checked against its retriever.
        device: ``cpu``, ``cuda`` or ``cuda:N``; default the bundle's (CUDA when available).
        overrides: bundle config overrides by id; one that contradicts a trained value is refused.

    Raises:
        FileNotFoundError / ValueError: a missing or unreadable checkpoint, a checkpoint of another bundle, an index
            that does not match the retriever (the message names ``lmseg jras-bank rebuild``).
    """

    def __init__(self, bundle: str | Path, model: str | Path, device: str | None = None, overrides: dict | None = None):
        self.bundle = find_bundle(bundle)
        model = Path(model)
        check_checkpoint_file(model)
        ckpt_dir = model.parent
        check_trained_with(self.bundle, ckpt_dir)
        extra = {"ckpt_dir": str(ckpt_dir), **(overrides or {})}
        if device is not None:
            extra["device"] = device_expression(str(device))
        self.segments_volumes = segments_volumes(ckpt_dir)
        configs = ["inference.json"] if self.segments_volumes else ["inference.json", BUSI_CONFIG]
        parser = load_trained_bundle(self.bundle, configs, ckpt_dir, extra)
        self.network = parser.get_parsed_content("network")
        state = torch.load(model, map_location=next(self.network.parameters()).device, weights_only=True)
        self.network.segmenter.load_state_dict(state["segmenter"])
        self.network.retriever.load_state_dict(state["retriever"])
        self.network.eval()
        LoadRetrievalState(
            self.network,
            parser.get_parsed_content("gallery_path"),
            parser.get_parsed_content("index_path"),
            parser.get_parsed_content("bundle_root"),
            parser.get_parsed_content("user_gallery_path"),
        )(None)
        self.device = parser.get_parsed_content("torch_device")
        self.preprocessing = parser.get_parsed_content("preprocessing")
        self.inferer = parser.get_parsed_content("inferer")
        post = parser.get_parsed_content("postprocessing")
        self.postprocessing = Compose([t for t in post.transforms if not isinstance(t, FILE_WRITERS)])
        self.classes = list(parser.get_parsed_content("class_names"))

    def check_kind(self, image: str | Path) -> None:
        """Refuse a 2D image given to a model trained on ACDC frames, or a volume to a BUSI model, naming the image
        (before any image is read, so a batch fails before its first mask)."""
        volume = str(image).lower().endswith(VOLUME_SUFFIXES)
        if volume != self.segments_volumes:
            takes = "ACDC frames (NIfTI volumes)" if self.segments_volumes else "2-D images (BUSI: PNG, JPEG)"
            raise ValueError(
                f"{image} is a {'3-D volume' if volume else '2-D image'}; this {self.bundle.name} model segments "
                f"{takes}"
            )

    @torch.no_grad()
    def __call__(self, record: dict) -> dict:
        """The postprocessed item of ``record`` with ``pred`` and ``retrieval`` (see the class)."""
        self.check_kind(record["image"])
        batch = list_data_collate([self.preprocessing(dict(record))])
        batch["pred"] = self.inferer(batch["image"].to(self.device), self.network)
        item = self.postprocessing(decollate_batch(batch)[0])
        item["retrieval"] = describe_retrieval(self.network, item["pred"], self.classes)
        return item
