"""Distinct inference inputs get distinct output files (issue 13, item 6)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, SaveImaged

from lmseg_components.inference.writer import check_mask_paths
from lmseg_components.outputs import OutputNameCollisionError, SaveOverlayd, prepare_output_names


def _writers(output_dir) -> Compose:
    """The 2D bundles' writers, as in their inference.json."""
    mask = SaveImaged(
        keys="pred", output_dir=str(output_dir), output_postfix="mask", output_ext=".png",
        output_dtype=np.uint8, scale=255, resample=False, separate_folder=False, print_log=False,
    )  # fmt: skip
    return Compose([SaveOverlayd(keys="pred", output_dir=output_dir), mask])


def _write(writers: Compose, image: str) -> None:
    meta = {"filename_or_obj": image}
    writers({"pred": MetaTensor(torch.ones(1, 8, 8), meta=meta), "image": MetaTensor(torch.rand(1, 8, 8), meta=meta)})


def test_same_names_in_two_folders_get_two_outputs(tmp_path):
    out = tmp_path / "out"
    datalist = [{"image": str(tmp_path / "data" / f / "x.png")} for f in ("a", "b")]
    writers = _writers(out)
    assert prepare_output_names(datalist, writers) == datalist
    for record in datalist:
        _write(writers, record["image"])
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == ["a/x_mask.png", "a/x_overlay.png", "b/x_mask.png", "b/x_overlay.png"]


def test_distinct_names_stay_flat(tmp_path):
    out = tmp_path / "out"
    writers = _writers(out)
    prepare_output_names([{"image": str(tmp_path / n)} for n in ("a/x.png", "b/y.png")], writers)
    _write(writers, str(tmp_path / "a" / "x.png"))
    assert sorted(p.name for p in out.iterdir()) == ["x_mask.png", "x_overlay.png"]


def test_inputs_that_would_share_an_output_are_named(tmp_path):
    datalist = [{"image": str(tmp_path / p)} for p in ("a/x.png", "b/x.png", "b/x.jpg")]
    with pytest.raises(OutputNameCollisionError, match=r"x_mask.png <- .*b/x.jpg, .*b/x.png") as error:
        prepare_output_names(datalist, _writers(tmp_path / "out"))
    assert "a/x.png" not in str(error.value)
    with pytest.raises(OutputNameCollisionError, match="is an input file"):
        prepare_output_names([{"image": str(tmp_path / "y.png")}, {"image": str(tmp_path / "y_mask.png")}],
                             _writers(tmp_path))  # fmt: skip


def test_slices_of_one_volume_are_apart(tmp_path):
    volume = str(tmp_path / "patient001" / "patient001_frame01.nii.gz")
    datalist = [{"image": volume, "slice": z} for z in range(3)]
    prepare_output_names(datalist, _writers(tmp_path / "out"), slice_key="slice")
    with pytest.raises(OutputNameCollisionError, match=r"slice 1\), .*slice 1\)"):
        prepare_output_names([{"image": volume, "slice": 1}, {"image": volume + "x", "slice": 1}],
                             _writers(tmp_path / "out"), slice_key="slice")  # fmt: skip


def test_rerun_into_a_folder_with_outputs_warns(tmp_path, caplog):
    out = tmp_path / "out"
    datalist = [{"image": str(tmp_path / n)} for n in ("x.png", "y.png")]
    writers = _writers(out)
    prepare_output_names(datalist, writers)
    _write(writers, datalist[0]["image"])
    with caplog.at_level(logging.WARNING):
        prepare_output_names(datalist, _writers(out))
    assert f"2 of the 4 output files already exist in {out}" in caplog.text


def test_deploy_masks_are_checked_before_writing(tmp_path, caplog):
    images = [tmp_path / "x.nii", tmp_path / "x.nii.gz", tmp_path / "y.nii.gz"]
    with pytest.raises(ValueError, match=r"x_seg.nii.gz <- .*x.nii, .*x.nii.gz"):
        check_mask_paths(images, tmp_path / "out", 3)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x_mask.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        paths = check_mask_paths([tmp_path / "x.png", tmp_path / "y.png"], tmp_path / "out", 2)
    assert [p.name for p in paths] == ["x_mask.png", "y_mask.png"] and "1 of the 2 mask files" in caplog.text
