"""``lmseg segment``: a user's own PNG, JPEG, DICOM and (oblique, anisotropic) NIfTI files through each text
bundle; masks on the input's grid, equal to what the bundle's own ``inference.json`` writes for the same files
(``--images DIR --prompts FILE``); the trained values come from ``run_record.json``; bad input is named."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_cli import BUNDLES, TIRNET_TINY, run_bundle, small_record, tiny_network
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from lmseg_components.apps.bundle_checks import cli_overrides
from lmseg_components.apps.segment import RESULTS_FILE, segment
from lmseg_components.export import OnnxNetwork, export_bundle, prepare_bundle_export
from lmseg_components.workflows import load_bundle

pytestmark = pytest.mark.bundle

SMALL_TGC = tiny_network("tgcnet_lmis")  # the CT bundle too: 64 px slices
TRAINED = {"tirnet_lmis": TIRNET_TINY, "tgcnet_lmis": SMALL_TGC, "tgcnet_ct_organs": SMALL_TGC}
PROMPT = "Unilateral pulmonary infection, one infected area, middle left lung."


def _model(root: Path, bundle: str) -> Path:
    """``<root>/models/model.pt`` and ``run_record.json`` as training leaves them (weights at a fixed random
    init: geometry and equality with the bundle's inference need no trained weights)."""
    values = {**small_record(bundle), **TRAINED[bundle]}
    (root / "models").mkdir(parents=True)
    (root / "models" / "run_record.json").write_text(json.dumps({"dataset": "0123abcd", **values}))
    parser = load_bundle(BUNDLES / bundle, ["inference.json"], {"bundle_root": str(root)})
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    head_bias = [p for name, p in network.named_parameters() if name.endswith("head.bias")][-1]
    with torch.no_grad():  # a random head bias makes every logit one sign; at 0 the mask follows the features
        head_bias.zero_()
    torch.save(network.state_dict(), root / "models" / "model.pt")
    return root / "models" / "model.pt"


def _dicom(path: Path, pixels: np.ndarray) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()  # as a scanner's file has them
    ds.Modality, ds.PhotometricInterpretation, ds.SamplesPerPixel = "DX", "MONOCHROME2", 1
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def _chest(height: int = 44, width: int = 60) -> np.ndarray:
    """A non-square grey image with two bright blobs (a non-trivial input for a random-init network)."""
    y, x = np.mgrid[:height, :width]
    picture = (
        60 + 120 * np.exp(-((x - 18) ** 2 + (y - 20) ** 2) / 60) + 90 * np.exp(-((x - 44) ** 2 + (y - 30) ** 2) / 30)
    )
    return np.clip(picture + np.random.default_rng(0).normal(0, 8, picture.shape), 0, 255).astype(np.uint8)


def _mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.mark.parametrize("bundle", ["tirnet_lmis", "tgcnet_lmis"])
def test_png_jpeg_dicom_keep_the_input_geometry_and_match_the_bundle_inference(tmp_path, bundle):
    model = _model(tmp_path / "run", bundle)
    images = tmp_path / "images"
    images.mkdir()
    pixels = _chest()
    Image.fromarray(pixels).save(images / "a.png")
    Image.fromarray(np.repeat(pixels[..., None], 3, -1)).save(images / "b.jpg", quality=95)  # RGB JPEG
    _dicom(images / "c.dcm", pixels)
    (images / "prompts.csv").write_text(f'image,text\ndefault,"{PROMPT}"\n')

    results = segment(images, bundle, model, tmp_path / "masks")  # prompts.csv of the folder; no overrides
    masks = {Path(r["image"]).name: _mask(tmp_path / "masks" / r["mask"]) for r in results}
    assert all(m.shape == pixels.shape for m in masks.values())  # (H, W) of the input, not the network's size
    assert np.array_equal(masks["a.png"], masks["c.dcm"])  # same pixels as PNG and DICOM: same mask, same way up
    scores = {Path(r["image"]).name: r["score"] for r in results}
    assert scores["a.png"] == scores["c.dcm"]  # and the same presence score
    assert 0 < (masks["a.png"] > 0).mean() < 1  # a non-trivial mask, so the comparisons mean something
    assert json.loads((tmp_path / "masks" / RESULTS_FILE).read_text()) == results
    for r in results:
        assert r["text"] == PROMPT and r["inference_ms"] > 0 and r["empty"] is False
        assert r["foreground_fraction"] == pytest.approx((masks[Path(r["image"]).name] > 0).mean())
        assert 0.0 < r["score"] <= 1.0 and r["found"] is None  # no presence_threshold in this run record
        overlay = Image.open(tmp_path / "masks" / r["overlay"])
        assert overlay.height > overlay.width * pixels.shape[0] / pixels.shape[1]  # the caption below the image

    # the bundle's own inference.json on the same folder and prompts file, as `monai.bundle run` would
    # (the trained values given on its command line: lmseg segment read them from run_record.json)
    extra = ["--images", str(images), "--prompts", str(images / "prompts.csv"), "--output_dir", str(tmp_path / "b")]
    run = run_bundle(
        bundle, "inference", ["configs/inference.json"], tmp_path / "run", *extra, *cli_overrides(TRAINED[bundle])
    )
    assert run.returncode == 0, run.stderr[-3000:]
    for name, mask in masks.items():
        assert np.array_equal(_mask(tmp_path / "b" / f"{Path(name).stem}_mask.png"), mask), name


def test_oblique_anisotropic_nifti_is_segmented_on_its_own_grid(tmp_path):
    model = _model(tmp_path / "run", "tgcnet_ct_organs")
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 0.7, 2.5])
    affine[:3, 3] = [-20.0, 14.0, 31.0]
    rng = np.random.default_rng(0)
    volume = rng.normal(40, 30, (36, 30, 7)).astype(np.float32)
    volume[8:20, 6:18, 2:6] += 120  # an organ-bright block
    image = tmp_path / "images" / "ct_1.nii.gz"
    image.parent.mkdir()
    nib.save(nib.Nifti1Image(volume, affine), str(image))

    (result,) = segment(image, "tgcnet_ct_organs", model, tmp_path / "masks")  # organ prompts by default
    seg = nib.load(str(tmp_path / "masks" / result["mask"]))
    assert seg.shape == volume.shape and np.allclose(seg.affine, affine, atol=1e-5)
    labels = np.asarray(seg.dataobj)
    assert set(np.unique(labels)) <= set(range(len(result["text"]) + 1)) and len(result["text"]) > 1
    assert result["voxels"] == {str(v): int((labels == v).sum()) for v in np.unique(labels) if v > 0}
    assert 0 < result["foreground_fraction"] < 1  # a non-trivial label map, so the comparisons mean something
    assert len(result["score"]) == len(result["text"]) and all(0 <= s <= 1 for s in result["score"])

    extra = ["--images", str(image.parent), "--output_dir", str(tmp_path / "b"), *cli_overrides(SMALL_TGC)]
    run = run_bundle("tgcnet_ct_organs", "inference", ["configs/inference.json"], tmp_path / "run", *extra)
    assert run.returncode == 0, run.stderr[-3000:]
    bundle_seg = nib.load(str(tmp_path / "b" / "ct_1_seg.nii.gz"))
    assert np.allclose(bundle_seg.affine, affine, atol=1e-5)
    assert np.array_equal(np.asarray(bundle_seg.dataobj), labels)


def test_bad_input_is_named_and_nothing_is_overwritten(tmp_path):
    model = _model(tmp_path / "run", "tirnet_lmis")
    image = tmp_path / "x.png"
    Image.fromarray(_chest()).save(image)
    with pytest.raises(ValueError, match=r"trained with width=4 \(its run record\), not width=8"):
        segment(image, "tirnet_lmis", model, tmp_path / "a", text=PROMPT, overrides={"width": 8})
    with pytest.raises(ValueError, match=r"x.png: no text prompt"):
        segment(image, "tirnet_lmis", model, tmp_path / "b")
    with pytest.raises(
        ValueError, match="jras_segmentation takes no text prompt: it is guided by the cases of its memory bank"
    ):
        segment(image, "jras_segmentation", model, tmp_path / "f", text=PROMPT)
    with pytest.raises(FileNotFoundError, match=r"no bundle 'tirnet' under .*: choose one of \['jras_segmentation'"):
        segment(image, "tirnet", model, tmp_path / "g", text=PROMPT)
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        segment(image, "tirnet_lmis", tmp_path / "missing.pt", tmp_path / "c", text=PROMPT)
    # a side of one pixel, a volume given to a 2-D bundle, another bundle's checkpoint and a missing image:
    # tests/test_commands_on_bad_input.py
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        segment(image, "tirnet_lmis", model, tmp_path / "d", text=PROMPT)
    with pytest.raises(ValueError, match="overlaps the input"):
        segment(image, "tirnet_lmis", model, tmp_path, text=PROMPT, overwrite=True)
    assert (tmp_path / "d" / "keep.txt").read_text() == "mine"

    # the command line's success path runs as a process in the README's docs-tested `lmseg segment` examples


def test_an_empty_prompt_needs_a_model_trained_with_text_dropout(tmp_path):
    model = _model(tmp_path / "run", "tirnet_lmis")
    image = tmp_path / "x.png"
    Image.fromarray(_chest()).save(image)
    with pytest.raises(ValueError, match="x.png: an empty prompt asks for every finding, .* text_dropout"):
        segment(image, "tirnet_lmis", model, tmp_path / "a", text="")
    record = model.parent / "run_record.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "text_dropout": 0.3}))
    (result,) = segment(image, "tirnet_lmis", model, tmp_path / "b", text="")
    assert result["text"] == "" and (tmp_path / "b" / result["mask"]).is_file()


@pytest.mark.parametrize(
    "bundle",  # the exports take 30-45 s each: nightly (-m slow), to keep the default run under 20 minutes
    [
        pytest.param("tirnet_lmis", marks=pytest.mark.slow),
        pytest.param("tgcnet_lmis", marks=pytest.mark.slow),
        pytest.param("tgcnet_ct_organs", marks=pytest.mark.slow),
    ],
)
def test_onnx_export_runs_in_onnxruntime_as_the_checkpoint(tmp_path, bundle):
    """``lmseg export --format onnx``: onnxruntime equals eager on the example inputs (batch 1 and 2); ``lmseg
    segment --model model.onnx`` and the bundle's ``inference_onnx.json`` write the checkpoint's masks."""
    model = _model(tmp_path / "run", bundle)
    root = {"bundle_root": str(tmp_path / "run")}
    onnx = export_bundle(BUNDLES / bundle, model, overrides=root, format="onnx")
    assert onnx == tmp_path / "run" / "models" / "model.onnx"
    # one file, weights inside: an export over an earlier one leaves nothing else beside it
    (onnx.parent / "model.onnx.data").write_bytes(b"weights of an earlier export")
    export_bundle(BUNDLES / bundle, model, overrides=root, format="onnx", overwrite=True)
    assert sorted(p.name for p in onnx.parent.iterdir()) == ["model.onnx", "model.pt", "run_record.json"]
    (tmp_path / "copy").mkdir()  # the file holds the network: a copy of it (and the trained values) runs
    shutil.copy2(onnx.parent / "run_record.json", tmp_path / "copy")
    onnx = Path(shutil.copy2(onnx, tmp_path / "copy" / "model.onnx"))
    network, inputs, named, _ = prepare_bundle_export(BUNDLES / bundle, model, root)
    runtime = OnnxNetwork(onnx)
    for batch in (1, 2):
        image = torch.cat([inputs[0]] + [torch.rand_like(inputs[0])] * (batch - 1))
        text = {name: torch.cat([value] * batch) for name, value in named.items()}
        with torch.no_grad():
            expected = network(image, **text)
        assert torch.allclose(runtime(image, **text), expected, atol=1e-4), batch

    images = tmp_path / "images"
    images.mkdir()
    if bundle == "tgcnet_ct_organs":
        volume = np.random.default_rng(0).normal(40, 30, (30, 26, 3)).astype(np.float32)
        volume[8:20, 6:18, :] += 120
        nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.7, 2.5, 1.0])), str(images / "ct.nii.gz"))
        read = lambda path: np.asarray(nib.load(str(path)).dataobj)  # noqa: E731
    else:
        Image.fromarray(_chest()).save(images / "a.png")
        (images / "prompts.csv").write_text(f'image,text\ndefault,"{PROMPT}"\n')
        read = _mask
    (checkpoint,) = segment(images, bundle, model, tmp_path / "pt")
    (exported,) = segment(images, bundle, onnx, tmp_path / "onnx")
    expected = read(tmp_path / "pt" / checkpoint["mask"])
    assert 0 < checkpoint["foreground_fraction"] < 1 and np.array_equal(
        read(tmp_path / "onnx" / exported["mask"]), expected
    )

    if bundle == "tgcnet_lmis":
        return  # its inference.json runs the network as TIRNet's does
    extra = ["--images", str(images), "--output_dir", str(tmp_path / "b"), *cli_overrides(TRAINED[bundle])]
    configs = ["configs/inference.json", "configs/inference_onnx.json"]
    run = run_bundle(bundle, "inference", configs, tmp_path / "run", *extra)
    assert run.returncode == 0, run.stderr[-3000:]
    assert np.array_equal(read(tmp_path / "b" / checkpoint["mask"]), expected)


def test_a_prompt_not_found_gets_an_empty_mask_at_the_recorded_threshold_or_a_given_one(tmp_path):
    model = _model(tmp_path / "run", "tirnet_lmis")
    image = tmp_path / "a.png"
    Image.fromarray(_chest()).save(image)
    (undecided,) = segment(image, "tirnet_lmis", model, tmp_path / "m0", text=PROMPT)
    assert undecided["found"] is None and not undecided["empty"]  # no threshold in the run record: every mask
    record = model.parent / "run_record.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "presence_threshold": undecided["score"] + 1e-9}))
    (absent,) = segment(image, "tirnet_lmis", model, tmp_path / "m1", text=PROMPT)
    assert absent["found"] is False and absent["empty"] and absent["score"] == undecided["score"]
    assert not _mask(tmp_path / "m1" / absent["mask"]).any()
    lower = {"presence_threshold": undecided["score"] - 1e-9}  # a user's own threshold replaces the recorded one
    (found,) = segment(image, "tirnet_lmis", model, tmp_path / "m2", text=PROMPT, overrides=lower)
    assert found["found"] is True
    assert np.array_equal(_mask(tmp_path / "m2" / found["mask"]), _mask(tmp_path / "m0" / undecided["mask"]))
    bad = [
        sys.executable,
        "-m",
        "lmseg_components.apps.cli",
        "segment",
        "--bundle",
        "tirnet_lmis",
        "--model",
        str(model),
    ]
    bad += [str(image), "--text", PROMPT, "--out", str(tmp_path / "m3"), "--presence_threshold", "2"]
    run = subprocess.run(bad, capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr.strip().splitlines()[-1] == (
        "error: presence_threshold must be a number in [0, 1], or null to keep every mask; got 2"
    )


def test_a_prompt_longer_than_the_encoder_reads_is_reported_with_the_part_read(tmp_path, caplog):
    model = _model(tmp_path / "run", "tirnet_lmis")
    image = tmp_path / "a.png"
    Image.fromarray(_chest()).save(image)
    long = " ".join([PROMPT] * 100)  # about 7,000 characters
    with caplog.at_level("WARNING"):
        (result,) = segment(image, "tirnet_lmis", model, tmp_path / "m", text=long)
    read = result["text_read"]
    assert result["text"] == long and long.startswith(read) and 0 < len(read) < 200
    assert f"a.png: the prompt is longer than the text encoder's 32 tokens; it reads only {read!r}" in caplog.text
    (short,) = segment(image, "tirnet_lmis", model, tmp_path / "s", text=PROMPT)
    assert short["text_read"] == PROMPT  # a prompt that fits is read whole
