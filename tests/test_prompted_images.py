"""A user's own images and prompts (``lmseg_components.data.prompted``): image files of every supported format,
``prompts.json`` / ``prompts.csv`` or one ``--text``, and errors that name the file and the key or row."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from lmseg_components.data import read_prompted_images


def _png(path: Path, size: int = 8) -> Path:
    Image.fromarray(np.zeros((size, size), np.uint8)).save(path)
    return path


def test_inputs_read_prompts_by_file_name_with_a_default(tmp_path):
    _png(tmp_path / "b.png")
    _png(tmp_path / "a.png")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.float32), np.eye(4)), str(tmp_path / "c.nii.gz"))
    (tmp_path / "notes.txt").write_text("not an image")
    prompts = {"a.png": "lesion in the left lung", "c.nii.gz": ["liver", "spleen"], "default": "one lesion"}
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    records = read_prompted_images(tmp_path)
    assert [Path(r["image"]).name for r in records] == ["a.png", "b.png", "c.nii.gz"]
    assert [r["text"] for r in records] == ["lesion in the left lung", "one lesion", ["liver", "spleen"]]
    single = read_prompted_images(tmp_path / "b.png")
    assert single == [{"image": str(tmp_path / "b.png"), "text": "one lesion"}]


def test_inputs_without_prompts_have_no_text(tmp_path):
    _png(tmp_path / "x.png")
    assert read_prompted_images(tmp_path) == [{"image": str(tmp_path / "x.png")}]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"missing.png": "x"}', "key 'missing.png' names no image in the inputs' folders"),
        ('{"x.png": ["ok", ""]}', "key 'x.png': a prompt must be"),
        ('{"x.png": ["ok", 3]}', "key 'x.png': a prompt must be"),
        ('["x.png"]', "must be a JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_inputs_bad_prompts_file_names_file_and_key(tmp_path, content, message):
    _png(tmp_path / "x.png")
    (tmp_path / "prompts.json").write_text(content)
    with pytest.raises(ValueError, match="prompts.json") as error:
        read_prompted_images(tmp_path)
    assert message in str(error.value)


def test_inputs_without_images_fail(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_prompted_images(tmp_path / "nope")
    (tmp_path / "prompts.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no image"):
        read_prompted_images(tmp_path)
    with pytest.raises(ValueError, match="prompts.json: not an image"):
        read_prompted_images(tmp_path / "prompts.json")


def test_csv_prompts_text_for_all_and_a_list_of_files(tmp_path):
    for name in ("a.png", "b.jpg", "c.dcm"):
        (tmp_path / name).write_bytes(b"")  # the reader goes by name; the bundle's LoadImaged reads the pixels
    (tmp_path / "prompts.csv").write_text("image,text\na.png,lesion in the left lung\ndefault,one lesion\n")
    records = read_prompted_images(tmp_path)
    assert [(Path(r["image"]).name, r["text"]) for r in records] == [
        ("a.png", "lesion in the left lung"),
        ("b.jpg", "one lesion"),
        ("c.dcm", "one lesion"),
    ]
    chosen = read_prompted_images([tmp_path / "c.dcm", tmp_path / "a.png"], text="two lesions")
    assert [(Path(r["image"]).name, r["text"]) for r in chosen] == [("c.dcm", "two lesions"), ("a.png", "two lesions")]
    other = tmp_path / "elsewhere.json"
    other.write_text(json.dumps({"b.jpg": "a lesion in the right lung"}))
    assert read_prompted_images(tmp_path / "b.jpg", prompts=other) == [
        {"image": str(tmp_path / "b.jpg"), "text": "a lesion in the right lung"}
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        ("name,prompt\nx.png,a\n", "needs a header row with the columns 'image' and 'text'"),
        ("image,text\nx.png,a\nx.png,b\n", "row 3: image 'x.png' is named twice"),
        ("image,text\ny.png,a\n", "key 'y.png' names no image"),
    ],
)
def test_bad_csv_prompts_name_file_and_row(tmp_path, content, message):
    _png(tmp_path / "x.png")
    (tmp_path / "prompts.csv").write_text(content)
    with pytest.raises(ValueError, match="prompts.csv") as error:
        read_prompted_images(tmp_path)
    assert message in str(error.value)


def test_ambiguous_or_contradictory_prompts_are_refused(tmp_path):
    _png(tmp_path / "x.png")
    with pytest.raises(ValueError, match="not both"):
        read_prompted_images(tmp_path, prompts=tmp_path / "p.json", text="a lesion")
    with pytest.raises(ValueError, match="--text: a prompt must be"):
        read_prompted_images(tmp_path, text=["a lesion", " "])
    # the empty prompt (every finding, for a model trained with text dropout) is passed on as ""
    assert read_prompted_images(tmp_path, text="  ") == [{"image": str(tmp_path / "x.png"), "text": ""}]
    (tmp_path / "prompts.csv").write_text("image,text\nx.png,\n")
    assert read_prompted_images(tmp_path) == [{"image": str(tmp_path / "x.png"), "text": ""}]
    (tmp_path / "prompts.csv").unlink()
    (tmp_path / "prompts.json").write_text("{}")
    (tmp_path / "prompts.csv").write_text("image,text\n")
    with pytest.raises(ValueError, match="several prompts files"):
        read_prompted_images(tmp_path)
    with pytest.raises(ValueError, match="expected a .json or .csv"):
        read_prompted_images(tmp_path, prompts=tmp_path / "x.png")


@pytest.mark.parametrize(
    "name, content", [("prompts.csv", "image,text\nx.png,opacité\n"), ("prompts.json", '{"x.png": "opacité"}')]
)
def test_a_prompts_file_that_is_not_utf8_is_named(tmp_path, name, content):
    _png(tmp_path / "x.png")
    (tmp_path / name).write_bytes(content.encode("latin-1"))  # what a spreadsheet saves as "CSV" on many systems
    with pytest.raises(ValueError, match=rf"{name}: not UTF-8 text \(byte 0xe9 at offset \d+\); save it as UTF-8"):
        read_prompted_images(tmp_path)
    (tmp_path / name).write_bytes(content.encode("utf-8"))
    assert read_prompted_images(tmp_path)[0]["text"] == "opacité"


def test_inference_reads_the_test_part_or_the_users_images_without_the_dataset(tmp_path):
    from lmseg_components.data import (
        make_synthetic_acdc,
        make_synthetic_busi,
        make_synthetic_lvit,
        make_synthetic_msd,
        read_acdc_frames,
        read_acdc_to_segment,
        read_busi_split,
        read_busi_to_segment,
        read_lvit_split,
        read_lvit_to_segment,
        read_msd_split,
        read_msd_to_segment,
    )

    split = ([0.5, 0.0, 0.5], 0)
    make_synthetic_lvit(tmp_path / "lvit", size=48, n_train=2, n_val=0, n_test=3)
    make_synthetic_msd(tmp_path / "msd", n_cases=4)
    make_synthetic_acdc(tmp_path / "acdc", n_patients=2)
    make_synthetic_busi(tmp_path / "busi", size=40, n_benign=2, n_malignant=1, n_normal=1)
    test_rows = [(r["image"], r["text"]) for r in read_lvit_split(tmp_path / "lvit", "Test", validate=False)]
    assert [(r["image"], r["text"]) for r in read_lvit_to_segment(tmp_path / "lvit")] == test_rows
    assert read_msd_to_segment(tmp_path / "msd", *split) == read_msd_split(tmp_path / "msd", "test", *split)
    assert read_acdc_to_segment(tmp_path / "acdc", *split) == read_acdc_frames(tmp_path / "acdc", "test", *split)
    assert read_busi_to_segment(tmp_path / "busi", *split) == read_busi_split(tmp_path / "busi", "test", *split)
    # the user's own images: the dataset folder is never read (here it does not exist)
    images = tmp_path / "mine"
    images.mkdir()
    Image.fromarray(np.full((8, 8), 90, np.uint8)).save(images / "a.png")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.float32), np.eye(4)), str(images / "ct.nii.gz"))
    (images / "prompts.json").write_text(json.dumps({"a.png": "a lesion"}))
    missing = tmp_path / "no_dataset"
    assert [r["text"] for r in read_lvit_to_segment(missing, [images / "a.png"])] == ["a lesion"]
    organs = ["liver", "spleen"]
    (volume,) = read_msd_to_segment(missing, *split, [images / "ct.nii.gz"], default=organs)
    assert volume["text"] == organs
    assert [Path(r["image"]).name for r in read_acdc_to_segment(missing, *split, images / "ct.nii.gz")] == ["ct.nii.gz"]
    assert [Path(r["image"]).name for r in read_busi_to_segment(missing, *split, images / "a.png")] == ["a.png"]
