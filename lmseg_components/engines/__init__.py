"""Ignite handlers, a trainer and handler helpers that MONAI does not provide."""

from lmseg_components.engines.checkpoint import BestModelSaver, ResumableCheckpoint, RunMismatchError, epoch_seed
from lmseg_components.engines.checkpoint_loader import CheckedCheckpointLoader, check_checkpoint_file
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
from lmseg_components.engines.presence import PRESENCE_THRESHOLD, PresenceCalibration, recorded_presence_threshold
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
    "PRESENCE_THRESHOLD",
    "PresenceCalibration",
    "recorded_presence_threshold",
    "ThroughputMeter",
    "augment_views",
    "random_shift",
    "check_checkpoint_file",
]
