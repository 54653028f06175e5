"""TGC-Net trainable vs frozen parameter counts at the reference configuration (ViT-L/14 at 336, CNN at 768) and
at the small CPU configuration of the bundle (random tower weights: the counts do not depend on the weights).

    python benchmarks/tgcnet_params.py
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


def main() -> None:
    print(f"{'configuration':<48} {'trainable':>12} {'frozen (CLIP image tower)':>26}")
    for name, kwargs in CONFIGS.items():
        counts = count_parameters(TGCNet(**kwargs))
        print(f"{name:<48} {counts['trainable'] / 1e6:>11.2f}M {counts['frozen'] / 1e6:>25.1f}M")
    print("the frozen text tower runs outside the network (its token features are cached on disk)")


if __name__ == "__main__":
    fire.Fire(main)
