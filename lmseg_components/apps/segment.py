"""``lmseg segment``: a trained bundle on a user's own images (and, for the text bundles, sentences), in one command.

    lmseg segment --bundle tirnet_lmis --model runs/x/models/model.pt chest.png --text "..." --out masks/
    lmseg segment --bundle jras_segmentation --model runs/j/models/model.pt patient101_frame01.nii.gz --out masks/

Each image goes through the bundle's own ``inference.json`` (its preprocessing, network, inferer and
postprocessing, so the masks are those ``python -m monai.bundle run inference --images DIR --prompts FILE``
writes) with the config values the model was trained with (``run_record.json`` beside the checkpoint). Written
to ``out``: the mask on the input's own grid (``<name>_mask.png`` at the input's size for 2D images,
``<name>_seg.nii.gz`` on the input's grid and affine for volumes), ``<name>_overlay.png`` (image, mask and the
prompt as caption; for a volume its axial slice with the most foreground) and ``results.json``. J-RAS segments
with its memory bank (gallery and index beside the checkpoint): an ACDC frame slice by slice with retrieval per
slice, into one label volume; ``results.json`` names the gallery cases that guided each slice.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import nibabel as nib
import pydicom
from PIL import Image
from tqdm import tqdm

from lmseg_components.data.acdc import read_images_to_segment
from lmseg_components.data.prompted import read_prompted_images
from lmseg_components.files import atomic_write, prepare_output_dir
from lmseg_components.inference.dicom_seg import seg_beside_mask
from lmseg_components.inference.overlays import write_overlay
from lmseg_components.inference.predictor import VOLUME_SUFFIXES, TextBundlePredictor, takes_text
from lmseg_components.inference.retrieval import RetrievalBundlePredictor, describe_prediction
from lmseg_components.inference.writer import check_mask_paths, describe_mask, prompt_caption, write_mask
from lmseg_components.text.base import TextEncoder

__all__ = ["RESULTS_FILE", "load_predictor", "root_cause", "segment", "segment_records", "unreadable_reason"]

RESULTS_FILE = "results.json"


def _text_read(encoder: TextEncoder, image: str, prompt: str | list[str]) -> str | list[str]:
    """What the text encoder reads of ``prompt`` (each prompt of a list); a warning names the image when it
    reads less than the whole prompt."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    read = [encoder.text_read(p) for p in prompts]
    for whole, part in zip(prompts, read, strict=True):
        if part != whole:
            logging.getLogger(__name__).warning(
                "%s: the prompt is longer than the text encoder's %d tokens; it reads only %r",
                image,
                encoder.context_length,
                part,
            )
    return read[0] if isinstance(prompt, str) else read


def segment(
    images: str | Path | Sequence[str | Path],
    bundle: str | Path,
    model: str | Path,
    out: str | Path,
    text: str | None = None,
    prompts: str | Path | None = None,
    device: str | None = None,
    overwrite: bool = False,
    overrides: dict | None = None,
) -> list[dict]:
    """Segment ``images`` with the trained ``model`` of ``bundle``; returns the ``results.json`` entries.

    Args:
        images: an image file, a folder, or a list of files (PNG, JPEG, DICOM, NIfTI; see
            :func:`~lmseg_components.data.read_prompted_images`).
        bundle: one of lmseg's bundles by name (``tirnet_lmis``, ``tgcnet_lmis``, ``tgcnet_ct_organs``,
            ``jras_segmentation``) or a bundle folder.
        model: the trained checkpoint (``<run>/models/model.pt``); the config values it was trained with are read
            from ``run_record.json`` beside it.
        out: the output folder: new or empty unless ``overwrite``; never one that holds an input.
        text: one prompt for every image (text bundles only).
        prompts: a ``prompts.json`` / ``prompts.csv`` (default: the one in the images' folder). The CT organs
            bundle prompts every organ it knows when an image has no prompt.
        device: ``cpu``, ``cuda`` or ``cuda:N`` (default: CUDA when available).
        overwrite: write into a non-empty ``out`` (masks of the same names are replaced).
        overrides: other bundle config values (e.g. ``text_cache_dir``); one that contradicts a trained value is
            refused.

    Each entry: ``image``; ``text`` (the prompt(s) given); ``text_read`` (what the text encoder reads of each:
    the prompt, or its longest start that fits the encoder's context length, with a warning); ``mask`` and
    ``overlay`` (file names in ``out``); ``voxels`` (count per label); ``foreground_fraction``; ``empty`` (no
    foreground); ``score`` (the presence score of the prompt, or one per prompt: the sigmoid of the mean of the
    highest 0.25 % of the logits); ``found`` (score at or above the ``presence_threshold`` chosen on validation
    data when the model was trained; a prompt not found gets an empty mask; None for a model without one); and
    ``inference_ms`` (preprocessing + network + postprocessing of that image, wall time); for a DICOM input,
    ``dicom_seg``: the DICOM SEG written beside the mask (``<name>_seg.dcm``, referencing the image; None, with a
    warning, without highdicom or when the image lacks the UIDs it must reference). J-RAS's entries have no
    text, score or found, and instead of ``voxels``: ``structures`` (per structure its ``voxels`` and, for a
    volume, ``ml``) and ``slices`` (per slice the retrieved ``guides``, best first: ``id``, ``case_id``,
    ``similarity``).

    Raises:
        FileNotFoundError / ValueError / FileExistsError: a missing image, model or prompts file; a bad prompt;
            an image the bundle cannot read; an output folder that is not empty (the message names the file).
            A call that fails removes the output folder it made (one that existed keeps what it held).
    """
    if takes_text(bundle):
        records = read_prompted_images(images, prompts, text)
    elif text is not None or prompts is not None:
        raise ValueError(f"{Path(bundle).name} takes no text prompt: it is guided by the cases of its memory bank")
    else:  # a patient's folder as it is: its ground truth and 4D files are no frames to segment
        records = read_images_to_segment(images)
    model = Path(model)
    new_folder = not Path(out).exists()
    out = prepare_output_dir(out, overwrite, sources=[model, *(r["image"] for r in records)])
    try:
        return segment_records(out, records, load_predictor(bundle, model, device, overrides))
    except BaseException:
        if new_folder:  # a folder this call made holds only what it wrote: a failed call leaves nothing behind
            shutil.rmtree(out, ignore_errors=True)
        raise


Predictor = TextBundlePredictor | RetrievalBundlePredictor


def load_predictor(
    bundle: str | Path, model: str | Path, device: str | None = None, overrides: dict | None = None
) -> Predictor:
    """The predictor of ``bundle``'s trained ``model``: :class:`TextBundlePredictor` for the text bundles,
    :class:`RetrievalBundlePredictor` (with the memory bank beside the checkpoint) for J-RAS. The caches of text
    features and CLIP weights go to the run the model came from."""
    model = Path(model)
    run_root = model.parent.parent if model.parent.name == "models" else model.parent
    run_overrides = {"bundle_root": str(run_root), **(overrides or {})}
    if takes_text(bundle):
        return TextBundlePredictor(bundle, device, run_overrides, model=model)
    return RetrievalBundlePredictor(bundle, model, device, run_overrides)


def segment_records(out: Path, records: list[dict], predictor: Predictor) -> list[dict]:
    """Segment ``records`` (``image`` and, for the text bundles, ``text``) with ``predictor`` into the prepared
    folder ``out``: masks, overlays and ``results.json``; returns its entries (see :func:`segment`).

    Raises:
        ValueError: an image of the other kind, a bad prompt, or an image the bundle cannot read (the message names
            the image and the reader's cause).
    """
    if isinstance(predictor, TextBundlePredictor):
        describe = partial(_text_entry, predictor)
    else:
        describe = _retrieval_entry
    for record in records:
        predictor.check_kind(record["image"])
    for spatial_dims in (2, 3):  # NIfTI volumes get NIfTI masks, 2D images PNG masks; names checked before writing
        group = [r["image"] for r in records if (r["image"].lower().endswith(VOLUME_SUFFIXES)) == (spatial_dims == 3)]
        check_mask_paths(group, out, spatial_dims)
    results = []
    # a bar on a terminal for several images (tqdm stays quiet when stderr is a file or a pipe)
    for record in tqdm(records, desc="segment", unit="image", leave=False, disable=None if len(records) > 1 else True):
        start = time.perf_counter()
        try:
            item = predictor(record)
        except RuntimeError as e:  # a reader's or a transform's failure: name the image and the cause, not the stack
            raise ValueError(
                f"{record['image']}: {predictor.bundle.name} cannot segment it ({root_cause(record['image'], e)})"
            ) from e
        milliseconds = (time.perf_counter() - start) * 1000
        entry, caption = describe(record, item)
        mask = write_mask(item["pred"], out)
        overlay = write_overlay(record["image"], item["pred"], caption, out)
        entry = {"image": record["image"], **entry, "mask": mask.name, "overlay": overlay.name}
        if record["image"].lower().endswith(".dcm"):
            entry["dicom_seg"] = seg_beside_mask(record["image"], item["pred"], out, caption, predictor.bundle)
        results.append({**entry, "inference_ms": round(milliseconds, 1)})
    atomic_write(out / RESULTS_FILE, lambda tmp: Path(tmp).write_text(json.dumps(results, indent=1)))
    logging.getLogger(__name__).info("wrote %d mask(s) and %s to %s", len(results), RESULTS_FILE, out)
    return results


def root_cause(image: str | Path, error: BaseException) -> str:
    """Why ``image`` could not be segmented, in one line: the reading library's own complaint when the file is not
    readable as its kind (MONAI's reader chain reports "cannot find a suitable reader" and the last reader's error,
    which for a broken PNG is pydicom's), else the innermost cause of ``error`` (MONAI wraps a transform's failure
    as "applying transform <object at 0x...>", which says nothing to the user)."""
    reason = unreadable_reason(image)
    if reason is not None:
        return reason
    while error.__cause__ is not None:
        error = error.__cause__
    return _one_line(error)


def unreadable_reason(image: str | Path) -> str | None:
    """Why ``image`` cannot be read by the library of its kind (PIL for PNG / JPEG, pydicom for DICOM with its
    pixel data decoded, nibabel for NIfTI), or None when it can. A DICOM whose pixel data no installed decoder reads
    says what to install."""
    name = str(image).lower()
    try:
        if name.endswith(VOLUME_SUFFIXES):
            kind = "NIfTI"
            nib.load(str(image)).get_fdata()
        elif name.endswith(".dcm"):
            kind = "DICOM"
            pydicom.dcmread(str(image)).pixel_array  # noqa: B018 (decoding the pixels is the check)
        else:
            kind = "PNG / JPEG"
            with Image.open(image) as picture:
                picture.load()
    except Exception as e:  # any library's refusal is the answer here
        reason = f"not a readable {kind} file: {_one_line(e)}"
        if kind == "DICOM" and re.search(r"decod|decompress", str(e), re.I):
            reason += f" ({DICOM_DECODERS})"
        return reason
    return None


DICOM_DECODERS = "compressed DICOM needs pydicom's decoders: pip install 'lmseg[dicom]'"


def _one_line(error: BaseException) -> str:
    """``error``'s message on one line (pydicom lists each decoder's complaint on a line of its own)."""
    lines = [line.strip() for line in (str(error).strip() or type(error).__name__).splitlines() if line.strip()]
    message = lines[0] + (" " + "; ".join(lines[1:]) if len(lines) > 1 else "")
    return re.sub(r"<[\w.]+ object at 0x[0-9a-f]+>", "a transform", message)


def _text_entry(predictor: TextBundlePredictor, record: dict, item: dict) -> tuple[dict, str]:
    """A text bundle's ``results.json`` entry of one image (without file names and time), and its overlay caption."""
    prompt = item["text"]
    entry = {
        "text": prompt,
        "text_read": _text_read(predictor.text_encoder, record["image"], prompt),
        **describe_mask(item["pred"]),
        "score": item["score"],
        "found": item["found"],
    }
    return entry, prompt_caption(prompt)


def _retrieval_entry(record: dict, item: dict) -> tuple[dict, str]:
    """J-RAS's ``results.json`` entry of one image or volume (the structures with their voxels and mL, and the
    gallery cases that guided each slice), and its overlay caption (the cases of the slices' best guides)."""
    cases = dict.fromkeys(s["guides"][0]["case_id"] for s in item["retrieval"]["slices"] if s["guides"])
    return describe_prediction(item), f"guided by {', '.join(cases)}" if cases else "no retrieval"
