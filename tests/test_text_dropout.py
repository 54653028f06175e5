"""TextDropoutd (text-optional training) and its wiring in the text bundles' train.json."""

import pytest
from bundle_cli import BUNDLES

from lmseg_components.data import TextDropoutd
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
def test_train_json_drops_text_only_when_asked(bundle, keys):
    def transforms(text_dropout):
        parser = load_bundle(BUNDLES / bundle, ["train.json", SMALL_CONFIG], {"text_dropout": text_dropout})
        return parser.get_parsed_content("train#preprocessing").transforms

    dropout = transforms(0.25)[0]  # first, before loading: it picks the mask file
    assert isinstance(dropout, TextDropoutd) and dropout.prob == 0.25 and list(dropout.keys) == keys
    # nothing random before loading without it: CacheDataset caches as before
    assert not any(isinstance(t, TextDropoutd) for t in transforms(0.0))
