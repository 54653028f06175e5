"""The MONAI Label task bounds a request's prompts (issue 13, item 7); runs in the label job (``.ci/run-label``)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.label

pytest.importorskip("monailabel")

from fastapi import HTTPException  # noqa: E402

from lmseg_components.label.infer import MAX_PROMPTS, MAX_TEXT_LENGTH, validate_text_request  # noqa: E402

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
