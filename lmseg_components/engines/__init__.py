"""Ignite handlers and output writers that MONAI does not provide."""

from lmseg_components.engines.checkpoint import ResumableCheckpoint
from lmseg_components.engines.inferers import TextSliceInferer
from lmseg_components.engines.jras import (
    ContrastiveStep,
    GalleryFromDataset,
    LoadRetrievalState,
    RebuildIndex,
    RetrievalHitRate,
    SaveGuidePanels,
    augment_views,
)
from lmseg_components.engines.overlay import SaveOverlayd, render_overlay

__all__ = [
    "ContrastiveStep",
    "GalleryFromDataset",
    "LoadRetrievalState",
    "SaveGuidePanels",
    "RebuildIndex",
    "ResumableCheckpoint",
    "RetrievalHitRate",
    "SaveOverlayd",
    "TextSliceInferer",
    "augment_views",
    "render_overlay",
]
