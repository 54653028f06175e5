import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from lmseg_components.data import (
    DatasetValidationError,
    make_synthetic_acdc,
    read_acdc_slices,
    read_busi,
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
