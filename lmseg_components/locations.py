"""Where the bundles are (inside an installed wheel, or ``bundles/`` of a source checkout), and the config ids a
bundle defines, read with the standard library only: the ``lmseg`` command checks its arguments and prints its help
without importing torch or MONAI."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["BUNDLES_DIR", "PACKAGE_DIR", "TEXT_BUNDLES", "bundle_folder", "config_ids"]

PACKAGE_DIR = Path(__file__).resolve().parent  # lmseg_components itself
# an installed wheel carries the bundles inside the package (setup.py); a source checkout has them beside it
BUNDLES_DIR = PACKAGE_DIR / "bundles" if (PACKAGE_DIR / "bundles").is_dir() else PACKAGE_DIR.parent / "bundles"
TEXT_BUNDLES = ("tirnet_lmis", "tgcnet_lmis", "tgcnet_ct_organs")  # the bundles that take a text prompt


def bundle_folder(bundle: str | Path) -> Path | None:
    """A bundle folder given by path or by name (``bundles/<name>`` of this checkout); None when there is none."""
    for candidate in (Path(bundle), BUNDLES_DIR / str(bundle)):
        if (candidate / "configs" / "metadata.json").is_file():
            return candidate
    return None


def config_ids(bundle: Path) -> set[str]:
    """The top-level ids of every JSON config of a bundle folder (what ``--<id> value`` may override)."""
    ids: set[str] = set()
    for path in sorted((bundle / "configs").glob("*.json")):
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(content, dict):
            ids |= {key.split("#")[0] for key in content}
    return ids
