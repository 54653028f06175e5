"""A retrieval-augmented segmentation network (J-RAS) that plugs into MONAI's SupervisedTrainer/Evaluator.

``RetrievalAugmentedSegmenter`` owns the retriever, the guided segmenter, the gallery (training image/label
pairs) and the index. Its forward embeds the query, retrieves the top-k gallery items (excluding the query
itself and, optionally, its whole case), blends them one-hot and runs the segmenter. The index is rebuilt from
the current retriever by :meth:`rebuild_index` (the ``RebuildIndex`` handler calls it on a schedule).

With ``retriever_seg_grad`` the segmentation loss also trains the retriever: the top-k choice stays discrete (the
index search), but in training the blend weights ``softmax(similarity / temperature)`` are recomputed from the
query and its k guides re-embedded with gradient, so the loss reaches the retriever through the weights.

With ``guide_source="oracle"`` the guides are not retrieved but chosen by the query's own mask (the k gallery items
of admissible cases whose masks agree best with it): the upper bound of any retriever, for benchmarks asking
whether guides help the segmenter at all. It needs the query labels, so it serves training and evaluation only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from lmseg_components.arguments import require_bool
from lmseg_components.files import atomic_save
from lmseg_components.fingerprint import weights_fingerprint
from lmseg_components.metrics.overlap import integer_labels, pairwise_mask_dice
from lmseg_components.networks.jras.guided import GuidedSegmenter, blend_guides
from lmseg_components.retrieval.index import RetrievalIndex, create_index, load_index

__all__ = ["GUIDE_SOURCES", "RetrievalAugmentedSegmenter", "concat_galleries"]

GUIDE_SOURCES = ("retrieved", "oracle", "retriever_mask")


class RetrievalAugmentedSegmenter(nn.Module):
    """Retriever + guided segmenter + gallery + index.

    Args:
        retriever: image -> L2-normalised embedding (e.g. :class:`~lmseg_components.retrieval.Retriever`).
        segmenter: a :class:`~lmseg_components.networks.GuidedSegmenter`; with ``use_retrieval=False`` the
            retrieval path is skipped entirely (the baseline).
        k: guides per query.
        temperature: softmax temperature of the guide blend.
        exclude_same_case: also exclude every gallery item of the query's case (other slices of one patient).
        index_backend: ``torch`` (exact) or a FAISS backend name (see ``create_index``).
        embed_batch: gallery items embedded per forward pass when rebuilding.
        retriever_seg_grad: in training mode, recompute the blend weights from embeddings with gradient (query and
            guides re-embedded by the retriever in train mode), so that the segmentation loss updates the
            retriever too (give its parameters to the supervised optimiser); otherwise the weights come from the
            index's scores, without gradient.
        guide_source: ``retrieved`` (the index's top-k), ``oracle`` (the top-k by mask agreement with the
            query's own labels, ``oracle_labels`` of :meth:`forward`; an upper bound for benchmarks) or
            ``retriever_mask`` (no retrieval: the guide mask is the retriever's own segmentation of the query,
            without gradient, and the guide image is blank; the capacity control of a benchmark: is a gain due to
            retrieval, or to a second network trained on the labels? Needs a retriever that segments).
        freeze_retriever: keep the retriever as it is (no gradient, batch-norm statistics fixed: it stays in eval
            mode), e.g. one trained before (``retriever_weights``); the trainer then skips its contrastive term.
        retriever_weights: a ``model.pt`` of an earlier J-RAS run (or a network state dict with ``retriever.*``
            keys) whose retriever weights replace the initial ones.
    """

    def __init__(
        self,
        retriever: nn.Module,
        segmenter: GuidedSegmenter,
        k: int = 2,
        temperature: float = 0.1,
        exclude_same_case: bool = True,
        index_backend: str = "torch",
        embed_batch: int = 64,
        retriever_seg_grad: bool = False,
        guide_source: str = "retrieved",
        freeze_retriever: bool = False,
        retriever_weights: str | Path | None = None,
    ):
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be positive, got {k}.")
        if guide_source not in GUIDE_SOURCES:
            raise ValueError(f"guide_source must be one of {GUIDE_SOURCES}, got {guide_source!r}.")
        require_bool("exclude_same_case", exclude_same_case)
        require_bool("retriever_seg_grad", retriever_seg_grad)
        require_bool("freeze_retriever", freeze_retriever)
        if guide_source == "retriever_mask" and not hasattr(retriever, "segment"):
            raise ValueError(
                f"guide_source='retriever_mask' needs a retriever that segments, not {type(retriever).__name__}."
            )
        if freeze_retriever and retriever_seg_grad:
            raise ValueError("a frozen retriever takes no segmentation gradient: set retriever_seg_grad to false.")
        if retriever_weights is not None:
            retriever.load_state_dict(_retriever_state(retriever_weights))
        retriever.requires_grad_(not freeze_retriever)
        self.freeze_retriever = freeze_retriever
        self.retriever, self.segmenter = retriever, segmenter
        self.k, self.temperature, self.exclude_same_case = k, temperature, exclude_same_case
        self.index_backend, self.embed_batch = index_backend, embed_batch
        self.retriever_seg_grad, self.guide_source = retriever_seg_grad, guide_source
        self.register_buffer("gallery_images", torch.empty(0), persistent=False)
        self.register_buffer("gallery_labels", torch.empty(0, dtype=torch.long), persistent=False)
        self.gallery_ids: list[str] = []
        self.gallery_cases: list[str] = []
        self._adjacent: dict[str, int] = {}
        self.index: RetrievalIndex | None = None
        self.index_embeddings: torch.Tensor | None = None
        self.index_restored = False  # set by restore_index, consumed by the next scheduled rebuild
        self.last_indices: torch.Tensor | None = None
        self.last_scores: torch.Tensor | None = None

    @property
    def uses_retrieval(self) -> bool:
        return bool(self.segmenter.use_retrieval)

    @property
    def trains_retriever(self) -> bool:
        """Whether training updates the retriever (its contrastive term, the segmentation gradient)."""
        return self.uses_retrieval and not self.freeze_retriever

    def train(self, mode: bool = True) -> RetrievalAugmentedSegmenter:
        super().train(mode)
        if self.freeze_retriever:
            self.retriever.eval()
        return self

    def set_gallery(
        self, images: torch.Tensor, labels: torch.Tensor, ids: Sequence[str], case_ids: Sequence[str]
    ) -> None:
        """Gallery of N training items: ``images`` (N, C, H, W), ``labels`` (N, 1, H, W) integer classes."""
        if images.shape[0] != labels.shape[0] or len(ids) != images.shape[0] or len(case_ids) != len(ids):
            raise ValueError(
                f"gallery sizes differ: {images.shape[0]} images, {labels.shape[0]} labels, {len(ids)} ids, "
                f"{len(case_ids)} case ids."
            )
        if len(ids) < self.k:
            raise ValueError(f"the gallery needs at least k={self.k} items, got {len(ids)}.")
        device = self.gallery_images.device
        self.gallery_images = images.as_subclass(torch.Tensor).float().to(device)  # plain tensors, not MetaTensors
        self.gallery_labels = labels.as_subclass(torch.Tensor).long().to(device)
        self.gallery_ids, self.gallery_cases = [str(i) for i in ids], [str(c) for c in case_ids]
        self._adjacent = {}
        self.index = self.index_embeddings = None

    def set_gallery_from(
        self, dataset: Sequence[dict], image_key: str = "image", label_key: str = "label", progress: bool = True
    ) -> None:
        """Set the gallery from a dataset of preprocessed (not augmented) training items; each item needs
        ``image`` (C, H, W), ``label`` (1, H, W), ``name`` and ``case_id``; items with ``slice`` (and the
        ``source_filename`` meta of ``SelectSliced``) also record their adjacent slices (see
        :meth:`adjacent_rows`)."""
        from tqdm import tqdm

        images, labels, ids, cases = [], [], [], []
        slices: dict[tuple[str, int], int] = {}
        for i in tqdm(range(len(dataset)), desc="gallery", disable=not progress, leave=False):
            item = dataset[i]
            for key in (image_key, label_key, "name", "case_id"):
                if key not in item:
                    raise KeyError(f"gallery item {i} has no {key!r} (keys: {sorted(item)}).")
            images.append(torch.as_tensor(item[image_key]).float())
            labels.append(torch.as_tensor(item[label_key]).long())
            ids.append(item["name"])
            cases.append(item["case_id"])
            if "slice" in item:
                volume = getattr(item[image_key], "meta", {}).get("source_filename", item["case_id"])
                slices[(str(volume), int(item["slice"]))] = i
        self.set_gallery(torch.stack(images), torch.stack(labels), ids, cases)
        self._adjacent = {}
        for (volume, z), row in slices.items():
            neighbour = slices.get((volume, z + 1), slices.get((volume, z - 1)))
            if neighbour is not None:
                self._adjacent[self.gallery_ids[row]] = neighbour

    def adjacent_rows(self, ids: Sequence[str]) -> list[int | None]:
        """For each gallery id, the gallery row of an adjacent slice of the same volume (z + 1, else z - 1), or
        None when unknown (items without a ``slice``, or single-slice volumes)."""
        return [self._adjacent.get(str(i)) for i in ids]

    def save_gallery(self, path: str | Path) -> None:
        """Persist the gallery (images, labels, ids, case ids) atomically, so that evaluation, inference and
        deployment retrieve from exactly the training items the model was trained with."""
        if not self.gallery_ids:
            raise RuntimeError("no gallery to save: call set_gallery() first.")
        atomic_save(
            {
                "images": self.gallery_images.cpu(),
                "labels": self.gallery_labels.cpu(),
                "ids": self.gallery_ids,
                "case_ids": self.gallery_cases,
            },
            path,
        )

    def load_gallery(self, path: str | Path, user_path: str | Path | None = None) -> None:
        """Load a gallery written by :meth:`save_gallery`, followed by the user's cases of ``user_path`` when that
        file exists (``lmseg jras-bank add`` writes it: the cases live beside the training gallery, which
        retraining rewrites)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no retrieval gallery at {path}: train the bundle first (it writes one).")
        parts = [torch.load(path, map_location="cpu", weights_only=True)]
        if user_path is not None and Path(user_path).is_file():
            parts.append(torch.load(user_path, map_location="cpu", weights_only=True))
        gallery = concat_galleries(parts)
        self.set_gallery(gallery["images"], gallery["labels"], gallery["ids"], gallery["case_ids"])

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings (N, D) of images (N, C, H, W) by the retriever in eval mode, in batches."""
        was_training = self.retriever.training
        self.retriever.eval()
        out = torch.cat(
            [self.retriever(images[i : i + self.embed_batch]) for i in range(0, len(images), self.embed_batch)]
        )
        self.retriever.train(was_training)
        return out

    def embed_views(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, C, H, W) views -> their unit-norm embeddings (N, E) with gradients, and the retriever's own logits
        (N, K, H, W) where it segments (``segment`` + ``embed``, e.g. ``MaskEmbeddingRetriever``), else None."""
        views = views.as_subclass(torch.Tensor)
        if hasattr(self.retriever, "segment"):
            logits = self.retriever.segment(views)
            return self.retriever.embed(logits), logits
        return self.retriever(views), None

    def rebuild_index(self, embeddings: torch.Tensor | None = None) -> None:
        """Embed the whole gallery with the current retriever and index it; ``embeddings`` (N, E), one row per
        gallery item (e.g. an index restored from a training checkpoint), are indexed instead.

        The indexed embeddings stay in ``index_embeddings``."""
        if not self.gallery_ids:
            raise RuntimeError("set_gallery() must be called before the index can be built.")
        if embeddings is None:
            embeddings = self.embed(self.gallery_images).float().cpu()
        elif embeddings.shape[0] != len(self.gallery_ids):
            raise ValueError(f"{embeddings.shape[0]} embeddings for a gallery of {len(self.gallery_ids)} items.")
        index = create_index(embeddings.shape[1], self.index_backend)
        index.add(embeddings, self.gallery_ids, self.gallery_cases)
        self.index, self.index_embeddings = index, embeddings

    def restore_index(self, embeddings: torch.Tensor) -> None:
        """Index ``embeddings`` (N, E) saved with a training checkpoint, and mark the index as restored: the next
        scheduled rebuild inside the same epoch keeps it."""
        self.rebuild_index(embeddings)
        self.index_restored = True

    def retriever_fingerprint(self) -> str:
        return weights_fingerprint(self.retriever)

    def save_index(self, path: str | Path) -> None:
        """Persist the index with the gallery ids and the retriever fingerprint (atomically)."""
        if self.index is None:
            raise RuntimeError("no index to save: call rebuild_index() first.")
        self.index.save(path, self.retriever_fingerprint())

    def load_index(self, path: str | Path) -> None:
        """Load a saved index; refused (``StaleIndexError``) if the retriever or gallery differ."""
        self.index = load_index(path, self.retriever_fingerprint(), gallery_ids=self.gallery_ids)
        self.index_embeddings = None  # a persisted index keeps its own form (e.g. faiss), not the rows

    def forward(
        self,
        image: torch.Tensor,
        exclude_ids: Sequence[str] | None = None,
        exclude_cases: Sequence[str] | None = None,
        oracle_labels: torch.Tensor | None = None,
        retriever_views: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """
        Args:
            image: (B, C, H, W) queries.
            exclude_ids: per query, its own gallery id (training queries must not retrieve themselves).
            exclude_cases: per query, its case id; used when ``exclude_same_case``.
            oracle_labels: (B, 1, H, W) integer labels of the queries; required with ``guide_source="oracle"``,
                ignored otherwise.
            retriever_views: (N, C, H, W) images for the retriever's contrastive term, embedded in this same
                forward (so that DDP averages the retriever's gradients from both terms); training only.

        Returns:
            logits (B, K, H, W); with ``retriever_views``, the tuple (logits, the views' embeddings (N, E), the
            retriever's own logits on them (N, K, H, W), or None for a retriever that does not segment).
        """
        if retriever_views is not None:
            if not self.uses_retrieval:
                raise ValueError("retriever_views given to a network that does not retrieve (use_retrieval False).")
            return (self(image, exclude_ids, exclude_cases, oracle_labels), *self.embed_views(retriever_views))
        if not self.uses_retrieval:
            return self.segmenter(image)
        image = image.as_subclass(torch.Tensor)  # MONAI MetaTensors would leak into the index and the guides
        if self.guide_source == "retriever_mask":
            self.last_indices = self.last_scores = None
            with torch.no_grad():
                guide_mask = self.retriever.segment(image).softmax(1)
            return self.segmenter(self.segmenter.guided_input(image, torch.zeros_like(image), guide_mask))
        if self.guide_source == "oracle":
            rows, scores = self._oracle_guides(oracle_labels, exclude_ids, exclude_cases)
            self.last_indices, self.last_scores = rows, scores
        else:
            if self.index is None:
                raise RuntimeError("the retrieval index is not built: call rebuild_index() (or load_index()).")
            result = self.index.search(
                self.embed(image).float().cpu(),
                self.k,
                exclude_ids=list(exclude_ids) if exclude_ids is not None else None,
                exclude_cases=list(exclude_cases) if exclude_cases is not None and self.exclude_same_case else None,
            )
            if bool((result.indices < 0).any()):
                raise RuntimeError(f"fewer than k={self.k} admissible gallery items for a query; enlarge the gallery.")
            self.last_indices, self.last_scores = result.indices, result.scores
            rows = result.indices.to(image.device)
            scores = self._blend_scores(image, rows) if self._seg_grad_active() else result.scores
        guide_image, guide_mask = blend_guides(
            scores.to(image.device),
            self.gallery_images[rows],
            self.gallery_labels[rows],
            self.segmenter.num_classes,
            self.temperature,
        )
        return self.segmenter(self.segmenter.guided_input(image, guide_image, guide_mask))

    def _oracle_guides(
        self,
        labels: torch.Tensor | None,
        exclude_ids: Sequence[str] | None,
        exclude_cases: Sequence[str] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows (B, k) and agreements (B, k) of the k admissible gallery items whose masks agree best
        (:func:`~lmseg_components.metrics.pairwise_mask_dice`) with the queries' ``labels`` (B, 1, H, W)."""
        if labels is None:
            raise ValueError(
                "guide_source='oracle' chooses guides by the query's own mask: pass oracle_labels (the bundle's "
                "prepare_batch does so for training and evaluation; inference has no labels)."
            )
        agreement = pairwise_mask_dice(
            integer_labels(labels).to(self.gallery_labels.device), self.gallery_labels, self.segmenter.num_classes
        )
        for q in range(agreement.shape[0]):
            blocked = [
                i
                for i, (gid, case) in enumerate(zip(self.gallery_ids, self.gallery_cases, strict=True))
                if (exclude_ids is not None and gid == str(exclude_ids[q]))
                or (self.exclude_same_case and exclude_cases is not None and case == str(exclude_cases[q]))
            ]
            agreement[q, blocked] = -1.0
        scores, rows = agreement.topk(self.k, dim=1)
        if bool((scores < 0).any()):
            raise RuntimeError(f"fewer than k={self.k} admissible gallery items for a query; enlarge the gallery.")
        return rows, scores

    def _seg_grad_active(self) -> bool:
        return self.retriever_seg_grad and self.training and torch.is_grad_enabled()

    def _blend_scores(self, image: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Cosine similarities (B, k) of the queries ``image`` (B, C, H, W) with their retrieved gallery ``rows``
        (B, k), from embeddings computed in one train-mode pass with gradient to the retriever."""
        b, k = rows.shape
        z = self.retriever(torch.cat([image, self.gallery_images[rows.flatten()]]))
        return (z[:b, None] * z[b:].reshape(b, k, -1)).sum(-1)


def concat_galleries(parts: Sequence[dict]) -> dict:
    """Galleries (``images``, ``labels``, ``ids``, ``case_ids``, optional ``sources``) as one, in order: the
    training gallery, then the user's."""
    return {
        "images": torch.cat([p["images"] for p in parts]),
        "labels": torch.cat([p["labels"] for p in parts]),
        "ids": [i for p in parts for i in p["ids"]],
        "case_ids": [c for p in parts for c in p["case_ids"]],
        "sources": {case: source for p in parts for case, source in p.get("sources", {}).items()},
    }


def _retriever_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The retriever weights of a J-RAS ``model.pt`` (its ``retriever`` entry) or of a whole network's state dict
    (its ``retriever.*`` keys, without the prefix)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"retriever_weights: no file {path} (a model.pt of an earlier J-RAS run).")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state.get("retriever"), dict):
        return state["retriever"]
    retriever = {k.removeprefix("retriever."): v for k, v in state.items() if k.startswith("retriever.")}
    if not retriever:
        raise ValueError(f"retriever_weights: {path} holds no retriever weights (no 'retriever' entry or keys).")
    return retriever
