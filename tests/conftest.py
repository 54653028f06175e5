"""Shared fixtures: small synthetic datasets, the real MiniLM text encoder, and bundles trained through the CLI."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from bundle_cli import run_bundle

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


@pytest.fixture(scope="session")
def train_bundle(tmp_path_factory) -> Callable[..., tuple[Path, str]]:
    """A factory for the modules' ``trained`` fixtures: ``train_bundle(bundle, make_data, *cli_args)`` writes
    ``make_data(<root>/data)`` into a new folder, runs ``python -m monai.bundle run training`` of the bundle's
    ``configs`` (default ``train.json``) at its CPU setting with ``cli_args`` (see :func:`bundle_cli.run_bundle`),
    checks that it succeeded and returns the run's ``bundle_root`` and its log."""

    def train(
        bundle: str,
        make_data: Callable[[Path], object],
        *cli_args: str,
        configs: Sequence[str] = ("configs/train.json",),
    ) -> tuple[Path, str]:
        root = tmp_path_factory.mktemp(bundle)
        make_data(root / "data")
        run = run_bundle(bundle, "training", configs, root, *cli_args)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        return root, run.stdout + run.stderr

    return train
