"""Transforms that write a bundle's outputs (the overlay, the per-prompt results, the presence decision) and the
output names of an inference datalist."""

from lmseg_components.outputs.names import OutputNameCollisionError, prepare_output_names, writer_layouts
from lmseg_components.outputs.overlay import SaveOverlayd, render_overlay
from lmseg_components.outputs.presence import (
    NOT_FOUND_LOGIT,
    RESULTS_LINES,
    PresenceDecisiond,
    PresenceThresholdError,
    SaveResultsd,
)

__all__ = [
    "NOT_FOUND_LOGIT",
    "OutputNameCollisionError",
    "PresenceDecisiond",
    "PresenceThresholdError",
    "RESULTS_LINES",
    "SaveOverlayd",
    "SaveResultsd",
    "prepare_output_names",
    "render_overlay",
    "writer_layouts",
]
