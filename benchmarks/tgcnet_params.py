"""TGC-Net trainable vs frozen parameter counts at the reference configuration (ViT-L/14 at 336, CNN at 768) and
at the small CPU configuration of the bundle (random tower weights: the counts do not depend on the weights), for
each setting of the ViT fine-tuning ablation (``clip_trainable_blocks``: 0 frozen, the method; N the last N blocks;
-1 all, with the embeddings).

    python benchmarks/tgcnet_params.py
    python benchmarks/tgcnet_params.py --settings 0,-1
"""

from __future__ import annotations

import fire

from lmseg_components.networks import TGCNet, count_parameters

CONFIGS = {
    "reference (ViT-L-14-336, 768 px CNN)": {
        "text_dim": 768,
        "clip_model": "ViT-L-14-336-quickgelu",
        "dim": 256,
        "cnn_width": 64,
        "n_heads": 8,
        "n_deform_layers": 2,
        "cost_dim": 128,
    },
    "bundle CPU default (ViT-B-16 at 64, 128 px CNN)": {
        "text_dim": 384,
        "clip_model": "ViT-B-16-quickgelu",
        "clip_image_size": 64,
        "dim": 64,
        "cnn_width": 16,
        "n_heads": 4,
        "cost_dim": 32,
    },
}


def main(settings: str | int | tuple = (0, 1, 2, 4, -1)) -> None:
    """Print one row per configuration and ``clip_trainable_blocks`` setting (comma-separated on the command
    line). Each network is built once, frozen; the settings are applied to its tower in turn."""
    values = [int(v) for v in str(settings).strip("()").split(",") if v.strip()]
    print(f"{'configuration':<48} {'clip_trainable_blocks':>21} {'trainable':>10} {'frozen':>9}")
    for name, kwargs in CONFIGS.items():
        net = TGCNet(**kwargs)
        for n in values:
            net.sse.vit.set_trainable_blocks(n)
            counts = count_parameters(net)
            label = "all (-1)" if n == -1 else "0 (frozen)" if n == 0 else str(n)
            print(f"{name:<48} {label:>21} {counts['trainable'] / 1e6:>9.2f}M {counts['frozen'] / 1e6:>8.1f}M")
    print("frozen: the CLIP image tower's frozen part; the frozen text tower runs outside the network (its token")
    print("features are cached on disk). ln_post and proj of the tower never train: the tapped grids skip them.")


if __name__ == "__main__":
    fire.Fire(main)
