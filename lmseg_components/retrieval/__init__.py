"""Retrieval for retrieval-augmented segmentation: the retrievers, the retrieval-augmented segmenter and a persisted
cosine top-k index with two backends. The user's memory bank (``lmseg jras-bank``) is an app:
:mod:`lmseg_components.apps.bank`."""

from lmseg_components.retrieval.augmented import RetrievalAugmentedSegmenter
from lmseg_components.retrieval.index import (
    FaissIndex,
    RetrievalIndex,
    SearchResult,
    StaleIndexError,
    TorchIndex,
    create_index,
    load_index,
    rebuild_command,
)
from lmseg_components.retrieval.retriever import (
    RETRIEVER_BACKBONES,
    RETRIEVER_KINDS,
    MaskEmbeddingRetriever,
    Retriever,
    create_retriever,
)

__all__ = [
    "RETRIEVER_BACKBONES",
    "RETRIEVER_KINDS",
    "MaskEmbeddingRetriever",
    "Retriever",
    "RetrievalAugmentedSegmenter",
    "FaissIndex",
    "RetrievalIndex",
    "SearchResult",
    "StaleIndexError",
    "TorchIndex",
    "create_index",
    "create_retriever",
    "load_index",
    "rebuild_command",
]
