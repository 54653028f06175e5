"""Model-Zoo-style checks for every bundle under bundles/ (see lmseg_components.apps.bundle_checks); exits 1 on any
failure.

    python ci/verify_bundles.py [--bundles_dir bundles] [--settings_file ci/bundles.json]
"""

import fire

from lmseg_components.apps.cli import verify_bundles

if __name__ == "__main__":
    fire.Fire(verify_bundles)
