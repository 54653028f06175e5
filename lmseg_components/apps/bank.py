"""The J-RAS memory bank is the user's: add labelled cases to a trained bundle's gallery and retrieval index, list
them, remove them, rebuild the index, all without retraining.

A trained ``bundles/jras_segmentation`` holds ``models/model.pt`` (``{segmenter, retriever}``), ``models/gallery.pt``
(the training slices after the gallery's preprocessing), ``models/user_gallery.pt`` (the cases users added, once
there are some) and ``models/index.pt`` (the embeddings of both, training slices first, by the saved retriever,
with the retriever's weight fingerprint). :func:`add_cases` reads new cases of an ACDC folder with the bundle's
reader and the gallery's own preprocessing (``gallery#dataset#transform`` of ``train.json``, parsed with
``monai.bundle.ConfigParser``), embeds them with the saved retriever and appends them to the user's gallery and the
index. Retraining rewrites ``gallery.pt`` and leaves ``user_gallery.pt`` alone; the index it saves holds both,
embedded by the new retriever, so the user's cases outlive it;
:func:`remove_cases` drops every slice of the given cases; :func:`list_cases` tells what the bank holds. Inference
(``LoadRetrievalState``) then retrieves from the new bank: the index keeps the retriever's fingerprint and the
gallery's ids in order, which is what it checks.

Both files are written together by :func:`~lmseg_components.files.save_together` (a journal naming both is the
commit point), so a killed command leaves the old pair or the new one, never one of each; the next reader
(a bank command, ``LoadRetrievalState``) completes a committed write. The gallery is the bank's record and the
index is derived from it: :func:`rebuild_index` re-embeds the gallery with the saved retriever when the index is
lost, truncated or was built by another retriever, and ``add`` / ``remove`` re-embed it when it lists other ids
(a copy of one file without the other).

Command line: ``lmseg jras-bank add --bundle_root R --dataset_dir D``, ``lmseg jras-bank list --bundle_root R``,
``lmseg jras-bank remove --bundle_root R --case_id patient101``, ``lmseg jras-bank rebuild --bundle_root R`` (or
``python -m lmseg_components.apps.bank``).
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from torch import nn

from lmseg_components.data.acdc import read_acdc_slices, read_busi
from lmseg_components.data.check import detect_layout
from lmseg_components.engines.checkpoint_loader import check_checkpoint_file
from lmseg_components.files import finish_saves, save_together
from lmseg_components.fingerprint import weights_fingerprint
from lmseg_components.retrieval.augmented import concat_galleries
from lmseg_components.retrieval.index import (
    FaissIndex,
    RetrievalIndex,
    TorchIndex,
    create_index,
    load_index,
    rebuild_command,
)
from lmseg_components.runs import trained_values

__all__ = [
    "BankCase",
    "add_cases",
    "add_labelled_image",
    "jras_bank",
    "list_cases",
    "rebuild_index",
    "remove_cases",
    "rebuild_command",
]

ACTIONS = ("add", "list", "remove", "rebuild")
_GALLERY_KEYS = ("images", "labels", "ids", "case_ids")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BankCase:
    """One case of the bank: its id, how many gallery slices it has, and the dataset folder it was added from
    (``None``: it came with training)."""

    case_id: str
    slices: int
    source: str | None


@dataclass
class _Bank:
    """An opened bank: the parsed config, the file paths, the gallery (``images`` (N, C, H, W) float, ``labels``
    (N, 1, H, W) int64, ``ids``, ``case_ids``, ``sources`` case -> folder), the saved retriever (eval mode) and
    the index that matches the gallery."""

    parser: ConfigParser
    gallery_path: Path
    user_gallery_path: Path
    index_path: Path
    gallery: dict
    retriever: nn.Module
    device: torch.device
    index: RetrievalIndex | None


def _config(
    bundle_root: str | Path, config_file: str | Path | Sequence[str | Path] | None, overrides: dict | None
) -> ConfigParser:
    """``config_file`` (default ``<bundle_root>/configs/train.json``; several, comma-separated or a list, are merged
    in order, e.g. ``train.json,busi.json`` for a bundle trained on BUSI) with ``bundle_root`` set, the values the
    model was trained with (the run record in ``<ckpt_dir>/checkpoint.pt``, when there is one) and ``overrides`` on
    top."""
    root = Path(bundle_root)
    if config_file is None:
        files = [root / "configs" / "train.json"]
    elif isinstance(config_file, str | Path):
        files = [Path(f) for f in str(config_file).split(",")]
    else:
        files = [Path(f) for f in config_file]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"no bundle config {', '.join(missing)}: pass config_file (the bundle's train.json).")
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    parser["bundle_root"] = str(root)
    trained = trained_values(parser.get_parsed_content("ckpt_dir"))
    for key, value in trained.items():
        if key in parser and not isinstance(parser.get(key), dict):  # plain values, not components
            parser[key] = value
    for key, value in (overrides or {}).items():
        parser[key] = value
    return parser


def _read_gallery(path: Path) -> dict:
    """The gallery written by training (``RetrievalAugmentedSegmenter.save_gallery``) or by this module."""
    finish_saves(path.parent)
    if not path.is_file():
        raise FileNotFoundError(f"no retrieval gallery at {path}: train the bundle first (it writes one).")
    try:
        check_checkpoint_file(path)
    except ValueError as e:
        raise ValueError(f"{e}; restore the gallery from a copy, or train the bundle again (it writes one)") from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing = [key for key in _GALLERY_KEYS if key not in state]
    if missing:
        raise ValueError(f"{path}: not a J-RAS gallery (missing {missing}).")
    return {**state, "sources": dict(state.get("sources", {}))}


def _read_bank(gallery_path: Path, user_gallery_path: Path) -> dict:
    """The training gallery followed by the user's (when there is one), as one gallery; ``sources`` names the
    user's cases."""
    paths = [gallery_path] + ([user_gallery_path] if user_gallery_path.is_file() else [])
    return concat_galleries([_read_gallery(path) for path in paths])


def _load_retriever(parser: ConfigParser, device: torch.device) -> nn.Module:
    """``retriever_def`` with the weights of ``<ckpt_dir>/model.pt``, in eval mode on ``device``."""
    path = check_checkpoint_file(Path(parser.get_parsed_content("ckpt_dir")) / "model.pt")
    retriever = parser.get_parsed_content("retriever_def")
    retriever.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["retriever"])
    return retriever.to(device).eval()


@torch.no_grad()
def _embed(retriever: nn.Module, images: torch.Tensor, device: torch.device, batch: int = 64) -> torch.Tensor:
    """Embeddings (N, D) on the CPU of ``images`` (N, C, H, W), as ``rebuild_index`` makes them (eval mode)."""
    return torch.cat([retriever(images[i : i + batch].to(device)).float().cpu() for i in range(0, len(images), batch)])


def _empty_like(index: RetrievalIndex) -> RetrievalIndex:
    """An empty index of the same backend and settings as ``index``."""
    if isinstance(index, FaissIndex):
        return FaissIndex(index.dim, index.kind, index.nlist, index.nprobe, index.hnsw_m, index.ef_search)
    return TorchIndex(index.dim, index.chunk, index.scan_dtype)


def _stored_embeddings(index: RetrievalIndex) -> torch.Tensor:
    """The (N, D) normalised embeddings an index holds, in row order."""
    if isinstance(index, TorchIndex):
        return index.embeddings
    return torch.from_numpy(index.index.reconstruct_n(0, len(index)))  # FAISS: flat, IVF (scans its lists), HNSW


def _open(
    bundle_root: str | Path, config_file: str | Path | None, overrides: dict | None, read_index: bool = True
) -> _Bank:
    """Read the gallery, the saved retriever and its index (refused, naming ``rebuild``, when it is unreadable or
    another retriever built it; re-embedded from the gallery when it lists other ids). Without ``read_index``, no
    index (``index`` None)."""
    parser = _config(bundle_root, config_file, overrides)
    gallery_path = Path(parser.get_parsed_content("gallery_path"))
    user_gallery_path = Path(parser.get_parsed_content("user_gallery_path"))
    index_path = Path(parser.get_parsed_content("index_path"))
    gallery = _read_bank(gallery_path, user_gallery_path)
    device = parser.get_parsed_content("torch_device")
    retriever = _load_retriever(parser, device)
    if not read_index:
        return _Bank(parser, gallery_path, user_gallery_path, index_path, gallery, retriever, device, None)
    finish_saves(index_path.parent)
    try:
        index = load_index(index_path, weights_fingerprint(retriever))
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"{e} Rebuild it from the gallery: {rebuild_command(bundle_root)}") from None
    if index.ids != gallery["ids"]:
        logger.warning(
            f"{index_path} lists {len(index)} items, not the {len(gallery['ids'])} of {gallery_path} (one file "
            "copied without the other?): re-embedding the gallery with the saved retriever."
        )
        rebuilt = _empty_like(index)
        rebuilt.add(_embed(retriever, gallery["images"], device), gallery["ids"], gallery["case_ids"])
        index = rebuilt
    return _Bank(parser, gallery_path, user_gallery_path, index_path, gallery, retriever, device, index)


def _keep_rows(bank: _Bank, rows: list[int]) -> None:
    """Keep only gallery / index ``rows`` (in their order); the index keeps its stored embeddings."""
    gallery, keep = bank.gallery, torch.tensor(rows, dtype=torch.long)
    cases = {gallery["case_ids"][r] for r in rows}
    gallery["images"], gallery["labels"] = gallery["images"][keep], gallery["labels"][keep]
    gallery["ids"] = [gallery["ids"][r] for r in rows]
    gallery["case_ids"] = [gallery["case_ids"][r] for r in rows]
    gallery["sources"] = {c: s for c, s in gallery["sources"].items() if c in cases}
    index = _empty_like(bank.index)
    index.add(_stored_embeddings(bank.index)[keep], gallery["ids"], gallery["case_ids"])
    bank.index = index


def _save(bank: _Bank) -> None:
    """Write the training gallery, the user's gallery (the cases with a source folder) and the index (training
    rows first, with the retriever's fingerprint) together: a kill leaves all old or all new."""
    paths = (bank.gallery_path, bank.user_gallery_path, bank.index_path)
    if len({path.parent.resolve() for path in paths}) > 1:
        raise ValueError(f"{', '.join(map(str, paths))} must lie in one folder (they are written together).")
    sources = bank.gallery["sources"]
    user = [r for r, c in enumerate(bank.gallery["case_ids"]) if c in sources]
    training = [r for r, c in enumerate(bank.gallery["case_ids"]) if c not in sources]
    _keep_rows(bank, training + user)
    gallery, split = bank.gallery, len(training)
    parts = {}
    for path, rows, part_sources in (
        (bank.gallery_path, slice(None, split), {}),
        (bank.user_gallery_path, slice(split, None), sources),
    ):
        parts[path] = {
            "images": gallery["images"][rows],
            "labels": gallery["labels"][rows],
            "ids": gallery["ids"][rows],
            "case_ids": gallery["case_ids"][rows],
            "sources": part_sources,
        }
    save_together({**parts, bank.index_path: bank.index.state(weights_fingerprint(bank.retriever))})


def _summary(gallery: dict, cases: Sequence[str] | None = None) -> list[BankCase]:
    counts = Counter(gallery["case_ids"])
    order = dict.fromkeys(gallery["case_ids"]) if cases is None else cases
    return [BankCase(c, counts[c], gallery["sources"].get(c)) for c in order]


def _preprocess(bank: _Bank, records: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """The records through the gallery's preprocessing: images (N, C, H, W) float and labels (N, 1, H, W) int64,
    refused when an image's shape is not the gallery's or a label lies outside the bundle's classes."""
    transform = bank.parser.get_parsed_content("gallery#dataset#transform")
    num_classes = int(bank.parser.get_parsed_content("num_classes"))
    expected = tuple(bank.gallery["images"].shape[1:])
    images, labels = [], []
    for record in records:
        item = transform(record)
        image = torch.as_tensor(item["image"]).as_subclass(torch.Tensor).float()
        label = torch.as_tensor(item["label"]).as_subclass(torch.Tensor).long()
        if tuple(image.shape) != expected:
            size = bank.parser.get_parsed_content("image_size") if "image_size" in bank.parser else "?"
            raise ValueError(
                f"{record['image']}: preprocessed to {'x'.join(map(str, image.shape))} (image_size={size}) but the "
                f"gallery {bank.gallery_path} holds {'x'.join(map(str, expected))} images: pass the image_size and "
                "in_channels the bundle was trained with."
            )
        values = set(torch.unique(label).tolist())
        outside = sorted(v for v in values if not 0 <= v < num_classes)
        if outside:
            raise ValueError(
                f"{record['label']}: label values {outside} are outside the bundle's label set 0-{num_classes - 1} "
                f"(num_classes={num_classes}) of the gallery {bank.gallery_path}."
            )
        images.append(image)
        labels.append(label)
    return torch.stack(images), torch.stack(labels)


def add_cases(
    bundle_root: str | Path,
    dataset_dir: str | Path,
    replace: bool = False,
    config_file: str | Path | None = None,
    overrides: dict | None = None,
) -> list[BankCase]:
    """Add every labelled case of an ACDC or BUSI folder to a trained bundle's gallery and index, without retraining.

    ACDC slices are read with :func:`~lmseg_components.data.read_acdc_slices` (ids ``patientXXX_frameYY_zNN``, case
    id the patient), BUSI images with :func:`~lmseg_components.data.read_busi` (case id ``<class>/<image>``; give the
    bundle's ``busi.json`` in ``config_file``), preprocessed by the config's ``gallery#dataset#transform`` (what
    training put in the gallery: a raw image of another size is resized like the training images), embedded by the
    retriever of ``<ckpt_dir>/model.pt`` and appended to the user's gallery (``user_gallery.pt``) and ``index.pt``.

    Args:
        bundle_root: the trained bundle (``models/model.pt``, ``gallery.pt``, ``index.pt``).
        dataset_dir: the folder of the new cases: ACDC (``patientXXX/patientXXX_frameYY[_gt].nii.gz``) or BUSI
            (``benign/``, ``malignant/``, ``normal/`` with ``<image>_mask*.png``).
        replace: replace the slices of cases already in the bank; without it they are refused.
        config_file: the bundle's training config (default ``<bundle_root>/configs/train.json``); several,
            comma-separated, are merged (``configs/train.json,configs/busi.json`` for a bundle trained on BUSI).
        overrides: config values over the trained ones (the run record in ``<ckpt_dir>/checkpoint.pt``).

    Returns:
        the added cases, in the reader's order.

    Raises:
        DatasetValidationError: problems of the folder (files, shapes, labels outside ACDC's 0-3).
        ValueError: a case id already in the bank (without ``replace``), an image that preprocesses to another
            (C, H, W) than the gallery's, labels outside ``range(num_classes)``; each message names the file.
        StaleIndexError: the index was built by another retriever than the one in ``model.pt``.
    """
    bank = _open(bundle_root, config_file, overrides)
    return _add_records(bank, _read_cases(dataset_dir), str(Path(dataset_dir).resolve()), replace)


def add_labelled_image(
    bundle_root: str | Path,
    image: str | Path,
    label: str | Path,
    case_id: str,
    replace: bool = False,
    config_file: str | Path | None = None,
    overrides: dict | None = None,
) -> BankCase:
    """Add one labelled image to a trained bundle's bank (what MONAI Label's "save label" gives: an image and the
    annotator's label). A NIfTI volume becomes one gallery item per slice (``<case_id>_zNN``), a 2D image one item
    (``case_id``); preprocessing, embedding and saving as :func:`add_cases`.

    Args:
        bundle_root: the trained bundle.
        image, label: the image file and its label map on the same grid (labels in ``range(num_classes)``).
        case_id: the case's id in the bank (retrieval never guides a query with its own case).
        replace: replace a case of this id already in the bank; without it, it is refused.
        config_file, overrides: as :func:`add_cases`.

    Raises:
        ValueError / FileNotFoundError: as :func:`add_cases`; a missing file; an image and label of other shapes.
    """
    import nibabel as nib

    image, label = Path(image), Path(label)
    for path in (image, label):
        if not path.is_file():
            raise FileNotFoundError(f"no file {path}")
    bank = _open(bundle_root, config_file, overrides)
    if image.name.lower().endswith((".nii", ".nii.gz")):
        shape, label_shape = nib.load(str(image)).shape, nib.load(str(label)).shape
        if tuple(shape) != tuple(label_shape):
            raise ValueError(f"{label}: label shape {label_shape} differs from the image's {shape} ({image})")
        records = [
            {"image": str(image), "label": str(label), "slice": z, "case_id": case_id, "name": f"{case_id}_z{z:02d}"}
            for z in range(shape[2])
        ]
    else:
        records = [{"image": str(image), "label": str(label), "case_id": case_id, "name": case_id}]
    (added,) = _add_records(bank, records, str(image.resolve()), replace)
    return added


def _add_records(bank: _Bank, records: list[dict], source: str, replace: bool) -> list[BankCase]:
    """Preprocess, embed and append ``records`` (one per gallery item, with ``case_id`` and ``name``) to the bank and
    save it; ``source`` is where the new cases came from."""
    new_cases = list(dict.fromkeys(r["case_id"] for r in records))
    in_bank = set(bank.gallery["case_ids"])
    present = [c for c in new_cases if c in in_bank]
    if present and not replace:
        raise ValueError(
            f"{source}: cases {present} are already in the bank {bank.gallery_path}; pass --replace to replace "
            "their slices, or rename the new cases."
        )
    images, labels = _preprocess(bank, records)
    if present:
        _keep_rows(bank, [r for r, c in enumerate(bank.gallery["case_ids"]) if c not in present])
    ids, case_ids = [r["name"] for r in records], [r["case_id"] for r in records]
    bank.index.add(_embed(bank.retriever, images, bank.device), ids, case_ids)
    gallery = bank.gallery
    gallery["images"] = torch.cat([gallery["images"], images])
    gallery["labels"] = torch.cat([gallery["labels"], labels])
    gallery["ids"], gallery["case_ids"] = gallery["ids"] + ids, gallery["case_ids"] + case_ids
    gallery["sources"].update(dict.fromkeys(new_cases, source))
    _save(bank)
    return _summary(gallery, new_cases)


def _read_cases(dataset_dir: str | Path) -> list[dict]:
    """The labelled cases of an ACDC or BUSI folder, one record per gallery item."""
    layout = detect_layout(dataset_dir)
    if layout == "acdc":
        return read_acdc_slices(dataset_dir)
    if layout == "busi":
        return read_busi(dataset_dir)
    found = f"it looks like {layout}" if layout else "no known layout"
    raise ValueError(f"{dataset_dir}: the bank takes ACDC or BUSI folders ({found}; see lmseg check-data).")


def list_cases(
    bundle_root: str | Path, config_file: str | Path | None = None, overrides: dict | None = None
) -> list[BankCase]:
    """The cases of a bundle's gallery, in gallery order, with their slice counts and source folders."""
    parser = _config(bundle_root, config_file, overrides)
    paths = (Path(parser.get_parsed_content(key)) for key in ("gallery_path", "user_gallery_path"))
    return _summary(_read_bank(*paths))


def remove_cases(
    bundle_root: str | Path,
    case_ids: str | Sequence[str],
    config_file: str | Path | None = None,
    overrides: dict | None = None,
) -> list[BankCase]:
    """Remove every slice of ``case_ids`` from a bundle's gallery and index (the other rows keep their order, images
    and stored embeddings, so removing the cases an :func:`add_cases` added restores the bank as it was).

    Args:
        bundle_root: the trained bundle.
        case_ids: one case id or several.
        config_file: see :func:`add_cases`.
        overrides: see :func:`add_cases`.

    Returns:
        the removed cases.

    Raises:
        ValueError: a case id not in the bank, or fewer than ``k`` gallery items (guides per query) would remain.
    """
    bank = _open(bundle_root, config_file, overrides)
    wanted = [case_ids] if isinstance(case_ids, str) else [str(c) for c in case_ids]
    known = list(dict.fromkeys(bank.gallery["case_ids"]))
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise ValueError(f"cases {unknown} are not in the bank {bank.gallery_path} (it holds {known}).")
    keep = [r for r, c in enumerate(bank.gallery["case_ids"]) if c not in wanted]
    k = int(bank.parser.get_parsed_content("k"))
    if len(keep) < k:
        raise ValueError(
            f"removing {wanted} would leave {len(keep)} items in {bank.gallery_path}, fewer than k={k} guides per "
            "query."
        )
    removed = _summary(bank.gallery, wanted)
    _keep_rows(bank, keep)
    _save(bank)
    return removed


def rebuild_index(bundle_root: str | Path, config_file: str | Path | None = None, overrides: dict | None = None) -> int:
    """Re-embed the whole gallery with the retriever of ``<ckpt_dir>/model.pt`` into a new index (backend
    ``index_backend`` as trained), replacing ``index.pt``: what to run when it is lost, truncated, or was built by
    another retriever. Returns the number of items indexed."""
    bank = _open(bundle_root, config_file, overrides, read_index=False)
    gallery = bank.gallery
    embeddings = _embed(bank.retriever, gallery["images"], bank.device)
    bank.index = create_index(embeddings.shape[1], bank.parser.get_parsed_content("index_backend"))
    bank.index.add(embeddings, gallery["ids"], gallery["case_ids"])
    _save(bank)
    return len(bank.index)


def jras_bank(
    action: str,
    bundle_root: str,
    dataset_dir: str | None = None,
    case_id: str | Sequence[str] | None = None,
    replace: bool = False,
    config_file: str | None = None,
    **overrides,
) -> None:
    """Manage a trained J-RAS bundle's memory bank (gallery + retrieval index) without retraining.

    ``add --bundle_root R --dataset_dir D [--replace]`` adds the labelled cases of the ACDC or BUSI folder ``D``;
    ``list --bundle_root R`` prints case ids, slice counts and source folders; ``remove --bundle_root R --case_id
    X[,Y]`` removes cases; ``rebuild --bundle_root R`` re-embeds the gallery into a new index. Inference
    (``python -m monai.bundle run inference``) then retrieves from the new bank.

    Args:
        action: ``add``, ``list``, ``remove`` or ``rebuild``.
        bundle_root: the trained bundle (``models/model.pt``, ``gallery.pt``, ``index.pt``).
        dataset_dir: with ``add``, the ACDC or BUSI folder of the new cases.
        case_id: with ``remove``, one case id or a comma-separated list.
        replace: with ``add``, replace cases already in the bank.
        config_file: the bundle's training config (default ``<bundle_root>/configs/train.json``); several,
            comma-separated, are merged (``configs/train.json,configs/busi.json`` for a bundle trained on BUSI).
        overrides: config values, e.g. ``--device cpu``; the trained ones come from ``models/checkpoint.pt``.
    """
    try:
        if action == "add":
            if dataset_dir is None:
                raise ValueError("add needs --dataset_dir (an ACDC folder of labelled cases).")
            cases = add_cases(bundle_root, dataset_dir, replace, config_file, overrides)
            print(f"added {len(cases)} cases ({sum(c.slices for c in cases)} slices) from {dataset_dir}")
        elif action == "list":
            cases = list_cases(bundle_root, config_file, overrides)
            print(f"{'case_id':<16} {'slices':>6}  source")
            for c in cases:
                print(f"{c.case_id:<16} {c.slices:>6}  {c.source or '(training)'}")
        elif action == "remove":
            if case_id is None:
                raise ValueError("remove needs --case_id (one id or a comma-separated list).")
            ids = [str(c) for c in case_id] if isinstance(case_id, (list, tuple)) else str(case_id).split(",")
            cases = remove_cases(bundle_root, ids, config_file, overrides)
            print(f"removed {len(cases)} cases ({sum(c.slices for c in cases)} slices): {[c.case_id for c in cases]}")
        elif action == "rebuild":
            print(f"indexed {rebuild_index(bundle_root, config_file, overrides)} gallery items")
        else:
            raise ValueError(f"action must be one of {ACTIONS}, got {action!r}.")
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    import fire

    fire.Fire(jras_bank)
