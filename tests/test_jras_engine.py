"""J-RAS joint training through JRASTrainer (MONAI's SupervisedTrainer with the joint iteration) and the retrieval
handlers, on synthetic ACDC slices."""

import math
from collections.abc import Sequence

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Events
from monai.data import DataLoader
from monai.engines import PrepareBatchExtraInput, SupervisedEvaluator
from monai.engines.utils import IterationEvents
from monai.losses import DiceCELoss

from lmseg_components.data import make_synthetic_acdc, read_acdc_slices, split_by_case
from lmseg_components.engines import ContrastiveObjective, JRASTrainer, RebuildIndex, RetrievalHitRate
from lmseg_components.engines.jras import augment_views, gallery_agreement
from lmseg_components.networks import GuidedSegmenter
from lmseg_components.retrieval import MaskEmbeddingRetriever, RetrievalAugmentedSegmenter, Retriever, StaleIndexError


def load_slices(records: Sequence[dict], intensity_scale: float | None = None) -> list[dict]:
    """Load ACDC slice records into tensors: ``image`` (1, X, Y) float32 scaled to [0, 1] by the volume's
    maximum (or divided by ``intensity_scale``), ``label`` (1, X, Y) int64, plus ``name`` and ``case_id``.
    Each volume is read once."""
    cache: dict[str, np.ndarray] = {}

    def volume(path: str) -> np.ndarray:
        if path not in cache:
            cache[path] = np.asarray(nib.load(path).dataobj)
        return cache[path]

    items = []
    for r in records:
        image = volume(r["image"]).astype(np.float32)
        scale = intensity_scale or max(float(image.max()), 1e-6)
        items.append(
            {
                "image": torch.from_numpy(image[..., r["slice"]] / scale)[None],
                "label": torch.from_numpy(volume(r["label"])[..., r["slice"]].astype(np.int64))[None],
                "name": r["name"],
                "case_id": r["case_id"],
            }
        )
    return items


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("acdc")
    make_synthetic_acdc(root, seed=0, n_patients=6, shape=(32, 32, 4))
    train, val, _ = split_by_case(read_acdc_slices(root), (0.67, 0.33, 0.0), seed=0)
    return load_slices(train, 1000.0), load_slices(val, 1000.0)


def _network(use_retrieval=True, retriever_seg_grad=False, mask_retriever=False):
    """A tiny J-RAS network: the ResNet retriever, or with ``mask_retriever`` the mask-embedding one."""
    torch.manual_seed(0)
    if mask_retriever:
        retriever = MaskEmbeddingRetriever(1, 4, channels=(8, 16, 32), strides=(2, 2), pool_grid=8)
    else:
        retriever = Retriever(in_channels=1, embed_dim=16, hidden_dim=32, widen_factor=0.25)
    segmenter = GuidedSegmenter(1, 4, "unet", features=(8, 8, 16, 16, 32, 8), use_retrieval=use_retrieval)
    return RetrievalAugmentedSegmenter(
        retriever, segmenter, k=2, exclude_same_case=True, retriever_seg_grad=retriever_seg_grad
    )


def _network_with_gallery(items, **kwargs):
    """:func:`_network` with ``items`` (dataset records) as its gallery."""
    net = _network(**kwargs)
    net.set_gallery(
        torch.stack([t["image"] for t in items]),
        torch.stack([t["label"] for t in items]),
        [t["name"] for t in items],
        [t["case_id"] for t in items],
    )
    return net


PREPARE = PrepareBatchExtraInput(extra_keys={"exclude_ids": "name", "exclude_cases": "case_id"})


def _trainer(
    net,
    data,
    batch_size: int,
    handlers: list,
    epochs: int = 1,
    shuffle: bool = False,
    contrastive: ContrastiveObjective | None = None,
    retriever_lr: float = 1e-3,
    **kwargs,
) -> JRASTrainer:
    """JRASTrainer (Dice + CE; Adam on the segmenter, Adam on the retriever) with the J-RAS handlers."""
    return JRASTrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=DataLoader(data, batch_size=batch_size, shuffle=shuffle),
        network=net,
        optimizer=torch.optim.Adam(net.segmenter.parameters(), 1e-3),
        retriever_optimizer=torch.optim.Adam(net.retriever.parameters(), retriever_lr),
        contrastive=contrastive,
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        prepare_batch=PREPARE,
        train_handlers=handlers,
        **kwargs,
    )


def test_joint_training_never_retrieves_self_or_case_and_rebuilds_index(splits, tmp_path):
    train, val = splits
    net = _network_with_gallery(train)
    handlers = [RebuildIndex(net), RetrievalHitRate(net, num_classes=4)]
    trainer = _trainer(net, train, 8, handlers, epochs=2, shuffle=True, contrastive=ContrastiveObjective())
    seen, indexes = [], []

    @trainer.on(Events.ITERATION_COMPLETED)
    def check_retrieved(engine):
        batch = engine.state.batch  # decollated by MONAI: one dict per query
        for q, row in enumerate(net.last_indices.tolist()):
            for j in row:
                assert net.gallery_ids[j] != batch[q]["name"]
                assert net.gallery_cases[j] != batch[q]["case_id"]
        seen.append(engine.state.output[0])

    @trainer.on(Events.EPOCH_STARTED)  # after RebuildIndex, attached with the trainer
    def record_index(engine):
        embeddings = net.index.embeddings.clone()
        indexes.append(
            {
                "fingerprint": net.retriever_fingerprint(),
                "embeddings": embeddings,
                "from_current_retriever": torch.allclose(
                    embeddings, F.normalize(net.embed(net.gallery_images), dim=1), atol=1e-5
                ),
                "neighbours": net.index.search(embeddings, k=2, exclude_ids=net.gallery_ids).indices,
            }
        )

    trainer.run()
    first, second = indexes
    assert first["fingerprint"] != second["fingerprint"]  # the contrastive steps moved the retriever ...
    assert first["from_current_retriever"] and second["from_current_retriever"]  # ... each index is rebuilt from it
    assert not torch.allclose(first["embeddings"], second["embeddings"], atol=1e-3)
    assert not torch.equal(first["neighbours"], second["neighbours"])  # and the retrieved neighbours change
    assert all("contrastive_loss" in o and 0.0 <= o["hit_rate"] <= 1.0 for o in seen)
    assert 0.0 <= trainer.state.metrics["retrieval_hit_rate"] <= 1.0

    index_path = tmp_path / "index.pt"
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(val, batch_size=4),
        network=net,
        prepare_batch=PrepareBatchExtraInput(extra_keys={}),
        val_handlers=[RebuildIndex(net, event="started", save_path=index_path, save_on_best=False)],
    )
    val_ids = {v["name"] for v in val}
    retrieved = []
    evaluator.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: retrieved.extend(net.gallery_ids[j] for j in net.last_indices.flatten())
    )
    evaluator.run()
    assert retrieved and not (set(retrieved) & val_ids) and not (set(net.gallery_ids) & val_ids)
    net.load_index(index_path)  # the saved index matches the current retriever and gallery
    with torch.no_grad():
        next(net.retriever.parameters()).add_(1.0)
    with pytest.raises(StaleIndexError):
        net.load_index(index_path)


def test_baseline_without_retrieval_trains_the_same_backbone(splits):
    train, _ = splits
    net = _network(use_retrieval=False)
    trainer = _trainer(net, train, 8, [RebuildIndex(net)], contrastive=ContrastiveObjective())
    trainer.run()
    assert net.index is None and "contrastive_loss" not in trainer.state.output[0]


def test_missing_index_and_small_gallery_errors(splits):
    train, _ = splits
    net = _network()
    with pytest.raises(RuntimeError, match="set_gallery"):
        net.rebuild_index()
    with pytest.raises(ValueError, match="at least k=2"):
        net.set_gallery(train[0]["image"][None], train[0]["label"][None], ["a"], ["c"])
    net.set_gallery(
        torch.stack([t["image"] for t in train[:3]]),
        torch.stack([t["label"] for t in train[:3]]),
        ["a", "b", "c"],
        ["c1", "c1", "c2"],
    )
    with pytest.raises(RuntimeError, match="not built"):
        net(train[0]["image"][None])
    with pytest.raises(TypeError, match="--retriever_seg_grad False"):
        RetrievalAugmentedSegmenter(net.retriever, net.segmenter, retriever_seg_grad="false")


def test_adjacent_slice_positives(tmp_path):
    from monai.data import Dataset
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, ScaleIntensityd

    from lmseg_components.data import SelectSliced

    make_synthetic_acdc(tmp_path, seed=1, n_patients=2, shape=(32, 32, 4))
    records = read_acdc_slices(tmp_path)
    keys = ["image", "label"]
    load = Compose(
        [LoadImaged(keys, image_only=True), EnsureChannelFirstd(keys), SelectSliced(keys), ScaleIntensityd("image")]
    )
    dataset = Dataset(records, load)
    net = _network()
    net.set_gallery_from(dataset, progress=False)
    rows = net.adjacent_rows([r["name"] for r in records])
    for record, row in zip(records, rows, strict=True):
        neighbour = net.gallery_ids[row]
        assert neighbour.rsplit("_z", 1)[0] == record["name"].rsplit("_z", 1)[0]  # same patient and frame
        assert abs(int(neighbour.rsplit("_z", 1)[1]) - record["slice"]) == 1
    net.rebuild_index()
    trainer = _trainer(net, dataset, 4, [], contrastive=ContrastiveObjective(positives="adjacent"))
    trainer.run()
    assert math.isfinite(trainer.state.output[0]["contrastive_loss"])
    with pytest.raises(ValueError, match="positives must be"):
        ContrastiveObjective(positives="patients")


def _four_slice_gallery() -> tuple[RetrievalAugmentedSegmenter, torch.Tensor]:
    """4 gallery slices (4 x 4 px): two of patient p1 (one with the query's mask), one of p2 whose LV block is
    shifted by a column (Dice 0.5), one of p3 with an RV block elsewhere (Dice 0); the query is a p1 slice."""
    query = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    query[..., :2, :2] = 3
    shifted = torch.zeros_like(query)
    shifted[..., :2, 1:3] = 3
    other = torch.zeros_like(query)
    other[..., 2:, 2:] = 1
    net = _network()
    labels = torch.cat([query, query, shifted, other])
    net.set_gallery(torch.rand(4, 1, 4, 4), labels, ["p1_z0", "p1_z1", "p2_z0", "p3_z0"], ["p1", "p1", "p2", "p3"])
    return net, query


def test_mask_positives_come_from_other_patients_by_mask_agreement():
    from lmseg_components.engines.jras import gallery_agreement
    from lmseg_components.losses import MaskAgreementInfoNCE, sample_candidates

    net, query = _four_slice_gallery()
    agreement, admissible = gallery_agreement(net, query, ["p1"])
    assert torch.allclose(agreement, torch.tensor([[1.0, 1.0, 0.5, 0.0]]))
    assert admissible.tolist() == [[False, False, True, True]]  # never the query's own patient, however alike
    assert sample_candidates(agreement, admissible, num_candidates=4).tolist() == [2, 3]
    assert sample_candidates(agreement, admissible, 0, num_similar=1, num_dissimilar=0).tolist() == [2]
    assert sample_candidates(agreement, admissible, 0, num_similar=0, num_dissimilar=1).tolist() == [3]

    loss = MaskAgreementInfoNCE(temperature=0.5, mask_temperature=0.1, view_agreement="one")
    rows = torch.tensor([0, 1, 2, 3])  # even when same-case rows are among the candidates, they get no weight
    targets = loss.targets(agreement[:, rows], admissible[:, rows])
    weights = torch.tensor([10.0, 5.0, 0.0]).exp()  # exp(Dice / 0.1) of [other view, p2, p3]
    assert torch.allclose(
        targets, torch.cat([(weights / weights.sum())[:1], torch.zeros(2), (weights / weights.sum())[1:]])[None]
    )
    best = MaskAgreementInfoNCE(mask_temperature=0.1).targets(agreement[:, rows], admissible[:, rows])
    even = torch.tensor([5.0, 5.0, 0.0]).exp()  # the view counts as much as p2, the best admissible mask
    assert torch.allclose(best, torch.cat([(even / even.sum())[:1], torch.zeros(2), (even / even.sum())[1:]])[None])

    anchor = torch.tensor([[1.0, 0.0]])
    view = torch.tensor([[0.6, 0.8]])
    candidates = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]], requires_grad=True)
    value = loss(anchor, view, candidates, agreement[:, rows], admissible[:, rows])
    log_p = torch.log_softmax(torch.tensor([0.6, 1.0, -1.0]) / 0.5, 0)  # same-case candidates left out
    assert torch.isclose(value, -(weights / weights.sum() * log_p).sum())
    value.backward()
    assert candidates.grad[:2].abs().sum() == 0  # same-case items are neither positives nor negatives


def test_mask_contrastive_step_trains_the_retriever_with_labels(splits):
    train, _ = splits
    net = _network_with_gallery(train)
    net.rebuild_index()
    before = net.retriever_fingerprint()
    trainer = _trainer(net, train[:4], 4, [], contrastive=ContrastiveObjective(positives="mask", num_candidates=8))
    trainer.run()
    assert math.isfinite(trainer.state.output[0]["contrastive_loss"]) and net.retriever_fingerprint() != before


def _toward_mask_similar(net, items) -> float:
    """How much nearer each query's embedding lies to its mask-similar admissible gallery items than to the average
    admissible item: mean over queries of the cosine to the gallery weighted by ``softmax(mask Dice / 0.1)`` minus
    the plain mean cosine (eval mode, no augmentation)."""
    labels, images = torch.stack([t["label"] for t in items]), torch.stack([t["image"] for t in items])
    agreement, admissible = gallery_agreement(net, labels, [t["case_id"] for t in items])
    net.retriever.eval()
    with torch.no_grad():
        cos = F.normalize(net.retriever(images), dim=1) @ F.normalize(net.retriever(net.gallery_images), dim=1).T
    weights = torch.softmax((agreement / 0.1).masked_fill(~admissible, float("-inf")), dim=1)
    return float(((weights * cos).sum(1) - (cos * admissible).sum(1) / admissible.sum(1)).mean())


def test_mask_contrastive_step_moves_embeddings_toward_mask_similar_items(splits):
    """The contrastive term alone trains the mask-embedding retriever (no segmentation term, no segmentation
    gradient through the blend weights): the gap grows from 0.001 to 0.042 in 3 epochs; a negated loss leaves it at
    0.001, a random-direction step at 0.005."""
    train, _ = splits
    net = _segmenting_network(train)
    before = _toward_mask_similar(net, train)
    objective = ContrastiveObjective(num_candidates=8, segmentation_weight=0.0)
    torch.manual_seed(0)
    _trainer(net, train, 8, [], epochs=3, shuffle=True, contrastive=objective, retriever_lr=1e-2).run()
    after = _toward_mask_similar(net, train)
    assert after > before + 0.02, (before, after)


@pytest.mark.parametrize("seg_grad", [True, False])
def test_segmentation_loss_updates_the_retriever_only_with_seg_grad(splits, seg_grad):
    """One supervised step without a contrastive term: the retriever (stepped by the retriever optimiser) moves
    through the blend weights with ``retriever_seg_grad`` and stays put without it."""
    train, _ = splits
    net = _network_with_gallery(train, retriever_seg_grad=seg_grad)
    net.rebuild_index()
    before = [p.detach().clone() for p in net.retriever.parameters()]
    trainer = _trainer(net, train[:4], 4, [])
    trainer.run()
    moved = [not torch.equal(a, b) for a, b in zip(before, net.retriever.parameters(), strict=True)]
    grads = [p.grad for p in net.retriever.parameters()]
    if seg_grad:
        assert all(moved) and all(g is not None and g.abs().sum() > 0 for g in grads)
    else:
        assert not any(moved) and all(g is None for g in grads)
    assert net.last_indices.shape == (4, 2)  # the top-k itself stays the index's discrete choice


def test_retrieval_quality_of_learned_oracle_and_random_retrievers():
    """Hand-computed on the 4-slice gallery: q1 (patient p1, the query mask) agrees [1, 1, 0.5, 0] with the
    gallery rows, q2 (patient p9, the shifted mask) [0.5, 0.5, 1, 0]; the learned retriever returned rows 3 and 1."""
    from ignite.engine import Engine

    net, query = _four_slice_gallery()
    shifted = net.gallery_labels[2:3]
    batch = {"label": torch.cat([query, shifted]), "case_id": ["p1", "p9"]}
    engine = Engine(lambda e, b: setattr(net, "last_indices", torch.tensor([[3, 0], [1, 0]])) or {})
    for retriever in ("learned", "oracle", "random"):
        RetrievalHitRate(net, num_classes=4, retriever=retriever).attach(engine)
    engine.run([batch])
    metrics = engine.state.metrics
    assert metrics["retrieval_mask_dice"] == pytest.approx(0.25) and metrics["retrieval_hit_rate"] == 0.0
    # oracle: q1 may not use its own patient's identical slices, so its best is p2 (0.5, not a hit); q2 gets 1.0
    assert metrics["oracle_retrieval_mask_dice"] == pytest.approx(0.75) and metrics["oracle_retrieval_hit_rate"] == 0.5
    draws = set()
    for seed in range(12):
        engine = Engine(lambda e, b: {})
        RetrievalHitRate(net, num_classes=4, retriever="random", seed=seed).attach(engine)
        engine.run([{"label": query, "case_id": ["p1"]}])
        draws.add(engine.state.metrics["random_retrieval_mask_dice"])
    assert draws == {0.0, 0.5}  # rows of p2 and p3 only, never p1's (agreement 1)
    with pytest.raises(ValueError, match="retriever must be one of"):
        RetrievalHitRate(net, num_classes=4, retriever="best")


def test_contrastive_views_move_their_labels_with_the_image():
    """A view's labels are rolled by the same translation as its image: an image that *is* its label map (values
    0/1, no noise) rounds back to the view's labels whatever the drawn shift (intensity jitter stays < 0.5)."""
    step = ContrastiveObjective(noise_std=0.0, max_shift=3)
    labels = torch.zeros(2, 1, 16, 16, dtype=torch.long)
    labels[0, 0, 2:6, 3:9], labels[1, 0, 9:14, 1:4] = 1, 1
    for _ in range(10):
        view, moved = step._view(labels.float(), labels)
        assert torch.equal(view.round().long(), moved)
    assert step._view(labels.float(), None)[1] is None


def _segmenting_network(train):
    net = _network_with_gallery(train, mask_retriever=True)
    net.rebuild_index()
    return net


def _retriever_dice(net, items) -> float:
    """Mean foreground Dice of the retriever's own argmax masks on ``items``."""
    from lmseg_components.metrics.overlap import pairwise_mask_dice

    net.retriever.eval()
    with torch.no_grad():
        pred = net.retriever.segment(torch.stack([t["image"] for t in items])).argmax(1, keepdim=True)
    labels = torch.stack([t["label"] for t in items])
    return float(pairwise_mask_dice(pred, labels, 4).diag().mean())


def test_a_segmenting_retriever_learns_its_masks_in_the_contrastive_step(splits):
    """With a MaskEmbeddingRetriever the term adds Dice + CE on the labels of the views and candidates: after the
    same steps, the retriever's own masks on the training slices are far better than with segmentation_weight 0
    (contrast alone), where the term is absent from the output."""
    train, _ = splits
    dice = {}
    for weight in (1.0, 0.0):
        net = _segmenting_network(train)
        objective = ContrastiveObjective(num_candidates=8, segmentation_weight=weight)
        trainer = _trainer(net, train, 8, [], epochs=8, shuffle=True, contrastive=objective, retriever_lr=3e-3)
        trainer.run()
        assert ("retriever_segmentation_loss" in trainer.state.output[0]) == (weight > 0)
        dice[weight] = _retriever_dice(net, train)
    assert dice[1.0] > dice[0.0] + 0.1, dice
    with pytest.raises(ValueError, match="segmentation_weight"):
        ContrastiveObjective(segmentation_weight=-1.0)


def test_tensorboard_transforms_name_what_the_config_lambdas_did():
    from lmseg_components.data import UniteChannelsd
    from lmseg_components.engines import label_map_panels, step_scalars

    output = [{"loss": torch.tensor(0.5), "hit_rate": 0.25, "pred": torch.zeros(4, 2, 2)}]
    assert step_scalars(["loss", "contrastive_loss", "hit_rate"])(output) == {"loss": 0.5, "hit_rate": 0.25}
    label = torch.zeros(4, 2, 2)
    label[3, 0, 0] = label[1, 1, 1] = 1  # one-hot: class 3 at (0, 0), class 1 at (1, 1), background elsewhere
    label[0] = 1 - label[1:].sum(0)
    image, grey = label_map_panels(["image", "label"], 4)([{"image": torch.ones(1, 2, 2), "label": label}])
    assert torch.equal(image, torch.ones(1, 2, 2)) and torch.allclose(grey, torch.tensor([[[1.0, 0.0], [0.0, 1 / 3]]]))
    masks = torch.zeros(2, 3, 3)
    masks[0, 0, 0] = masks[1, 2, 2] = 1
    assert torch.equal(UniteChannelsd("label")({"label": masks})["label"], masks.amax(0, keepdim=True))


def _count_steps(optimizers) -> dict[int, int]:
    """id(parameter) -> how many optimiser steps updated it (a parameter with a gradient at the step)."""
    counts: dict[int, int] = {}

    def count(optimizer, args, kwargs):
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    counts[id(p)] = counts.get(id(p), 0) + 1

    for optimizer in optimizers:
        optimizer.register_step_post_hook(count)
    return counts


def test_each_parameter_is_stepped_once_per_iteration_by_one_optimiser(splits):
    """With the segmentation gradient into the retriever and the contrastive term both on, 2 iterations step every
    parameter of segmenter and retriever exactly twice; two optimisers over the same retriever (the old config's
    second step) are refused."""
    train, _ = splits
    net = _network_with_gallery(train, retriever_seg_grad=True, mask_retriever=True)
    net.rebuild_index()
    trainer = _trainer(net, train[:8], 4, [], contrastive=ContrastiveObjective(num_candidates=8))
    counts = _count_steps([trainer.optimizer, trainer.retriever_optimizer])
    trainer.run()
    assert trainer.state.iteration == 2
    assert [counts.get(id(p), 0) for p in net.parameters()] == [2] * len(list(net.parameters()))
    assert {"loss", "contrastive_loss", "retriever_segmentation_loss"} <= trainer.state.output[0].keys()
    everything = torch.optim.Adam(net.parameters())
    with pytest.raises(ValueError, match="share .* parameters"):
        JRASTrainer(
            device=torch.device("cpu"),
            max_epochs=1,
            train_data_loader=[],
            network=net,
            optimizer=everything,
            retriever_optimizer=torch.optim.Adam(net.retriever.parameters()),
            loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        )


@pytest.mark.parametrize("seg_grad", [True, False])
def test_bundle_optimisers_split_the_network_between_them(seg_grad):
    """train.json: ``optimizer`` holds the segmenter, ``retriever_optimizer`` the retriever, no parameter in both,
    none in neither, each with its own learning-rate schedule."""
    from lmseg_components.workflows import bundle_dir, load_bundle

    parser = load_bundle(bundle_dir("jras_segmentation"), ["train.json"], {"retriever_seg_grad": seg_grad})
    net = parser.get_parsed_content("network_def")
    segmenter, retriever = (
        {id(p) for g in parser.get_parsed_content(key).param_groups for p in g["params"]}
        for key in ("optimizer", "retriever_optimizer")
    )
    assert not segmenter & retriever
    assert segmenter | retriever == {id(p) for p in net.parameters()}
    assert segmenter == {id(p) for p in net.segmenter.parameters()}
    schedules = [parser[f"train#{k}#optimizer"] for k in ("lr_scheduler", "retriever_lr_scheduler")]
    assert schedules == ["@optimizer", "@retriever_optimizer"]
    assert parser["train#trainer#retriever_optimizer"] == "@retriever_optimizer"


def test_amp_iteration_under_cpu_bfloat16_autocast(splits):
    """The engine's AMP path (autocast around the one forward, the scaler's steps; MONAI's scaler disables itself
    without CUDA, so the CPU runs bfloat16 autocast unscaled): float32 finite losses, both networks trained."""
    train, _ = splits
    net = _network_with_gallery(train, retriever_seg_grad=True, mask_retriever=True)
    net.rebuild_index()
    before = [p.detach().clone() for p in net.parameters()]
    objective = ContrastiveObjective(num_candidates=8)
    trainer = _trainer(net, train[:8], 4, [], contrastive=objective, amp=True, amp_kwargs={"dtype": torch.bfloat16})
    seen = []
    trainer.add_event_handler(
        IterationEvents.LOSS_COMPLETED,
        lambda e: seen.append([e.state.output[k].dtype for k in ("pred", "loss", "contrastive_loss")]),
    )
    with pytest.warns(UserWarning, match="CUDA is not available"):
        trainer.run()
    # the forward ran under autocast, the losses in float32
    assert seen == [[torch.bfloat16, torch.float32, torch.float32]] * 2
    assert all(math.isfinite(trainer.state.output[0][k]) for k in ("loss", "contrastive_loss"))
    moved = [not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True)]
    assert all(moved)


def test_capacity_control_feeds_the_retrievers_own_mask_without_retrieval(splits):
    """guide_source='retriever_mask': the segmenter's extra input is a blank guide image and the softmax of the
    retriever's own segmentation of the query (no index, no gallery item); the segmentation loss does not reach the
    retriever; a retriever that does not segment is refused."""
    train, _ = splits
    net = _network(mask_retriever=True)
    net.guide_source = "retriever_mask"
    images = torch.stack([t["image"] for t in train[:2]])
    seen = []
    net.segmenter.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    net.train()
    logits = net(images)
    guide_image, guide_mask = seen[0][:, 1:2], seen[0][:, 2:]
    assert torch.equal(guide_image, torch.zeros_like(guide_image))
    with torch.no_grad():
        assert torch.allclose(guide_mask, net.retriever.segment(images).softmax(1), atol=1e-6)
    assert net.index is None and net.last_indices is None
    logits.sum().backward()
    assert all(p.grad is None for p in net.retriever.parameters())
    with pytest.raises(ValueError, match="needs a retriever that segments"):
        RetrievalAugmentedSegmenter(_network().retriever, net.segmenter, guide_source="retriever_mask")


def test_frozen_retriever_from_an_earlier_run_stays_as_loaded(splits, tmp_path):
    """Two-stage training: retriever_weights loads the retriever of a saved model.pt, freeze_retriever keeps it
    (no step, no contrastive term, eval mode inside net.train()); it cannot take the segmentation gradient."""
    train, _ = splits
    earlier = _network_with_gallery(train, mask_retriever=True)
    with torch.no_grad():
        for p in earlier.retriever.parameters():
            p.add_(0.01)
    # a J-RAS model.pt (BestModelSaver: one entry per network); a whole network's state dict loads the same
    torch.save(
        {"segmenter": earlier.segmenter.state_dict(), "retriever": earlier.retriever.state_dict()},
        tmp_path / "model.pt",
    )
    torch.save(earlier.state_dict(), tmp_path / "network.pt")
    flat = RetrievalAugmentedSegmenter(
        _network(mask_retriever=True).retriever, earlier.segmenter, retriever_weights=tmp_path / "network.pt"
    )
    assert all(torch.equal(flat.retriever.state_dict()[k], v) for k, v in earlier.retriever.state_dict().items())
    torch.manual_seed(0)
    retriever = MaskEmbeddingRetriever(1, 4, channels=(8, 16, 32), strides=(2, 2), pool_grid=8)
    segmenter = GuidedSegmenter(1, 4, "unet", features=(8, 8, 16, 16, 32, 8))
    net = RetrievalAugmentedSegmenter(
        retriever, segmenter, k=2, freeze_retriever=True, retriever_weights=tmp_path / "model.pt"
    )
    loaded = {k: v.clone() for k, v in net.retriever.state_dict().items()}
    assert all(torch.equal(loaded[k], v) for k, v in earlier.retriever.state_dict().items())
    net.set_gallery(*(torch.stack([t[k] for t in train]) for k in ("image", "label")), *_ids(train))
    net.rebuild_index()
    trainer = _trainer(net, train[:8], 4, [], contrastive=ContrastiveObjective(num_candidates=8))
    trainer.run()
    assert all(torch.equal(loaded[k], v) for k, v in net.retriever.state_dict().items())
    assert "contrastive_loss" not in trainer.state.output[0]
    net.train()
    assert net.segmenter.training and not net.retriever.training
    with pytest.raises(ValueError, match="retriever_seg_grad to false"):
        RetrievalAugmentedSegmenter(retriever, segmenter, freeze_retriever=True, retriever_seg_grad=True)
    with pytest.raises(FileNotFoundError, match="retriever_weights: no file"):
        RetrievalAugmentedSegmenter(retriever, segmenter, retriever_weights=tmp_path / "missing.pt")
    torch.save({"segmenter.x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="holds no retriever weights"):
        RetrievalAugmentedSegmenter(retriever, segmenter, retriever_weights=tmp_path / "other.pt")


def _ids(items) -> tuple[list[str], list[str]]:
    return [t["name"] for t in items], [t["case_id"] for t in items]


def test_scanner_like_views_change_contrast_and_shading_only_when_asked():
    """``view_gamma`` / ``view_bias`` off draw nothing extra (the same stream gives the same views as before);
    on, a view's intensity order within each image is kept by the contrast curve, while the curve itself bends
    (a linear ramp is no longer linear) and the bias field shades the image unevenly."""
    ramp = torch.linspace(0, 1, 32).repeat(2, 1, 32, 1)  # (2, 1, 32, 32): intensity grows along the last axis
    torch.manual_seed(0)
    plain = augment_views(ramp, noise_std=0.0, max_shift=0)
    torch.manual_seed(0)
    assert torch.equal(augment_views(ramp, noise_std=0.0, max_shift=0, gamma=0.0, bias=0.0), plain)
    torch.manual_seed(1)
    curved = augment_views(ramp, noise_std=0.0, max_shift=0, gamma=1.0)
    assert (curved.diff(dim=-1) >= -1e-6).all()  # monotone: the anatomy's intensity order survives
    second = curved.diff(dim=-1).diff(dim=-1)
    assert second.abs().amax() > 1e-3  # no longer a straight ramp
    torch.manual_seed(2)
    flat = torch.ones(2, 1, 32, 32)
    shaded = augment_views(flat, noise_std=0.0, max_shift=0, bias=0.4)
    per_image = shaded.flatten(1)
    assert (per_image.amax(1) - per_image.amin(1) > 0.2).all()  # a flat image gains smooth shading
    with pytest.raises(ValueError, match="view_gamma and view_bias"):
        ContrastiveObjective(view_gamma=-0.1)
