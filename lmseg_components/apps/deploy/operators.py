"""MONAI Deploy operators for lmseg bundles (need the ``deploy`` extra: ``monai-deploy-app-sdk``).

``PromptedImageLoaderOperator`` -> ``TextBundleInferenceOperator`` -> ``MaskWriterOperator``: the records
``{"image", "text"}`` of the input folder, the exported bundle's prediction for each, the masks and a
``results.json`` in the output folder. J-RAS: ``PromptedImageLoaderOperator(prompts=False)`` ->
``RetrievalBundleInferenceOperator`` (the trained checkpoint with its memory bank) -> ``MaskWriterOperator``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from monai.deploy.core import Fragment, Operator, OperatorSpec

from lmseg_components.data.acdc import read_images_to_segment
from lmseg_components.data.prompted import read_prompted_images
from lmseg_components.inference.dicom_seg import seg_beside_mask
from lmseg_components.inference.predictor import TextBundlePredictor, find_bundle
from lmseg_components.inference.retrieval import RetrievalBundlePredictor, describe_prediction
from lmseg_components.inference.writer import check_mask_paths, describe_mask, prompt_caption, write_mask

__all__ = [
    "MaskWriterOperator",
    "PromptedImageLoaderOperator",
    "RetrievalBundleInferenceOperator",
    "TextBundleInferenceOperator",
]

RESULTS_FILE = "results.json"


class PromptedImageLoaderOperator(Operator):
    """Emits the records of an input file or folder (see :func:`~lmseg_components.data.read_prompted_images`;
    with ``prompts=False``, :func:`~lmseg_components.data.read_images_to_segment`: no prompts, a patient's
    ground-truth and 4D files skipped).

    Named output:
        records: list of ``{"image": path, "text": prompt}`` (``text`` absent where ``prompts.json`` has none).
    """

    def __init__(self, fragment: Fragment, *args, input_path: str | Path, prompts: bool = True, **kwargs):
        self.input_path = Path(input_path)
        self.read = read_prompted_images if prompts else read_images_to_segment
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.output("records")

    def compute(self, op_input, op_output, context):
        records = self.read(self.input_path)
        logging.getLogger(__name__).info("%d image(s) to segment from %s", len(records), self.input_path)
        op_output.emit(records, "records")


class _BundleInferenceOperator(Operator):
    """A bundle predictor run on each record, loaded on the first call so that composing the application (e.g. for
    packaging) needs no model. Subclasses make the predictor and keep the keys of each prediction."""

    KEYS: tuple[str, ...] = ("pred",)

    def __init__(
        self,
        fragment: Fragment,
        *args,
        bundle_path: str | Path,
        device: str | None = None,
        overrides: dict | None = None,
        **kwargs,
    ):
        self.bundle_path = Path(bundle_path)
        self.device = device
        self.overrides = dict(overrides or {})
        self._predictor = None
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("records")
        spec.output("predictions")

    @property
    def predictor(self):
        if self._predictor is None:
            self._predictor = self.load()
        return self._predictor

    def load(self):
        raise NotImplementedError(f"{type(self).__name__} must say how its predictor is loaded")

    def compute(self, op_input, op_output, context):
        records = op_input.receive("records")
        for record in records:  # every image of the wrong kind refused before the first prediction
            self.predictor.check_kind(record["image"])
        predictions = []
        for record in records:
            out = self.predictor(record)
            predictions.append({"image": record["image"], **{k: out[k] for k in self.KEYS}})
        op_output.emit(predictions, "predictions")


class TextBundleInferenceOperator(_BundleInferenceOperator):
    """Runs an exported bundle (:class:`~lmseg_components.inference.TextBundlePredictor`) on each record.

    Named input:
        records: list of ``{"image", "text"}``.
    Named output:
        predictions: list of ``{"image": path, "text": prompt(s), "pred": MetaTensor on the input's grid, "score",
        "found"}``.
    """

    KEYS = ("text", "pred", "score", "found")

    def load(self) -> TextBundlePredictor:
        return TextBundlePredictor(self.bundle_path, self.device, self.overrides)


class RetrievalBundleInferenceOperator(_BundleInferenceOperator):
    """Runs J-RAS (:class:`~lmseg_components.inference.RetrievalBundlePredictor`: the bundle's ``models/model.pt``
    with the memory bank beside it, checked against its retriever) on each record: an ACDC frame slice by slice
    into a label volume, or a 2D image for a model trained on BUSI.

    Named input:
        records: list of ``{"image"}``.
    Named output:
        predictions: list of ``{"image": path, "pred": label map on the input's grid, "retrieval": structures and
        the guides of each slice}``.
    """

    KEYS = ("pred", "retrieval")

    def load(self) -> RetrievalBundlePredictor:
        bundle = find_bundle(self.bundle_path)
        overrides = {"bundle_root": str(bundle), **self.overrides}
        return RetrievalBundlePredictor(bundle, bundle / "models" / "model.pt", self.device, overrides)


class MaskWriterOperator(Operator):
    """Writes each prediction's mask (:func:`~lmseg_components.inference.write_mask`) to the output folder and
    lists them in ``results.json`` (image, prompt(s), mask file,
    :func:`~lmseg_components.inference.describe_mask`, the presence ``score`` and ``found``: a prompt not found
    has an empty mask; for J-RAS, the foreground fraction, ``structures`` with voxels and mL, and the retrieved
    ``guides`` of each slice, as ``lmseg segment`` writes them). A DICOM input's mask is written as a DICOM SEG
    too (``dicom_seg``: ``<name>_seg.dcm`` referencing the image, see
    :func:`~lmseg_components.inference.dicom_seg.seg_beside_mask`; None, with a warning, when it cannot be). The
    mask names are checked first (:func:`~lmseg_components.inference.check_mask_paths`): nothing is written when
    two images would share a mask.

    Named input:
        predictions: the output of :class:`TextBundleInferenceOperator`.
    """

    def __init__(self, fragment: Fragment, *args, output_folder: str | Path, bundle_path: str | Path, **kwargs):
        self.output_folder = Path(output_folder)
        self.bundle_path = Path(bundle_path)  # names the algorithm in a DICOM SEG
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("predictions")

    def compute(self, op_input, op_output, context):
        results = []
        predictions = op_input.receive("predictions")
        if predictions:
            names = [p["pred"].meta["filename_or_obj"] for p in predictions]
            check_mask_paths(names, self.output_folder, predictions[0]["pred"].ndim - 1)
        bundle = None  # found at the first DICOM input: only a DICOM SEG names the algorithm
        for item in predictions:
            mask = write_mask(item["pred"], self.output_folder)
            if "retrieval" in item:
                results.append({"image": item["image"], "mask": mask.name, **describe_prediction(item)})
                continue
            entry = {
                "image": item["image"],
                "text": item["text"],
                "mask": mask.name,
                **describe_mask(item["pred"]),
                "score": item["score"],
                "found": item["found"],
            }
            if str(item["image"]).lower().endswith(".dcm"):
                bundle = bundle or find_bundle(self.bundle_path)
                label = prompt_caption(item["text"])
                entry["dicom_seg"] = seg_beside_mask(item["image"], item["pred"], self.output_folder, label, bundle)
            results.append(entry)
        self.output_folder.mkdir(parents=True, exist_ok=True)
        (self.output_folder / RESULTS_FILE).write_text(json.dumps(results, indent=4))
        logging.getLogger(__name__).info("wrote %d mask(s) to %s", len(results), self.output_folder)
