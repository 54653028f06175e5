"""MONAI Label serves J-RAS with its memory bank: ``lmseg label-app`` installs the model, gallery and index of a
trained run, ``monailabel start_server`` answers ``/infer`` with the label volume of a frame and, in the result
JSON, the gallery cases that guided each slice; a label saved through ``/datastore/label`` joins the bank and the
next request retrieves it. Needs the ``label`` extra; run with ``python -m pytest -m label`` (``.ci/run-label``)."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_cli import CPU, label_server, lmseg, run_bundle, tiny_args

pytestmark = [pytest.mark.label, pytest.mark.bundle, pytest.mark.timeout(2400)]

requests = pytest.importorskip("requests")
pytest.importorskip("monailabel")

from lmseg_components.data import make_synthetic_acdc, read_acdc_frames  # noqa: E402

TINY = [*tiny_args("jras_segmentation"), "--num_workers", "0", "--batch_size", "4", *CPU]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("label_jras")
    make_synthetic_acdc(root / "data", seed=0, n_patients=8, shape=(32, 32, 4))
    run = run_bundle("jras_segmentation", "training", ["configs/train.json"], root, *TINY, "--epochs", "3")
    assert run.returncode == 0, run.stderr[-3000:]
    app = root / "app"
    made = lmseg("label-app", "--out", str(app), "--bundles", "jras_segmentation", "--jras_segmentation",
                 str(root / "models" / "model.pt"))  # fmt: skip
    assert made.returncode == 0, made.stderr
    served = {p.name for p in (app / "model" / "jras_segmentation" / "models").iterdir()}
    assert {"gallery.pt", "index.pt", "run_record.json"} <= served
    studies = root / "studies"
    studies.mkdir()
    frames = read_acdc_frames(root / "data", "test")
    for frame in frames:  # the frames to label, without their ground truth
        shutil.copy(frame["image"], studies / f"{frame['name']}.nii.gz")
    # inference in a pool of 4 threads (MONAI Label runs it in the request's event loop otherwise, one at a time)
    env = dict(os.environ, MONAI_LABEL_INFER_CONCURRENCY="4")
    with label_server(app, studies, "jras_segmentation", root / "server.log", env) as url:
        yield url, app / "model" / "jras_segmentation", frames


def _infer(url: str, image_id: str, output: str) -> requests.Response:
    return requests.post(
        f"{url}/infer/jras_segmentation",
        params={"image": image_id, "output": output},
        data={"params": "{}"},
        timeout=300,
    )


def _volume(response: requests.Response) -> np.ndarray:
    return np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(response.content)).dataobj)  # a .nii.gz


def test_info_lists_the_structures_of_a_3d_model(server):
    url, _, _ = server
    model = requests.get(f"{url}/info/", timeout=10).json()["models"]["jras_segmentation"]
    assert model["dimension"] == 3
    assert model["labels"] == {"right ventricle": 1, "myocardium": 2, "left ventricle": 3}


def test_infer_returns_the_label_volume_and_the_guides_of_each_slice(server):
    url, bundle, frames = server
    frame = frames[0]
    response = _infer(url, frame["name"], "image")
    assert response.status_code == 200, response.text[:500]
    labels = _volume(response)
    image = nib.load(frame["image"])
    assert labels.shape == image.shape and set(np.unique(labels).tolist()) <= {0, 1, 2, 3}
    result = _infer(url, frame["name"], "json").json()
    assert [s["slice"] for s in result["slices"]] == list(range(image.shape[2]))
    gallery = torch.load(bundle / "models" / "gallery.pt", weights_only=True)
    for s in result["slices"]:  # guides from the training gallery, never the frame's own patient
        assert len(s["guides"]) == 2 and all(g["id"] in gallery["ids"] for g in s["guides"])
        assert all(g["case_id"] != frame["case_id"] for g in s["guides"])
    voxel_ml = float(np.prod(image.header.get_zooms()[:3])) / 1000
    assert result["structures"]["left ventricle"]["ml"] == pytest.approx((labels == 3).sum() * voxel_ml, abs=1e-3)


def test_concurrent_requests_get_their_own_frames_guides(server):
    url, _, frames = server
    alone = {f["name"]: _infer(url, f["name"], "json").json()["slices"] for f in frames[:2]}
    jobs = [f["name"] for f in frames[:2]] * 6
    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda name: _infer(url, name, "json"), jobs))
    assert [r.status_code for r in responses] == [200] * len(jobs)
    for name, response in zip(jobs, responses, strict=True):  # each request's guides are its own frame's
        assert response.json()["slices"] == alone[name]


def test_a_saved_label_joins_the_bank_and_guides_the_next_request(server):
    url, bundle, frames = server
    frame = frames[-1]
    saved = requests.put(
        f"{url}/datastore/label",
        params={"image": frame["name"]},
        files={"label": (f"{frame['name']}.nii.gz", open(frame["label"], "rb"))},
        timeout=300,
    )
    assert saved.status_code == 200, saved.text[:500]
    shape = nib.load(frame["image"]).shape
    assert saved.json()["bank"] == {"jras_segmentation": {"case_id": frame["name"], "slices": shape[2]}}
    user = torch.load(bundle / "models" / "user_gallery.pt", weights_only=True)
    assert user["ids"] == [f"{frame['name']}_z{z:02d}" for z in range(shape[2])]
    result = _infer(url, frame["name"], "json").json()
    # a request names no patient, so nothing is excluded: the frame's own labelled slices, in the bank now, guide it
    best = [s["guides"][0] for s in result["slices"]]
    assert [g["id"] for g in best] == [f"{frame['name']}_z{z:02d}" for z in range(shape[2])]
    assert all(g["similarity"] > 0.999 for g in best)


def test_a_label_of_the_wrong_shape_is_refused_naming_it(server, tmp_path):
    url, _, frames = server
    wrong = tmp_path / "wrong.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 2), np.uint8), np.eye(4)), wrong)
    saved = requests.put(
        f"{url}/datastore/label",
        params={"image": frames[0]["name"]},
        files={"label": ("wrong.nii.gz", io.BytesIO(wrong.read_bytes()))},
        timeout=300,
    )
    assert saved.status_code == 422 and "differs from the image's" in json.dumps(saved.json()), saved.text[:500]
