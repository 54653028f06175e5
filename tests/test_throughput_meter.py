"""ThroughputMeter on an Ignite engine with known data and step times: images/s, data-wait share, warm-up and the
time between epochs left out."""

import time

import pytest
import torch
from ignite.engine import Engine, Events

from lmseg_components.engines import ThroughputMeter

DATA_S, STEP_S, BETWEEN_EPOCHS_S = 0.02, 0.04, 0.5


class SlowData:
    def __iter__(self):
        for _ in range(6):
            time.sleep(DATA_S)
            yield {"image": torch.zeros(4, 1, 8, 8)}

    def __len__(self):
        return 6


def test_counts_images_data_wait_and_leaves_out_warmup_and_epoch_ends():
    engine = Engine(lambda engine, batch: time.sleep(STEP_S))
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda _: time.sleep(BETWEEN_EPOCHS_S))  # e.g. validation
    meter = ThroughputMeter(warmup=1).attach(engine)
    engine.run(SlowData(), max_epochs=2)
    stats = meter.summary()
    assert stats["iterations"] == 11 and stats["images"] == 44
    expected = 11 * (DATA_S + STEP_S)
    assert expected <= stats["seconds"] < expected + 0.3  # the 0.5 s between epochs is not in it
    assert stats["images_per_s"] == pytest.approx(44 / stats["seconds"])
    assert 0.25 < stats["data_wait_share"] < 0.45  # 0.02 of 0.06 s


def test_decollated_batches_count_their_items_and_an_empty_count_is_an_error():
    engine = Engine(lambda engine, batch: None)
    engine.add_event_handler(Events.GET_BATCH_COMPLETED, lambda e: setattr(e.state, "batch", [{}] * 3))
    meter = ThroughputMeter(warmup=0).attach(engine)
    engine.run([{"image": torch.zeros(3, 1)}] * 2, max_epochs=1)
    assert meter.summary()["images"] == 6
    with pytest.raises(RuntimeError, match="no iteration was counted: the engine ran 0, the warm-up is 2"):
        ThroughputMeter().summary()
    with pytest.raises(ValueError, match="warmup must be at least 0"):
        ThroughputMeter(warmup=-1)
