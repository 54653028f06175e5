"""Ignite handlers and output writers that MONAI does not provide."""

from lmseg_components.engines.checkpoint import ResumableCheckpoint
from lmseg_components.engines.overlay import SaveOverlayd, render_overlay

__all__ = ["ResumableCheckpoint", "SaveOverlayd", "render_overlay"]
