"""A DICOM Segmentation (SEG) object for a mask of a DICOM input: what PACS and viewers read beside the image, with
the source instance referenced (study, series and SOP instance), written with highdicom (``pip install
'lmseg[dicom]'``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pydicom
import torch

from lmseg_components.files import atomic_write

__all__ = ["SEG_SUFFIX", "seg_beside_mask", "write_dicom_seg"]

SEG_SUFFIX = "_seg.dcm"
REQUIRED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
# the patient and study attributes a SEG copies from its source; DICOM lets them be empty (type 2), and files such
# as secondary captures often leave them out, which highdicom does not accept
TYPE_2 = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


def write_dicom_seg(source: str | Path, mask: np.ndarray, out_dir: str | Path, label: str, model: str, version: str):
    """Write ``<out_dir>/<source stem>_seg.dcm``: a binary DICOM SEG of ``mask`` on ``source``'s pixel grid.

    Args:
        source: the DICOM image that was segmented.
        mask: (Rows, Columns) bool, as the image's rows and columns.
        out_dir: the output folder.
        label: the segment's label (the prompt; DICOM keeps 64 characters).
        model: the bundle's name, recorded as the algorithm and the device's model name.
        version: the bundle's version.

    Raises:
        ImportError: highdicom is not installed (the message says what to install).
        ValueError: ``source`` lacks the UIDs a SEG must reference, or ``mask`` is not on its grid.
    """
    try:
        import highdicom as hd
        from pydicom.sr.codedict import codes
    except ImportError:
        raise ImportError("a DICOM SEG needs highdicom: pip install 'lmseg[dicom]'") from None
    image = pydicom.dcmread(str(source))
    missing = [key for key in REQUIRED if key not in image]
    if missing:
        raise ValueError(f"{source}: no {', '.join(missing)}; a DICOM SEG must reference the image's study and series")
    for key in TYPE_2:
        if key not in image:
            setattr(image, key, "")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (image.Rows, image.Columns):
        raise ValueError(f"{source}: mask {mask.shape} is not on the image's grid {(image.Rows, image.Columns)}")
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"lmseg {model}", version=version, family=codes.cid7162.ArtificialIntelligence
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=label[:64] or "every finding",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    try:
        seg = hd.seg.Segmentation(
            source_images=[image],
            pixel_array=mask[None],
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[segment],
            series_instance_uid=hd.UID(),
            series_number=int(image.get("SeriesNumber") or 0) + 1000,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="lmseg",
            manufacturer_model_name=model,
            software_versions=version,
            device_serial_number="none",
            omit_empty_frames=False,  # an empty mask (nothing found) is an answer too
        )
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # a source highdicom cannot build on
        raise ValueError(f"{source}: highdicom cannot build a SEG on it ({e})") from None
    path = Path(out_dir) / f"{Path(source).stem}{SEG_SUFFIX}"
    return atomic_write(path, lambda tmp: seg.save_as(tmp, enforce_file_format=True))


def seg_beside_mask(image: str | Path, pred: torch.Tensor, out: str | Path, label: str, bundle: Path) -> str | None:
    """The DICOM SEG of a DICOM input's prediction, written into ``out`` beside its PNG mask (``lmseg segment``,
    ``lmseg serve`` and the MONAI Deploy app): the SEG's file name, or None with one warning naming the image and
    why (highdicom missing, a source without the UIDs a SEG references); the PNG mask stays either way.

    Args:
        image: the DICOM file that was segmented.
        pred: (1, W, H) the prediction on the image's grid (foreground > 0), as the mask writer takes it.
        out: the output folder.
        label: the segment's label (the prompt).
        bundle: the bundle folder: its name and ``configs/metadata.json`` version identify the algorithm.
    """
    mask = torch.as_tensor(pred).detach().cpu().numpy()[0].T > 0  # as the image's rows and columns, as the PNG
    version = str(json.loads((Path(bundle) / "configs" / "metadata.json").read_text()).get("version", ""))
    try:
        return write_dicom_seg(image, mask, out, label, Path(bundle).name, version).name
    except ImportError as e:
        logging.getLogger(__name__).warning("%s: no DICOM SEG written: %s", image, e)
    except ValueError as e:  # the message names the image
        logging.getLogger(__name__).warning("no DICOM SEG written: %s", e)
    return None
