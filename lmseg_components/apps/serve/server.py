"""A trained bundle behind a local web page (``lmseg serve``): upload an image (PNG, JPEG, DICOM; NIfTI volumes for
the CT and cardiac bundles), type one or several prompts, see the overlays side by side (a slice slider for
volumes), download each mask and ``results.json``.

Each request runs :func:`~lmseg_components.apps.segment.segment_records`, what ``lmseg segment`` runs, into a
temporary folder, so the page's masks are those ``lmseg segment`` writes. The page is one HTML file served by the
standard library's HTTP server: the page needs an upload, a text box and images, and Gradio would add a web
framework and some forty packages (and calls to the network a hospital machine may not allow) for that.

Endpoints: ``GET /`` the page; ``GET /info`` the bundle (name, whether it takes prompts and volumes, its classes and
example prompts); ``POST /segment`` with JSON ``{"filename": "chest.png", "data": "<base64>", "prompts": ["..."]}``
answers ``{"results": [...], "results_json": [...]}`` or, for a bad upload, status 400 and ``{"error": "..."}``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import re
import tempfile
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from lmseg_components.apps.segment import load_predictor, segment_records
from lmseg_components.data.prompted import IMAGE_SUFFIXES
from lmseg_components.inference.overlays import busiest_slice, slice_overlays
from lmseg_components.inference.predictor import VOLUME_SUFFIXES, TextBundlePredictor, find_bundle
from lmseg_components.inference.writer import prompt_caption
from lmseg_components.runs import bundle_that_trained

__all__ = ["MAX_UPLOAD_BYTES", "SegmentService", "is_local", "make_server"]

MAX_UPLOAD_BYTES = 256 * 2**20  # a CT volume as .nii is ~100 MB
EXAMPLE_PROMPTS = {
    "tirnet_lmis": "Bilateral pulmonary infection, two infected areas, lower left lung and lower right lung.",
    "tgcnet_lmis": "Bilateral pulmonary infection, two infected areas, lower left lung and lower right lung.",
}


class SegmentService:
    """A trained bundle that segments uploaded files: what the page's requests call.

    Args:
        model: the trained checkpoint (``<run>/models/model.pt``, its ``run_record.json`` beside it).
        bundle: the bundle that trained it (a name or a folder); default the one bundle whose run record matches.
        device: ``cpu``, ``cuda`` or ``cuda:N`` (default CUDA when available).
        overrides: other bundle config values.
    """

    def __init__(
        self,
        model: str | Path,
        bundle: str | Path | None = None,
        device: str | None = None,
        overrides: dict | None = None,
    ):
        model = Path(model)
        if not model.is_file():
            raise FileNotFoundError(f"{model} does not exist (give the trained <run>/models/model.pt)")
        if bundle is None:
            bundle = bundle_that_trained(model.parent, option="--bundle")
        self.predictor = load_predictor(find_bundle(bundle), model, device, overrides)
        self.name = self.predictor.bundle.name
        self.takes_text = isinstance(self.predictor, TextBundlePredictor)
        self._lock = threading.Lock()  # one request at a time: the network (and J-RAS's retrievals) are shared

    def info(self) -> dict:
        """What the page shows about the model: the bundle, whether it takes prompts, volumes, its classes."""
        volumes = bool(getattr(self.predictor, "segments_volumes", False))
        default = getattr(self.predictor, "default_text", None)
        return {
            "bundle": self.name,
            "takes_text": self.takes_text,
            "volumes": volumes,
            "classes": getattr(self.predictor, "classes", []),
            "example_prompts": list(default) if default else [EXAMPLE_PROMPTS.get(self.name, "")][: self.takes_text],
            "accepts": list(VOLUME_SUFFIXES if volumes else [s for s in IMAGE_SUFFIXES if s not in VOLUME_SUFFIXES]),
        }

    def segment(self, filename: str, data: bytes, prompts: list[str]) -> dict:
        """Segment the uploaded file ``filename`` (its bytes ``data``) with each of ``prompts``.

        A 2-D text bundle segments the image once per prompt; the CT bundle takes all prompts at once (one organ
        each; none: every organ it knows); J-RAS takes none. Returns ``results`` (per segmentation: the
        ``results.json`` entry, the overlay PNG(s) and the mask file, base64) and ``results_json`` (the entries).

        Raises:
            ValueError: a file name or kind the bundle cannot take, an empty file, bad prompts, an image the bundle
                cannot read; the message names the uploaded file, never a temporary path.
        """
        name = Path(filename or "").name
        if not name.lower().endswith(IMAGE_SUFFIXES):
            raise ValueError(f"{name or 'the upload'}: not an image lmseg reads ({', '.join(IMAGE_SUFFIXES)})")
        if not data:
            raise ValueError(f"{name}: the file is empty")
        prompts = [p.strip() for p in prompts if p.strip()]
        if self.takes_text and not prompts and not getattr(self.predictor, "default_text", None):
            raise ValueError(f"{name}: type a prompt ({self.name} segments what the sentence describes)")
        if not self.takes_text and prompts:
            raise ValueError(f"{self.name} takes no prompt: it is guided by the cases of its memory bank")
        with tempfile.TemporaryDirectory(prefix="lmseg-serve-") as folder:
            image = Path(folder) / "upload" / name
            image.parent.mkdir()
            image.write_bytes(data)
            try:
                with self._lock:
                    return self._segment(image, prompts, Path(folder))
            except (ValueError, FileNotFoundError) as e:
                raise ValueError(str(e).replace(str(image), name)) from None

    def _segment(self, image: Path, prompts: list[str], folder: Path) -> dict:
        record = {"image": str(image)}
        if not self.takes_text:
            records = [record]
        elif getattr(self.predictor, "num_prompts", None):  # one prompt per class, all at once
            records = [{**record, "text": prompts} if prompts else record]
        else:
            records = [{**record, "text": p} for p in prompts]
        results, entries = [], []
        for i, one in enumerate(records):
            out = folder / f"out{i}"
            out.mkdir()
            (entry,) = segment_records(out, [one], self.predictor)
            entry = {**entry, "image": image.name}
            entries.append(entry)
            results.append({"entry": entry, **self._files(image, out, entry)})
        return {"results": results, "results_json": entries}

    def _files(self, image: Path, out: Path, entry: dict) -> dict:
        """The overlay(s) and the mask of one segmentation, base64: one overlay per axial slice of a volume."""
        mask_file = out / entry["mask"]
        files_ = {"mask_name": mask_file.name, "mask": _base64(mask_file.read_bytes())}
        if not mask_file.name.endswith(VOLUME_SUFFIXES):
            files_["overlays"] = [_base64((out / entry["overlay"]).read_bytes())]
            return files_
        labels = np.asarray(nib.load(str(mask_file)).dataobj)
        caption = prompt_caption(entry.get("text") or "J-RAS")
        overlays = slice_overlays(image, torch.as_tensor(labels)[None], caption)
        files_["overlays"] = [_base64(_png(overlay)) for overlay in overlays]
        files_["best_slice"] = busiest_slice(labels)
        return files_


def _png(picture) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def make_server(service: SegmentService, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """An HTTP server (not started: call ``serve_forever``) for ``service`` on ``host:port`` (port 0: a free one,
    ``server.server_address`` says which)."""
    page = files("lmseg_components.apps.serve").joinpath("page.html").read_bytes()
    logger = logging.getLogger(__name__)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            elif self.path == "/info":
                self._json(HTTPStatus.OK, service.info())
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}"})

        def do_POST(self) -> None:
            if self.path != "/segment":
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}"})
                return
            try:
                request = self._request()
                answer = service.segment(request["filename"], request["data"], request["prompts"])
            except ValueError as e:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
            except Exception as e:  # the page shows one line; the console keeps the stack for whoever runs it
                logger.exception("segmenting %s failed", self.headers.get("X-Filename", "an upload"))
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"lmseg failed: {type(e).__name__}: {e}"})
            else:
                self._json(HTTPStatus.OK, answer)

        def _request(self) -> dict:
            size = int(self.headers.get("Content-Length") or 0)
            if size > MAX_UPLOAD_BYTES:
                raise ValueError(f"the upload is {size / 2**20:.0f} MB; lmseg serve takes up to 256 MB")
            try:
                request = json.loads(self.rfile.read(size))
                data = base64.b64decode(request.get("data") or "", validate=True)
            except (json.JSONDecodeError, UnicodeDecodeError, binascii.Error, AttributeError):
                raise ValueError("the request is not the page's JSON (filename, base64 data, prompts)") from None
            prompts = request.get("prompts") or []
            if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
                raise ValueError("prompts must be a list of sentences")
            return {"filename": str(request.get("filename") or ""), "data": data, "prompts": prompts}

        def _json(self, status: HTTPStatus, body: dict) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # a quiet console: failures are logged above
            return

    return ThreadingHTTPServer((host, port), Handler)


def is_local(host: str) -> bool:
    """Whether ``host`` binds to this machine only."""
    return host in ("localhost", "::1") or bool(re.fullmatch(r"127(\.\d{1,3}){3}", host))
