import json
import re

import numpy as np
import pytest
from PIL import Image

from lmseg_components.data import (
    check_dataset,
    make_synthetic_lvit,
    make_synthetic_msd,
    read_lvit_split,
    read_msd,
    read_msd_labels,
)
from lmseg_components.data.synthetic import ALL_ZONES, LungZone, describe_zones


def _strip_root(records, root):
    return [{k: v.replace(str(root), "") if isinstance(v, str) else v for k, v in r.items()} for r in records]


def test_same_seed_same_records_and_pixels(tmp_path):
    for name in ("a", "b"):
        make_synthetic_lvit(tmp_path / name, seed=7, size=48, n_train=6, n_val=2, n_test=2)
    ra, rb = (read_lvit_split(tmp_path / n, "Train") for n in ("a", "b"))
    assert _strip_root(ra, tmp_path / "a") == _strip_root(rb, tmp_path / "b")
    for x, y in zip(ra, rb, strict=True):
        assert np.array_equal(np.asarray(Image.open(x["image"])), np.asarray(Image.open(y["image"])))
        assert np.array_equal(np.asarray(Image.open(x["label"])), np.asarray(Image.open(y["label"])))
    make_synthetic_lvit(tmp_path / "c", seed=8, size=48, n_train=6, n_val=2, n_test=2)
    assert [r["text"] for r in read_lvit_split(tmp_path / "c", "Train")] != [r["text"] for r in ra]


def test_text_ignoring_oracle_is_bounded(tmp_path):
    summary = make_synthetic_lvit(tmp_path, seed=0, size=64, n_train=150, n_val=0, n_test=0)
    assert 0.4 <= summary["text_ignoring_oracle_mdice"] <= 0.6
    assert json.loads((tmp_path / "synthetic.json").read_text()) == summary
    assert len(summary["images"]) == 150


def _box(zone, size, half=0.04):
    row, col = zone.image_center(size)
    r0, c0, h = int(row - half * size), int(col - half * size), int(2 * half * size) + 1
    return slice(r0, r0 + h), slice(c0, c0 + h)


def _zones_in_text(text):
    zones = set()
    for part in text.lower().split(" and "):
        level = re.findall(r"\b(upper|middle|mid|lower)\b", part)[-1]
        side = re.findall(r"\b(left|right)\b", part)[-1]
        zones.add(LungZone("middle" if level == "mid" else level, side))
    return zones


def test_masks_hold_exactly_the_mentioned_zones_and_distractors_look_the_same(tmp_path):
    summary = make_synthetic_lvit(tmp_path, seed=4, size=96, n_train=30, n_val=0, n_test=0)
    for record in read_lvit_split(tmp_path, "Train"):
        image = np.asarray(Image.open(record["image"])).astype(float)
        mask = np.asarray(Image.open(record["label"])) > 0
        layout = summary["images"][record["name"]]
        mentioned = {LungZone(*z.split()) for z in layout["mentioned"]}
        distractors = {LungZone(*z.split()) for z in layout["distractors"]}
        assert len(distractors) >= len(mentioned) and not mentioned & distractors
        assert _zones_in_text(record["text"]) == mentioned
        assert {z for z in ALL_ZONES if mask[_box(z, 96, 0.1)].any()} == mentioned
        # every blob, mentioned or distractor, is brighter than every zone without a blob
        peak = {z: image[_box(z, 96)].max() for z in ALL_ZONES}
        empty = [peak[z] for z in set(ALL_ZONES) - mentioned - distractors]
        if empty:
            assert min(peak[z] for z in mentioned | distractors) > max(empty)


def test_describe_zones_phrasing():
    rng = np.random.default_rng(0)
    texts = {describe_zones([ALL_ZONES[0], ALL_ZONES[3]], rng) for _ in range(40)}
    assert len(texts) > 5
    assert all("left" in t and "right" in t for t in texts)
    with pytest.raises(ValueError, match="1 to 3 zones"):
        describe_zones([], rng)


@pytest.mark.parametrize("naming,text_format", [("mosmed", "csv"), ("qata", "csv"), ("mosmed", "xlsx")])
def test_other_namings_read_back(tmp_path, naming, text_format):
    make_synthetic_lvit(tmp_path, seed=2, size=40, n_train=3, n_val=1, n_test=1, naming=naming, text_format=text_format)
    records = read_lvit_split(tmp_path, "Test")
    assert len(records) == 1 and records[0]["name"].startswith("syn_test")
    assert check_dataset(tmp_path) == ("lvit", [])


def test_msd_read_back(msd_root):
    import nibabel as nib

    records = read_msd(msd_root)
    assert len(records) == 3
    assert records[0]["text"] == [
        "A computerized tomography of a liver",
        "A computerized tomography of a spleen",
        "A computerized tomography of a kidney",
    ]
    assert read_msd_labels(msd_root) == {0: "background", 1: "liver", 2: "spleen", 3: "kidney"}
    label = np.asarray(nib.load(records[0]["label"]).dataobj)
    image = np.asarray(nib.load(records[0]["image"]).dataobj)
    assert set(np.unique(label)) == {0, 1, 2, 3}
    assert image.min() <= -900 and 80 < image[label == 1].mean() < 130
    assert check_dataset(msd_root) == ("msd", [])


def test_bad_options(tmp_path):
    with pytest.raises(ValueError, match="naming"):
        make_synthetic_lvit(tmp_path, naming="nih")
    with pytest.raises(ValueError, match="shape"):
        make_synthetic_msd(tmp_path, shape=(4, 4))
