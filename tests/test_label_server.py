"""MONAI Label integration: ``lmseg label-app`` serves a trained TIRNet bundle through ``monailabel
start_server``; the text prompt travels in the request params. Needs the ``label`` extra (``pip install
-e .[label,minilm]`` and pytest); run with ``python -m pytest -m label`` (the ``.ci/run-label`` job)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from bundle_cli import label_server, run_bundle
from PIL import Image

pytestmark = [pytest.mark.label, pytest.mark.bundle, pytest.mark.timeout(2400)]

requests = pytest.importorskip("requests")
pytest.importorskip("monailabel")

from lmseg_components.data import make_synthetic_lvit, read_lvit_split  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("label")
    make_synthetic_lvit(root / "data", seed=0, size=64, n_train=120, n_val=8, n_test=8)
    fast = ["--epochs", "15", "--learning_rate", "0.001", "--num_workers", "0"]  # about 2 minutes on 2 cores
    run = run_bundle("tirnet_lmis", "training", ["configs/train.json"], root, *fast)
    assert run.returncode == 0, run.stderr[-3000:]
    app = root / "app"
    make = [
        sys.executable,
        "-m",
        "lmseg_components.apps.cli",
        "label-app",
        "--out",
        str(app),
        "--bundles",
        "tirnet_lmis",
    ]
    made = subprocess.run([*make, "--tirnet_lmis", str(root / "models" / "model.pt")], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    studies = root / "studies"
    studies.mkdir()
    test = read_lvit_split(root / "data", "Test")
    for record in test:
        Image.open(record["image"]).save(studies / Path(record["image"]).name)
    with label_server(app, studies, "tirnet_lmis", root / "server.log") as url:
        yield url, root, test


def _infer(url: str, image_id: str, params: dict, output: str = "image") -> requests.Response:
    return requests.post(
        f"{url}/infer/tirnet_lmis",
        params={"image": image_id, "output": output},
        data={"params": json.dumps(params)},
        timeout=300,
    )


def _mask(response: requests.Response) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("L")) > 0


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(1.0, float(a.sum() + b.sum()))


def test_infer_with_text_prompt_returns_the_described_mask(server):
    url, _, test = server
    info = requests.get(f"{url}/info/", timeout=10).json()
    assert "tirnet_lmis" in info["models"]
    scores = []
    for record in test:
        response = _infer(url, Path(record["image"]).stem, {"text": record["text"]})
        assert response.status_code == 200, response.text[:500]
        mask, truth = _mask(response), np.asarray(Image.open(record["label"]).convert("L")) > 127
        assert mask.shape == truth.shape
        scores.append(_dice(mask, truth))
    assert np.mean(scores) > 0.3, scores  # a tiny model: 225 updates


def test_the_response_carries_the_presence_decision(server):
    url, _, test = server
    image_id = Path(test[0]["image"]).stem
    for text in (test[0]["text"], "Sternotomy wires are intact."):  # a report, a sentence that names nothing
        response = _infer(url, image_id, {"text": text}, output="json")
        assert response.status_code == 200, response.text[:500]
        result = response.json()
        assert isinstance(result["found"], bool) and 0.0 <= result["score"] <= 1.0, result
        assert result["found"] or not _mask(_infer(url, image_id, {"text": text})).any()


def test_params_are_data_not_config_expressions(server):
    url, root, test = server
    marker = root / "evaluated"
    payload = f"$__import__('pathlib').Path('{marker}').touch()"
    image_id = Path(test[0]["image"]).stem
    as_text = _infer(url, image_id, {"text": payload})
    assert as_text.status_code == 200  # encoded as an (odd) prompt, not run
    as_device = _infer(url, image_id, {"text": test[0]["text"], "device": payload})
    assert as_device.status_code >= 400 and "device" in as_device.text
    missing = _infer(url, image_id, {})
    assert missing.status_code >= 400 and "text" in missing.text
    assert not marker.exists()


def test_fifty_concurrent_requests(server):
    url, _, test = server
    jobs = [(Path(r["image"]).stem, r["text"]) for r in test] * 7
    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(lambda job: _infer(url, job[0], {"text": job[1]}), jobs[:50]))
    assert [r.status_code for r in responses] == [200] * 50
    assert all(_mask(r).shape == (64, 64) for r in responses)


def test_the_prompt_is_the_option_clients_show_and_send(server):
    """3D Slicer and OHIF list a model's config from ``/info`` as editable options and send them as the request's
    params: the prompt is such an option, so a client user types it there."""
    url, _, test = server
    config = requests.get(f"{url}/info/", timeout=10).json()["models"]["tirnet_lmis"]["config"]
    assert config["text"] == ""  # an empty text field for the report-style prompt
    image_id = Path(test[0]["image"]).stem
    typed = _infer(url, image_id, {**config, "text": test[0]["text"]}, output="json")
    assert typed.status_code == 200, typed.text[:500]
    assert isinstance(typed.json()["found"], bool)
    as_sent = _mask(_infer(url, image_id, {**config, "text": test[0]["text"]}))
    assert np.array_equal(as_sent, _mask(_infer(url, image_id, {"text": test[0]["text"]})))
    untouched = _infer(url, image_id, config)  # the option left empty: one line naming it, no mask
    assert untouched.status_code == 422 and "param 'text' is empty" in untouched.text, untouched.text[:500]
