"""Retrieval for retrieval-augmented segmentation: a persisted cosine top-k index with two backends."""

from lmseg_components.retrieval.augmented import RetrievalAugmentedSegmenter
from lmseg_components.retrieval.index import (
    FaissIndex,
    RetrievalIndex,
    SearchResult,
    StaleIndexError,
    TorchIndex,
    create_index,
    load_index,
)
from lmseg_components.retrieval.retriever import RETRIEVER_BACKBONES, Retriever

__all__ = [
    "RETRIEVER_BACKBONES",
    "Retriever",
    "RetrievalAugmentedSegmenter",
    "FaissIndex",
    "RetrievalIndex",
    "SearchResult",
    "StaleIndexError",
    "TorchIndex",
    "create_index",
    "load_index",
]
