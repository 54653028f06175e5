"""J-RAS's joint training in MONAI's engine: :class:`JRASTrainer` and the handlers around it.

:class:`JRASTrainer` is a ``SupervisedTrainer`` whose iteration is the joint step: the *supervised* loss
(segmenter, Dice + CE, with guides retrieved by the current index; the retriever learns through the blend weights
with ``retriever_seg_grad``) plus the retriever's *contrastive* term (:class:`ContrastiveObjective`: soft InfoNCE
whose targets are the mask agreement with gallery items of other patients, or NT-Xent on two augmented views;
plus Dice + CE for a retriever that segments, whose embedding is its own coarse mask), one forward, one backward,
each parameter stepped once. :class:`RebuildIndex` re-embeds the gallery with the current retriever on a schedule
(each epoch by default, and before each validation) and can persist the index whenever the evaluator's key metric
improves, so the saved index always matches the saved best model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.losses import ContrastiveLoss, DiceCELoss
from monai.utils import CommonKeys as Keys
from torch import nn

from lmseg_components.errors import UserInputError
from lmseg_components.files import finish_saves
from lmseg_components.losses.mask_contrastive import MaskAgreementInfoNCE, sample_candidates
from lmseg_components.metrics.overlap import integer_labels, pairwise_mask_dice
from lmseg_components.outputs.overlay import render_overlay
from lmseg_components.outputs.presence import RESULTS_LINES
from lmseg_components.retrieval.augmented import RetrievalAugmentedSegmenter
from lmseg_components.retrieval.index import create_index, rebuild_command

__all__ = [
    "ContrastiveObjective",
    "GalleryFromDataset",
    "IndexNeedsRebuildError",
    "IndexState",
    "JRASTrainer",
    "LoadRetrievalState",
    "RebuildIndex",
    "RetrievalHitRate",
    "RetrieverViews",
    "SaveGuidePanels",
    "SaveRetrievalResults",
    "augment_views",
    "describe_retrieval",
    "gallery_agreement",
    "random_shift",
]

POSITIVES = ("mask", "views", "adjacent")
RETRIEVERS = {"learned": "", "oracle": "oracle_", "random": "random_"}  # judged by RetrievalHitRate: metric prefix


def _unwrap(network: nn.Module) -> RetrievalAugmentedSegmenter:
    module = getattr(network, "module", network)
    if not isinstance(module, RetrievalAugmentedSegmenter):
        raise TypeError(f"expected a RetrievalAugmentedSegmenter (optionally DDP-wrapped), got {type(module).__name__}")
    return module


def _batch_value(batch, key: str):
    """``batch[key]``; MONAI engines decollate the batch into a list of dicts after each iteration."""
    if isinstance(batch, list):
        values = [item[key] for item in batch]
        return torch.stack([torch.as_tensor(v) for v in values]) if isinstance(values[0], torch.Tensor) else values
    return batch[key]


def _set_output(engine: Engine, key: str, value) -> None:
    """Write ``key`` into the iteration output, into every item when MONAI decollated it (like its ``loss``)."""
    items = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
    for item in items:
        item[key] = value


def augment_views(
    images: torch.Tensor,
    noise_std: float = 0.05,
    max_shift: int = 3,
    shift: tuple[int, int] | None = None,
    gamma: float = 0.0,
    bias: float = 0.0,
) -> torch.Tensor:
    """A random view of a (B, C, H, W) batch: per-image intensity scale/shift, Gaussian noise, and a translation
    of the last two axes by ``shift`` (default: drawn by :func:`random_shift` up to ``max_shift`` pixels).

    ``gamma`` and ``bias`` mimic another scanner (0 turns each off and draws nothing): a contrast curve ``u ** g``
    on each image's min-max normalised intensities ``u``, with ``log g`` uniform in ``[-gamma, gamma]``, and a
    smooth multiplicative field ``1 + bias * f`` (``f`` a bilinear upsampling of a 4 x 4 Gaussian grid, scaled to
    a peak of 1), applied before the jitter and noise."""
    b = images.shape[0]
    if gamma > 0:
        flat = images.flatten(1)
        low, high = flat.amin(1).view(b, 1, 1, 1), flat.amax(1).view(b, 1, 1, 1)
        span = (high - low).clamp_min(1e-6)
        power = torch.empty(b, 1, 1, 1, device=images.device).uniform_(-gamma, gamma).exp()
        images = low + span * ((images - low) / span).clamp(0, 1) ** power
    if bias > 0:
        grid = torch.randn(b, 1, 4, 4, device=images.device)
        field = nn.functional.interpolate(grid, size=images.shape[-2:], mode="bilinear", align_corners=True)
        field = field / field.flatten(1).abs().amax(1).clamp_min(1e-6).view(b, 1, 1, 1)
        images = images * (1 + bias * field)
    scale = torch.empty(b, 1, 1, 1, device=images.device).uniform_(0.9, 1.1)
    offset = torch.empty(b, 1, 1, 1, device=images.device).uniform_(-0.05, 0.05)
    out = images * scale + offset + noise_std * torch.randn_like(images)
    return torch.roll(out, shifts=random_shift(max_shift) if shift is None else shift, dims=(-2, -1))


def random_shift(max_shift: int) -> tuple[int, int]:
    """A translation (dx, dy), each uniform in [-max_shift, max_shift], of a view (and of its labels)."""
    if max_shift <= 0:
        return 0, 0
    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,)))
    return dx, dy


class GalleryFromDataset:
    """At the start of a run, set the network's gallery from ``dataset`` (the training items, preprocessed
    without augmentation) and persist it to ``save_path``, next to the model, for evaluation and inference.

    Args:
        network: the :class:`RetrievalAugmentedSegmenter` (or its DDP wrapper).
        dataset: items with ``image``, ``label``, ``name`` and ``case_id``.
        save_path: where to write the gallery (rank 0 only under DDP); ``None`` keeps it in memory.
    """

    def __init__(self, network: nn.Module, dataset: Sequence[dict], save_path: str | Path | None = None):
        self.network, self.dataset, self.save_path = network, dataset, save_path

    def attach(self, engine: Engine) -> None:
        if _unwrap(self.network).uses_retrieval:
            engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        model = _unwrap(self.network)
        model.set_gallery_from(self.dataset)
        if self.save_path is not None and _is_rank0():
            model.save_gallery(self.save_path)


class IndexNeedsRebuildError(UserInputError, ValueError):
    """The retrieval index is missing, unreadable, or belongs to another retriever or gallery."""


class LoadRetrievalState:
    """Before an evaluation / inference run, load the persisted gallery and index into the network.

    Attach it **after** the ``CheckpointLoader``: the index is checked against the loaded retriever's weights and
    the gallery's ids, and refused (``IndexNeedsRebuildError``, naming ``lmseg jras-bank rebuild``) if either
    differs. A gallery and index write that a kill cut short after its commit is completed first.

    Args:
        network: the :class:`RetrievalAugmentedSegmenter` (or its DDP wrapper).
        gallery_path: ``gallery.pt`` written by training.
        index_path: ``index.pt`` beside it.
        bundle_root: the bundle folder, for the rebuild command the error names.
        user_gallery_path: the cases ``lmseg jras-bank add`` added (``user_gallery.pt``), after the training
            gallery's; none when the file does not exist.
    """

    def __init__(
        self,
        network: nn.Module,
        gallery_path: str | Path,
        index_path: str | Path,
        bundle_root: str | Path = "<bundle folder>",
        user_gallery_path: str | Path | None = None,
    ):
        self.network, self.gallery_path, self.index_path = network, Path(gallery_path), Path(index_path)
        self.bundle_root, self.user_gallery_path = bundle_root, user_gallery_path

    def attach(self, engine: Engine) -> None:
        if _unwrap(self.network).uses_retrieval:
            engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        model = _unwrap(self.network)
        for folder in {self.gallery_path.parent, self.index_path.parent}:
            finish_saves(folder)
        model.load_gallery(self.gallery_path, self.user_gallery_path)
        try:
            model.load_index(self.index_path)
        except (FileNotFoundError, ValueError) as e:
            command = rebuild_command(self.bundle_root)
            raise IndexNeedsRebuildError(f"{e} Rebuild it from the gallery: {command}") from None


def _broadcast_buffers_from_rank0(module: nn.Module) -> None:
    """Under DDP, give every rank rank 0's batch-norm statistics before the gallery is embedded: each rank's
    training forward moved its own, and DDP only broadcasts buffers at its next forward."""
    if idist.get_world_size() > 1:
        for buffer in module.buffers():
            buffer.copy_(idist.broadcast(buffer, src=0))


def _is_rank0() -> bool:
    return idist.get_rank() == 0


class RebuildIndex:
    """Rebuild the network's retrieval index from its current retriever.

    A run resumed inside an epoch whose index :class:`IndexState` restored from the checkpoint keeps that index
    instead of rebuilding it from the retriever it stopped with, so it retrieves what the uninterrupted run
    retrieved.

    Args:
        network: the :class:`RetrievalAugmentedSegmenter` (or its DDP wrapper).
        event: ``epoch_started`` (trainer: every ``interval`` epochs) or ``started`` (evaluator: before each run).
        interval: epochs between rebuilds with ``epoch_started``.
        save_path: where to persist the index; with ``save_on_best`` it is written only when the attached
            evaluator's key metric improves (the same moment ``BestModelSaver`` writes the best model).
        save_on_best: see ``save_path``.
        user_gallery_path: the cases a user added to the bank (``lmseg jras-bank add``), when the file exists:
            the persisted index holds them too, embedded by the same retriever after the training gallery's items,
            so retraining keeps the user's bank (their retrieval never trains the network).
    """

    def __init__(
        self,
        network: nn.Module,
        event: str = "epoch_started",
        interval: int = 1,
        save_path: str | Path | None = None,
        save_on_best: bool = True,
        user_gallery_path: str | Path | None = None,
    ):
        if event not in ("epoch_started", "started"):
            raise ValueError(f"event must be 'epoch_started' or 'started', got {event!r}.")
        self.network, self.event, self.interval = network, event, interval
        self.save_path, self.save_on_best, self.user_gallery_path = save_path, save_on_best, user_gallery_path
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        if not _unwrap(self.network).uses_retrieval:
            return
        event = Events.EPOCH_STARTED(every=self.interval) if self.event == "epoch_started" else Events.STARTED
        engine.add_event_handler(event, self.rebuild)
        if self.save_path is not None:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)

    def rebuild(self, engine: Engine) -> None:
        model = _unwrap(self.network)
        restored, model.index_restored = model.index_restored, False
        if restored and engine.state.iteration % engine.state.epoch_length:
            return  # resumed inside an epoch: it goes on with the index it started with
        _broadcast_buffers_from_rank0(model.retriever)  # every rank builds the same index
        model.rebuild_index()
        self.logger.info(
            f"retrieval index rebuilt: {len(model.gallery_ids)} items, retriever {model.retriever_fingerprint()}"
        )

    def save(self, engine: Engine) -> None:
        best = getattr(engine.state, "best_metric_epoch", None)
        if (self.save_on_best and best != engine.state.epoch) or not _is_rank0():
            return
        model = _unwrap(self.network)
        if self.user_gallery_path is None or not Path(self.user_gallery_path).is_file():
            model.save_index(self.save_path)
            return
        user = torch.load(self.user_gallery_path, map_location="cpu", weights_only=True)
        # the training gallery's embeddings are those of the index this evaluator built at its start
        trained = model.index_embeddings if model.index_embeddings is not None else model.embed(model.gallery_images)
        added = model.embed(user["images"].to(model.gallery_images.device))
        index = create_index(trained.shape[1], model.index_backend)
        index.add(
            torch.cat([trained.float().cpu(), added.float().cpu()]),
            model.gallery_ids + list(user["ids"]),
            model.gallery_cases + list(user["case_ids"]),
        )
        index.save(self.save_path, model.retriever_fingerprint())


class IndexState:
    """The network's retrieval index as a checkpoint entry (``ResumableCheckpoint``'s ``save_dict``): the
    embeddings (N, E) it holds, which a resumed run indexes again (the gallery must be set: ``GalleryFromDataset``
    runs first). A run killed inside an epoch thus goes on with the index that epoch trained with (see
    :class:`RebuildIndex`), not one rebuilt from the retriever it stopped with.

    Args:
        network: the :class:`RetrievalAugmentedSegmenter` (or its DDP wrapper).
    """

    def __init__(self, network: nn.Module):
        self.network = network

    def state_dict(self) -> dict:
        embeddings = _unwrap(self.network).index_embeddings
        return {"embeddings": torch.empty(0) if embeddings is None else embeddings}

    def load_state_dict(self, state: dict) -> None:
        if state["embeddings"].numel():
            _unwrap(self.network).restore_index(state["embeddings"])


@dataclass
class RetrieverViews:
    """What one contrastive term embeds and scores: the augmented views of a batch (and, with ``mask`` positives,
    of its gallery candidates), stacked so that one forward of the network embeds them all.

    Attributes:
        images: (N, C, H, W) views; the first ``2 * batch_size`` are the queries' two views.
        batch_size: B, the queries.
        labels: (M, 1, H, W) labels of the first M views (every view whose labels are known), or None.
        agreement, admissible: with ``mask`` positives, (B, N - 2B) mask agreement of each query with each
            candidate view and whether it may count (other cases only); None otherwise.
    """

    images: torch.Tensor
    batch_size: int
    labels: torch.Tensor | None = None
    agreement: torch.Tensor | None = None
    admissible: torch.Tensor | None = None


class ContrastiveObjective:
    """The retriever's contrastive term of a J-RAS iteration: it draws the views (:meth:`views`) and scores their
    embeddings (:meth:`__call__`); :class:`JRASTrainer` embeds the views in the same forward as the supervised step
    and adds this term to its loss.

    Args:
        temperature: temperature of the embedding similarities.
        positives: ``mask`` (default): soft InfoNCE whose targets are the mask agreement of each query with
            gallery items of *other* cases, its other augmented view counting as a perfect match
            (:class:`~lmseg_components.losses.MaskAgreementInfoNCE`; needs the batch's labels and case ids);
            ``views``: NT-Xent on two augmentations of each image (SimCLR); ``adjacent``: NT-Xent on each image and
            an adjacent slice of the same volume from the gallery, both augmented (items without a known
            neighbour fall back to a second view of themselves).
        mask_temperature: with ``mask``, the temperature of the targets ``softmax(mask Dice / mask_temperature)``.
        view_agreement: with ``mask``, the other view's agreement in the targets: ``best`` (that of the best
            admissible candidate) or ``one`` (see :class:`~lmseg_components.losses.MaskAgreementInfoNCE`).
        num_candidates: with ``mask``, gallery items embedded per step (at least; each query's two most and one
            least similar admissible masks are always among them, see
            :func:`~lmseg_components.losses.sample_candidates`).
        segmentation_weight: for a retriever that segments (has ``segment`` and ``embed``, e.g.
            :class:`~lmseg_components.retrieval.MaskEmbeddingRetriever`), the weight of its Dice + CE on the labels
            of every view whose labels are known (the batch's views, and with ``mask`` the candidates), added to
            the contrastive loss; 0 turns it off. Other retrievers ignore it.
        noise_std, max_shift: strength of :func:`augment_views`.
        view_gamma, view_bias: the scanner-like contrast curve and bias field of :func:`augment_views` (0: off).
    """

    def __init__(
        self,
        temperature: float = 0.1,
        positives: str = "mask",
        mask_temperature: float = 0.1,
        view_agreement: str = "best",
        num_candidates: int = 32,
        segmentation_weight: float = 1.0,
        noise_std: float = 0.05,
        max_shift: int = 3,
        view_gamma: float = 0.0,
        view_bias: float = 0.0,
    ):
        if positives not in POSITIVES:
            raise ValueError(f"positives must be one of {POSITIVES}, got {positives!r}.")
        if num_candidates < 1:
            raise ValueError(f"num_candidates must be positive, got {num_candidates}.")
        if segmentation_weight < 0:
            raise ValueError(f"segmentation_weight must be non-negative, got {segmentation_weight}.")
        self.positives = positives
        self.loss = ContrastiveLoss(temperature=temperature)
        self.mask_loss = MaskAgreementInfoNCE(temperature, mask_temperature, view_agreement)
        self.segmentation_loss = DiceCELoss(to_onehot_y=True, softmax=True)
        self.num_candidates, self.segmentation_weight = num_candidates, segmentation_weight
        if view_gamma < 0 or view_bias < 0:
            raise ValueError(f"view_gamma and view_bias must be non-negative, got {view_gamma} and {view_bias}.")
        self.noise_std, self.max_shift = noise_std, max_shift
        self.view_gamma, self.view_bias = view_gamma, view_bias

    def segments(self, model: RetrievalAugmentedSegmenter) -> bool:
        """Whether the term includes the retriever's own Dice + CE."""
        return self.segmentation_weight > 0 and hasattr(model.retriever, "segment")

    def views(
        self,
        model: RetrievalAugmentedSegmenter,
        images: torch.Tensor,
        labels: torch.Tensor | None,
        names: Sequence[str] | None = None,
        case_ids: Sequence[str] | None = None,
    ) -> RetrieverViews | None:
        """The views of a batch to embed, or None where the term cannot be formed (NT-Xent with one image).

        Args:
            model: the network, with its gallery set.
            images: (B, C, H, W) the batch's images, on the training device.
            labels: (B, 1, H, W) integer (or (B, K, H, W) one-hot) labels; needed with ``mask`` positives and for
                the segmentation term.
            names: per image, its gallery id (``adjacent`` positives).
            case_ids: per image, its case (``mask`` positives: same-case items are not admissible).
        """
        if images.shape[0] < 2 and self.positives != "mask":
            return None  # NT-Xent needs at least one negative
        device = images.device
        if labels is not None:
            labels = integer_labels(labels).to(device)
        elif self.positives == "mask" or self.segments(model):
            raise ValueError("the contrastive term needs the batch's labels (mask positives, retriever segmentation).")
        view_a, labels_a = self._view(images, labels)
        if self.positives == "mask":
            view_b, labels_b = self._view(images, labels)
            agreement, admissible = gallery_agreement(model, labels, case_ids)
            rows = sample_candidates(agreement, admissible, self.num_candidates).to(agreement.device)
            candidates, labels_c = self._view(model.gallery_images[rows].to(device), model.gallery_labels[rows])
            return RetrieverViews(
                torch.cat([view_a, view_b, candidates]),
                images.shape[0],
                torch.cat([labels_a, labels_b, labels_c.to(device)]),
                agreement[:, rows].to(device),
                admissible[:, rows].to(device),
            )
        view_b, _ = self._view(self._partners(model, images, names), None)
        # an adjacent slice's labels are not in the batch: only the first view's are known
        return RetrieverViews(torch.cat([view_a, view_b]), images.shape[0], labels_a)

    def __call__(
        self, embeddings: torch.Tensor, retriever_logits: torch.Tensor | None, views: RetrieverViews
    ) -> dict[str, torch.Tensor]:
        """The term for the embeddings (N, E) of ``views`` (and the retriever's own logits (N, K, H, W), for a
        retriever that segments): ``contrastive_loss`` (with the segmentation term) and, where it is on,
        ``retriever_segmentation_loss``."""
        b = views.batch_size
        z = embeddings.float()
        if views.agreement is not None:
            z_a, z_b, z_c = z[:b], z[b : 2 * b], z[2 * b :]
            loss = 0.5 * (
                self.mask_loss(z_a, z_b, z_c, views.agreement, views.admissible)
                + self.mask_loss(z_b, z_a, z_c, views.agreement, views.admissible)
            )
        else:
            loss = self.loss(z[:b], z[b:])
        if retriever_logits is None or self.segmentation_weight == 0 or views.labels is None:
            return {"contrastive_loss": loss}
        known = len(views.labels)
        segmentation = self.segmentation_loss(retriever_logits[:known].float(), views.labels)
        return {
            "contrastive_loss": loss + self.segmentation_weight * segmentation,
            "retriever_segmentation_loss": segmentation,
        }

    def _view(self, images: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """An augmented view of the images, and their labels moved by the same translation (None stays None)."""
        shift = random_shift(self.max_shift)
        view = augment_views(images, self.noise_std, shift=shift, gamma=self.view_gamma, bias=self.view_bias)
        return view, None if labels is None else torch.roll(labels, shifts=shift, dims=(-2, -1))

    def _partners(
        self, model: RetrievalAugmentedSegmenter, images: torch.Tensor, names: Sequence[str] | None
    ) -> torch.Tensor:
        """The positive partner of each image: itself (``views``) or an adjacent slice from the gallery."""
        if self.positives == "views":
            return images
        if names is None:
            raise ValueError("adjacent positives need each image's gallery id (the batch's 'name').")
        partners = images.clone()
        for q, row in enumerate(model.adjacent_rows(names)):
            if row is not None:
                partners[q] = model.gallery_images[row].to(images.device)
        return partners


class JRASTrainer(SupervisedTrainer):
    """MONAI's ``SupervisedTrainer`` whose iteration is J-RAS's joint step (the pattern of MONAI's ``GanTrainer``:
    a trainer that overrides ``_iteration``).

    One iteration: the batch's contrastive views are drawn (:meth:`ContrastiveObjective.views`); one forward of
    the network segments the batch with the guides the index retrieves *and* embeds the views
    (``retriever_views``), so that under DDP the retriever's contrastive gradients are averaged by DDP itself;
    the loss is the supervised loss (``loss`` in the output) plus the contrastive term (``contrastive_loss``); one
    backward; then ``optimizer`` steps the segmenter and ``retriever_optimizer`` the retriever: every parameter
    is stepped once, by one optimiser, with the engine's AMP autocast and gradient scaler. The retriever gets the
    segmentation gradient through the blend weights (``retriever_seg_grad``) and the contrastive one in that one
    step. A network that does not retrieve (the no-retrieval baseline), or whose retriever is frozen, trains as
    ``SupervisedTrainer`` does.

    Args:
        retriever_optimizer: the optimiser of the retriever's parameters, none of them in ``optimizer``.
        contrastive: the retriever's contrastive term; None trains the retriever through the blend weights only.
        kwargs: ``SupervisedTrainer``'s (``optimizer`` holds the segmenter's parameters); gradient accumulation
            is not supported.

    Raises:
        ValueError: the two optimisers share a parameter, or ``accumulation_steps`` > 1.
    """

    def __init__(
        self,
        *args,
        retriever_optimizer: torch.optim.Optimizer | None = None,
        contrastive: ContrastiveObjective | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if self.accumulation_steps > 1:
            raise ValueError("JRASTrainer does not accumulate gradients: use accumulation_steps=1.")
        if retriever_optimizer is not None:
            shared = _parameter_ids(self.optimizer) & _parameter_ids(retriever_optimizer)
            if shared:
                raise ValueError(
                    f"optimizer and retriever_optimizer share {len(shared)} parameters; each parameter must be "
                    "stepped by one optimiser: give the retriever's parameters to retriever_optimizer only."
                )
        self.retriever_optimizer, self.contrastive = retriever_optimizer, contrastive

    def _iteration(self, engine: JRASTrainer, batchdata: dict[str, torch.Tensor]) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        inputs, targets, args, kwargs = batch if len(batch) == 4 else (*batch, (), {})
        model = _unwrap(engine.network)
        views = None
        if self.contrastive is not None and model.trains_retriever:
            views = self.contrastive.views(
                model, inputs.as_subclass(torch.Tensor), targets, batchdata.get("name"), batchdata.get("case_id")
            )
        if views is not None:
            kwargs = {**kwargs, "retriever_views": views.images}
        engine.state.output = {Keys.IMAGE: inputs, Keys.LABEL: targets}

        def _compute_loss() -> torch.Tensor:
            output = engine.inferer(inputs, engine.network, *args, **kwargs)
            pred, retrieved = (output[0], output[1:]) if views is not None else (output, None)
            engine.state.output[Keys.PRED] = pred
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            loss = engine.loss_function(pred, targets).mean()
            engine.state.output[Keys.LOSS] = loss
            if retrieved is not None:
                terms = self.contrastive(*retrieved, views)
                engine.state.output.update({k: v.detach() for k, v in terms.items()})
                loss = loss + terms["contrastive_loss"]
            engine.fire_event(IterationEvents.LOSS_COMPLETED)
            return loss

        optimizers = [engine.optimizer] + ([self.retriever_optimizer] if self.retriever_optimizer else [])
        engine.network.train()
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        if engine.amp and engine.scaler is not None:
            with torch.autocast(torch.device(engine.state.device).type, **engine.amp_kwargs):
                loss = _compute_loss()
            engine.scaler.scale(loss).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            for optimizer in optimizers:
                engine.scaler.step(optimizer)
            engine.scaler.update()
        else:
            loss = _compute_loss()
            loss.backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            for optimizer in optimizers:
                optimizer.step()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output


def _parameter_ids(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def gallery_agreement(
    model: RetrievalAugmentedSegmenter, labels: torch.Tensor, case_ids: Sequence[str] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask agreement (:func:`~lmseg_components.metrics.pairwise_mask_dice`) of B query masks with the gallery.

    Args:
        model: the network, with its gallery set.
        labels: (B, 1, H, W) integer labels of the queries.
        case_ids: per query, its case (gallery items of that case are not admissible); None admits every item.

    Returns:
        agreement (B, N) and admissible (B, N) bool, on the gallery's device.
    """
    agreement = pairwise_mask_dice(
        labels.to(model.gallery_labels.device), model.gallery_labels, model.segmenter.num_classes
    )
    if case_ids is None:
        return agreement, torch.ones_like(agreement, dtype=torch.bool)
    cases = [str(c) for c in case_ids]
    admissible = torch.tensor([[g != c for g in model.gallery_cases] for c in cases], device=agreement.device)
    return agreement, admissible.reshape(agreement.shape)


class RetrievalHitRate:
    """How well the top-1 guide's mask matches the query's mask, judged on its own (not through the segmenter).

    Per query, the agreement is :func:`~lmseg_components.metrics.pairwise_mask_dice` of the two masks (foreground
    Dice averaged over the classes present in either; two empty masks agree, 1.0). Over the epoch so far,
    ``engine.state.metrics`` holds ``<prefix>retrieval_hit_rate`` (fraction of queries whose agreement exceeds
    ``threshold``) and ``<prefix>retrieval_mask_dice`` (mean agreement), updated every iteration so that any
    ``StatsHandler`` / ``MetricsSaver`` sees the epoch's values; the iteration output gets ``<prefix>hit_rate``.

    Args:
        network: the :class:`RetrievalAugmentedSegmenter` (or its DDP wrapper).
        num_classes: K, classes including background.
        threshold: agreement above which a retrieval is a hit.
        label_key: batch key of the labels, (1, H, W) integers or (K, H, W) one-hot per item.
        retriever: whose top-1 guide is judged: ``learned`` (the network's last retrieval; no prefix), ``oracle``
            (the gallery item of another case whose mask agrees best: the upper bound of any retriever) or
            ``random`` (a uniformly drawn gallery item of another case, from a generator seeded with ``seed`` at
            each epoch). The query's case comes from the batch's ``case_id`` when present.
        seed: seed of the ``random`` retriever.
    """

    def __init__(
        self,
        network: nn.Module,
        num_classes: int,
        threshold: float = 0.5,
        label_key: str = "label",
        retriever: str = "learned",
        seed: int = 0,
    ):
        if retriever not in RETRIEVERS:
            raise ValueError(f"retriever must be one of {tuple(RETRIEVERS)}, got {retriever!r}.")
        self.network, self.num_classes, self.threshold, self.label_key = network, num_classes, threshold, label_key
        self.retriever, self.prefix, self.seed = retriever, RETRIEVERS[retriever], seed
        self.generator = torch.Generator()
        self._hits = self._count = 0
        self._agreement = 0.0

    def attach(self, engine: Engine) -> None:
        if not _unwrap(self.network).uses_retrieval:
            return
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self._hits = self._count = 0
        self._agreement = 0.0
        self.generator.manual_seed(self.seed)

    def __call__(self, engine: Engine) -> None:
        model = _unwrap(self.network)
        if not model.gallery_ids or (self.retriever == "learned" and model.last_indices is None):
            return
        batch = engine.state.batch
        labels = integer_labels(_batch_value(batch, self.label_key))
        has_case = (batch[0] if isinstance(batch, list) else batch).get("case_id") is not None
        agreement, admissible = gallery_agreement(model, labels, _batch_value(batch, "case_id") if has_case else None)
        score = self._top1(model, agreement, admissible)
        hits = int((score > self.threshold).sum())
        self._hits += hits
        self._agreement += float(score.sum())
        self._count += labels.shape[0]
        _set_output(engine, f"{self.prefix}hit_rate", hits / labels.shape[0])
        engine.state.metrics[f"{self.prefix}retrieval_hit_rate"] = self._hits / self._count
        engine.state.metrics[f"{self.prefix}retrieval_mask_dice"] = self._agreement / self._count

    def _top1(self, model: RetrievalAugmentedSegmenter, agreement: torch.Tensor, admissible: torch.Tensor):
        """(B,) agreement of each query with its top-1 guide under this handler's retriever."""
        if self.retriever == "learned":
            rows = model.last_indices[:, 0].to(agreement.device)
        elif not bool(admissible.any(1).all()):
            raise RuntimeError(f"the {self.retriever} retriever needs gallery items of another case for every query.")
        elif self.retriever == "oracle":
            rows = agreement.masked_fill(~admissible, -1.0).argmax(1)
        else:
            rows = torch.multinomial(admissible.float().cpu(), 1, generator=self.generator)[:, 0].to(agreement.device)
        return agreement.gather(1, rows[:, None])[:, 0]


class SaveGuidePanels:
    """After each iteration, write ``<output_dir>/<name>_panel.png`` per query: the query, its top-k guides with
    their masks and similarities, and the prediction (labels in colour). A volume that
    :class:`~lmseg_components.inferers.RetrievalSliceInferer` segmented slice by slice gets one panel per slice,
    ``<name>_z<NN>_panel.png``.

    Args:
        network: the :class:`RetrievalAugmentedSegmenter` (or its DDP wrapper).
        output_dir: folder for the panels.
        image_key, pred_key: batch / output keys; ``pred`` is the argmax label map (1, H, W[, D]) or logits
            (K, H, W[, D]) on the network's grid.
    """

    def __init__(self, network: nn.Module, output_dir: str | Path, image_key: str = "image", pred_key: str = "pred"):
        self.network, self.output_dir = network, Path(output_dir)
        self.image_key, self.pred_key = image_key, pred_key

    def attach(self, engine: Engine) -> None:
        if _unwrap(self.network).uses_retrieval:
            engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        model = _unwrap(self.network)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for q, (item, output) in enumerate(_items(engine)):
            image = torch.as_tensor(item[self.image_key]).detach().cpu()
            pred = torch.as_tensor(output[self.pred_key]).detach().cpu()
            pred = pred.argmax(0, keepdim=True) if pred.shape[0] > 1 else pred
            name = _item_name(item, self.image_key, q)
            if image.ndim == 4:  # a volume: one query per slice
                for z in range(image.shape[-1]):
                    panel = self._panel(model, image[..., z], pred[0, ..., z], z)
                    panel.save(self.output_dir / f"{name}_z{z:02d}_panel.png")
            else:
                self._panel(model, image, pred[0], q).save(self.output_dir / f"{name}_panel.png")

    @staticmethod
    def _panel(model: RetrievalAugmentedSegmenter, image: torch.Tensor, pred: torch.Tensor, query: int):
        tiles = [render_overlay(_grey(image), np.zeros(pred.shape[::-1], int), "query")]
        rows, scores = model.last_indices[query].tolist(), model.last_scores[query].tolist()
        for rank, (row, score) in enumerate(zip(rows, scores, strict=True)):
            tiles.append(
                render_overlay(
                    _grey(model.gallery_images[row]),
                    model.gallery_labels[row, 0].cpu().numpy().T,
                    f"guide {rank + 1}: {model.gallery_ids[row]} (cos {score:.2f})",
                )
            )
        tiles.append(render_overlay(_grey(image), pred.long().numpy().T, "prediction"))
        return _hstack(tiles)


def describe_retrieval(
    model: RetrievalAugmentedSegmenter, pred: torch.Tensor, class_names: Sequence[str], first_query: int = 0
) -> dict:
    """What one segmented image or volume holds and which gallery cases guided it.

    Args:
        model: the network after the forward that segmented it (``last_indices`` / ``last_scores``: one row per
            query of the batch, or per slice after :class:`~lmseg_components.inferers.RetrievalSliceInferer`).
        pred: the label map on the input's grid, (1, H, W) or (1, H, W, D); a MetaTensor's affine gives the
            voxel size.
        class_names: the labels' names, background first.
        first_query: the row of ``last_indices`` of this image (its index in a 2D batch).

    Returns:
        ``structures``: per foreground class its ``voxels`` (pixels of a 2D image) and, for a volume, ``ml``
        (voxel count x voxel volume from the affine); ``slices``: per slice (one for a 2D image) the ``guides``
        retrieved, best first, each ``{"id", "case_id", "similarity"}`` (empty without retrieval).
    """
    labels = torch.as_tensor(pred).detach().cpu().round().long()
    volume = labels.ndim == 4
    if labels.ndim not in (3, 4) or labels.shape[0] != 1:
        raise ValueError(f"pred must be a (1, H, W) or (1, H, W, D) label map, got shape {tuple(labels.shape)}.")
    voxel_ml = (
        float(np.prod(np.asarray(pred.pixdim, dtype=float)[:3])) / 1000.0
        if volume and hasattr(pred, "pixdim")
        else None
    )
    structures = {}
    for value, name in enumerate(class_names):
        if value == 0:
            continue
        count = int((labels == value).sum())
        structures[name] = {"voxels": count} | ({"ml": round(count * voxel_ml, 3)} if voxel_ml is not None else {})
    queries = range(first_query, first_query + (labels.shape[-1] if volume else 1))
    slices = []
    for z, query in enumerate(queries):
        guides = []
        if model.last_indices is not None:
            for row, score in zip(model.last_indices[query].tolist(), model.last_scores[query].tolist(), strict=True):
                guides.append(
                    {"id": model.gallery_ids[row], "case_id": model.gallery_cases[row], "similarity": round(score, 4)}
                )
        slices.append({"slice": z, "guides": guides})
    return {"structures": structures, "slices": slices}


class SaveRetrievalResults:
    """After each iteration, append one line per image to ``<output_dir>/results.jsonl`` (written as each image
    completes, so a crash keeps the lines before it; the first image of a run starts the file afresh):
    ``image`` (the input file), then :func:`describe_retrieval`'s ``structures`` (voxels and mL per structure)
    and ``slices`` (per slice, the retrieved gallery cases and their similarity: *which* prior cases guided the
    mask).

    Args:
        network: the :class:`RetrievalAugmentedSegmenter` (or its DDP wrapper).
        output_dir: the folder of ``results.jsonl`` (the bundle's ``output_dir``, beside the masks).
        class_names: the labels' names, background first (the metadata's output ``channel_def``).
        image_key, pred_key: batch / output keys; ``pred`` is the postprocessed label map on the input's grid.
    """

    def __init__(
        self,
        network: nn.Module,
        output_dir: str | Path,
        class_names: Sequence[str],
        image_key: str = "image",
        pred_key: str = "pred",
    ):
        self.network, self.path = network, Path(output_dir) / RESULTS_LINES
        self.class_names, self.image_key, self.pred_key = list(class_names), image_key, pred_key
        self._started = False

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        model = _unwrap(self.network)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for q, (item, output) in enumerate(_items(engine)):
            meta = getattr(item[self.image_key], "meta", {})
            source = meta.get("source_filename", meta.get("filename_or_obj", ""))
            description = describe_retrieval(model, output[self.pred_key], self.class_names, first_query=q)
            lines.append(json.dumps({"image": str(source), **description}) + "\n")
        with self.path.open("a" if self._started else "w") as f:
            f.writelines(lines)
        self._started = True


def _items(engine: Engine) -> list[tuple[dict, dict]]:
    """(batch item, output item) pairs of the engine's last iteration (MONAI decollates both into lists)."""
    batch = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch]
    outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
    return list(zip(batch, outputs, strict=True))


def _item_name(item: dict, image_key: str, q: int) -> str:
    """The record's ``name``, else its input file's name without extensions."""
    if item.get("name"):
        return str(item["name"])
    source = getattr(item[image_key], "meta", {}).get("filename_or_obj")
    return Path(str(source)).name.split(".")[0] if source else f"item{q}"


def _grey(image) -> np.ndarray:
    """(C, W, H) tensor -> (H, W) array in [0, 1] for display."""
    return torch.as_tensor(image).detach().cpu().float().mean(0).numpy().T


def _hstack(tiles):
    from PIL import Image

    canvas = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), max(t.height for t in tiles)))
    x = 0
    for tile in tiles:
        canvas.paste(tile, (x, 0))
        x += tile.width + 4
    return canvas
