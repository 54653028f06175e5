"""Run a bundle's workflows through ``python -m monai.bundle`` as a user would (helper for the bundle tests)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from lmseg_components.apps.bundle_checks import CHECK_SETTINGS, cli_overrides
from lmseg_components.workflows import BUNDLES_DIR, SMALL_CONFIG, run_monai_bundle

BUNDLES = BUNDLES_DIR
INFERENCE = ["configs/inference.json"]
EXPORTED_INFERENCE = ["configs/inference.json", "configs/inference_exported.json"]
# the device as users type it (the configs resolve the word into torch_device); the bundle tests run with it
CPU = ("--device", "cpu")
MLFLOW = ("--tracking", "mlflow")  # MONAI's own MLflow settings: runs in <bundle_root>/eval/mlruns.db (SQLite)


def with_small(configs: Sequence[str]) -> list[str]:
    """``configs`` with the bundle's CPU setting ``configs/small.json`` right after the first (the base config),
    so that later overlays (``evaluate.json``, ``busi.json``, ``inference_exported.json``) still apply over it;
    unchanged when it is there already."""
    small = f"configs/{SMALL_CONFIG}"
    return list(configs) if small in configs else [configs[0], small, *configs[1:]]


def small_values(bundle: str) -> dict:
    """The values of the bundle's ``configs/small.json``."""
    return json.loads((BUNDLES / bundle / "configs" / SMALL_CONFIG).read_text())


def small_record(bundle: str) -> dict:
    """What a run at the CPU setting records (``configs/small.json`` over ``train.json``): every plain value of the
    bundle's run record (``dataset``, a fingerprint of the data, aside)."""
    train = json.loads((BUNDLES / bundle / "configs" / "train.json").read_text())
    values = {**train, **small_values(bundle)}
    recorded = train["train"]["checkpoint"]["run_record"]
    return {k: values[k] for k, v in recorded.items() if v == f"@{k}"}


def tiny_network(bundle: str) -> dict:
    """The network and input size of the bundle's tiny setting, the one the bundle checks train with
    (:data:`~lmseg_components.apps.bundle_checks.CHECK_SETTINGS`): its overrides that ``inference.json`` also
    sets, less the loader's own (``num_workers``, ``sw_batch_size``)."""
    overrides = json.loads(CHECK_SETTINGS.read_text())[bundle]["overrides"]
    inference = json.loads((BUNDLES / bundle / "configs" / "inference.json").read_text())
    return {k: v for k, v in overrides.items() if k in inference and k not in ("num_workers", "sw_batch_size")}


def tiny_args(bundle: str) -> list[str]:
    """:func:`tiny_network` as ``monai.bundle`` options."""
    return cli_overrides(tiny_network(bundle))


TIRNET_TINY = tiny_network("tirnet_lmis")


def config_file(configs: Sequence[str]) -> str:
    """The ``--config_file`` value of ``configs``: one path, or a list as ``monai.bundle`` reads it."""
    return configs[0] if len(configs) == 1 else "[" + ",".join(f"'{c}'" for c in configs) + "]"


def run_bundle(
    bundle: str, workflow: str, configs: Sequence[str], root: Path, *extra: str, small: bool = True, **kwargs
) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run <workflow>`` in ``bundles/<bundle>`` with ``bundle_root=root`` and
    ``dataset_dir=root/data`` at the CPU setting (:func:`with_small`; ``small=False``: the paper defaults);
    ``extra`` are CLI overrides."""
    return run_monai_bundle(BUNDLES / bundle, bundle_args(workflow, configs, root, *extra, small=small), **kwargs)


def bundle_args(workflow: str, configs: Sequence[str], root: Path, *extra: str, small: bool = True) -> list[str]:
    """The ``monai.bundle`` arguments of :func:`run_bundle` (for a caller with its own launcher)."""
    config = config_file(with_small(configs) if small else configs)
    args = ["run", workflow, "--meta_file", "configs/metadata.json", "--config_file", config]
    args += ["--logging_file", "configs/logging.conf", "--bundle_root", str(root), "--dataset_dir", str(root / "data")]
    return [*args, *extra]


def monai_bundle(bundle: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <args>`` in ``bundles/<bundle>`` (verify_net_in_out, ckpt_export, ...)."""
    return run_monai_bundle(BUNDLES / bundle, args)


def lmseg(*args: str) -> subprocess.CompletedProcess:
    """The ``lmseg`` command line (``python -m lmseg_components.apps.cli``) with ``args``, output captured."""
    return subprocess.run([sys.executable, "-m", "lmseg_components.apps.cli", *args], capture_output=True, text=True)


@contextlib.contextmanager
def label_server(app: Path, studies: Path, models: str, log_path: Path, env: dict | None = None) -> Iterator[str]:
    """``monailabel start_server`` for ``app`` on a free loopback port, serving ``models``; yields its URL once
    ``/info/`` answers and stops it on exit (its output in ``log_path``)."""
    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app), "--studies", str(studies)]
    command += ["--conf", "models", models, "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=log_path.parent, env=env)
        try:
            for _ in range(240):
                if process.poll() is not None:
                    raise AssertionError(log_path.read_text()[-3000:])
                try:
                    if requests.get(f"{url}/info/", timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                time.sleep(1)
            else:
                raise AssertionError("server did not start: " + log_path.read_text()[-3000:])
            yield url
        finally:
            process.terminate()
            process.wait(timeout=60)


def train_and_export_tirnet(root: Path, seed: int = 0) -> Path:
    """Train a tiny TIRNet (``TIRNET_TINY``) one epoch through the CLI on 6/2/3 synthetic 48 px images under
    ``root``, export it with ``ckpt_export`` to ``root/models/model.ts`` and run the bundle's exported inference
    (``inference_exported.json``) into ``root/eval/inference``: the masks a deployed model must reproduce.
    Returns the TorchScript file."""
    from lmseg_components.apps.bundle_checks import cli_overrides
    from lmseg_components.data import make_synthetic_lvit

    make_synthetic_lvit(root / "data", seed=seed, size=48, n_train=6, n_val=2, n_test=3)
    tiny = cli_overrides(TIRNET_TINY) + ["--num_workers", "0", "--batch_size", "2"]
    run = run_bundle("tirnet_lmis", "training", ["configs/train.json"], root, *tiny, "--epochs", "1")
    assert run.returncode == 0, run.stderr[-3000:]
    ts = root / "models" / "model.ts"
    inference = config_file(with_small(INFERENCE))
    common = ["--meta_file", "configs/metadata.json", "--config_file", inference]
    args = ["ckpt_export", "network_def", "--filepath", str(ts), "--ckpt_file", str(root / "models" / "model.pt")]
    export = monai_bundle("tirnet_lmis", *args, *common, *cli_overrides(TIRNET_TINY))
    assert export.returncode == 0, export.stderr[-3000:]
    run = run_bundle("tirnet_lmis", "inference", EXPORTED_INFERENCE, root, *tiny)
    assert run.returncode == 0, run.stderr[-3000:]
    return ts


def mlflow_runs(root: Path) -> dict[str, set[str]]:
    """``{MONAI's run kind: metric names}`` of the finished MLflow runs that ``--tracking mlflow`` logged under
    ``root`` (``eval/mlruns.db``): ``training`` for the run with ``train_loss``, else ``evaluating``."""
    from mlflow.tracking import MlflowClient
    from monai.utils import path_to_sqlite_uri

    client = MlflowClient(tracking_uri=path_to_sqlite_uri(str(root / "eval" / "mlruns.db")))
    experiment = client.get_experiment_by_name("monai_experiment")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    assert all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    return {("training" if "train_loss" in r.data.metrics else "evaluating"): set(r.data.metrics) for r in runs}
