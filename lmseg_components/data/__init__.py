"""Dataset readers for the real layouts, a synthetic generator writing the same layouts, text transforms.

The text transforms pull in MONAI and the text encoders; they are imported on first use, so the readers and
the generator (and the ``lmseg make-synthetic`` / ``check-data`` commands) start in a fraction of a second.
"""

from lmseg_components.data.acdc import (
    ACDC_LABELS,
    ACDC_PARTS,
    check_acdc,
    check_busi,
    read_acdc_frames,
    read_acdc_slices,
    read_acdc_split,
    read_busi,
    read_busi_split,
    read_images_to_segment,
)
from lmseg_components.data.check import check_dataset, detect_layout
from lmseg_components.data.lvit import (
    LVIT_SPLITS,
    TRAINING_SPLITS,
    binary_mask_problem,
    check_images_readable,
    check_lvit,
    find_text_table,
    read_lvit_split,
    read_text_table,
)
from lmseg_components.data.msd import (
    ORGAN_PROMPT,
    check_msd,
    organ_prompt,
    read_msd,
    read_msd_labels,
    read_msd_split,
)
from lmseg_components.data.problems import DataProblem, DatasetValidationError
from lmseg_components.data.prompted import IMAGE_SUFFIXES, PROMPTS_FILES, read_prompted_images, read_prompts_file
from lmseg_components.data.splits import PARTS, select_part, split_by_case
from lmseg_components.data.synthetic import (
    SYNTHETIC_MAKERS,
    UNRELATED_PROMPTS,
    describe_zones,
    make_synthetic_acdc,
    make_synthetic_busi,
    make_synthetic_lvit,
    make_synthetic_msd,
    paraphrase_zones,
)
from lmseg_components.data.to_segment import (
    read_acdc_to_segment,
    read_busi_to_segment,
    read_lvit_to_segment,
    read_msd_to_segment,
)

__all__ = [
    "read_acdc_to_segment",
    "read_busi_to_segment",
    "read_lvit_to_segment",
    "read_msd_to_segment",
    "IMAGE_SUFFIXES",
    "PROMPTS_FILES",
    "read_prompted_images",
    "read_prompts_file",
    "ACDC_LABELS",
    "make_synthetic_acdc",
    "SYNTHETIC_MAKERS",
    "make_synthetic_busi",
    "read_acdc_slices",
    "read_acdc_split",
    "read_acdc_frames",
    "read_images_to_segment",
    "ACDC_PARTS",
    "check_acdc",
    "check_busi",
    "read_busi",
    "read_busi_split",
    "split_by_case",
    "AsGreyd",
    "AuxiliaryPromptd",
    "BinaryMaskd",
    "PerSliced",
    "SelectSliced",
    "UniteChannelsd",
    "OneHotForegroundd",
    "MultiLabelToIndexd",
    "LVIT_SPLITS",
    "TRAINING_SPLITS",
    "binary_mask_problem",
    "check_images_readable",
    "ORGAN_PROMPT",
    "DataProblem",
    "DatasetValidationError",
    "EncodeTextd",
    "RandLeftRightFlipd",
    "RandNamesNothingd",
    "RandRephrased",
    "presence_records",
    "TextDropoutd",
    "text_augmentation",
    "check_dataset",
    "check_lvit",
    "check_msd",
    "describe_zones",
    "paraphrase_zones",
    "UNRELATED_PROMPTS",
    "detect_layout",
    "find_text_table",
    "make_synthetic_lvit",
    "make_synthetic_msd",
    "organ_prompt",
    "read_lvit_split",
    "read_msd",
    "read_msd_labels",
    "read_msd_split",
    "PARTS",
    "select_part",
    "read_text_table",
    "swap_left_right",
]


def __getattr__(name: str):
    if name in (
        "AuxiliaryPromptd",
        "EncodeTextd",
        "RandLeftRightFlipd",
        "RandNamesNothingd",
        "RandRephrased",
        "TextDropoutd",
        "presence_records",
        "swap_left_right",
        "text_augmentation",
    ):
        from lmseg_components.data import text_transforms

        return getattr(text_transforms, name)
    if name in (
        "AsGreyd",
        "BinaryMaskd",
        "PerSliced",
        "SelectSliced",
        "OneHotForegroundd",
        "MultiLabelToIndexd",
        "UniteChannelsd",
    ):
        from lmseg_components.data import image_transforms

        return getattr(image_transforms, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
