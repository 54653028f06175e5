"""Real DICOM files (pydicom's own test files, and a JPEG-baseline file written here) through ``lmseg segment``:
each compression pydicom's decoders read (the ``dicom`` extra) segments at the file's size; a file no decoder reads,
a multi-frame file and a colour file are refused in one line that says what it is and what to do."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit
from test_segment import PROMPT, _chest, _dicom, _model

from lmseg_components.apps.segment import segment

pytestmark = pytest.mark.bundle


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return _model(tmp_path_factory.mktemp("dicom") / "run", "tirnet_lmis")


def _jpeg_baseline(path, pixels: np.ndarray):
    """A grey JPEG-baseline DICOM: Pillow's JPEG of ``pixels`` encapsulated as pixel data."""
    ds = pydicom.dcmread(_dicom(path, pixels))
    encoded = io.BytesIO()
    Image.fromarray(pixels).save(encoded, format="JPEG", quality=95)
    ds.PixelData = encapsulate([encoded.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(
    "name",
    ["JPEG2000.dcm", "MR_small_RLE.dcm", "JPEGLSNearLossless_16.dcm", "MR_small_bigendian.dcm", "examples_palette.dcm"],
)
def test_compressed_big_endian_and_palette_files_segment_at_their_size(model, tmp_path, name):
    path = get_testdata_file(name)
    header = pydicom.dcmread(path, stop_before_pixels=True)
    (result,) = segment(path, "tirnet_lmis", model, tmp_path / "masks", PROMPT)
    mask = np.asarray(Image.open(tmp_path / "masks" / result["mask"]))
    assert mask.shape == (header.Rows, header.Columns), (name, header.file_meta.TransferSyntaxUID.name)


def test_jpeg_baseline_file_segments_like_its_uncompressed_twin(model, tmp_path):
    pixels = _chest()
    jpeg = _jpeg_baseline(tmp_path / "jpeg.dcm", pixels)
    decoded = pydicom.dcmread(jpeg).pixel_array
    assert np.abs(decoded.astype(int) - pixels).mean() < 3  # lossy, close
    plain = _dicom(tmp_path / "plain.dcm", decoded)
    (a,) = segment(jpeg, "tirnet_lmis", model, tmp_path / "a", PROMPT)
    (b,) = segment(plain, "tirnet_lmis", model, tmp_path / "b", PROMPT)
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "a" / a["mask"])), np.asarray(Image.open(tmp_path / "b" / b["mask"]))
    )


@pytest.mark.parametrize(
    "name, expected",
    [
        (  # 12-bit JPEG Extended: Pillow and pylibjpeg both refuse this file; their reasons are the message
            "JPEG-lossy.dcm",
            "JPEG-lossy.dcm: tirnet_lmis cannot segment it (not a readable DICOM file: Unable to decode as exceptions "
            "were raised by all available plugins: pylibjpeg:",
        ),
        ("rtdose.dcm", "rtdose.dcm: a multi-frame DICOM (15 frames); tirnet_lmis segments one 2-D image"),
        ("SC_rgb_small_odd.dcm", "SC_rgb_small_odd.dcm: a colour DICOM (RGB, 3 samples per pixel)"),
    ],
)
def test_a_file_it_cannot_take_is_refused_in_one_line(model, tmp_path, name, expected):
    with pytest.raises(ValueError) as refused:
        segment(get_testdata_file(name), "tirnet_lmis", model, tmp_path / "masks", PROMPT)
    message = str(refused.value)
    assert expected in message and "\n" not in message and "object at 0x" not in message, message
    if name == "JPEG-lossy.dcm":
        assert "pillow: Pillow does not support 'JPEG Extended'" in message and "pip install 'lmseg[dicom]'" in message
    assert not (tmp_path / "masks").exists()


def test_a_dicom_input_gets_a_dicom_seg_that_references_it(model, tmp_path):
    source = get_testdata_file("MR_small.dcm")
    image = pydicom.dcmread(source)
    (result,) = segment(source, "tirnet_lmis", model, tmp_path / "masks", PROMPT)
    assert result["dicom_seg"] == "MR_small_seg.dcm"
    mask = np.asarray(Image.open(tmp_path / "masks" / result["mask"])) > 0
    assert 0 < mask.mean() < 1
    assert_seg_of(tmp_path / "masks" / result["dicom_seg"], image, mask, PROMPT)


def assert_seg_of(path: Path, source: pydicom.Dataset, mask: np.ndarray, label: str) -> None:
    """``path`` is a DICOM SEG of ``source`` (its study, series and instance referenced) whose pixels are
    ``mask`` and whose segment is labelled with (the first 64 characters of) ``label``."""
    seg = pydicom.dcmread(path)
    assert seg.SOPClassUID.name == "Segmentation Storage" and seg.StudyInstanceUID == source.StudyInstanceUID
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == source.SeriesInstanceUID
    assert referenced.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert np.array_equal(seg.pixel_array.astype(bool), mask)  # the PNG mask, as DICOM
    assert seg.SegmentSequence[0].SegmentLabel == label[:64]


def test_an_image_without_study_uids_keeps_its_png_mask_and_says_why_there_is_no_seg(model, tmp_path, caplog):
    source = pydicom.dcmread(_dicom(tmp_path / "bare.dcm", _chest()))
    del source.StudyInstanceUID, source.SeriesInstanceUID  # a secondary capture with no study or series
    source.save_as(tmp_path / "bare.dcm")
    source = tmp_path / "bare.dcm"
    (result,) = segment(source, "tirnet_lmis", model, tmp_path / "masks", PROMPT)
    assert result["dicom_seg"] is None and (tmp_path / "masks" / result["mask"]).is_file()
    assert "no DICOM SEG written: " in caplog.text and "bare.dcm: no StudyInstanceUID, SeriesInstanceUID" in caplog.text
