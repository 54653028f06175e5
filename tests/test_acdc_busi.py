import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from lmseg_components.data import (
    DatasetValidationError,
    make_synthetic_acdc,
    read_acdc_frames,
    read_acdc_slices,
    read_acdc_split,
    read_busi,
    read_images_to_segment,
    split_by_case,
)


@pytest.fixture(scope="module")
def acdc(tmp_path_factory):
    root = tmp_path_factory.mktemp("acdc")
    make_synthetic_acdc(root, seed=0, n_patients=10, shape=(32, 32, 6))
    return root


def test_acdc_slices_and_classes(acdc):
    records = read_acdc_slices(acdc)
    assert len(records) == 10 * 2 * 6
    assert records[0]["name"] == "patient001_frame01_z00" and records[0]["case_id"] == "patient001"
    labels = np.asarray(nib.load(records[0]["label"]).dataobj)
    assert set(np.unique(labels[..., 0])) == {0, 1, 2, 3}
    end_diastole = (np.asarray(nib.load(records[0]["label"]).dataobj) == 3).sum()
    end_systole = (np.asarray(nib.load(records[6]["label"]).dataobj) == 3).sum()
    assert records[6]["name"].startswith("patient001_frame12") and end_systole < end_diastole
    assert len(read_acdc_slices(acdc, min_foreground=1)) < len(records) or labels[..., -1].any()


def test_patient_split_has_no_overlap(acdc):
    records = read_acdc_slices(acdc)
    train, val, test = split_by_case(records, (0.6, 0.2, 0.2), seed=3)
    cases = [{r["case_id"] for r in part} for part in (train, val, test)]
    assert not (cases[0] & cases[1]) and not (cases[0] & cases[2]) and not (cases[1] & cases[2])
    assert [len(c) for c in cases] == [6, 2, 2] and len(train) + len(val) + len(test) == len(records)
    assert split_by_case(records, (0.6, 0.2, 0.2), seed=3) == (train, val, test)
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_case(records, (0.5, 0.2))


def test_frames_of_a_part_are_its_slices_volumes(acdc):
    frames = read_acdc_frames(acdc, "test", (0.6, 0.2, 0.2), seed=3)
    slices = read_acdc_split(acdc, "test", (0.6, 0.2, 0.2), seed=3)
    assert [f["image"] for f in frames] == list(dict.fromkeys(r["image"] for r in slices))
    assert frames[0]["name"] == frames[0]["image"].rsplit("/", 1)[1].split(".")[0]
    assert frames[0]["label"].endswith("_gt.nii.gz") and frames[0]["case_id"] == slices[0]["case_id"]


def test_a_patients_folder_segments_its_frames_not_its_annotations(acdc, tmp_path):
    patient = acdc / "patient001"
    (patient / "patient001_4d.nii.gz").write_bytes((patient / "patient001_frame01.nii.gz").read_bytes())
    names = [r["image"].rsplit("/", 1)[1] for r in read_images_to_segment(patient)]
    (patient / "patient001_4d.nii.gz").unlink()
    assert names == ["patient001_frame01.nii.gz", "patient001_frame12.nii.gz"]
    gt = patient / "patient001_frame01_gt.nii.gz"
    assert read_images_to_segment([gt]) == [{"image": str(gt)}]  # a file named is a file to segment
    busi = tmp_path / "benign"
    busi.mkdir()
    for name in ("benign (1).png", "benign (1)_mask.png", "benign (1)_mask_1.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(busi / name)
    assert [r["image"].rsplit("/", 1)[1] for r in read_images_to_segment(busi)] == ["benign (1).png"]
    empty = tmp_path / "only_gt"
    empty.mkdir()
    (empty / "a_gt.nii.gz").write_bytes(gt.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"only_gt: no image to segment"):
        read_images_to_segment(empty)


def test_acdc_problems(tmp_path):
    make_synthetic_acdc(tmp_path, seed=1, n_patients=2, shape=(24, 24, 3))
    (tmp_path / "patient002" / "patient002_frame12_gt.nii.gz").unlink()
    with pytest.raises(DatasetValidationError, match="patient002_frame12.nii.gz: no ground truth"):
        read_acdc_slices(tmp_path)


def test_busi_multiple_masks_and_problems(tmp_path):
    for cls in ("benign", "malignant", "normal"):
        (tmp_path / cls).mkdir()
    blank = np.zeros((8, 8), np.uint8)
    Image.fromarray(blank).save(tmp_path / "benign" / "benign (1).png")
    Image.fromarray(blank).save(tmp_path / "benign" / "benign (1)_mask.png")
    Image.fromarray(blank).save(tmp_path / "benign" / "benign (1)_mask_1.png")
    Image.fromarray(blank).save(tmp_path / "normal" / "normal (1).png")
    Image.fromarray(blank).save(tmp_path / "normal" / "normal (1)_mask.png")
    records = read_busi(tmp_path)
    assert [len(r["label"]) for r in records] == [2, 1]
    assert records[0]["class"] == "benign" and records[0]["case_id"] == "benign/benign (1)"
    Image.fromarray(blank).save(tmp_path / "malignant" / "malignant (2).png")
    Image.fromarray(blank).save(tmp_path / "malignant" / "malignant (3)_mask.png")
    with pytest.raises(DatasetValidationError) as info:
        read_busi(tmp_path)
    text = str(info.value)
    assert "malignant (2).png: image has no <name>_mask.png" in text
    assert "malignant (3)_mask.png: mask has no image malignant (3).png" in text
