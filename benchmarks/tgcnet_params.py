"""TGC-Net trainable vs frozen parameter counts at the reference configuration (ViT-L/14 at 336, CNN at 768) and
at the small CPU configuration of the bundle (random tower weights: the counts do not depend on the weights), for
each setting of the ViT fine-tuning ablation (``clip_trainable_blocks``: 0 frozen, the method; N the last N blocks;
-1 all, with the embeddings).

    python benchmarks/tgcnet_params.py
    python benchmarks/tgcnet_params.py --settings 0,-1

The counts go to ``benchmarks/results/tgcnet_params.json`` (``--results`` another folder), which the TGC-Net docs
render (``python benchmarks/results.py``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import fire

from lmseg_components.networks import TGCNet, count_parameters

if __package__ in (None, ""):  # run as a script: the repository root holds the benchmarks package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.results import RESULTS_DIR, provenance, save_results  # noqa: E402

CONFIGS = {
    "reference": {
        "text_dim": 768,
        "clip_model": "ViT-L-14-336-quickgelu",
        "dim": 256,
        "cnn_width": 64,
        "n_heads": 8,
        "n_deform_layers": 2,
        "cost_dim": 128,
    },
    "small.json": {
        "text_dim": 384,
        "clip_model": "ViT-B-16-quickgelu",
        "clip_image_size": 64,
        "dim": 64,
        "cnn_width": 16,
        "n_heads": 4,
        "cost_dim": 32,
    },
}


def main(settings: str | int | tuple = (0, 1, 2, 4, -1), results: str = str(RESULTS_DIR)) -> None:
    """Print one row per configuration and ``clip_trainable_blocks`` setting (comma-separated on the command
    line) and write them as a result. Each network is built once, frozen; the settings are applied to its tower in
    turn."""
    started = time.perf_counter()
    values = [int(v) for v in str(settings).strip("()").split(",") if v.strip()]
    rows = {}
    print(f"{'configuration':<12} {'clip_trainable_blocks':>21} {'trainable':>10} {'frozen':>9}")
    for name, kwargs in CONFIGS.items():
        net = TGCNet(**kwargs)
        for n in values:
            net.sse.vit.set_trainable_blocks(n)
            counts = count_parameters(net)
            label = "all (-1)" if n == -1 else "0 (frozen)" if n == 0 else str(n)
            print(f"{name:<12} {label:>21} {counts['trainable'] / 1e6:>9.2f}M {counts['frozen'] / 1e6:>8.1f}M")
            row = {"trainable_millions": counts["trainable"] / 1e6, "frozen_millions": counts["frozen"] / 1e6}
            rows[f"{name}, clip_trainable_blocks {label}"] = [row]
    print("frozen: the CLIP image tower's frozen part; the frozen text tower runs outside the network (its token")
    print("features are cached on disk). ln_post and proj of the tower never train: the tapped grids skip them.")
    caption = (
        "TGC-Net parameters in millions: reference = ViT-L-14-336, CNN at 768 px, dim 256, CNN width 64, 2 deformable "
        "layers, cost width 128; small.json = ViT-B-16 at 64 px, CNN at 128 px, dim 64, CNN width 16, cost width 32. "
        "Frozen: the frozen part of the CLIP image tower (the text tower runs outside the network). The counts do not "
        "depend on the weights (one run)."
    )
    columns = [("trainable_millions", "trainable (M)"), ("frozen_millions", "frozen (M)")]
    measured = provenance("tgcnet_lmis", "cpu", [0], started)
    path = save_results("tgcnet_params", rows, columns, measured, caption, {"settings": values}, Path(results))
    print(f"result: {path}")


if __name__ == "__main__":
    fire.Fire(main)
