"""multi_gpu_train.json under torchrun on CPU (gloo), and metric reduction across ranks."""

import os
import re
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from bundle_cli import bundle_args, tiny_args

from lmseg_components.data import make_synthetic_acdc, make_synthetic_lvit, make_synthetic_msd
from lmseg_components.workflows import BUNDLES_DIR, run_monai_bundle

pytestmark = pytest.mark.bundle  # spawns python -m monai.bundle / torchrun / lmseg processes

BUNDLES = BUNDLES_DIR


def _torchrun(bundle: str, root: Path, epochs: int, *overrides: str) -> str:
    """``torchrun --nproc_per_node=2`` of the bundle's multi_gpu_train.json on CPU (gloo); returns the log."""
    configs = ["configs/train.json", "configs/multi_gpu_train.json"]
    extra = ["--epochs", str(epochs), "--num_workers", "0", *overrides]
    run = run_monai_bundle(BUNDLES / bundle, bundle_args("training", configs, root, *extra), nproc=2, timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert len(re.findall(r"(Supervised|JRAS)Trainer - INFO - Engine run finished", log)) == 2  # both ranks
    # only rank 0 builds TensorBoard writers: every event file (events.out.tfevents.<time>.<host>.<pid>.<n>)
    # comes from one process, none is an empty file of rank 1
    events = list((root / "eval" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and len({e.name.split(".")[-2] for e in events}) == 1, sorted(e.name for e in events)
    return log


@pytest.mark.parametrize(
    ("bundle", "overrides"),
    [
        ("tirnet_lmis", tiny_args("tirnet_lmis")),
        pytest.param(
            "tgcnet_lmis",
            tiny_args("tgcnet_lmis"),
            marks=pytest.mark.slow,  # same multi_gpu_train.json as TIRNet's; nightly
        ),
    ],
)
def test_text_bundles_torchrun_two_ranks_gloo(tmp_path, bundle, overrides):
    make_synthetic_lvit(tmp_path / "data", seed=0, size=48, n_train=8, n_val=4, n_test=2)
    _torchrun(bundle, tmp_path, 1, "--batch_size", "2", *overrides)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["checkpoint.pt", "model.pt", "run_record.json"]
    state = torch.load(tmp_path / "models" / "checkpoint.pt", weights_only=True)
    assert state["trainer"]["iteration"] == 2  # 8 images / 2 ranks / batch 2


def test_jras_torchrun_two_ranks_gloo(tmp_path):
    make_synthetic_acdc(tmp_path / "data", seed=0, n_patients=8, shape=(32, 32, 4))
    small = [*tiny_args("jras_segmentation"), "--batch_size", "4"]
    log = _torchrun("jras_segmentation", tmp_path, 2, *small)
    models = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert models == ["checkpoint.pt", "gallery.pt", "index.pt", "model.pt", "run_record.json"]
    # the contrastive gradients are averaged across ranks, so both ranks rebuilt identical indexes
    fingerprints = re.findall(r"retrieval index rebuilt: \d+ items, retriever ([0-9a-f]+)", log)
    assert len(fingerprints) == 2 * 2 * 2 and len(set(fingerprints[-2:])) == 1


@pytest.mark.slow  # nightly: the default run keeps TIRNet's and J-RAS's torchrun tests
def test_ct_organs_torchrun_two_ranks_gloo(tmp_path):
    make_synthetic_msd(tmp_path / "data", seed=0, n_cases=8, shape=(32, 32, 8))
    small = [*tiny_args("tgcnet_ct_organs"), "--samples_per_volume", "2"]
    _torchrun("tgcnet_ct_organs", tmp_path, 1, "--split_fractions", "[0.5,0.25,0.25]", *small)  # 4/2/2 volumes
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["checkpoint.pt", "model.pt", "run_record.json"]
    state = torch.load(tmp_path / "models" / "checkpoint.pt", weights_only=True)
    assert state["trainer"]["iteration"] == 2  # 4 volumes / 2 ranks / batch 1


def _rank_metric(rank: int, world: int, init_file: str, out: str) -> None:
    from ignite.engine import Engine
    from monai.handlers import from_engine

    from lmseg_components.metrics import GlobalDice, PerImageDice

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    pred, gt = torch.zeros(4, 1, 4, 4), torch.zeros(4, 1, 4, 4)
    gt[:, :, :2, :2] = 1
    pred[0, :, :2, :2] = 1  # image 0 perfect, image 1 half, images 2-3 missed
    pred[1, :, :1, :2] = 1
    mine = [2 * rank, 2 * rank + 1]  # rank 0 sees images 0-1, rank 1 images 2-3
    engine = Engine(lambda e, i: {"pred": pred[i : i + 1], "label": gt[i : i + 1]})
    PerImageDice(output_transform=from_engine(["pred", "label"])).attach(engine, "mdice")
    GlobalDice(output_transform=from_engine(["pred", "label"])).attach(engine, "gdice")
    engine.run(mine, max_epochs=1)
    torch.save(dict(engine.state.metrics), f"{out}.{rank}")
    dist.destroy_process_group()


def test_metrics_are_reduced_across_ranks(tmp_path):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = str(tmp_path / "metrics")
    mp.spawn(_rank_metric, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    expected_mdice = (1.0 + 2 * 2 / (2 + 4) + 0 + 0) / 4
    expected_gdice = 2 * (4 + 2) / ((4 + 2) + 16)
    for rank in range(2):
        metrics = torch.load(f"{out}.{rank}", weights_only=True)
        assert abs(metrics["mdice"] - expected_mdice) < 1e-6
        assert abs(metrics["gdice"] - expected_gdice) < 1e-6


def _rank_joint_step(rank: int, world: int, init_file: str, out: str) -> None:
    """One JRASTrainer iteration of a DDP-wrapped J-RAS network on this rank's own slices."""
    from monai.engines import PrepareBatchExtraInput
    from monai.losses import DiceCELoss
    from torch.nn.parallel import DistributedDataParallel

    from lmseg_components.engines import ContrastiveObjective, JRASTrainer
    from lmseg_components.engines.jras import _broadcast_buffers_from_rank0
    from lmseg_components.networks import GuidedSegmenter
    from lmseg_components.retrieval import RetrievalAugmentedSegmenter, Retriever

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)  # the same initial weights and gallery on both ranks
    retriever = Retriever(in_channels=1, embed_dim=16, hidden_dim=32, widen_factor=0.25)  # batch norm inside
    segmenter = GuidedSegmenter(1, 3, "unet", features=(4, 4, 8, 8, 16, 4))  # 32 px: 2 px at the bottom
    net = RetrievalAugmentedSegmenter(retriever, segmenter, k=2)
    labels = torch.randint(0, 3, (8, 1, 32, 32))
    net.set_gallery(torch.rand(8, 1, 32, 32), labels, [f"g{i}" for i in range(8)], [f"c{i}" for i in range(8)])
    net.rebuild_index()
    ddp = DistributedDataParallel(net, find_unused_parameters=True)
    torch.manual_seed(1 + rank)  # each rank its own batch
    batch = [
        {
            "image": torch.rand(1, 32, 32),
            "label": torch.randint(0, 3, (1, 32, 32)),
            "name": f"r{rank}_{i}",
            "case_id": f"p{rank}",
        }
        for i in range(2)
    ]
    trainer = JRASTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=torch.utils.data.DataLoader(batch, batch_size=2),
        network=ddp,
        optimizer=torch.optim.SGD(net.segmenter.parameters(), 0.1),
        retriever_optimizer=torch.optim.SGD(net.retriever.parameters(), 0.1),
        contrastive=ContrastiveObjective(num_candidates=4),
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        prepare_batch=PrepareBatchExtraInput(extra_keys={"exclude_ids": "name", "exclude_cases": "case_id"}),
    )
    trainer.run()
    bn = next(m for m in net.retriever.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    before_broadcast = bn.running_mean.clone()
    _broadcast_buffers_from_rank0(net.retriever)
    state = {
        "retriever": [p.detach() for p in net.retriever.parameters()],
        "local_mean": before_broadcast,
        "mean": bn.running_mean.clone(),
    }
    torch.save(state, f"{out}.{rank}")
    dist.destroy_process_group()


def test_contrastive_gradients_are_averaged_by_ddp_and_buffers_taken_from_rank0(tmp_path):
    """Two ranks, different batches, one joint iteration: the retrievers stay identical because the views are
    embedded inside the DDP forward (embedded outside it, as the old handler did without its hand-written
    all-reduce, they drift apart); before an index rebuild every rank takes rank 0's batch-norm statistics."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = str(tmp_path / "sync")
    mp.spawn(_rank_joint_step, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{rank}", weights_only=True) for rank in range(2)]
    pairs = zip(ranks[0]["retriever"], ranks[1]["retriever"], strict=True)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in pairs)
    assert not torch.equal(ranks[0]["local_mean"], ranks[1]["local_mean"])  # each rank's forward moved its own
    assert torch.equal(ranks[0]["mean"], ranks[1]["mean"]) and torch.equal(ranks[1]["mean"], ranks[0]["local_mean"])
