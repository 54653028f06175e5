"""Shared fixtures: small synthetic datasets and the real MiniLM text encoder."""

from __future__ import annotations

import pytest

from lmseg_components.data import make_synthetic_lvit, make_synthetic_msd


@pytest.fixture(scope="session")
def lvit_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lvit")
    make_synthetic_lvit(root, seed=1, size=64, n_train=12, n_val=4, n_test=4)
    return root


@pytest.fixture(scope="session")
def msd_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("msd")
    make_synthetic_msd(root, seed=1, n_cases=3, shape=(24, 24, 10))
    return root


@pytest.fixture(scope="session")
def minilm():
    from lmseg_components.text import create_text_encoder

    return create_text_encoder("minilm")
