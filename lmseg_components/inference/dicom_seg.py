"""A DICOM Segmentation (SEG) object for a mask of a DICOM input: what PACS and viewers read beside the image, with
the source instance referenced (study, series and SOP instance), written with highdicom (``pip install
'lmseg[dicom]'``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from lmseg_components.files import atomic_write

__all__ = ["SEG_SUFFIX", "write_dicom_seg"]

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
