"""Ignite handlers and output writers that MONAI does not provide."""

from lmseg_components.engines.checkpoint import BestModelSaver, ResumableCheckpoint, RunMismatchError, epoch_seed
from lmseg_components.engines.checkpoint_loader import CheckedCheckpointLoader, check_checkpoint_file
from lmseg_components.engines.inferers import RetrievalSliceInferer, TextSliceInferer
from lmseg_components.engines.jras import (
    ContrastiveObjective,
    GalleryFromDataset,
    IndexNeedsRebuildError,
    IndexState,
    JRASTrainer,
    LoadRetrievalState,
    RebuildIndex,
    RetrievalHitRate,
    RetrieverViews,
    SaveGuidePanels,
    SaveRetrievalResults,
    augment_views,
    describe_retrieval,
    random_shift,
)
from lmseg_components.engines.outputs import OutputNameCollisionError, prepare_output_names, writer_layouts
from lmseg_components.engines.overlay import SaveOverlayd, render_overlay
from lmseg_components.engines.presence import (
    PRESENCE_THRESHOLD,
    RESULTS_LINES,
    PresenceCalibration,
    PresenceDecisiond,
    SaveResultsd,
    recorded_presence_threshold,
)
from lmseg_components.engines.tensorboard import label_map_panels, step_scalars
from lmseg_components.engines.throughput import ThroughputMeter
from lmseg_components.engines.tracking import end_tracking_runs

__all__ = [
    "BestModelSaver",
    "RunMismatchError",
    "epoch_seed",
    "end_tracking_runs",
    "label_map_panels",
    "step_scalars",
    "CheckedCheckpointLoader",
    "ContrastiveObjective",
    "GalleryFromDataset",
    "IndexNeedsRebuildError",
    "IndexState",
    "JRASTrainer",
    "LoadRetrievalState",
    "SaveGuidePanels",
    "SaveRetrievalResults",
    "describe_retrieval",
    "RebuildIndex",
    "ResumableCheckpoint",
    "RetrievalHitRate",
    "RetrieverViews",
    "OutputNameCollisionError",
    "PRESENCE_THRESHOLD",
    "PresenceCalibration",
    "PresenceDecisiond",
    "RESULTS_LINES",
    "SaveResultsd",
    "recorded_presence_threshold",
    "SaveOverlayd",
    "RetrievalSliceInferer",
    "TextSliceInferer",
    "ThroughputMeter",
    "augment_views",
    "random_shift",
    "check_checkpoint_file",
    "prepare_output_names",
    "render_overlay",
    "writer_layouts",
]
