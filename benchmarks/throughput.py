"""Training and inference throughput of each bundle, at its paper setting (``train.json``) and its CPU setting
(``+ small.json``), with MONAI's BasicUNet of the same width and input size timed in the same process.

Each row runs the bundle's own ``train.json`` (in-process, as ``python -m monai.bundle run training`` does) on a
synthetic set for one short epoch, ``warmup + iterations`` training steps, then its validation evaluator for as
many batches. A :class:`~lmseg_components.engines.ThroughputMeter` on the trainer and on the evaluator gives
images/s (CT validation: volumes/min) and the share of the step time spent waiting for data; a sampler thread
records the peak memory from building the workflow to the end of validation (CUDA: ``max_memory_allocated``;
CPU: the process's resident set above its level before the row: network, cached data, activations) and, on
CUDA, the GPU busy share (``torch.cuda.utilization``, NVML). The BasicUNet (``features`` from the bundle's width:
TIRNet ``width``, TGC-Net ``cnn_width``, J-RAS ``features[0]``) takes the same input batch shape: a training
step with DiceCE, and one forward per validation batch. Hub weights are replaced by random ones of
the same architecture (``clip_pretrained`` / ``text_pretrained`` None): the speed does not depend on the values.

    python benchmarks/throughput.py --out runs/throughput                       # every bundle, both settings
    python benchmarks/throughput.py --bundles tirnet_lmis --settings small --iterations 20 --amp False
    python benchmarks/throughput.py --device cuda --iterations 50               # GPU: AMP on (the default)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import monai
import torch
from ignite.engine import Events
from monai.losses import DiceCELoss
from monai.networks.nets import BasicUNet

from lmseg_components.data import make_synthetic_acdc, make_synthetic_lvit, make_synthetic_msd
from lmseg_components.engines import ThroughputMeter
from lmseg_components.workflows import SMALL_CONFIG, bundle_dir, device_expression, run_workflow

if __package__ in (None, ""):  # run as a script: the repository root holds the benchmarks package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.script import check_overrides, run_script  # noqa: E402

BUNDLES = ("tirnet_lmis", "tgcnet_lmis", "tgcnet_ct_organs", "jras_segmentation")
SETTINGS = {"small": ["train.json", SMALL_CONFIG], "paper": ["train.json"]}
LVIT = ("lvit", lambda out: make_synthetic_lvit(out, size=128, n_train=96, n_val=16, n_test=4))
DATA = {  # bundle -> (data folder, generator)
    "tirnet_lmis": LVIT,
    "tgcnet_lmis": LVIT,
    "tgcnet_ct_organs": ("msd", lambda out: make_synthetic_msd(out, n_cases=8)),
    "jras_segmentation": ("acdc", lambda out: make_synthetic_acdc(out, n_patients=6)),
}
NO_HUB = {"tirnet_lmis": ["text_pretrained"], "tgcnet_lmis": ["text_pretrained", "clip_pretrained"]}
NO_HUB["tgcnet_ct_organs"] = NO_HUB["tgcnet_lmis"]


class _Sampler:
    """Peak memory and (CUDA) GPU busy share between ``start()`` and ``stop()``, sampled every 50 ms."""

    def __init__(self, device: torch.device):
        self.cuda = self.nvml = device.type == "cuda"
        self.peak_bytes, self.busy = 0, []
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            if self.nvml:
                self.busy.append(torch.cuda.utilization())
            if not self.cuda:
                self.peak_bytes = max(self.peak_bytes, self._rss() - self._base)

    def start(self) -> _Sampler:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            try:
                torch.cuda.utilization()
            except (ModuleNotFoundError, RuntimeError) as e:  # NVML (nvidia-ml-py) missing or not usable
                print(f"GPU busy share not sampled: {e}", flush=True)
                self.nvml = False
        self._base = self._rss()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self.cuda:
            self.peak_bytes = torch.cuda.max_memory_allocated()


def _width(parser) -> int:
    for key in ("width", "cnn_width"):
        if key in parser:
            return int(parser.get_parsed_content(key))
    return int(parser.get_parsed_content("features")[0])


def _time_unet(unet, image: torch.Tensor, n: int, train: bool) -> float:
    """Median seconds of a BasicUNet training step (DiceCE, AdamW) or forward on ``image``."""
    loss_fn, optimizer = DiceCELoss(sigmoid=True), torch.optim.AdamW(unet.parameters(), lr=1e-4)
    target = (torch.rand_like(image[:, :1]) > 0.5).float()
    times = []
    for _ in range(n + 1):
        start = time.perf_counter()
        if train:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(unet(image), target).backward()
            optimizer.step()
        else:
            with torch.no_grad():
                unet(image)
        if image.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def _row(
    bundle: str,
    setting: str,
    data: Path,
    run_dir: Path,
    device: torch.device,
    device_config: str,
    warmup: int,
    iterations: int,
    num_workers: int,
    overrides: dict,
) -> dict:
    steps = warmup + iterations
    config = {
        "bundle_root": str(run_dir),
        "dataset_dir": str(data),
        "device": device_config,
        "num_workers": num_workers,
        "epochs": 1,
        "train#trainer#epoch_length": steps,
        "validate#evaluator#epoch_length": steps,
        **{key: None for key in NO_HUB.get(bundle, [])},
        **overrides,
    }
    meters: dict[str, ThroughputMeter] = {}
    shapes: dict[str, tuple] = {}

    def attach(parser) -> None:
        for name, engine_id, warm in (("train", "train#trainer", warmup), ("infer", "validate#evaluator", 1)):
            engine = parser.get_parsed_content(engine_id)
            meters[name] = ThroughputMeter(warm).attach(engine)
            engine.add_event_handler(
                Events.GET_BATCH_COMPLETED,
                lambda e, name=name: shapes.setdefault(name, tuple(e.state.batch["image"].shape)),
            )

    sampler = _Sampler(device).start()
    parser = run_workflow(
        bundle_dir(bundle), "training", SETTINGS[setting], config, logging_conf=False, before_run=attach
    )
    sampler.stop()
    train, infer = meters["train"].summary(), meters["infer"].summary()
    width = _width(parser)
    features = (width, 2 * width, 4 * width, 8 * width, 8 * width, width)
    unet = BasicUNet(len(shapes["train"]) - 2, shapes["train"][1], 1, features=features).to(device)
    unet_train = _time_unet(unet.train(), torch.rand(shapes["train"], device=device), iterations, train=True)
    same_rank = len(shapes["infer"]) == len(shapes["train"])  # CT validates volumes: no 2-D UNet to compare with
    unet_infer = (
        _time_unet(unet.eval(), torch.rand(shapes["infer"], device=device), iterations, False) if same_rank else None
    )
    compute = train["step_ms"] / 1e3 * (1 - train["data_wait_share"])
    infer_per_batch = infer["seconds"] / infer["iterations"]
    return {
        "bundle": bundle,
        "setting": setting,
        "train_batch": "x".join(map(str, shapes["train"])),
        "train_img_s": train["images_per_s"],
        "data_wait": train["data_wait_share"],
        "infer_rate": infer["images_per_s"] * (1 if same_rank else 60),
        "infer_unit": "img/s" if same_rank else "vol/min",
        "peak_gb": sampler.peak_bytes / 2**30,
        "gpu_busy": statistics.mean(sampler.busy) / 100 if sampler.busy else None,
        "train_ratio": compute / unet_train,
        "infer_ratio": infer_per_batch / unet_infer if unet_infer else None,
        "unet_width": width,
    }


def run(
    out: str = "runs/throughput",
    bundles: str | tuple = BUNDLES,
    settings: str | tuple = tuple(SETTINGS),
    device: str = "cpu",
    warmup: int = 1,
    iterations: int = 5,
    num_workers: int = 2,
    **overrides,
):
    names = bundles.split(",") if isinstance(bundles, str) else list(bundles)
    chosen = settings.split(",") if isinstance(settings, str) else list(settings)
    unknown = sorted(set(names) - set(BUNDLES)) + sorted(set(chosen) - set(SETTINGS))
    if unknown:
        raise SystemExit(
            f"error: unknown bundle or setting {unknown}; bundles {list(BUNDLES)}, settings {list(SETTINGS)}"
        )
    try:
        device_config = device_expression(device)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    check_overrides(overrides, names, ["train.json", SMALL_CONFIG])
    root, dev = Path(out).resolve(), torch.device(device)
    _print_header(dev, warmup, iterations, num_workers, overrides)
    rows = []
    for bundle in names:
        kind, make = DATA[bundle]
        data = root / "data" / kind
        if not data.is_dir():
            make(data)
        for setting in chosen:
            with tempfile.TemporaryDirectory(dir=root, prefix=f"{bundle}_{setting}_") as run_dir:  # a fresh run
                rows.append(
                    _row(
                        bundle,
                        setting,
                        data,
                        Path(run_dir),
                        dev,
                        device_config,
                        warmup,
                        iterations,
                        num_workers,
                        overrides,
                    )
                )
            _print_row(rows[-1])
    return rows


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def _print_header(device, warmup, iterations, num_workers, overrides) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    print(
        f"device {device} ({name}, {torch.get_num_threads()} threads), torch {torch.__version__}, MONAI "
        f"{monai.__version__}; {iterations} timed training steps after {warmup} warm-up, num_workers "
        f"{num_workers}, overrides {overrides}"
    )
    print(
        "| bundle | setting | train batch | train img/s | data wait | inference | peak mem GB | GPU busy | "
        "train / BasicUNet | infer / BasicUNet |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)


def _print_row(r: dict) -> None:
    """One table row, printed when it is measured (a long run keeps what it has)."""
    busy = "-" if r["gpu_busy"] is None else f"{r['gpu_busy']:.0%}"
    infer_ratio = "-" if r["infer_ratio"] is None else f"{r['infer_ratio']:.1f}"
    print(
        f"| {r['bundle']} | {r['setting']} | {r['train_batch']} | {r['train_img_s']:.2f} | {r['data_wait']:.0%} | "
        f"{r['infer_rate']:.2f} {r['infer_unit']} | {r['peak_gb']:.2f} | {busy} | {r['train_ratio']:.1f} "
        f"(width {r['unet_width']}) | {infer_ratio} |",
        flush=True,
    )


if __name__ == "__main__":
    run_script(run, __doc__)
