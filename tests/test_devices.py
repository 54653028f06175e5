"""The device as users type it (``--device cpu``, ``cuda``, ``cuda:1``, a ``torch.device`` expression): every
bundle config resolves it once (``torch_device``), and what reads the device (AMP, the CLIP tower's dtype, the
engines, ``map_location``) reads that."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
from bundle_cli import BUNDLES

from lmseg_components.devices import DeviceError, resolve_device
from lmseg_components.workflows import load_bundle

TEXT_BUNDLES_WITH_CLIP = ("tgcnet_lmis", "tgcnet_ct_organs")
ALL_BUNDLES = ("tirnet_lmis", "tgcnet_lmis", "tgcnet_ct_organs", "jras_segmentation")
# (what the user types, the device it names)
FORMS = [
    ("cpu", torch.device("cpu")),
    ("cuda", torch.device("cuda")),
    ("cuda:1", torch.device("cuda:1")),
    ("$torch.device('cuda:1')", torch.device("cuda:1")),
    ("$torch.device('cpu')", torch.device("cpu")),
]


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine with two CUDA devices, as far as the device checks can tell."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.mark.parametrize("value", ["cpu", " CPU ", torch.device("cpu")])
def test_resolve_cpu_forms(value):
    assert resolve_device(value) == torch.device("cpu")


@pytest.mark.parametrize(
    "value, expected", [("cuda", "cuda"), ("cuda:1", "cuda:1"), (torch.device("cuda:0"), "cuda:0")]
)
def test_resolve_cuda_forms(two_gpus, value, expected):
    assert resolve_device(value) == torch.device(expected)


@pytest.mark.parametrize("value", ["gpu0", "", "cuda:x", "mps", 0, None, torch.device("meta")])
def test_unknown_device_names_the_value_and_the_forms(value):
    with pytest.raises(DeviceError) as error:
        resolve_device(value)
    message = str(error.value)
    assert "\n" not in message and repr(str(value) if isinstance(value, torch.device) else value) in message
    assert "cpu, cuda, cuda:N or a torch.device" in message


def test_cuda_device_this_machine_lacks(two_gpus, monkeypatch):
    with pytest.raises(DeviceError, match=r"2 CUDA device\(s\), cuda:0 to cuda:1"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA device; use --device cpu"):
        resolve_device("cuda")


def _parsed(bundle: str, configs: list[str], device: str) -> dict:
    parser = load_bundle(BUNDLES / bundle, configs, {"device": device})
    values = {key: parser.get_parsed_content(key) for key in ("torch_device", "amp")}
    if bundle in TEXT_BUNDLES_WITH_CLIP:
        values["clip_dtype"] = parser.get_parsed_content("clip_dtype")
    return values


@pytest.mark.parametrize("bundle", ALL_BUNDLES)
@pytest.mark.parametrize("configs", [["train.json", "small.json"], ["inference.json", "small.json"]], ids=str)
@pytest.mark.parametrize("typed, device", FORMS, ids=[f[0] for f in FORMS])
def test_config_reads_each_form(two_gpus, bundle, configs, typed, device):
    values = _parsed(bundle, configs, typed)
    assert values["torch_device"] == device
    assert values["amp"] is (device.type == "cuda")
    if bundle in TEXT_BUNDLES_WITH_CLIP:
        assert values["clip_dtype"] == ("float16" if device.type == "cuda" else None)


@pytest.mark.parametrize("bundle", ALL_BUNDLES)
def test_multi_gpu_overlay_resolves_the_local_rank(two_gpus, monkeypatch, bundle):
    monkeypatch.setenv("LOCAL_RANK", "1")
    parser = load_bundle(BUNDLES / bundle, ["train.json", "small.json", "multi_gpu_train.json"])
    assert parser.get_parsed_content("torch_device") == torch.device("cuda:1")


def test_every_config_reads_the_resolved_device():
    """Only ``torch_device`` reads the typed ``device``: a config that read ``@device`` itself would break on one
    of the forms (``'cpu'.type``)."""
    readers = {}
    for path in sorted(BUNDLES.glob("*/configs/*.json")):
        for line in path.read_text().splitlines():
            if re.search(r"@device\b", line) and not line.strip().startswith('"torch_device":'):
                readers.setdefault(str(path.relative_to(BUNDLES)), []).append(line.strip())
    assert not readers, json.dumps(readers, indent=1)


def test_unknown_device_on_the_command_line_is_one_line(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--meta_file", "configs/metadata.json",
         "--config_file", "['configs/train.json','configs/small.json']", "--bundle_root", str(tmp_path),
         "--dataset_dir", str(tmp_path / "data"), "--device", "gpu0"],
        cwd=BUNDLES / "tirnet_lmis", capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == (
        "error: --device 'gpu0' is not a device: use cpu, cuda, cuda:N or a torch.device expression such as "
        "\"$torch.device('cuda:1')\"."
    )
    assert "Traceback" not in run.stderr
