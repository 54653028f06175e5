"""Synthetic datasets written in the real layouts, so every workflow runs and is tested without real data.

One module per layout: ``lvit`` (chest radiographs + reports), ``msd`` (CT volumes), ``acdc`` (cardiac MRI),
``busi`` (breast ultrasound); ``shapes`` holds the image primitives they share. The same seed and options give
identical files and records.
"""

from lmseg_components.data.synthetic.acdc import (
    CARDIAC_DIFFICULTIES,
    CARDIAC_SCANNERS,
    CardiacDifficulty,
    CardiacScanner,
    make_synthetic_acdc,
)
from lmseg_components.data.synthetic.busi import BUSI_CLASSES, make_synthetic_busi
from lmseg_components.data.synthetic.lvit import (
    ALL_ZONES,
    LUNG_LEVELS,
    LUNG_SIDES,
    UNRELATED_PROMPTS,
    LungZone,
    describe_zones,
    make_synthetic_lvit,
    paraphrase_zones,
)
from lmseg_components.data.synthetic.msd import SYNTHETIC_ORGANS, make_synthetic_msd

__all__ = [
    "LUNG_LEVELS",
    "LUNG_SIDES",
    "LungZone",
    "describe_zones",
    "paraphrase_zones",
    "UNRELATED_PROMPTS",
    "make_synthetic_lvit",
    "make_synthetic_msd",
    "make_synthetic_acdc",
    "make_synthetic_busi",
    "BUSI_CLASSES",
    "CARDIAC_DIFFICULTIES",
    "CARDIAC_SCANNERS",
    "CardiacDifficulty",
    "CardiacScanner",
    "SYNTHETIC_MAKERS",
    "SYNTHETIC_ORGANS",
    "ALL_ZONES",
]


SYNTHETIC_MAKERS = {  # layout kind -> writer (``lmseg make-synthetic --kind``, the checks' ``synthetic.kind``)
    "lvit": make_synthetic_lvit,
    "msd": make_synthetic_msd,
    "acdc": make_synthetic_acdc,
    "busi": make_synthetic_busi,
}
