"""J-RAS's segmenter (``../shared/specs/jras.md``): a U-Net or SegFormer fed the query and its retrieved,
similarity-blended image-mask guides. The retriever lives in :mod:`lmseg_components.retrieval`."""

from lmseg_components.networks.jras.guided import SEGMENTER_BACKBONES, GuidedSegmenter, SegFormer2D, blend_guides

__all__ = ["SEGMENTER_BACKBONES", "GuidedSegmenter", "SegFormer2D", "blend_guides"]
