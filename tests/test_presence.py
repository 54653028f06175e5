"""The presence decision's pieces on known values: the score of a logit map, the threshold chosen on
validation scores, the AUROC; the postprocessing that decides and empties, the results lines, the validation
prompts, and the calibration that writes the threshold into the run record."""

import json
import math

import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from monai.engines import PrepareBatchExtraInput
from monai.inferers import SimpleInferer

from lmseg_components.data import presence_records
from lmseg_components.engines import PRESENCE_THRESHOLD, PresenceCalibration, recorded_presence_threshold
from lmseg_components.engines.checkpoint import RUN_RECORD_FILE
from lmseg_components.metrics import choose_presence_threshold, presence_auroc, presence_score
from lmseg_components.outputs import NOT_FOUND_LOGIT, RESULTS_LINES, PresenceDecisiond, SaveResultsd
from lmseg_components.text.phrasing import AUGMENTATION, findings_zones, parse_zones


def test_score_is_the_sigmoid_of_the_mean_of_the_highest_logits():
    logits = torch.full((2, 1, 20, 20), -5.0)  # 400 pixels: the top 0.25 % is 1 pixel, the top 5 % is 20
    logits[0, 0, :2, :5] = 2.0  # a 10-pixel lesion
    logits[0, 0, 10, 10] = 30.0
    logits[1, 0] = -2.0
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert presence_score(logits)[:, 0].tolist() == pytest.approx([sigmoid(30.0), sigmoid(-2.0)])
    top20 = (30.0 + 10 * 2.0 + 9 * -5.0) / 20
    assert presence_score(logits, top_fraction=0.05)[0, 0].item() == pytest.approx(sigmoid(top20))
    # confident prompts stay apart where float32 probabilities tie at 1
    assert presence_score(torch.full((1, 1, 4, 4), 20.0)) > presence_score(torch.full((1, 1, 4, 4), 18.0))
    assert presence_score(torch.rand(3, 4, 8, 8, 8)).shape == (3, 4)
    with pytest.raises(ValueError, match="top_fraction"):
        presence_score(logits, top_fraction=0.0)
    with pytest.raises(ValueError, match=r"\(B, C, \*spatial\)"):
        presence_score(torch.rand(4, 4))


def test_threshold_separates_validation_scores():
    assert choose_presence_threshold([0.8, 0.9, 0.7], [0.1, 0.3, 0.2]) == pytest.approx(0.5)
    # overlap: J is best at 0.55 (TPR 3/4, FPR 0) against 0.35 (TPR 1, FPR 1/3)
    assert choose_presence_threshold([0.4, 0.6, 0.7, 0.9], [0.1, 0.2, 0.5]) == pytest.approx(0.55)
    with pytest.raises(ValueError, match="both kinds"):
        choose_presence_threshold([0.5], [])


def test_auroc_on_known_orders():
    assert presence_auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert presence_auroc([0.1, 0.2], [0.9, 0.8]) == 0.0
    assert presence_auroc([0.9, 0.3], [0.5, 0.1]) == pytest.approx(0.75)


def test_decision_scores_decides_and_empties_what_is_not_found():
    logits = torch.full((2, 20, 20), -6.0)
    logits[0, :4, :4] = 6.0  # prompt 0 finds a lesion; prompt 1's channel is all background
    item = PresenceDecisiond("pred", threshold=0.5)({"pred": logits, "text": ["a", "b"]})
    assert item["score"] == pytest.approx([1 / (1 + math.exp(-6.0)), 1 / (1 + math.exp(6.0))])
    assert item["found"] == [True, False]
    assert torch.equal(item["pred"][0], logits[0]) and (item["pred"][1] == NOT_FOUND_LOGIT).all()
    assert (torch.sigmoid(item["pred"][1].half()) == 0).all()  # empty after the activation, in float16 too
    high = PresenceDecisiond("pred", threshold=0.999)({"pred": logits[:1]})
    assert high["found"] is False and (high["pred"] == NOT_FOUND_LOGIT).all()  # one prompt: a bool, a float
    undecided = PresenceDecisiond("pred")({"pred": logits[:1]})
    assert undecided["found"] is None and torch.equal(undecided["pred"], logits[:1])
    assert isinstance(undecided["score"], float)
    for bad in (1.5, -0.1, True, "0.5"):
        with pytest.raises(ValueError, match=r"presence_threshold must be a number in \[0, 1\]"):
            PresenceDecisiond("pred", threshold=bad)


def test_results_lines_are_written_per_item_and_restart_with_a_run(tmp_path):
    image = MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": "/data/a.png"})
    writer = SaveResultsd(["text", "score", "found"], tmp_path)
    (tmp_path / RESULTS_LINES).write_text('{"image": "from an earlier run"}\n')
    writer({"image": image, "text": "left lower zone", "score": 0.9, "found": True})
    assert (tmp_path / RESULTS_LINES).read_text().count("\n") == 1  # the earlier run's lines are gone
    writer({"image": image, "text": "Heart size is normal.", "score": 0.1, "found": False})
    lines = [json.loads(line) for line in (tmp_path / RESULTS_LINES).read_text().splitlines()]
    assert lines == [
        {"image": "/data/a.png", "text": "left lower zone", "score": 0.9, "found": True},
        {"image": "/data/a.png", "text": "Heart size is normal.", "score": 0.1, "found": False},
    ]


def test_validation_prompts_pair_each_report_with_one_naming_nothing():
    records = [
        {"image": "a.png", "label": "a_mask.png", "text": "Opacity in the left lower zone.", "findings": "lower left"},
        {"image": "b.png", "label": "b_mask.png", "text": "Opacity in the right upper zone.", "findings": ""},
    ]
    prompts = presence_records(records, seed=3)
    assert [p["present"] for p in prompts] == [True, True, False, False]
    assert prompts[:2] == [{**r, "present": True} for r in records]
    for record, negative in zip(records, prompts[2:], strict=True):
        assert {**negative, "text": record["text"], "present": True} == prompts[records.index(record)]
        named = parse_zones(negative["text"])
        assert negative["text"] in AUGMENTATION.unrelated or not named & findings_zones(record["findings"])
    assert presence_records(records, seed=3) == prompts  # the seed fixes the draw


class _Bias(torch.nn.Module):
    """Logits = the prompt's feature value + a learnt bias, everywhere."""

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, text_features):
        return (text_features[:, None, None, None] + self.bias).expand(-1, 1, *x.shape[-2:])


def _calibration(tmp_path, network, present_features, absent_features):
    items = [(f, True) for f in present_features] + [(f, False) for f in absent_features]
    batches = []
    for feature, present in items:
        label = torch.zeros(1, 1, 4, 4)
        label[..., :2, :2] = 1  # every image holds its finding; absent prompts name something else
        batches.append(
            {
                "image": torch.zeros(1, 1, 4, 4),
                "label": label,
                "text_features": torch.tensor([feature]),
                "present": [present],
            }
        )
    prepare = PrepareBatchExtraInput(extra_keys="text_features")
    return PresenceCalibration(network, batches, prepare, SimpleInferer(), tmp_path / "model.pt", "cpu")


def test_calibration_writes_the_best_models_threshold_into_the_run_record(tmp_path, caplog):
    network = _Bias()
    best = _Bias()
    with torch.no_grad():
        best.bias.fill_(-1.0)  # the best model's weights, not the network's last ones, are calibrated
    torch.save(best.state_dict(), tmp_path / "model.pt")
    (tmp_path / RUN_RECORD_FILE).write_text(json.dumps({"dataset": "abcd", "width": 4}))
    calibration = _calibration(tmp_path, network, [3.0, 4.0, 5.0], [-2.0, 0.0])
    present, absent = calibration.scores()
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert present == pytest.approx([sigmoid(2.0), sigmoid(3.0), sigmoid(4.0)])
    assert absent == pytest.approx([sigmoid(-3.0), sigmoid(-1.0)])
    calibration(Engine(lambda e, b: None))
    record = json.loads((tmp_path / RUN_RECORD_FILE).read_text())
    threshold = (sigmoid(2.0) + sigmoid(-1.0)) / 2
    expected = {PRESENCE_THRESHOLD: pytest.approx(threshold), "presence_validation_auroc": 1.0}
    assert record == {"dataset": "abcd", "width": 4, **expected}
    assert recorded_presence_threshold(tmp_path) == pytest.approx(threshold)
    assert recorded_presence_threshold(tmp_path / "elsewhere") is None

    # only one kind of prompt: no threshold, the record is left as it is
    (tmp_path / RUN_RECORD_FILE).write_text(json.dumps({"dataset": "abcd"}))
    with caplog.at_level("WARNING"):
        _calibration(tmp_path, network, [3.0, 4.0], [])(Engine(lambda e, b: None))
    assert "threshold not chosen" in caplog.text
    assert json.loads((tmp_path / RUN_RECORD_FILE).read_text()) == {"dataset": "abcd"}


def test_a_present_prompt_on_an_empty_mask_counts_as_absent(tmp_path):
    calibration = _calibration(tmp_path, _Bias(), [3.0], [-3.0])
    calibration.data_loader[0]["label"].zero_()  # a report whose image holds no finding
    assert calibration.scores() == ([], pytest.approx([1 / (1 + math.exp(-3.0)), 1 / (1 + math.exp(3.0))]))
