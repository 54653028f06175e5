import json
import re

import numpy as np
import pytest
from PIL import Image

from lmseg_components.data import (
    check_dataset,
    make_synthetic_acdc,
    make_synthetic_busi,
    make_synthetic_lvit,
    make_synthetic_msd,
    read_busi,
    read_lvit_split,
    read_msd,
    read_msd_labels,
)
from lmseg_components.data.synthetic import ALL_ZONES, UNRELATED_PROMPTS, LungZone, describe_zones, paraphrase_zones


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


def _mask(path):
    return np.asarray(Image.open(path)) > 0


def _zones_with_blob(mask, size):
    return {z for z in ALL_ZONES if mask[_box(z, size, 0.1)].any()}


def test_every_finding_masks_and_prompts_that_name_nothing(tmp_path):
    summary = make_synthetic_lvit(tmp_path / "a", seed=5, size=64, n_train=4, n_val=0, n_test=20, nothing_fraction=0.2)
    records = read_lvit_split(tmp_path / "a", "Test")
    nothing = summary["names_nothing"]
    assert len(records) == summary["counts"]["Test"] == 24 and len(nothing) == 4
    assert nothing == [r["name"] for r in records[-4:]]
    for record in records:
        layout = summary["images"][record["name"]]
        every = {LungZone(*z.split()) for z in layout["mentioned"] + layout["distractors"]}
        assert _zones_with_blob(_mask(record["label_all"]), 64) == every  # label_all: every blob, named or not
        assert _mask(record["label"]).sum() <= _mask(record["label_all"]).sum()
        if record["name"] in nothing:
            assert not _mask(record["label"]).any() and layout["distractors"]
            if layout["names"] == "unrelated":
                assert record["text"] in UNRELATED_PROMPTS
            else:  # the named zone holds no lesion
                assert _zones_in_text(record["text"]) == {LungZone(*layout["names"].split())}
                assert LungZone(*layout["names"].split()) not in every
    # the other images do not depend on nothing_fraction
    make_synthetic_lvit(tmp_path / "b", seed=5, size=64, n_train=4, n_val=0, n_test=20, nothing_fraction=0.0)
    plain = read_lvit_split(tmp_path / "b", "Test")
    assert [r["text"] for r in plain] == [r["text"] for r in records[:20]]
    assert all(
        np.array_equal(_mask(x["label_all"]), _mask(y["label_all"])) for x, y in zip(plain, records[:20], strict=True)
    )
    with pytest.raises(ValueError, match="nothing_fraction"):
        make_synthetic_lvit(tmp_path / "c", nothing_fraction=1.5)


def test_paraphrases_use_no_training_phrasing():
    rng = np.random.default_rng(0)
    training_words = {w for _ in range(200) for w in re.findall(r"[a-z]+", describe_zones(ALL_ZONES[:3], rng).lower())}
    zones = [ALL_ZONES[0], ALL_ZONES[5]]
    paraphrases = {paraphrase_zones(zones, rng) for _ in range(60)}
    assert len(paraphrases) > 5
    for text in paraphrases:
        words = set(re.findall(r"[a-z]+", text.lower()))
        assert {"left", "right"} <= words
        assert not words & {"upper", "lower", "middle", "mid"}  # other level words
        assert words - training_words  # and other template words
        assert text not in {describe_zones(zones, rng) for _ in range(50)}
    with pytest.raises(ValueError, match="1 to 3 zones"):
        paraphrase_zones([], rng)


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


def _acdc_volumes(root, patient="patient001", frame=1):
    import nibabel as nib

    stem = root / patient / f"{patient}_frame{frame:02d}"
    image, labels = (nib.load(f"{stem}{suffix}.nii.gz") for suffix in ("", "_gt"))
    return np.asarray(image.dataobj).astype(float), np.asarray(labels.dataobj), image.header.get_zooms()


def test_acdc_scanner_b_is_the_same_anatomy_acquired_differently(tmp_path):
    summaries = {s: make_synthetic_acdc(tmp_path / s, seed=3, n_patients=2, shape=(32, 32, 4), scanner=s) for s in "AB"}
    assert summaries["A"]["shape"] == [32, 32, 4] and summaries["B"]["shape"] == [38, 38, 4]
    for patient in ("patient001", "patient002"):
        (image_a, labels_a, zooms_a), (image_b, labels_b, zooms_b) = (
            _acdc_volumes(tmp_path / s, patient) for s in "AB"
        )
        assert zooms_a == (1.5, 1.5, 8.0) and zooms_b == (1.25, 1.25, 8.0)
        assert image_b.shape == (38, 38, 4) and labels_b.shape == image_b.shape
        assert set(np.unique(labels_b)) == set(np.unique(labels_a)) == {0, 1, 2, 3}
        for c in (1, 2, 3):  # the same structures in mm^2, per slice
            area_a, area_b = (
                (labels == c).sum((0, 1)) * zoom[0] ** 2 for labels, zoom in ((labels_a, zooms_a), (labels_b, zooms_b))
            )
            assert np.allclose(area_a, area_b, rtol=0.25, atol=12.0), (c, area_a, area_b)
        # B stores another range, with a compressed contrast curve: myocardium closer to blood
        assert image_a.max() <= 1000 < np.percentile(image_b, 99)
        ratio = {
            s: im[lab == 2].mean() / im[lab == 3].mean()
            for s, im, lab in (("A", image_a, labels_a), ("B", image_b, labels_b))
        }
        assert ratio["B"] > ratio["A"] + 0.1, ratio


def test_acdc_hard_difficulty_lowers_contrast_and_varies_shapes(tmp_path):
    contrast, empty_apex = {}, {}
    for difficulty in ("standard", "hard"):
        make_synthetic_acdc(tmp_path / difficulty, seed=0, n_patients=4, shape=(48, 48, 6), difficulty=difficulty)
        cnr, empty = [], 0
        for p in range(1, 5):
            image, labels, _ = _acdc_volumes(tmp_path / difficulty, f"patient{p:03d}")
            assert set(np.unique(labels)) <= {0, 1, 2, 3}
            # myocardium against blood, in units of the background's spread (noise, texture and bias together)
            cnr.append((image[labels == 3].mean() - image[labels == 2].mean()) / image[labels == 0].std())
            empty += int(not labels[..., -1].any())
        contrast[difficulty], empty_apex[difficulty] = float(np.mean(cnr)), empty
    assert contrast["hard"] < 0.75 * contrast["standard"], contrast
    assert empty_apex["standard"] == 0 and empty_apex["hard"] >= 1


def test_acdc_default_is_scanner_a_standard_and_bad_options_are_named(tmp_path):
    a = make_synthetic_acdc(tmp_path / "a", seed=1, n_patients=1, shape=(24, 24, 2))
    b = make_synthetic_acdc(tmp_path / "b", seed=1, n_patients=1, shape=(24, 24, 2), scanner="A", difficulty="standard")
    assert a == b and a["spacing"] == [1.5, 1.5, 8.0]
    assert np.array_equal(_acdc_volumes(tmp_path / "a")[0], _acdc_volumes(tmp_path / "b")[0])
    with pytest.raises(ValueError, match="scanner must be one of \\['A', 'B'\\]"):
        make_synthetic_acdc(tmp_path / "c", scanner="C")
    with pytest.raises(ValueError, match="difficulty must be one of"):
        make_synthetic_acdc(tmp_path / "c", difficulty="extreme")


def _outline(mask):
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def test_busi_layout_reads_back_with_lesions_by_class(tmp_path):
    summary = make_synthetic_busi(tmp_path, seed=0, n_benign=6, n_malignant=4, n_normal=2, size=64, second_lesion=0.5)
    assert summary["counts"] == {"benign": 6, "malignant": 4, "normal": 2} and summary["images_with_two_masks"] >= 1
    assert check_dataset(tmp_path) == ("busi", [])
    records = read_busi(tmp_path)
    assert [r["name"] for r in records[:2]] == ["benign_benign (1)", "benign_benign (2)"]
    irregularity = {"benign": [], "malignant": []}
    for record in records:
        image = np.asarray(Image.open(record["image"]))
        assert image.ndim == 3 and image.shape[0] == 64 and 64 <= image.shape[1] <= 96
        mask = np.any([np.asarray(Image.open(m)) > 0 for m in record["label"]], axis=0)
        if record["class"] == "normal":
            assert not mask.any()
            continue
        grey = image[..., 0].astype(float)
        assert grey[mask].mean() < 0.6 * grey[~mask].mean()  # hypoechoic lesion
        if len(record["label"]) == 1:  # outline length^2 / area: smallest for a disc, larger for a ragged outline
            irregularity[record["class"]].append(_outline(mask).sum() ** 2 / mask.sum())
    assert np.mean(irregularity["malignant"]) > 1.2 * np.mean(irregularity["benign"]), irregularity


def test_make_synthetic_cli_writes_busi_and_scanner_b(tmp_path, capsys):
    from lmseg_components.apps.cli import make_synthetic

    make_synthetic(str(tmp_path / "busi"), kind="busi", size=40, n_benign=2, n_malignant=1, n_normal=1)
    assert len(read_busi(tmp_path / "busi")) == 4
    make_synthetic(str(tmp_path / "acdc"), kind="acdc", n_patients=1, scanner="B", difficulty="hard")
    printed = capsys.readouterr().out
    assert '"kind": "busi"' in printed and '"gamma": 0.6' in printed and '"papillary": true' in printed
    assert _acdc_volumes(tmp_path / "acdc")[2] == (1.25, 1.25, 8.0)
    with pytest.raises(SystemExit, match="scanner must be one of"):
        make_synthetic(str(tmp_path / "bad"), kind="acdc", scanner="C")
