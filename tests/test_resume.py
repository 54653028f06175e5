"""ResumableCheckpoint and BestModelSaver in-process: an interrupted run resumes as the same run (same final
weights), keeps its best score, refuses other data or config, writes files with the umask's mode."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from ignite.engine import Events
from ignite.metrics import Metric
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import ValidationHandler
from monai.transforms import Compose, RandFlipd, RandGaussianNoised
from torch import nn

from lmseg_components.engines import BestModelSaver, ResumableCheckpoint, RunMismatchError
from lmseg_components.fingerprint import datalist_fingerprint
from lmseg_components.runs import trained_values


class _Interrupt(Exception):
    """Stands in for a kill after the checkpoint of some iteration was written."""


class _ScriptedScore(Metric):
    """Key metric whose value at validation ``e`` is ``scores[e - 1]`` (the epoch is the evaluator's)."""

    def __init__(self, scores):
        self.scores = scores
        super().__init__(output_transform=lambda out: out)

    def reset(self):
        pass

    def update(self, output):
        pass

    def compute(self):
        return self.scores[self._engine.state.epoch - 1]

    def attach(self, engine, name, usage=None):
        self._engine = engine
        super().attach(engine, name)


def _data(n: int = 12) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    return [
        {"image": torch.rand(1, 8, 8, generator=generator), "label": torch.rand(1, 8, 8, generator=generator)}
        for _ in range(n)
    ]


def _run(root, *, num_workers=0, epochs=3, interrupt_at=None, scores=(0.5, 0.9, 0.3), record=None):
    """Train a tiny conv net with dropout on shuffled, randomly augmented data through MONAI's trainer and
    evaluator; ``interrupt_at`` raises after that iteration's checkpoint. Returns the network."""
    torch.manual_seed(1234)  # the network's initial weights; ResumableCheckpoint seeds the epochs
    network = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Dropout(0.3), nn.Conv2d(4, 1, 3, padding=1))
    transform = Compose(
        [RandFlipd(keys=["image", "label"], prob=0.5), RandGaussianNoised(keys="image", prob=0.5, std=0.1)]
    )
    loader = DataLoader(Dataset(_data(), transform), batch_size=3, shuffle=True, num_workers=num_workers)
    val_loader = DataLoader(Dataset(_data(4)), batch_size=2)
    best = BestModelSaver(root, {"model": network})
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=val_loader,
        network=network,
        key_val_metric={"score": _ScriptedScore(list(scores))},
        val_handlers=[best],
    )
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=loader,
        network=network,
        optimizer=optimizer,
        loss_function=nn.MSELoss(),
        train_handlers=[ValidationHandler(validator=evaluator, interval=1, epoch_level=True)],
    )
    checkpoint = ResumableCheckpoint(
        root,
        {"trainer": trainer, "network": network, "optimizer": optimizer, "best_model": best},
        save_interval=1,
        seed=7,
        run_record=record,
    )
    checkpoint.attach(trainer)
    if interrupt_at is not None:

        @trainer.on(Events.ITERATION_COMPLETED(once=interrupt_at))
        def _stop(engine):
            raise _Interrupt()

    trainer.run()
    return network, evaluator


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("interrupt_at", [2, 4, 9])  # mid epoch 1, before epoch 1's validation, mid epoch 3
def test_interrupted_run_reproduces_the_uninterrupted_weights(tmp_path, num_workers, interrupt_at):
    reference, _ = _run(tmp_path / "reference", num_workers=num_workers)
    with pytest.raises(_Interrupt):
        _run(tmp_path / "run", num_workers=num_workers, interrupt_at=interrupt_at)
    resumed, _ = _run(tmp_path / "run", num_workers=num_workers)
    for (name, a), (_, b) in zip(reference.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    final = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert final["trainer"]["iteration"] == 12


def test_best_model_survives_the_resume(tmp_path):
    # scores 0.5, 0.9 (best), 0.3, 0.4: interrupted in epoch 3, the resumed epochs 3-4 are worse
    scores = (0.5, 0.9, 0.3, 0.4)
    with pytest.raises(_Interrupt):
        _run(tmp_path, epochs=4, interrupt_at=10, scores=scores)
    after_epoch_2 = torch.load(tmp_path / "model.pt", weights_only=True)
    network, evaluator = _run(tmp_path, epochs=4, scores=scores)
    assert (evaluator.state.best_metric, evaluator.state.best_metric_epoch) == (0.9, 2)
    best = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.equal(after_epoch_2[k], best[k]) for k in best)
    assert not all(torch.equal(network.state_dict()[k], best[k]) for k in best)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["best_model"] == {
        "best_metric": 0.9,
        "best_metric_epoch": 2,
    }


def test_other_data_or_config_is_refused_naming_both(tmp_path):
    _run(tmp_path, epochs=1, record={"dataset": "aaaa", "width": 16})
    with pytest.raises(RunMismatchError, match=r"dataset: checkpoint 'aaaa' vs this run 'bbbb'") as error:
        _run(tmp_path, epochs=2, record={"dataset": "bbbb", "width": 16})
    assert "width" not in str(error.value) and "another bundle_root" in str(error.value)
    with pytest.raises(RunMismatchError, match=r"width: checkpoint 16 vs this run 8"):
        _run(tmp_path, epochs=2, record={"dataset": "aaaa", "width": 8})
    _run(tmp_path, epochs=2, record={"dataset": "aaaa", "width": 16})  # same record: resumes, trains epoch 2


def test_run_record_snapshot_beside_the_model_is_what_inference_reads(tmp_path):
    """``run_record.json`` beside ``model.pt``: ``lmseg segment``, the apps and ``lmseg export`` read the trained
    values from it (:func:`trained_values`), without unpickling the training checkpoint."""
    _run(tmp_path, epochs=1, record={"dataset": "aaaa", "width": 16})
    assert json.loads((tmp_path / "run_record.json").read_text()) == {"dataset": "aaaa", "width": 16}
    (tmp_path / "checkpoint.pt").unlink()  # a model shared with its snapshot, without the training state
    assert trained_values(tmp_path) == {"dataset": "aaaa", "width": 16}
    (tmp_path / "run_record.json").write_text("{torn")
    with pytest.raises(ValueError, match="run_record.json: not valid JSON"):
        trained_values(tmp_path)


def test_saved_files_follow_the_umask_and_leave_no_temp_file(tmp_path):
    old = os.umask(0o022)
    try:
        _run(tmp_path, epochs=1, record={"width": 16})
    finally:
        os.umask(old)
    for name in ("checkpoint.pt", "model.pt", "run_record.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "model.pt", "run_record.json"]


def test_datalist_fingerprint_follows_names_sizes_and_texts_not_the_folder(tmp_path):
    for root in (tmp_path / "a", tmp_path / "b"):
        root.mkdir()
        (root / "x.png").write_bytes(b"12345")
    records = [{"image": str(tmp_path / "a" / "x.png"), "text": "left lung"}]
    moved = [{"image": str(tmp_path / "b" / "x.png"), "text": "left lung"}]
    fingerprint = datalist_fingerprint(records, tmp_path / "a")
    assert datalist_fingerprint(moved, tmp_path / "b") == fingerprint
    assert datalist_fingerprint([{**records[0], "text": "right lung"}], tmp_path / "a") != fingerprint
    (tmp_path / "a" / "x.png").write_bytes(b"123456")
    assert datalist_fingerprint(records, tmp_path / "a") != fingerprint
