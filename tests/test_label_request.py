"""The MONAI Label tasks: the text task bounds a request's prompts (issue 13, item 7), the J-RAS task runs one
request at a time; runs in the label job (``.ci/run-label``)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.label

pytest.importorskip("monailabel")

from fastapi import HTTPException  # noqa: E402

from lmseg_components.apps.label.infer import MAX_PROMPTS, MAX_TEXT_LENGTH, validate_text_request  # noqa: E402

KEYS = {"text": "text_features", "aux_text": "aux_text_features"}


@pytest.mark.parametrize(
    "params, bad",
    [
        ({"text": ["organ"] * (MAX_PROMPTS + 1)}, "text"),
        ({"text": "x", "aux_text": ["y"] * (MAX_PROMPTS + 1)}, "aux_text"),
        ({"text": "x" * (MAX_TEXT_LENGTH + 1)}, "text"),
        ({"text": []}, "text"),
    ],
)
def test_too_many_or_too_long_prompts_are_refused(params, bad):
    with pytest.raises(HTTPException) as error:
        validate_text_request(params, KEYS)
    assert error.value.status_code == 422 and f"param {bad!r}" in error.value.detail
    assert f"1 to {MAX_PROMPTS} strings" in error.value.detail


def test_prompts_within_the_bounds_pass():
    request = {"text": ["organ"] * MAX_PROMPTS, "aux_text": "x" * MAX_TEXT_LENGTH, "device": "cpu"}
    assert validate_text_request(request, KEYS) == request


def test_jras_requests_and_bank_updates_run_one_at_a_time(tmp_path):
    """J-RAS's network keeps each forward's retrievals until the results are read: two requests (MONAI Label runs
    them in a thread pool with MONAI_LABEL_INFER_CONCURRENCY > 0) must never overlap inside the task."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    import torch
    from monai.data import MetaTensor

    from lmseg_components.apps.label.retrieval import RetrievalBundleInferTask
    from lmseg_components.workflows import BUNDLES_DIR

    inside, overlaps, lock = [0], [], threading.Lock()

    class SlowPredictor:  # stands for RetrievalBundlePredictor: notes any call that starts while another runs
        def check_kind(self, image):
            pass

        def __call__(self, record):
            with lock:
                inside[0] += 1
                overlaps.append(inside[0] > 1)
            time.sleep(0.05)
            with lock:
                inside[0] -= 1
            return {"pred": MetaTensor(torch.zeros(1, 4, 4, 2)), "retrieval": {"structures": {}, "slices": []}}

    task = RetrievalBundleInferTask(BUNDLES_DIR / "jras_segmentation")
    task._predictor = SlowPredictor()
    image = tmp_path / "frame.nii.gz"
    image.write_bytes(b"")
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: task({"image": str(image)}), range(12)))
    assert len(results) == 12 and not any(overlaps)
    assert all(Path(label).name.endswith("_label.nii.gz") for label, _ in results)
