"""CPU (or GPU) inference time per image of the text-guided bundles' networks, as each bundle's
``inference.json`` builds them at the CPU setting ``small.json`` (``--key value`` overrides apply to every bundle).

The networks are timed in one process, interleaved round by round (median of ``rounds``), so the ratios to the
first bundle are robust to machine noise. Inputs are the bundles' example inputs (``network_data_format``):
one image at the bundle's ``image_size`` plus its text features; for ``tgcnet_ct_organs`` one axial slice with
its organ prompts.

    python benchmarks/inference_time.py --rounds 20
    python benchmarks/inference_time.py --bundles tirnet_lmis,tgcnet_lmis --image_size 128
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

from lmseg_components.export import bundle_example_inputs
from lmseg_components.networks import count_parameters
from lmseg_components.workflows import SMALL_CONFIG, bundle_dir, load_bundle

if __package__ in (None, ""):  # run as a script: the repository root holds the benchmarks package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.script import check_overrides, run_script  # noqa: E402

BUNDLES = ("tirnet_lmis", "tgcnet_lmis", "tgcnet_ct_organs")


@torch.no_grad()
def _time(network, inputs, named) -> float:
    start = time.perf_counter()
    network(*inputs, **named)
    if inputs[0].is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run(bundles: str | tuple = BUNDLES, rounds: int = 20, warmup: int = 3, device: str = "cpu", **overrides):
    names = [bundles] if isinstance(bundles, str) and "," not in bundles else bundles
    names = names.split(",") if isinstance(names, str) else list(names)
    check_overrides(overrides, names, ["inference.json", SMALL_CONFIG])
    device = torch.device(device)
    models = {}
    for name in names:
        parser = load_bundle(
            bundle_dir(name), ["inference.json", SMALL_CONFIG], {"device": f"$torch.device('{device}')", **overrides}
        )
        network = parser.get_parsed_content("network_def").to(device).eval()
        inputs, named = bundle_example_inputs(parser)
        models[name] = (
            network,
            [x.to(device) for x in inputs],
            {k: v.to(device) for k, v in named.items()},
            int(parser.get_parsed_content("image_size")),
        )
    for _ in range(warmup):
        for network, inputs, named, _ in models.values():
            _time(network, inputs, named)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, (network, inputs, named, _) in models.items():
            times[name].append(_time(network, inputs, named))
    threads = torch.get_num_threads()
    print(f"\ninference time per image, batch 1, {device} ({threads} threads), median of {rounds} rounds")
    print(f"{'bundle':<18} | {'image px':>8} | {'trainable':>9} | {'frozen':>8} | {'ms / image':>10} | {'ratio':>5}")
    print("-" * 75)
    first = statistics.median(times[names[0]])
    for name, (network, _, _, size) in models.items():
        ms = statistics.median(times[name])
        counts = count_parameters(network)
        print(
            f"{name:<18} | {size:>8} | {counts['trainable'] / 1e6:>8.2f}M | {counts['frozen'] / 1e6:>7.1f}M | "
            f"{ms * 1000:>10.1f} | {ms / first:>5.2f}"
        )


if __name__ == "__main__":
    run_script(run, __doc__)
