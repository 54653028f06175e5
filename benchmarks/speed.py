"""Train-step and inference time of TIRNet vs MONAI's BasicUNet at the same width and image size.

Both networks are timed in the same process, interleaved round by round, so the ratio is robust to machine
noise. Prints a table; the ratio column is TIRNet / BasicUNet.

    python benchmarks/speed.py --width 16 --size 128 --batch 8
"""

from __future__ import annotations

import statistics
import time

import fire
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import BasicUNet

from lmseg_components.losses import MSISLoss
from lmseg_components.networks import TIRNet


def _train_step(net, loss_fn, optimizer, image, text, target) -> float:
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    out = net(image, text) if text is not None else net(image)
    loss_fn(out, target).backward()
    optimizer.step()
    if image.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


@torch.no_grad()
def _infer(net, image, text) -> float:
    start = time.perf_counter()
    net(image, text) if text is not None else net(image)
    if image.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(width: int = 16, size: int = 128, batch: int = 8, text_dim: int = 384, rounds: int = 10, device: str = "cpu"):
    torch.manual_seed(0)
    dev = torch.device(device)
    tirnet = TIRNet(in_channels=1, width=width, text_dim=text_dim).to(dev)
    unet = BasicUNet(2, 1, 1, features=(width, 2 * width, 4 * width, 8 * width, 8 * width, width)).to(dev)
    image = torch.rand(batch, 1, size, size, device=dev)
    text = torch.randn(batch, 32, text_dim, device=dev)
    target = (torch.rand(batch, 1, size, size, device=dev) > 0.8).float()
    setups = {
        "TIRNet": (tirnet, MSISLoss(), text),
        "BasicUNet": (unet, DiceCELoss(sigmoid=True, lambda_dice=0.5, lambda_ce=0.5), None),
    }
    optimizers = {k: torch.optim.AdamW(v[0].parameters(), lr=1e-4) for k, v in setups.items()}
    train = {k: [] for k in setups}
    infer = {k: [] for k in setups}
    for r in range(rounds + 2):
        for name, (net, loss_fn, txt) in setups.items():
            net.train()
            t = _train_step(net, loss_fn, optimizers[name], image, txt, target)
            net.eval()
            i = _infer(net, image[:1], None if txt is None else txt[:1])
            if r >= 2:  # two warm-up rounds
                train[name].append(t)
                infer[name].append(i)
    params = {k: sum(p.numel() for p in v[0].parameters()) for k, v in setups.items()}
    med = {k: (statistics.median(train[k]), statistics.median(infer[k])) for k in setups}
    print(f"device={device} width={width} size={size} batch={batch} rounds={rounds} (medians)")
    print(f"{'network':<10} {'params':>10} {'train step ms':>14} {'infer ms/img':>13}")
    for name in setups:
        print(f"{name:<10} {params[name]:>10,} {med[name][0] * 1e3:>14.1f} {med[name][1] * 1e3:>13.1f}")
    ratio_train = med["TIRNet"][0] / med["BasicUNet"][0]
    ratio_infer = med["TIRNet"][1] / med["BasicUNet"][1]
    print(f"{'ratio':<10} {'':>10} {ratio_train:>14.2f} {ratio_infer:>13.2f}")
    return {"train_ratio": ratio_train, "infer_ratio": ratio_infer}


if __name__ == "__main__":
    fire.Fire(main)
