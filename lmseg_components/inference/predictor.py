"""Run a text-guided bundle on one image and prompt: the bundle's own preprocessing, its network (a trained
checkpoint with the values it was trained with, or the exported program of ``configs/inference_exported.json``),
its inferer and its postprocessing without the file writers."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import torch
from monai.data import decollate_batch, list_data_collate
from monai.transforms import Compose, SaveImaged

from lmseg_components.data.msd import organ_prompt
from lmseg_components.engines.checkpoint_loader import check_checkpoint_file
from lmseg_components.export import OnnxNetwork
from lmseg_components.runs import check_trained_with, load_trained_bundle, trained_values
from lmseg_components.workflows import FILE_WRITERS, bundle_dir, device_expression, load_bundle

__all__ = [
    "EXPORTED_CONFIG",
    "VOLUME_SUFFIXES",
    "TextBundlePredictor",
    "check_grey_single_frame",
    "class_names",
    "class_prompts",
    "find_bundle",
    "takes_empty_text",
    "takes_text",
]

EXPORTED_CONFIG = "inference_exported.json"
VOLUME_SUFFIXES = (".nii", ".nii.gz")


def class_names(meta: dict) -> list[str]:
    """The bundle's output classes in channel order (``network_data_format.outputs.pred.channel_def``)."""
    channels = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    return [channels[key] for key in sorted(channels, key=int)]


def class_prompts(meta: dict) -> list[str] | None:
    """One prompt per class (``A computerized tomography of a liver``, ...) for bundles whose text input holds a
    prompt per class (``spatial_shape`` [P, L]); ``None`` for the bundles whose prompt describes the image."""
    text = meta["network_data_format"]["inputs"]["text"]
    return [organ_prompt(name) for name in class_names(meta)] if len(text["spatial_shape"]) == 2 else None


def check_grey_single_frame(image: str | Path, bundle: str) -> None:
    """Refuse a DICOM file the 2-D bundles cannot take, saying what it is and what to do: several frames (MONAI's
    reader stacks them into a volume), or colour samples (read as a third spatial axis). A file whose header cannot
    be read passes: the reader names its problem.

    Raises:
        ValueError: naming the file, its frames or its colour samples, and the way out.
    """
    try:
        header = pydicom.dcmread(str(image), stop_before_pixels=True)
    except Exception:  # not this check's to report
        return
    frames = int(header.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ValueError(
            f"{image}: a multi-frame DICOM ({frames} frames); {bundle} segments one 2-D image: save the frame to "
            "segment as a file of its own (a CT series as NIfTI for tgcnet_ct_organs)"
        )
    samples = int(header.get("SamplesPerPixel", 1) or 1)
    if samples > 1:
        kind = header.get("PhotometricInterpretation", "colour")
        raise ValueError(
            f"{image}: a colour DICOM ({kind}, {samples} samples per pixel); {bundle} reads grey DICOM: save the image "
            "as PNG or JPEG (colour ones are averaged to grey)"
        )


def takes_empty_text(ckpt_dir: str | Path) -> bool:
    """Whether the model in ``ckpt_dir`` takes the empty prompt: it means "every finding" only to a model trained
    with text dropout (``TextDropoutd``; its run record's ``text_dropout`` > 0)."""
    return float(trained_values(ckpt_dir).get("text_dropout") or 0.0) > 0


def find_bundle(path: str | Path) -> Path:
    """The bundle folder at ``path``: ``path`` itself when it has ``configs/metadata.json``, else its one
    sub-folder that has (a MAP's model folder holds each model in a sub-folder); a name that is no folder here
    names one of lmseg's bundles (``tirnet_lmis``)."""
    path = Path(path)
    if not path.exists() and len(path.parts) == 1:
        return bundle_dir(path.name)
    if (path / "configs" / "metadata.json").is_file():
        return path
    found = sorted(p for p in path.glob("*") if (p / "configs" / "metadata.json").is_file()) if path.is_dir() else []
    if len(found) != 1:
        what = f"several ({', '.join(p.name for p in found)})" if found else "none"
        raise FileNotFoundError(f"model path {path}: expected one bundle (configs/metadata.json), found {what}")
    return found[0]


def takes_text(bundle: str | Path) -> bool:
    """Whether the bundle (a folder, or the name of one of lmseg's) segments by a text prompt: its network's inputs
    (``network_data_format``) hold ``text``; J-RAS's do not."""
    meta = json.loads((find_bundle(bundle) / "configs" / "metadata.json").read_text())
    return "text" in meta["network_data_format"]["inputs"]


class TextBundlePredictor:
    """A bundle as a function ``record -> record``.

    ``predictor({"image": "case.png", "text": "..."})`` returns the preprocessed record with ``pred``: the bundle's
    postprocessed prediction on the input's own grid (a binary map (1, H, W) for the 2D bundles, a label volume
    (1, H, W, D) with labels 1..P for the CT organs bundle), as a MetaTensor with the input's affine.

    Args:
        bundle: the bundle folder (or a folder holding one, or the name of one of lmseg's bundles).
        device: ``cpu``, ``cuda`` or ``cuda:N``; default the bundle's (CUDA when available).
        overrides: bundle config overrides by id, as on the ``monai.bundle`` command line (e.g. ``text_cache_dir``).
        model: a trained checkpoint (``models/model.pt``): the network is the bundle's ``inference.json``
            ``network_def`` built with the values it was trained with (``run_record.json`` beside it, see
            :func:`~lmseg_components.runs.load_trained_bundle`); or an ONNX file (``lmseg export --format
            onnx``), run by onnxruntime with the same preprocessing. Default: the exported network that
            ``configs/inference_exported.json`` loads (``models/model.pt2`` from ``lmseg export``, or
            ``models/model.ts`` from ``ckpt_export``), with the values of the ``run_record.json`` beside it.
    """

    def __init__(
        self,
        bundle: str | Path,
        device: str | None = None,
        overrides: dict | None = None,
        model: str | Path | None = None,
    ):
        self.bundle = find_bundle(bundle)
        if not takes_text(self.bundle):
            raise ValueError(
                f"{self.bundle.name} takes no text prompt: the text bundles are tirnet_lmis, tgcnet_lmis and "
                "tgcnet_ct_organs (J-RAS runs with its memory bank: RetrievalBundlePredictor)"
            )
        extra = dict(overrides or {})
        if device is not None:
            extra["device"] = device_expression(str(device))
        if model is None:
            if not (self.bundle / "configs" / EXPORTED_CONFIG).is_file():
                raise FileNotFoundError(
                    f"{self.bundle}: no configs/{EXPORTED_CONFIG}; this bundle has no exported-network inference"
                )
            configs = ["inference.json", EXPORTED_CONFIG]
            ckpt_dir = Path(load_bundle(self.bundle, configs, extra).get_parsed_content("ckpt_dir"))
            parser = load_trained_bundle(self.bundle, configs, ckpt_dir, extra)
            self.network = parser.get_parsed_content("network").eval()
        else:
            model = Path(model)
            onnx = model.suffix == ".onnx"
            if not onnx:
                check_checkpoint_file(model)
            ckpt_dir = model.parent
            check_trained_with(self.bundle, ckpt_dir)
            parser = load_trained_bundle(self.bundle, ["inference.json"], ckpt_dir, extra)
            if onnx:
                self.network = OnnxNetwork(model)
            else:
                self.network = parser.get_parsed_content("network")
                device_now = next(self.network.parameters()).device
                self.network.load_state_dict(torch.load(model, map_location=device_now, weights_only=True))
                self.network.eval()
        self.meta = parser.get_parsed_content("_meta_")
        self.device = parser.get_parsed_content("torch_device")
        self.preprocessing = parser.get_parsed_content("preprocessing")
        self.text_encoder = parser.get_parsed_content("text_encoder")  # the one the preprocessing encodes with
        self.inferer = parser.get_parsed_content("inferer")
        self.prepare_batch = parser.get_parsed_content("prepare_batch")
        post = parser.get_parsed_content("postprocessing")
        self.postprocessing = Compose([t for t in post.transforms if not isinstance(t, FILE_WRITERS)])
        # a bundle that writes NIfTI masks segments volumes; the others, 2-D images
        extensions = [t.saver.folder_layout.ext for t in post.transforms if isinstance(t, SaveImaged)]
        self.segments_volumes = any(ext.startswith(".nii") for ext in extensions)
        self.classes = class_names(self.meta)
        self.default_text = class_prompts(self.meta)
        self.num_prompts = len(self.default_text) if self.default_text else None
        self.takes_empty_text = takes_empty_text(ckpt_dir)
        # the score at or above which a prompt's finding is found (run record or override); None: no decision
        self.presence_threshold = parser.get_parsed_content("presence_threshold")

    def check_text(self, record: dict) -> dict:
        """``record`` with its ``text`` checked against the bundle (a string, or one prompt per class);
        the class prompts are filled in when the bundle has them. The errors name the image."""
        record = dict(record)
        text = record.get("text", self.default_text)
        image = record.get("image")
        if text is None:
            raise ValueError(f"{image}: no text prompt; {self.bundle.name} needs one (prompts.json)")
        if self.num_prompts:
            prompts = [text] if isinstance(text, str) else list(text)
            if len(prompts) != self.num_prompts:
                raise ValueError(
                    f"{image}: {self.bundle.name} takes {self.num_prompts} prompts (one per class: "
                    f"{', '.join(self.classes)}), got {len(prompts)}"
                )
            record["text"] = prompts
        elif not isinstance(text, str):
            raise ValueError(f"{image}: {self.bundle.name} takes one prompt string, got {text!r}")
        elif not text.strip() and not self.takes_empty_text:
            raise ValueError(
                f"{image}: an empty prompt asks for every finding, which only a model trained with text_dropout > 0 "
                "does (this one's run record has none): give a prompt, or train with --text_dropout 0.3"
            )
        return record

    def check_kind(self, image: str | Path) -> None:
        """Refuse a NIfTI volume given to a 2-D bundle, or a 2-D image to the volume bundle, naming the image and the
        bundles that take it (before any image is read, so a batch fails before its first mask)."""
        volume = str(image).lower().endswith(VOLUME_SUFFIXES)
        if volume != self.segments_volumes:
            takes = "3-D volumes (NIfTI)" if self.segments_volumes else "2-D images (PNG, JPEG, DICOM)"
            other = "tgcnet_ct_organs" if volume else "tirnet_lmis or tgcnet_lmis"
            raise ValueError(
                f"{image} is a {'3-D volume' if volume else '2-D image'}; {self.bundle.name} segments {takes}: use "
                f"{other}"
            )
        if str(image).lower().endswith(".dcm"):
            check_grey_single_frame(image, self.bundle.name)

    @torch.no_grad()
    def __call__(self, record: dict) -> dict:
        """The postprocessed item of ``record``: ``pred`` (the mask), and the presence decision of the bundle's
        :class:`~lmseg_components.outputs.PresenceDecisiond`: ``score`` and ``found`` of each prompt (a float and a
        bool for a bundle with one prompt per image, lists with one per class; ``found`` is None for a model
        without a ``presence_threshold`` in its run record, and a prompt not found gets an empty mask).

        Raises:
            ValueError: the image is of the other kind (:meth:`check_kind`), its text does not fit the bundle, or
                it has a side of one pixel (MONAI's image writers would drop that dimension); the message names it.
        """
        self.check_kind(record["image"])
        data = self.preprocessing(self.check_text(record))
        batch = list_data_collate([data])
        inputs, _, args, kwargs = self.prepare_batch(batch, self.device, non_blocking=False)
        batch["pred"] = self.inferer(inputs, self.network, *args, **kwargs)
        item = self.postprocessing(decollate_batch(batch)[0])
        if min(item["pred"].shape[1:]) < 2:
            size = " x ".join(str(n) for n in item["pred"].shape[1:])
            raise ValueError(f"{record['image']}: {size} pixels; segmenting needs at least 2 pixels on each side")
        return item
