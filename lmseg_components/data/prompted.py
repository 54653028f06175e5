"""A user's own images and their text prompts, without a dataset layout: image files (PNG, JPEG, DICOM, NIfTI) and
a ``prompts.json`` / ``prompts.csv`` next to them, or one prompt for all. Read by ``lmseg segment``, the bundles'
``inference.json`` (``--images DIR --prompts FILE``) and the MONAI Deploy app."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "PROMPTS_FILES", "read_prompted_images", "read_prompts_file"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".nii", ".nii.gz")
PROMPTS_FILES = ("prompts.json", "prompts.csv")  # looked up in the images' folder when no prompts file is given


def _is_image(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def _check_prompt(value, where: str) -> str | list[str]:
    # an empty string is the empty prompt ("every finding", for a model trained with text dropout)
    if isinstance(value, str):
        return value if value.strip() else ""
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return list(value)
    raise ValueError(f"{where}: a prompt must be a string or a list of non-empty strings, got {value!r}")


def _read_json_prompts(path: Path) -> dict:
    try:
        prompts = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(prompts, dict):
        raise ValueError(f"{path}: must be a JSON object mapping image file names to prompts")
    return prompts


def _read_csv_prompts(path: Path) -> dict:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"image", "text"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: needs a header row with the columns 'image' and 'text', got {reader.fieldnames}")
        prompts: dict = {}
        for row_number, row in enumerate(reader, start=2):
            name = (row["image"] or "").strip()
            if name in prompts:
                raise ValueError(f"{path}: row {row_number}: image {name!r} is named twice")
            prompts[name] = row["text"] if row["text"] is not None else ""
    return prompts


def read_prompts_file(path: str | Path) -> dict:
    """The raw ``{image file name or "default": prompt}`` of ``prompts.json`` (an object; a prompt is a string, or
    a list of strings for bundles that take one prompt per class) or ``prompts.csv`` (columns ``image``, ``text``;
    one string prompt per row; the image ``default`` names the prompt of the images it does not list)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompts file {path} does not exist")
    readers = {".json": _read_json_prompts, ".csv": _read_csv_prompts}
    if path.suffix.lower() not in readers:
        raise ValueError(f"prompts file {path}: expected a .json or .csv file")
    try:
        return readers[path.suffix.lower()](path)
    except UnicodeDecodeError as e:
        byte = e.object[e.start : e.start + 1].hex()
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{byte} at offset {e.start}); save it as UTF-8") from None


def read_prompted_images(
    images: str | Path | Sequence[str | Path],
    prompts: str | Path | None = None,
    text: str | None = None,
    default: str | list[str] | None = None,
) -> list[dict]:
    """The records ``{"image": path, "text": prompt}`` of image files, in the order given (a folder's images
    sorted by file name).

    Args:
        images: an image file, a folder of images, or a list of image files (PNG, JPEG, DICOM ``.dcm``, NIfTI).
        prompts: a ``prompts.json`` / ``prompts.csv`` (see :func:`read_prompts_file`): an image's prompt by its file
            name, and a ``default`` for the images it does not name. Without it, the images' folder's
            ``prompts.json`` or ``prompts.csv`` is read when there is one.
        text: one prompt for every image, instead of a prompts file.
        default: the prompt of the images that have none (the CT organs bundle's one prompt per organ).

    An image without a prompt and without ``default`` gets no ``text`` key (the bundles refuse it, naming the
    image).

    Raises:
        FileNotFoundError: an image or the prompts file does not exist, or a folder holds no image.
        ValueError: both ``prompts`` and ``text``; a file that is not an image; a prompts file that is not a JSON
            object / a CSV with ``image`` and ``text``, names an image that is not among ``images``, or has a
            list prompt with an empty entry (the message names the file and the key or row). An empty string is
            the empty prompt: every finding, for a model trained with ``text_dropout``.
    """
    if prompts is not None and text is not None:
        raise ValueError("give either a prompts file or one text for all images, not both")
    paths = [Path(images)] if isinstance(images, str | Path) else [Path(p) for p in images]
    if not paths:
        raise FileNotFoundError("no image to segment")
    files: list[Path] = []
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"input {path} does not exist")
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if _is_image(p))
            if not found:
                raise FileNotFoundError(f"input {path}: no image ({', '.join(IMAGE_SUFFIXES)}) to segment")
            files += found
        elif _is_image(path):
            files.append(path)
        else:
            raise ValueError(f"input {path}: not an image ({', '.join(IMAGE_SUFFIXES)})")
    if text is not None:
        return [{"image": str(f), "text": _check_prompt(text, "--text")} for f in files]
    if prompts is None:
        folders = sorted({f.parent for f in files})
        found = [folder / name for folder in folders for name in PROMPTS_FILES if (folder / name).is_file()]
        if len(found) > 1:
            raise ValueError(f"several prompts files ({', '.join(map(str, found))}): name one with --prompts")
        prompts = found[0] if found else None
    table = read_prompts_file(prompts) if prompts is not None else {}
    # a prompts file may name the other images of the inputs' folders (one file serves a folder, image by image)
    names = {p.name for folder in {f.parent for f in files} for p in folder.iterdir() if _is_image(p)}
    for key, value in table.items():
        if key != "default" and key not in names:
            raise ValueError(f"{prompts}: key {key!r} names no image in the inputs' folders")
        table[key] = _check_prompt(value, f"{prompts}: key {key!r}")
    records = []
    for image in files:
        record = {"image": str(image)}
        prompt = table.get(image.name, table.get("default", default))
        if prompt is not None:
            record["text"] = prompt
        records.append(record)
    return records
