"""Export a bundle's network with ``torch.export`` (for networks TorchScript cannot script, such as TGC-Net with
its open_clip tower) or to ONNX (for onnxruntime, TensorRT, Triton), and load either as a module that MONAI
engines can run."""

from __future__ import annotations

import copy
import inspect
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from torch import nn

from lmseg_components.files import atomic_write, prepare_output_file
from lmseg_components.runs import RUN_RECORD_FILE, load_trained_bundle
from lmseg_components.workflows import load_bundle

__all__ = [
    "EXPORT_FORMATS",
    "ExportedNetwork",
    "OnnxNetwork",
    "export_onnx",
    "bundle_example_inputs",
    "example_inputs",
    "export_bundle",
    "export_program",
    "prepare_bundle_export",
    "network_inputs",
]


def export_program(
    network: nn.Module, inputs: Sequence[torch.Tensor], path: str | Path, named: dict[str, torch.Tensor] | None = None
) -> Path:
    """``torch.export`` ``network`` (in eval mode) on example positional ``inputs`` and keyword ``named`` inputs
    and save it atomically to ``path``. The program has the examples' static shapes (batch 1, the text context
    length) and takes the keyword inputs by name."""
    network.eval()
    program = torch.export.export(network, tuple(inputs), kwargs=named or {})
    return atomic_write(path, lambda tmp: torch.export.save(program, tmp))


ONNX_SIZE_LIMIT = 2**31  # bytes: protobuf's limit on one ONNX file


def export_onnx(
    network: nn.Module, inputs: Sequence[torch.Tensor], path: str | Path, named: dict[str, torch.Tensor] | None = None
) -> Path:
    """Export ``network`` (in eval mode) to ONNX with ``torch.onnx.export(dynamo=True)`` on example positional
    ``inputs`` (the image) and keyword ``named`` inputs (``text``, ``aux_text``), saved atomically to ``path``.
    The graph's inputs are named ``image`` and the keyword names, its output ``pred``; the batch axis is dynamic
    where the network allows it (TIRNet), else 1 (TGC-Net: :class:`OnnxNetwork` then runs a batch item by item).
    The weights are inside the one file (a network of 2 GiB or more is refused: ONNX's protobuf limit). Needs
    ``pip install onnx onnxscript``."""
    named = named or {}
    network.eval()
    first = next(iter(inspect.signature(network.forward).parameters))
    batch = torch.export.Dim("batch", min=1, max=1024)
    dynamic = {first: {0: batch}, **{name: {0: batch} for name in named}}

    size = sum(t.numel() * t.element_size() for t in network.state_dict().values())
    if size >= ONNX_SIZE_LIMIT:
        raise ValueError(
            f"the network's weights are {size / 2**30:.1f} GiB: ONNX holds at most 2 GiB in one file, and this export "
            "writes one file (weights inside), so that copying model.onnx copies the model"
        )

    def write(tmp: str) -> None:
        # weights inside the file: torch's default puts them in `<tmp name>.data`, which the rename leaves behind
        torch.onnx.export(
            network,
            tuple(inputs),
            tmp,
            kwargs=named,
            input_names=["image", *named],
            output_names=["pred"],
            dynamic_shapes=dynamic,
            dynamo=True,
            external_data=False,
        )

    with torch.no_grad():
        written = atomic_write(path, write)
    stale = Path(path).with_name(Path(path).name + ".data")  # weights an earlier export kept beside the file
    stale.unlink(missing_ok=True)
    return written


class OnnxNetwork(nn.Module):
    """An ONNX file (:func:`export_onnx`) run by onnxruntime, as a module MONAI engines call: ``forward(image,
    text=..., aux_text=...)`` with torch tensors, returning a torch tensor on the image's device. ``train()`` /
    ``eval()`` change nothing. A graph exported with batch 1 runs a larger batch one item at a time.

    Args:
        path: the ``.onnx`` file.
        providers: onnxruntime execution providers (default: CUDA first when onnxruntime has it, then CPU).
    """

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None):
        super().__init__()
        try:
            import onnxruntime
        except ImportError as e:
            raise ImportError("running an ONNX model needs onnxruntime: pip install onnxruntime") from e
        if not Path(path).is_file():
            raise FileNotFoundError(f"no ONNX model at {path}: run `lmseg export --format onnx` first.")
        available = onnxruntime.get_available_providers()
        providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            session = onnxruntime.InferenceSession(str(path), providers=list(providers))
        except Exception as e:  # onnxruntime's own exception types: InvalidProtobuf, Fail, ...
            raise ValueError(f"{path}: not a readable ONNX model ({e})") from e
        self._session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.batch_one = session.get_inputs()[0].shape[0] == 1

    def forward(self, *inputs: torch.Tensor, **named: torch.Tensor) -> torch.Tensor:
        feed = dict(zip(self.input_names, inputs, strict=False)) | named
        unknown = set(feed) - set(self.input_names)
        if unknown:
            raise ValueError(f"the ONNX model takes {self.input_names}, not {sorted(unknown)}")
        device = inputs[0].device if inputs else next(iter(named.values())).device
        arrays = {name: value.detach().cpu().float().numpy() for name, value in feed.items()}
        size = max(len(a) for a in arrays.values())
        if self.batch_one and size > 1:  # an input of batch 1 (one prompt for every window) serves every item
            items = [{n: a[i : i + 1] if len(a) == size else a for n, a in arrays.items()} for i in range(size)]
            outputs = [self._session.run(["pred"], item)[0] for item in items]
            return torch.from_numpy(np.concatenate(outputs)).to(device)
        return torch.from_numpy(self._session.run(["pred"], arrays)[0]).to(device)


class ExportedNetwork(nn.Module):
    """A saved ``torch.export`` program as a module: ``forward(*inputs)`` runs it. ``train()`` / ``eval()`` are
    accepted (engines call them) and change nothing: the program was exported in eval mode. Inputs are passed by
    position or by the original forward's names (``text=``, ``aux_text=``, as ``PrepareBatchExtraInput`` does)."""

    def __init__(self, path: str | Path):
        super().__init__()
        if not Path(path).is_file():
            raise FileNotFoundError(f"no exported program at {path}: run `lmseg export` first.")
        # kept out of the module tree: the engines call train() / eval(), which an exported program refuses
        # ("Calling train() is not supported yet") and which would otherwise reach it as a submodule
        object.__setattr__(self, "_program", torch.export.load(str(path)).module())

    def forward(self, *inputs: torch.Tensor, **named: torch.Tensor) -> torch.Tensor:
        return self._program(*inputs, **named)


def network_inputs(parser: ConfigParser) -> dict:
    """The ``network_data_format`` inputs of the bundle's metadata with the shapes its config sets (the
    metadata describes the default, paper, network; ``small.json`` and overrides change sizes and widths): the
    image's spatial shape from ``image_size``; for the text bundles also the image channels from
    ``in_channels`` and every token input's width and length from the ``text_encoder``'s ``token_dim`` and
    ``text_context_length`` (one prompt per organ keeps its prompt axis: ``[P, L]``). J-RAS stacks its guides
    onto the image, so its metadata's channel count stands."""
    inputs = copy.deepcopy(parser.get_parsed_content("_meta_")["network_data_format"]["inputs"])
    image = inputs["image"]
    if "image_size" in parser:
        image["spatial_shape"] = [int(parser.get_parsed_content("image_size"))] * len(image["spatial_shape"])
    tokens = [name for name, spec in inputs.items() if name != "image" and spec.get("type") == "tokens"]
    if tokens:
        if "in_channels" in parser:
            image["num_channels"] = int(parser.get_parsed_content("in_channels"))
        width = int(parser.get_parsed_content("text_encoder").token_dim)
        length = int(parser.get_parsed_content("text_context_length"))
        for name in tokens:
            inputs[name]["num_channels"] = width
            inputs[name]["spatial_shape"] = [*inputs[name]["spatial_shape"][:-1], length]
    return inputs


def example_inputs(inputs: dict) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Random example inputs of ``network_data_format`` ``inputs`` (see :func:`network_inputs`): the image
    (positional, (1, C, *spatial)) and every token input (``text``, ``aux_text``: the forward's argument names)
    as (1, *spatial_shape, num_channels) features, e.g. (1, L, D), or (1, P, L, D) for one prompt per organ."""
    image = inputs["image"]
    named = {
        name: torch.randn(1, *spec["spatial_shape"], spec["num_channels"])
        for name, spec in inputs.items()
        if name != "image" and spec.get("type") == "tokens"
    }
    return [torch.rand(1, image["num_channels"], *image["spatial_shape"])], named


def bundle_example_inputs(parser: ConfigParser) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """:func:`example_inputs` of a parsed bundle config (:func:`network_inputs`)."""
    return example_inputs(network_inputs(parser))


def prepare_bundle_export(
    bundle: str | Path, ckpt: str | Path | None = None, overrides: dict | None = None
) -> tuple[nn.Module, list[torch.Tensor], dict[str, torch.Tensor], Path]:
    """Build ``network_def`` from the bundle's ``inference.json``, load the checkpoint (default
    ``<bundle_root>/models/model.pt``) and make example inputs; returns the network (eval mode), positional and
    keyword inputs, and ``bundle_root``. The config values the network was trained with
    (:func:`~lmseg_components.runs.trained_values` of the checkpoint's folder: image size, text context length,
    network settings) apply under the CLI-style ``overrides``; an override that contradicts a trained value raises
    ``ValueError``."""
    root = Path(load_bundle(bundle, ["inference.json"], overrides).get_parsed_content("bundle_root"))
    ckpt = Path(ckpt) if ckpt else root / "models" / "model.pt"
    parser = load_trained_bundle(bundle, ["inference.json"], ckpt.parent, overrides)
    network = parser.get_parsed_content("network_def")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    network.load_state_dict(state)
    inputs, named = bundle_example_inputs(parser)
    return network.eval(), inputs, named, root


EXPORT_FORMATS = {"pt2": export_program, "onnx": export_onnx}


def export_bundle(
    bundle: str | Path,
    ckpt: str | Path | None = None,
    out: str | Path | None = None,
    overrides: dict | None = None,
    overwrite: bool = False,
    format: str = "pt2",
) -> Path:
    """Export the bundle's trained ``network_def`` (see :func:`prepare_bundle_export`) as a ``torch.export``
    program (``format="pt2"``, :func:`export_program`) or ONNX (``"onnx"``, :func:`export_onnx`) to
    ``models/model.<format>`` under ``bundle_root`` (or ``out``, with a copy of the checkpoint's
    ``run_record.json``). An existing file is replaced only with ``overwrite``; the checkpoint is never written
    over (see :func:`~lmseg_components.files.prepare_output_file`)."""
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {sorted(EXPORT_FORMATS)}, got {format!r}")
    network, inputs, named, root = prepare_bundle_export(bundle, ckpt, overrides)
    checkpoint = Path(ckpt) if ckpt else root / "models" / "model.pt"
    default = root / "models" / f"model.{format}"
    path = prepare_output_file(Path(out) if out else default, overwrite, sources=[checkpoint])
    EXPORT_FORMATS[format](network, inputs, path, named)
    record = checkpoint.parent / RUN_RECORD_FILE
    if record.is_file() and path.parent != record.parent.resolve():  # the trained values travel with the program
        shutil.copy2(record, path.parent / RUN_RECORD_FILE)
    return path
