"""``lmseg serve``: a local web page to try a trained bundle: upload an image, type prompts, see the overlays."""

from lmseg_components.apps.serve.server import SegmentService, make_server

__all__ = ["SegmentService", "make_server"]
