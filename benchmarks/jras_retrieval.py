"""J-RAS: the same segmentation backbone with and without retrieval, same data, same number of supervised
updates, on the synthetic ACDC-like set (split by patient). Prints mean foreground Dice and HD95 (pixels) on
the test patients.

    python benchmarks/jras_retrieval.py --epochs 20 --n_patients 20
"""

from __future__ import annotations

import time
from pathlib import Path

import fire
import torch
from monai.data import DataLoader
from monai.engines import PrepareBatchExtraInput, SupervisedTrainer
from monai.losses import DiceCELoss
from monai.utils import set_determinism

from lmseg_components.data import load_slices, make_synthetic_acdc, read_acdc_slices, split_by_case
from lmseg_components.engines import ContrastiveStep, RebuildIndex, RetrievalHitRate
from lmseg_components.metrics import per_class_dice_hd95
from lmseg_components.networks import GuidedSegmenter
from lmseg_components.retrieval import RetrievalAugmentedSegmenter, Retriever


def _stack(items, key):
    return torch.stack([i[key] for i in items])


def train_and_test(backbone, use_retrieval, train, test, epochs, seed, k, batch_size) -> dict:
    set_determinism(seed)
    retriever = Retriever(in_channels=1, embed_dim=64, hidden_dim=128, widen_factor=0.5)
    segmenter = GuidedSegmenter(1, 4, backbone, use_retrieval=use_retrieval)
    net = RetrievalAugmentedSegmenter(retriever, segmenter, k=k)
    net.set_gallery(
        _stack(train, "image"), _stack(train, "label"), [t["name"] for t in train], [t["case_id"] for t in train]
    )
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=DataLoader(train, batch_size=batch_size, shuffle=True),
        network=net,
        optimizer=torch.optim.AdamW(segmenter.parameters(), 1e-3),
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        prepare_batch=PrepareBatchExtraInput(extra_keys={"exclude_ids": "name", "exclude_cases": "case_id"}),
        train_handlers=[
            RebuildIndex(net),
            ContrastiveStep(net, torch.optim.AdamW(retriever.parameters(), 1e-3)),
            RetrievalHitRate(net, num_classes=4),
        ],
    )
    start = time.perf_counter()
    trainer.run()
    minutes = (time.perf_counter() - start) / 60
    net.eval()
    if use_retrieval:
        net.rebuild_index()
    with torch.no_grad():
        images, labels = _stack(test, "image"), _stack(test, "label")
        pred = torch.cat([net(images[i : i + 32]).argmax(1, keepdim=True) for i in range(0, len(images), 32)])
    keep = labels.flatten(1).amax(1) > 0  # slices with some structure (HD95 is undefined on empty ones)
    scores = per_class_dice_hd95(pred[keep], labels[keep], num_classes=4)
    return {
        "dice": torch.nanmean(scores["dice"]).item(),
        "hd95": torch.nanmean(scores["hd95"][torch.isfinite(scores["hd95"])]).item(),
        "minutes": minutes,
        "updates": trainer.state.iteration,
        "hit_rate": trainer.state.metrics.get("retrieval_hit_rate", float("nan")),
    }


def main(
    out: str = "runs/jras_benchmark",
    epochs: int = 20,
    n_patients: int = 20,
    seed: int = 0,
    k: int = 2,
    batch_size: int = 16,
    backbones: str | tuple = ("unet", "segformer"),
):
    data = Path(out) / "acdc"
    if not data.is_dir():
        make_synthetic_acdc(data, seed=seed, n_patients=n_patients, shape=(64, 64, 8))
    train, _, test = split_by_case(read_acdc_slices(data), (0.7, 0.1, 0.2), seed=seed)
    train, test = load_slices(train), load_slices(test)
    names = [backbones] if isinstance(backbones, str) else list(backbones)
    print(f"synthetic ACDC-like: {len(train)} train / {len(test)} test slices, {epochs} epochs, k={k}")
    rows = []
    for backbone in names:
        for use_retrieval in (False, True):
            r = train_and_test(backbone, use_retrieval, train, test, epochs, seed, k, batch_size)
            rows.append((backbone, use_retrieval, r))
            print(f"[{backbone} retrieval={use_retrieval}] {r}", flush=True)
    print(
        f"\n{'backbone':<10} {'retrieval':<9} {'mean Dice':>9} {'HD95 px':>8} {'updates':>8} {'hit rate':>8} {'min':>5}"
    )
    for backbone, use_retrieval, r in rows:
        print(
            f"{backbone:<10} {str(use_retrieval):<9} {r['dice']:>9.4f} {r['hd95']:>8.2f} {r['updates']:>8} "
            f"{r['hit_rate']:>8.3f} {r['minutes']:>5.1f}"
        )


if __name__ == "__main__":
    fire.Fire(main)
