"""Retrieval for retrieval-augmented segmentation: a persisted cosine top-k index with two backends, and the
user's memory bank (add / list / remove cases, rebuild the index of a trained bundle's gallery and index)."""

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
from lmseg_components.retrieval.retriever import RETRIEVER_BACKBONES, MaskEmbeddingRetriever, Retriever

_BANK = (
    "BankCase",
    "add_cases",
    "add_labelled_image",
    "jras_bank",
    "list_cases",
    "rebuild_command",
    "rebuild_index",
    "remove_cases",
)


def __getattr__(name: str):
    """The memory bank's names (:mod:`lmseg_components.retrieval.bank`), imported on first use: it pulls in the
    bundle config parser and the dataset readers, which bundle configs that only build a retriever do not need."""
    if name in _BANK:
        from lmseg_components.retrieval import bank

        return getattr(bank, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    *_BANK,
    "RETRIEVER_BACKBONES",
    "MaskEmbeddingRetriever",
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
