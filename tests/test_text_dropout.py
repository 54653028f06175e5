"""TextDropoutd (text-optional training) and its wiring in the text bundles' train.json."""

import pytest
import torch
from bundle_cli import BUNDLES
from monai.transforms import Compose, Randomizable

from lmseg_components.data import TextDropoutd, read_lvit_split
from lmseg_components.workflows import SMALL_CONFIG, load_bundle

RECORD = {"image": "i.png", "label": "named.png", "label_all": "all.png", "text": "Lesion in the lower left lung."}


def test_dropped_items_read_the_every_finding_mask_with_an_empty_prompt():
    dropped = TextDropoutd(["text", "aux_text"], prob=1.0)({**RECORD, "aux_text": "opacity"})
    assert dropped == {"image": "i.png", "label": "all.png", "text": "", "aux_text": ""}
    kept = TextDropoutd("text", prob=0.0)(RECORD)
    assert kept == {"image": "i.png", "label": "named.png", "text": RECORD["text"]}  # one mask key in the batch
    # a dataset whose masks hold every finding (no label_all): the label stays
    no_all = {k: v for k, v in RECORD.items() if k != "label_all"}
    assert TextDropoutd("text", prob=1.0)(no_all) == {**no_all, "text": ""}


def test_the_dropout_rate_follows_prob_under_a_seed():
    transform = TextDropoutd("text", prob=0.3)
    transform.set_random_state(seed=0)
    dropped = [transform(RECORD)["text"] == "" for _ in range(2000)]
    assert 0.27 < sum(dropped) / len(dropped) < 0.33
    transform.set_random_state(seed=0)
    assert [transform(RECORD)["text"] == "" for _ in range(2000)] == dropped
    with pytest.raises(ValueError, match="prob must be in"):
        TextDropoutd("text", prob=1.2)


@pytest.mark.parametrize("bundle,keys", [("tirnet_lmis", ["text"]), ("tgcnet_lmis", ["text", "aux_text"])])
def test_train_json_drops_text_after_the_cached_loads(bundle, keys, lvit_root, tmp_path):
    def parse(text_dropout):
        values = {"text_dropout": text_dropout, "dataset_dir": str(lvit_root), "text_cache_dir": str(tmp_path)}
        return load_bundle(BUNDLES / bundle, ["train.json", SMALL_CONFIG], values)

    parser = parse(0.25)
    transforms = parser.get_parsed_content("train#preprocessing").transforms
    loads = len(parser.get_parsed_content("load_transforms"))
    dropout = transforms[loads]  # right after loading: CacheDataset caches every load, both masks
    assert isinstance(dropout, TextDropoutd) and dropout.prob == 0.25 and list(dropout.keys) == keys
    first_random = next(i for i, t in enumerate(transforms) if isinstance(t, Randomizable))
    assert first_random == loads
    record = read_lvit_split(lvit_root, "Train")[0]
    dropout.prob = 1.0
    dropped = Compose(transforms[: loads + 1])(record)
    every = Compose(transforms[:loads])({**record, "label": record["label_all"]})["label"]
    assert dropped["text"] == "" and "label_all" not in dropped and torch.equal(dropped["label"], every)
    assert not torch.equal(every, Compose(transforms[:loads])(record)["label"])  # a distractor: the masks differ
    # off: nothing random before the text augmentation, the every-finding mask not loaded
    assert not any(isinstance(t, TextDropoutd) for t in parse(0.0).get_parsed_content("train#preprocessing").transforms)
    assert parse(0.0).get_parsed_content("mask_keys") == ["label"]
