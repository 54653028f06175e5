"""Reader for the LViT layout of 2D text-guided datasets (QaTa-COV19, MosMedData+).

Layout::

    <root>/Train_Folder/img/<image>.png
    <root>/Train_Folder/labelcol/<mask>.png        # binary: background 0 and one foreground value (255, 1, ...)
    <root>/Train_Folder/Train_text.xlsx            # columns Image, Description
    <root>/Val_Folder/...  Val_text.xlsx
    <root>/Test_Folder/... Test_text.xlsx

QaTa-COV19 names masks ``mask_<image>`` and its ``Image`` column holds the mask name; MosMedData+ uses the
same name for image and mask. Both are recognised row by row. A CSV with the same two columns can replace the
xlsx (``<split>_text.csv`` beside it, or the GuideDecoder-style ``<root>/prompt/<split>.csv``).

Training reads ``Train`` and ``Val`` (:data:`TRAINING_SPLITS`), evaluation and inference ``Test``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from lmseg_components.data.problems import DataProblem, DatasetValidationError
from lmseg_components.text.phrasing import findings_zones

__all__ = [
    "LVIT_SPLITS",
    "TRAINING_SPLITS",
    "binary_mask_problem",
    "check_image_mask_pair",
    "check_images_readable",
    "find_text_table",
    "read_text_table",
    "read_lvit_split",
    "check_lvit",
]

LVIT_SPLITS = ("Train", "Val", "Test")
TRAINING_SPLITS = ("Train", "Val")
IMAGE_COLUMN = "Image"
TEXT_COLUMN = "Description"
AUX_COLUMN = "Auxiliary"
# every finding's lung zones ("upper left; lower right"), also those the description leaves unnamed: where a dataset
# says it, training can ask for a zone without a finding (RandNamesNothingd)
FINDINGS_COLUMN = "Findings"
QATA_MASK_PREFIX = "mask_"
ALL_FINDINGS_FOLDER = "labelcol_all"  # synthetic sets: every finding, named by the text or not


def find_text_table(root: str | Path, split: str) -> Path | None:
    """Return the text table of ``split`` (xlsx first, then CSV variants), or None when there is none."""
    root = Path(root)
    folder = root / f"{split}_Folder"
    for candidate in (
        folder / f"{split}_text.xlsx",
        folder / f"{split}_text.csv",
        root / "prompt" / f"{split.lower()}.csv",
    ):
        if candidate.is_file():
            return candidate
    return None


def read_text_table(path: str | Path) -> list[tuple[int, str, str, str, str | None]]:
    """Read an ``Image`` / ``Description`` table (plus optional columns: ``Auxiliary``, domain-knowledge prompts
    for TGC-Net; ``Findings``, the lung zones of every finding) from xlsx or CSV.

    Returns:
        ``(row, image, description, auxiliary, findings)``; ``row`` is the 1-based spreadsheet row (header is row
        1), ``auxiliary`` is empty without the column and ``findings`` is None without it.

    Raises:
        DatasetValidationError: the file cannot be read or lacks one of the two columns.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            with open(path, newline="", encoding="utf-8-sig") as f:
                rows = [list(r) for r in csv.reader(f)]
        else:
            from openpyxl import load_workbook

            workbook = load_workbook(path, read_only=True, data_only=True)
            try:
                rows = [list(r) for r in workbook.worksheets[0].iter_rows(values_only=True)]
            finally:
                workbook.close()
    except Exception as e:  # any parser error becomes one problem naming the file
        raise DatasetValidationError([DataProblem(str(path), f"cannot read text table: {e}")]) from e
    if not rows:
        raise DatasetValidationError([DataProblem(str(path), "text table is empty (no header row)")])
    header = [str(c).strip() if c is not None else "" for c in rows[0]]
    missing = [c for c in (IMAGE_COLUMN, TEXT_COLUMN) if c not in header]
    if missing:
        raise DatasetValidationError(
            [DataProblem(str(path), f"missing column(s) {missing}; header is {header}", row=1)]
        )
    columns = [header.index(c) if c in header else None for c in (IMAGE_COLUMN, TEXT_COLUMN, AUX_COLUMN)]
    findings = header.index(FINDINGS_COLUMN) if FINDINGS_COLUMN in header else None
    table = []
    for number, row in enumerate(rows[1:], start=2):
        if all(c is None or str(c).strip() == "" for c in row):
            continue
        cells = ["" if c is None else str(c).strip() for c in _cells(row, columns)]
        (zones,) = _cells(row, [findings])
        table.append((number, *cells, None if findings is None else "" if zones is None else str(zones).strip()))
    return table


def _cells(row: Sequence, columns: Sequence[int | None]) -> list:
    """The cells of ``row`` in ``columns`` (None for a missing column or a short row)."""
    return [row[i] if i is not None and i < len(row) else None for i in columns]


def _resolve_pair(value: str, img_dir: Path, mask_dir: Path) -> tuple[Path | None, Path | None]:
    """Map a table value to (image, mask) paths under either naming convention; None where not found."""
    candidates = [(value, value), (value, QATA_MASK_PREFIX + value)]
    if value.startswith(QATA_MASK_PREFIX):
        candidates.insert(0, (value[len(QATA_MASK_PREFIX) :], value))
    image = mask = None
    for image_name, mask_name in candidates:
        if image is None and (img_dir / image_name).is_file():
            image = img_dir / image_name
        if (img_dir / image_name).is_file() and (mask_dir / mask_name).is_file():
            return img_dir / image_name, mask_dir / mask_name
    for _, mask_name in candidates:
        if (mask_dir / mask_name).is_file():
            mask = mask_dir / mask_name
            break
    return image, mask


def binary_mask_problem(values: Sequence[float]) -> str | None:
    """Why a mask with these distinct values is not binary, or None when it is.

    A binary mask holds background 0 and at most one foreground value, whatever the encoding (0/1, 0/255,
    boolean, palette indices); an all-background or all-foreground mask is binary too. This one rule is applied
    by the readers (``lmseg check-data``) and by :class:`~lmseg_components.data.image_transforms.BinaryMaskd`
    at training, so that both accept and refuse the same masks.
    """
    distinct = sorted({float(v) for v in values})
    if len(distinct) > 2:
        shown = ", ".join(f"{v:g}" for v in distinct[:8]) + (", ..." if len(distinct) > 8 else "")
        return f"non-binary mask: {len(distinct)} values ({shown}), expected background 0 and one foreground value"
    if len(distinct) == 2 and distinct[0] != 0:
        return f"non-binary mask: values {distinct[0]:g} and {distinct[1]:g}, expected background 0"
    return None


def check_images_readable(records: Sequence[dict], key: str = "image") -> list[dict]:
    """Decode every ``record[key]`` image once and return ``records`` unchanged when all are readable.

    The inference configs wrap their datalist with it: a corrupt or truncated input is refused before the first
    mask is written, with every bad file listed, instead of aborting part-way with PIL's "image file is
    truncated" and no file name.

    Raises:
        DatasetValidationError: naming every image that cannot be decoded.
    """
    problems: list[DataProblem] = []
    for record in records:
        _open_image(Path(record[key]), problems, None)
    if problems:
        raise DatasetValidationError(problems)
    return list(records)


def _open_image(path: Path, problems: list[DataProblem], row: int | None) -> np.ndarray | None:
    try:
        if path.suffix.lower() == ".dcm":
            import pydicom  # lazy: only a user's own DICOM inputs need it

            return np.asarray(pydicom.dcmread(path).pixel_array)
        with Image.open(path) as im:
            im.load()
            return np.asarray(im)
    except Exception as e:  # PIL and pydicom raise many types for corrupt files
        problems.append(DataProblem(str(path), f"unreadable or corrupt image ({e})", row=row))
        return None


def check_image_mask_pair(
    image: Path, mask: Path, row: int | None, strict_masks: bool, problems: list[DataProblem]
) -> None:
    """Append to ``problems`` what is wrong with an image and its mask: unreadable, sizes that differ, a mask that
    is not binary (with ``strict_masks``) or whose colour channels differ; ``row`` is the text table's row."""
    img = _open_image(image, problems, row)
    msk = _open_image(mask, problems, row)
    if img is None or msk is None:
        return
    if img.shape[:2] != msk.shape[:2]:
        problems.append(
            DataProblem(
                str(mask),
                f"mask size {msk.shape[1]}x{msk.shape[0]} differs from image {image.name} "
                f"size {img.shape[1]}x{img.shape[0]}",
                row=row,
            )
        )
    if msk.ndim == 3:
        if not all(np.array_equal(msk[..., 0], msk[..., c]) for c in range(1, min(msk.shape[2], 3))):
            problems.append(DataProblem(str(mask), "mask has differing colour channels, expected a grey mask", row))
        msk = msk[..., 0]
    problem = binary_mask_problem(np.unique(msk).tolist()) if strict_masks else None
    if problem is not None:
        problems.append(DataProblem(str(mask), problem, row=row))


def read_lvit_split(
    root: str | Path,
    split: str = "Train",
    text_file: str | Path | None = None,
    validate: bool = True,
    strict_masks: bool = True,
) -> list[dict]:
    """Read one split of an LViT-layout dataset into MONAI-style records.

    Args:
        root: dataset root holding ``<split>_Folder``.
        split: one of ``Train``, ``Val``, ``Test``.
        text_file: text table to use instead of the one found by :func:`find_text_table`.
        validate: open every image and mask and check sizes and mask values (see ``strict_masks``).
        strict_masks: report masks that are not binary (see :func:`binary_mask_problem`).

    Returns:
        one dict per text row: ``image`` and ``label`` (absolute paths), ``text``, ``name`` (image file name),
        ``case_id`` (image stem), ``aux_text`` where the table has a non-empty ``Auxiliary`` cell,
        ``label_all`` where ``<split>_Folder/labelcol_all`` holds a mask of every finding under the mask's name
        (the synthetic sets; the target of an empty prompt, see :class:`~lmseg_components.data.TextDropoutd`),
        and ``findings`` where the table has a ``Findings`` column: the lung zones of every finding, named by the
        text or not (``"upper left; lower right"``; empty: no finding), which
        :class:`~lmseg_components.data.RandNamesNothingd` reads.

    Raises:
        DatasetValidationError: listing every problem found, each naming its file and row.
    """
    records, problems = _read_split(Path(root), split, text_file, validate=validate, strict_masks=strict_masks)
    if problems:
        raise DatasetValidationError(problems)
    return records


def check_lvit(root: str | Path, strict_masks: bool = True) -> list[DataProblem]:
    """Every problem found in every split present under ``root``; the splits training reads
    (:data:`TRAINING_SPLITS`) must be present."""
    root = Path(root)
    present = [s for s in LVIT_SPLITS if (root / f"{s}_Folder").is_dir()]
    problems = [
        DataProblem(str(root / f"{s}_Folder"), "split folder is missing (training reads Train_Folder and Val_Folder)")
        for s in TRAINING_SPLITS
        if s not in present
    ]
    for split in present:
        problems += _read_split(root, split, text_file=None, validate=True, strict_masks=strict_masks)[1]
    return problems


def _read_split(
    root: Path, split: str, text_file: str | Path | None, validate: bool, strict_masks: bool
) -> tuple[list[dict], list[DataProblem]]:
    if split not in LVIT_SPLITS:
        raise ValueError(f"split must be one of {LVIT_SPLITS}, got {split!r}.")
    folder = root / f"{split}_Folder"
    img_dir, mask_dir = folder / "img", folder / "labelcol"
    problems = [DataProblem(str(d), "folder is missing") for d in (img_dir, mask_dir) if not d.is_dir()]
    table_path = Path(text_file) if text_file is not None else find_text_table(root, split)
    if table_path is None:
        problems.append(DataProblem(str(folder / f"{split}_text.xlsx"), "text table is missing (xlsx or csv)"))
    if problems:
        return [], problems
    try:
        table = read_text_table(table_path)
    except DatasetValidationError as e:
        return [], e.problems

    records: list[dict] = []
    seen: dict[str, int] = {}
    for row, value, text, auxiliary, findings in table:
        if not value:
            problems.append(DataProblem(str(table_path), "empty Image cell", row=row))
            continue
        if not text:
            problems.append(DataProblem(str(table_path), f"empty Description for {value!r}", row=row))
        image, mask = _resolve_pair(value, img_dir, mask_dir)
        if image is None:
            problems.append(DataProblem(str(table_path), f"text row names {value!r} but no image in {img_dir}", row))
        if mask is None:
            problems.append(DataProblem(str(table_path), f"no mask for {value!r} in {mask_dir}", row=row))
        if image is None or mask is None:
            continue
        if image.name in seen:
            problems.append(
                DataProblem(str(table_path), f"image {image.name} already described in row {seen[image.name]}", row)
            )
            continue
        seen[image.name] = row
        if validate:
            check_image_mask_pair(image, mask, row, strict_masks, problems)
        record = {
            "image": str(image.resolve()),
            "label": str(mask.resolve()),
            "text": text,
            "name": image.name,
            "case_id": image.stem,
        }
        if auxiliary:
            record["aux_text"] = auxiliary
        if findings is not None:
            try:
                findings_zones(findings)
            except ValueError as e:
                problems.append(DataProblem(str(table_path), f"{FINDINGS_COLUMN} of {value!r}: {e}", row=row))
            record["findings"] = findings
        every_finding = folder / ALL_FINDINGS_FOLDER / mask.name
        if every_finding.is_file():
            record["label_all"] = str(every_finding.resolve())
        records.append(record)
    for orphan in sorted(p for p in img_dir.iterdir() if p.is_file() and p.name not in seen):
        if not any(entry[1] in (orphan.name, QATA_MASK_PREFIX + orphan.name) for entry in table):
            problems.append(DataProblem(str(orphan), f"image has no text row in {table_path.name}"))
    return records, problems
