"""The report phrasing grammars: the augmentation and the held-out benchmark grammar share no rule and no content
word, the reader gets the zones back from the datasets' phrasing and from every augmentation rewrite, and the two
training transforms (rewrites, prompts that name nothing) keep the target true to the new prompt."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from lmseg_components.data import RandNamesNothingd, RandRephrased
from lmseg_components.data.synthetic import ALL_ZONES, describe_zones, paraphrase_zones
from lmseg_components.text.phrasing import (
    AUGMENTATION,
    HELD_OUT,
    LEVELS,
    ORGAN_SYNONYMS,
    SIDES,
    Area,
    absent_zones,
    findings_zones,
    format_zones,
    parse_areas,
    parse_zones,
    rephrase_organ_prompt,
)

ZONES = [(level, side) for side in SIDES for level in LEVELS]
FUNCTION_WORDS = {"a", "an", "of", "the"}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _random_areas(rng: np.random.Generator) -> list[Area]:
    """1 to 4 single-zone areas, or a QaTa-style area spanning two zones of one side plus others."""
    chosen = [ZONES[i] for i in rng.permutation(len(ZONES))[: int(rng.integers(1, 5))]]
    areas = [Area(side, (level,)) for level, side in chosen]
    if rng.random() < 0.25:
        areas = [Area("left", ("middle", "lower"))] + [a for a in areas if a.side == "right"]
    if rng.random() < 0.1:
        areas = [Area("right", LEVELS)] + [a for a in areas if a.side == "left"]
    return areas


def test_grammars_share_no_rule():
    augmentation, held_out = AUGMENTATION.rules(), HELD_OUT.rules()
    assert set(augmentation) == set(held_out)
    shared = {name: augmentation[name] & held_out[name] for name in augmentation if augmentation[name] & held_out[name]}
    assert not shared, shared


def test_held_out_words_never_seen_in_training_text():
    """No held-out level, finding or count word occurs in what training reads: the generator's descriptions and
    the augmentation's rewrites and negatives."""
    rng = np.random.default_rng(0)
    held = HELD_OUT.rules()
    held_words = set().union(
        *(_words(w) for rule in ("level words", "finding words", "count words") for w in held[rule])
    )
    training = set()
    for _ in range(400):
        training |= _words(describe_zones([ALL_ZONES[i] for i in rng.permutation(6)[: rng.integers(1, 4)]], rng))
        training |= _words(AUGMENTATION.describe(_random_areas(rng), rng))
    training |= set().union(*(_words(s) for s in AUGMENTATION.unrelated))
    held_words -= FUNCTION_WORDS
    assert len(held_words) > 10 and not held_words & training, held_words & training
    # and the benchmark's paraphrases use them
    paraphrases = {paraphrase_zones([ALL_ZONES[0], ALL_ZONES[4]], rng) for _ in range(40)}
    assert all(_words(p) & held_words and {"left", "right"} <= _words(p) for p in paraphrases)


@pytest.mark.parametrize(
    "text, zones",
    [
        ("Bilateral pulmonary infection, two infected areas, upper left lung and upper right lung.",
         "upper left; upper right"),
        ("Unilateral pulmonary infection, one infected area, middle lower left lung.", "middle left; lower left"),
        ("Bilateral pulmonary infection, two infected areas, all left lung and middle lower right lung.",
         "upper left; middle left; lower left; middle right; lower right"),
        ("Bibasal airspace opacities.", "lower left; lower right"),
        ("Opacity in the upper and mid zones of the left lung.", "upper left; middle left"),
        ("Cardiac silhouette within normal limits.", None),
        ("Healed fracture of the right clavicle.", None),
    ],
)  # fmt: skip
def test_parse_dataset_phrasing(text, zones):
    expected = None if zones is None else {tuple(z.split()) for z in zones.split("; ")}
    assert parse_zones(text) == expected


def test_parse_reads_the_generator_and_every_rewrite():
    rng = np.random.default_rng(1)
    for _ in range(300):
        zones = [ALL_ZONES[i] for i in rng.permutation(6)[: rng.integers(1, 4)]]
        assert parse_zones(describe_zones(zones, rng)) == {(z.level, z.side) for z in zones}
    for _ in range(2000):
        areas = _random_areas(rng)
        text = AUGMENTATION.describe(areas, rng)
        assert set(parse_areas(text)) == set(areas), text


def test_counts_agree_with_the_areas():
    rng = np.random.default_rng(2)
    counted = {1: "one", 2: "two", 3: "three"}
    seen = set()
    for _ in range(300):
        areas = [Area(side, (level,)) for level, side in ZONES[: int(rng.integers(1, 4))]]
        words = _words(AUGMENTATION.describe(areas, rng))
        for n, word in counted.items():
            if word in words:
                assert n == len(areas)
                seen.add(n)
    assert seen == {1, 2, 3}


def test_no_grammar_sentence_names_a_zone():
    for sentence in AUGMENTATION.unrelated + HELD_OUT.unrelated:
        assert parse_areas(sentence) is None, sentence


def test_findings_cells():
    assert format_zones([("upper", "left"), ("lower", "right")]) == "upper left; lower right"
    assert absent_zones(findings_zones("upper left; lower right")) == [
        ("middle", "left"),
        ("lower", "left"),
        ("upper", "right"),
        ("middle", "right"),
    ]
    assert absent_zones(findings_zones("")) == ZONES
    with pytest.raises(ValueError, match="'upper centre' is not '<level> <side>'"):
        findings_zones("upper centre")
    with pytest.raises(ValueError, match="side must be one of"):
        Area("centre", ("upper",))


REPORT = "Bilateral pulmonary infection, two infected areas, upper left lung and middle lower right lung."


def test_rephrase_keeps_the_zones_and_drops_derived_keys():
    transform = RandRephrased(prob=1.0, derived_keys=["aux_text"])
    transform.set_random_state(0)
    outputs = [transform({"text": REPORT, "aux_text": "glossary of the report"}) for _ in range(30)]
    assert len({o["text"] for o in outputs}) > 20 and REPORT not in {o["text"] for o in outputs}
    assert all(parse_areas(o["text"]) and set(parse_areas(o["text"])) == set(parse_areas(REPORT)) for o in outputs)
    assert all("aux_text" not in o for o in outputs)
    again = RandRephrased(prob=1.0, derived_keys=["aux_text"])
    again.set_random_state(0)
    assert [again({"text": REPORT})["text"] for _ in range(30)] == [o["text"] for o in outputs]


def test_rephrase_keeps_what_it_cannot_read():
    transform = RandRephrased(prob=1.0, derived_keys=["aux_text"])
    item = {"text": "Pneumothorax is seen.", "aux_text": "kept"}
    assert transform(item) == item
    assert RandRephrased(prob=0.0)({"text": REPORT}) == {"text": REPORT}
    with pytest.raises(ValueError, match="prob"):
        RandRephrased(prob=2.0)


def test_names_nothing_empties_the_mask_and_names_only_free_zones():
    transform = RandNamesNothingd(prob=1.0, derived_keys=["aux_text"])
    transform.set_random_state(0)
    item = {"text": REPORT, "findings": "upper left; lower right", "label": torch.ones(1, 8, 8), "aux_text": "a"}
    kinds = {"unrelated": 0, "free zones": 0}
    for _ in range(60):
        out = transform(item)
        assert out["label"].shape == (1, 8, 8) and out["label"].sum() == 0 and "aux_text" not in out
        zones = parse_zones(out["text"])
        if zones is None:
            assert out["text"] in AUGMENTATION.unrelated
            kinds["unrelated"] += 1
        else:
            assert zones <= set(absent_zones(findings_zones(item["findings"]))), out["text"]
            kinds["free zones"] += 1
    assert min(kinds.values()) > 15, kinds
    assert item["label"].sum() == 64  # the record itself is untouched


def test_names_nothing_without_findings_uses_unrelated_sentences_unless_reports_are_complete():
    item = {"text": "Opacity in the left lower zone.", "label": torch.ones(1, 4, 4)}
    plain = RandNamesNothingd(prob=1.0)
    plain.set_random_state(0)
    assert all(plain(item)["text"] in AUGMENTATION.unrelated for _ in range(30))
    complete = RandNamesNothingd(prob=1.0, report_complete=True)
    complete.set_random_state(0)
    named = [parse_zones(complete(item)["text"]) for _ in range(40)]
    assert any(named) and all(("lower", "left") not in z for z in named if z)
    assert RandNamesNothingd(prob=0.0)(item)["label"].sum() == 16
    with pytest.raises(TypeError, match="report_complete must be True or False"):
        RandNamesNothingd(report_complete="false")


ORGANS = ["A computerized tomography of a liver", "A computerized tomography of a spleen",
          "A computerized tomography of a left kidney"]  # fmt: skip


def _organ_of(prompt: str) -> tuple[str, str | None]:
    """(organ, side) a prompt asks for, by the synonym table."""
    text = prompt.lower()
    for organ, words in ORGAN_SYNONYMS.items():
        if any(re.search(rf"\b{w}\b", text) for w in words):
            return organ, next((s for s in SIDES if re.search(rf"\b{s}\b", text)), None)
    raise AssertionError(f"no organ in {prompt!r}")


def test_organ_prompts_keep_organ_and_side():
    transform = RandRephrased(prob=1.0)
    transform.set_random_state(0)
    outputs = [transform({"text": list(ORGANS)})["text"] for _ in range(40)]
    assert len({tuple(o) for o in outputs}) > 30
    for prompts in outputs:
        assert [_organ_of(p) for p in prompts] == [("liver", None), ("spleen", None), ("kidney", "left")]
    assert {p.split()[0] for o in outputs for p in o} > {"Segment", "Where"}  # several request forms
    rng = np.random.default_rng(0)
    assert rephrase_organ_prompt("A computerized tomography of a femur", rng) == "A computerized tomography of a femur"
    assert _organ_of(rephrase_organ_prompt("A computerized tomography of a gall bladder", rng))[0] == "gallbladder"
