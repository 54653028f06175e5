"""``lmseg serve`` over HTTP (the page's own requests, without a browser): each prompt's mask is the one ``lmseg
segment`` writes, a volume comes back with one overlay per slice, and a bad upload gets status 400 and one line
that names the uploaded file (never a temporary path, a stack or an object's address)."""

from __future__ import annotations

import base64
import io
import json
import threading
import urllib.error
import urllib.request

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from test_segment import PROMPT, _chest, _model

from lmseg_components.apps.segment import segment
from lmseg_components.apps.serve import SegmentService, make_server

OTHER_PROMPT = "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A random-init TIRNet behind ``make_server`` on a free loopback port: (base URL, model, service)."""
    model = _model(tmp_path_factory.mktemp("serve") / "run", "tirnet_lmis")
    service = SegmentService(model)  # the bundle told from the run record
    server = make_server(service, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", model, service
    server.shutdown()
    server.server_close()


def _post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/segment", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _upload(url: str, name: str, data: bytes, prompts: list[str]) -> tuple[int, dict]:
    body = {"filename": name, "data": base64.b64encode(data).decode(), "prompts": prompts}
    return _post(url, json.dumps(body).encode())


def _png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_page_and_info(served):
    url, _, _ = served
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/html") and b'id="prompts"' in response.read()
    with urllib.request.urlopen(f"{url}/info", timeout=30) as response:
        info = json.loads(response.read())
    assert info["bundle"] == "tirnet_lmis" and info["takes_text"] and not info["volumes"]
    assert ".png" in info["accepts"] and ".nii.gz" not in info["accepts"]


def test_each_prompt_gets_lmseg_segments_mask(served, tmp_path):
    url, model, _ = served
    pixels = _chest()
    Image.fromarray(pixels).save(tmp_path / "chest.png")
    status, answer = _upload(url, "chest.png", _png_bytes(pixels), [PROMPT, "", OTHER_PROMPT])
    assert status == 200, answer
    assert [r["entry"]["text"] for r in answer["results"]] == [PROMPT, OTHER_PROMPT]  # blank lines dropped
    for i, prompt in enumerate((PROMPT, OTHER_PROMPT)):
        (written,) = segment(tmp_path / "chest.png", "tirnet_lmis", model, tmp_path / f"masks{i}", prompt)
        expected = np.asarray(Image.open(tmp_path / f"masks{i}" / written["mask"]))
        result = answer["results"][i]
        served_mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(result["mask"]))))
        assert np.array_equal(served_mask, expected) and 0 < (expected > 0).mean() < 1
        assert result["mask_name"] == written["mask"] == "chest_mask.png" and len(result["overlays"]) == 1
        assert Image.open(io.BytesIO(base64.b64decode(result["overlays"][0]))).size[0] >= pixels.shape[1]
        assert {k: v for k, v in result["entry"].items() if k != "inference_ms"} == {
            **{k: v for k, v in written.items() if k != "inference_ms"},
            "image": "chest.png",
        }
    assert answer["results_json"] == [r["entry"] for r in answer["results"]]


@pytest.mark.parametrize(
    "name, data, prompts, expected",
    [
        ("notes.txt", b"hello", [PROMPT], "notes.txt: not an image lmseg reads (.png, .jpg"),
        ("broken.png", b"not a png at all", [PROMPT], "broken.png: tirnet_lmis cannot segment it ("),
        ("empty.png", b"", [PROMPT], "empty.png: the file is empty"),
        ("chest.png", None, [], "chest.png: type a prompt"),
        ("ct.nii.gz", b"\x00" * 400, [PROMPT], "ct.nii.gz is a 3-D volume; tirnet_lmis segments 2-D images"),
    ],
)
def test_bad_upload_gets_one_line_naming_it(served, name, data, prompts, expected):
    url, _, _ = served
    status, answer = _upload(url, name, _png_bytes(_chest()) if data is None else data, prompts)
    assert status == 400 and set(answer) == {"error"}, answer
    message = answer["error"]
    assert message.startswith(expected) and "\n" not in message, message
    assert "lmseg-serve-" not in message and "object at 0x" not in message and "Traceback" not in message


def test_a_request_that_is_not_the_pages_json_is_refused(served):
    url, _, _ = served
    status, answer = _post(url, b"{not json")
    assert status == 400 and "not the page's JSON" in answer["error"]
    status, answer = _upload(url, "chest.png", _png_bytes(_chest()), "a string, not a list")  # type: ignore[arg-type]
    assert status == 400 and answer["error"] == "prompts must be a list of sentences"


def test_a_volume_comes_back_with_one_overlay_per_slice(tmp_path):
    model = _model(tmp_path / "run", "tgcnet_ct_organs")
    rng = np.random.default_rng(0)
    volume = rng.normal(40, 30, (36, 30, 7)).astype(np.float32)
    volume[8:20, 6:18, 2:6] += 120
    image = tmp_path / "ct_1.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.7, 2.5, 1.0])), str(image))
    service = SegmentService(model, "tgcnet_ct_organs")  # its run record has the 2D TGC-Net's keys too
    assert service.info()["volumes"] and service.info()["example_prompts"]  # the organ prompts
    answer = service.segment("ct_1.nii.gz", image.read_bytes(), [])  # no prompt: every organ
    (result,) = answer["results"]
    (written,) = segment(image, "tgcnet_ct_organs", model, tmp_path / "masks")
    expected = np.asarray(nib.load(str(tmp_path / "masks" / written["mask"])).dataobj)
    mask_file = tmp_path / "served.nii.gz"
    mask_file.write_bytes(base64.b64decode(result["mask"]))
    assert np.array_equal(np.asarray(nib.load(str(mask_file)).dataobj), expected)
    assert len(result["overlays"]) == volume.shape[2]
    assert result["best_slice"] == int(np.argmax((expected > 0).sum(axis=(0, 1)))) and 0 < (expected > 0).mean()
    assert result["entry"]["text"] == written["text"] and len(written["text"]) > 1
    with pytest.raises(ValueError, match=r"^ct_1.png is a 2-D image; tgcnet_ct_organs segments 3-D volumes"):
        service.segment("ct_1.png", _png_bytes(_chest()), [])


def test_unknown_model_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt does not exist"):
        SegmentService(tmp_path / "nope.pt")
