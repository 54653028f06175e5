"""Every bad input is reported with the file (and row) it concerns, all problems at once."""

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from openpyxl import load_workbook
from PIL import Image

from lmseg_components.data import (
    DatasetValidationError,
    check_dataset,
    make_synthetic_lvit,
    read_lvit_split,
    read_msd,
)


@pytest.fixture
def lvit(tmp_path):
    make_synthetic_lvit(tmp_path, seed=3, size=40, n_train=4, n_val=1, n_test=1)
    return tmp_path


def _table(root):
    return root / "Train_Folder" / "Train_text.xlsx"


def _set_cell(root, row, column, value):
    wb = load_workbook(_table(root))
    wb.active.cell(row=row, column=column, value=value)
    wb.save(_table(root))


def _problems(root):
    with pytest.raises(DatasetValidationError) as info:
        read_lvit_split(root, "Train")
    return info.value


def test_clean_split_reads(lvit):
    records = read_lvit_split(lvit, "Train")
    assert [r["name"] for r in records] == [f"syn_train_{i:04d}.png" for i in range(4)]
    assert set(records[0]) == {"image", "label", "label_all", "findings", "text", "name", "case_id"}
    assert Path(records[0]["label_all"]).parent.name == "labelcol_all"  # the synthetic every-finding mask
    layout = json.loads((lvit / "synthetic.json").read_text())["images"]["syn_train_0000.png"]
    every_finding = {tuple(z.split()) for z in layout["mentioned"] + layout["distractors"]}
    assert {tuple(z.split()) for z in records[0]["findings"].split("; ")} == every_finding
    shutil.rmtree(lvit / "Train_Folder" / "labelcol_all")  # the real layout has neither
    wb = load_workbook(_table(lvit))
    wb.active.delete_cols(3)
    wb.save(_table(lvit))
    assert set(read_lvit_split(lvit, "Train")[0]) == {"image", "label", "text", "name", "case_id"}


def test_bad_findings_cell_names_row(lvit):
    assert load_workbook(_table(lvit)).active.cell(row=1, column=3).value == "Findings"
    _set_cell(lvit, 3, 3, "upper left; apex right")
    _set_cell(lvit, 5, 3, "")  # an image without a finding
    error = _problems(lvit)
    assert len(error.problems) == 1 and "(row 3)" in str(error) and "'apex right' is not '<level> <side>'" in str(error)


def test_missing_image_names_row(lvit):
    (lvit / "Train_Folder" / "img" / "syn_train_0002.png").unlink()
    error = _problems(lvit)
    assert "(row 4)" in str(error) and "mask_syn_train_0002.png" in str(error) and "no image" in str(error)


def test_missing_mask_names_row(lvit):
    (lvit / "Train_Folder" / "labelcol" / "mask_syn_train_0001.png").unlink()
    error = _problems(lvit)
    assert "Train_text.xlsx (row 3)" in str(error) and "no mask" in str(error)


def test_text_row_without_image(lvit):
    wb = load_workbook(_table(lvit))
    wb.active.append(["mask_ghost.png", "Ground-glass opacity in the upper left lung."])
    wb.save(_table(lvit))
    error = _problems(lvit)
    assert "(row 6)" in str(error) and "ghost.png" in str(error)


def test_image_without_text(lvit):
    shutil.copy(lvit / "Train_Folder" / "img" / "syn_train_0000.png", lvit / "Train_Folder" / "img" / "extra.png")
    error = _problems(lvit)
    assert len(error.problems) == 1
    assert error.problems[0].file.endswith("img/extra.png") and "no text row" in str(error)


def test_corrupt_image(lvit):
    (lvit / "Train_Folder" / "img" / "syn_train_0003.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    error = _problems(lvit)
    assert "syn_train_0003.png (row 5)" in str(error) and "corrupt" in str(error)


def test_mask_size_mismatch(lvit):
    path = lvit / "Train_Folder" / "labelcol" / "mask_syn_train_0000.png"
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(path)
    error = _problems(lvit)
    assert "mask_syn_train_0000.png (row 2)" in str(error) and "30x20 differs" in str(error)


def test_non_binary_mask(lvit):
    path = lvit / "Train_Folder" / "labelcol" / "mask_syn_train_0001.png"
    Image.fromarray(np.arange(40 * 40, dtype=np.uint8).reshape(40, 40) % 7).save(path)
    error = _problems(lvit)
    assert "mask_syn_train_0001.png (row 3)" in str(error) and "non-binary" in str(error)
    assert read_lvit_split(lvit, "Train", strict_masks=False)


def test_empty_description(lvit):
    _set_cell(lvit, 3, 2, "   ")
    error = _problems(lvit)
    assert "Train_text.xlsx (row 3)" in str(error) and "empty Description" in str(error)


def test_missing_column(lvit):
    _set_cell(lvit, 1, 2, "Caption")
    error = _problems(lvit)
    assert "(row 1)" in str(error) and "Description" in str(error)


def test_all_problems_reported_and_cli_exit_code(lvit, capsys):
    from lmseg_components.apps.cli import check_data

    (lvit / "Train_Folder" / "img" / "syn_train_0002.png").unlink()
    _set_cell(lvit, 3, 2, "")
    (lvit / "Val_Folder" / "labelcol" / "mask_syn_val_0000.png").unlink()
    layout, problems = check_dataset(lvit)
    assert layout == "lvit" and len(problems) == 3
    with pytest.raises(SystemExit) as info:
        check_data(str(lvit))
    assert info.value.code == 1
    printed = capsys.readouterr().out
    assert printed.count("PROBLEM") == 3 and "Val_text.xlsx (row 2)" in printed


def _rewrite(path, data=None, affine=None):
    vol = nib.load(str(path))
    new = nib.Nifti1Image(np.asarray(vol.dataobj) if data is None else data, vol.affine if affine is None else affine)
    nib.save(new, str(path))


@pytest.fixture
def msd(tmp_path, msd_root):
    shutil.copytree(msd_root, tmp_path / "msd")
    return tmp_path / "msd"


def test_nifti_shape_mismatch(msd):
    _rewrite(msd / "labelsTr" / "synct_001.nii.gz", data=np.zeros((24, 24, 9), np.uint8))
    with pytest.raises(DatasetValidationError, match=r"synct_001.nii.gz: label shape \(24, 24, 9\) differs"):
        read_msd(msd)


def test_nifti_affine_mismatch(msd):
    _rewrite(msd / "labelsTr" / "synct_002.nii.gz", affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(DatasetValidationError, match=r"labelsTr/synct_002.nii.gz: label affine differs"):
        read_msd(msd)


def test_nifti_missing_and_corrupt(msd):
    (msd / "imagesTr" / "synct_000.nii.gz").unlink()
    (msd / "labelsTr" / "synct_001.nii.gz").write_bytes(b"garbage")
    layout, problems = check_dataset(msd)
    text = "\n".join(map(str, problems))
    assert "imagesTr/synct_000.nii.gz: file listed in training[0] is missing" in text
    assert "labelsTr/synct_001.nii.gz: unreadable or corrupt NIfTI" in text


def test_nifti_label_values_outside_map(msd):
    path = msd / "labelsTr" / "synct_000.nii.gz"
    data = np.asarray(nib.load(str(path)).dataobj).copy()
    data[0, 0, 0] = 9
    _rewrite(path, data=data)
    assert read_msd(msd)  # header-level read passes
    problems = check_dataset(msd)[1]
    assert len(problems) == 1 and "label values [9]" in str(problems[0])


def test_dataset_json_problems(msd):
    (msd / "dataset.json").write_text("{not json")
    assert "cannot parse dataset.json" in str(check_dataset(msd)[1][0])
    (msd / "dataset.json").write_text('{"training": []}')
    assert "no 'labels' map" in str(check_dataset(msd)[1][0])


def test_unknown_layout(tmp_path):
    assert "unknown layout" in str(check_dataset(tmp_path)[1][0])
