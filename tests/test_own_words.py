"""The text bundles' training pipelines (train.json + small.json) rewrite reports and ask for what is not there:
on real synthetic items, the rewrites keep the zones (and TGC-Net's auxiliary prompt follows them), the prompts
that name nothing get an empty mask, and with both probabilities 0 the pipeline is the one before them."""

from __future__ import annotations

import pytest
import torch
from bundle_cli import BUNDLES

from lmseg_components.data import (
    RandLeftRightFlipd,
    RandNamesNothingd,
    RandRephrased,
    make_synthetic_lvit,
    make_synthetic_msd,
    read_lvit_split,
    read_msd_split,
)
from lmseg_components.text.phrasing import AUGMENTATION, absent_zones, findings_zones, parse_zones
from lmseg_components.workflows import SMALL_CONFIG, load_bundle


@pytest.fixture(scope="module")
def lvit_items(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_words")
    make_synthetic_lvit(root, seed=4, size=64, n_train=12, n_val=1, n_test=1)
    return read_lvit_split(root, "Train")


def _pipeline(bundle: str, tmp_path, **values):
    parser = load_bundle(BUNDLES / bundle, ["train.json", SMALL_CONFIG], {"text_cache_dir": str(tmp_path), **values})
    return parser, parser.get_parsed_content("train#preprocessing")


@pytest.mark.parametrize("bundle", ["tirnet_lmis", "tgcnet_lmis"])
def test_training_items_are_rewritten_or_name_nothing(bundle, lvit_items, tmp_path):
    # no flips: they swap the words "left" and "right" with the image, so the zones would be the mirror's
    parser, preprocessing = _pipeline(bundle, tmp_path, names_nothing_prob=0.3, **{"train#augmentation#0#prob": 0.0})
    kinds = [type(t) for t in preprocessing.transforms]
    rephrase, names_nothing = kinds.index(RandRephrased), kinds.index(RandNamesNothingd)
    assert rephrase < names_nothing < kinds.index(RandLeftRightFlipd)  # zones are the patient's until the flip
    preprocessing.set_random_state(0)
    counts = {"rewritten": 0, "names nothing": 0, "as written": 0}
    for _ in range(3):
        for index, record in enumerate(lvit_items):
            if bundle == "tgcnet_lmis" and index % 2:  # the dataset's own auxiliary prompt (an Auxiliary column)
                record = {**record, "aux_text": "Auxiliary prompt of the dataset."}
            item = preprocessing(record)
            if bundle == "tgcnet_lmis" and item["text"] != record["text"]:  # derived again from the new prompt
                assert item["aux_text"] == parser.get_parsed_content("aux_prompt")._aux(item["text"])
            assert item["text_features"].shape[-1] == parser.get_parsed_content("text_encoder").token_dim
            if item["label"].sum() == 0:  # a negative (every synthetic training image has a lesion)
                named = parse_zones(item["text"])
                assert item["text"] in AUGMENTATION.unrelated or named <= set(
                    absent_zones(findings_zones(record["findings"]))
                )
                counts["names nothing"] += 1
                continue
            assert parse_zones(item["text"]) == parse_zones(record["text"]), (record["text"], item["text"])
            counts["as written" if item["text"] == record["text"] else "rewritten"] += 1
    assert min(counts.values()) >= 5, counts


@pytest.mark.parametrize("bundle", ["tirnet_lmis", "tgcnet_lmis", "tgcnet_ct_organs"])
def test_off_is_the_pipeline_before(bundle):
    values = {"rephrase_prob": 0.0, "names_nothing_prob": 0.0}
    parser = load_bundle(BUNDLES / bundle, ["train.json", SMALL_CONFIG], values)
    assert parser.get_parsed_content("train#text_augmentation") == []
    assert "@train::text_augmentation" in parser["train"]["preprocessing"]["transforms"]


def test_ct_organ_prompts_are_rewritten_per_organ(tmp_path):
    make_synthetic_msd(tmp_path / "data", seed=0, n_cases=2, shape=(24, 24, 8))
    record = read_msd_split(tmp_path / "data", "train")[0]
    parser, preprocessing = _pipeline(
        "tgcnet_ct_organs", tmp_path, dataset_dir=str(tmp_path / "data"), image_size=24, samples_per_volume=1
    )
    preprocessing.set_random_state(0)
    prompts = [preprocessing(record)[0]["text"] for _ in range(8)]
    assert any(p != record["text"] for p in prompts)
    for p in prompts:
        assert len(p) == 3 and ["liver" in p[0].lower() or "hepatic" in p[0].lower()] == [True]
        assert "spleen" in p[1].lower() or "splenic" in p[1].lower()
        assert "kidney" in p[2].lower() or "renal" in p[2].lower()
    assert torch.is_tensor(preprocessing(record)[0]["text_features"])
