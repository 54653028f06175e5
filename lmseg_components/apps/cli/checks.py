"""``lmseg verify-bundles``: the Model-Zoo-style checks of every bundle."""

from __future__ import annotations

import sys

__all__ = ["verify_bundles"]


def verify_bundles(bundles_dir: str | None = None, settings_file: str | None = None, checks=None) -> None:
    """Run the Model-Zoo-style checks on every bundle and print a bundle x check table; exit 1 on any failure.

    Args:
        bundles_dir: folder of bundles (default: ``bundles/`` of this checkout).
        settings_file: per-bundle check settings (default: ``lmseg_components/resources/bundle_checks.json``).
        checks: a comma-separated subset, e.g. ``files,metadata,json_style``.
    """
    from lmseg_components.apps.bundle_checks import verify_bundles as run_checks

    selected = checks.split(",") if isinstance(checks, str) else checks
    sys.exit(run_checks(bundles_dir, settings_file, selected))
