"""The inputs of the MONAI Deploy app: image files (PNG / NIfTI) and their text prompts from ``prompts.json``."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "PROMPTS_FILE", "read_prompted_inputs"]

IMAGE_SUFFIXES = (".png", ".nii", ".nii.gz")
PROMPTS_FILE = "prompts.json"


def _is_image(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def _check_prompt(value, where: str) -> str | list[str]:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return list(value)
    raise ValueError(f"{where}: a prompt must be a non-empty string or a list of non-empty strings, got {value!r}")


def read_prompted_inputs(path: str | Path) -> list[dict]:
    """The records ``{"image": path, "text": prompt}`` of an input file or folder, sorted by file name.

    The prompts come from ``prompts.json`` in the folder (next to the file when ``path`` is a file): an object
    mapping an image's file name to its prompt (a string, or a list of strings for bundles that take one prompt per
    class), plus an optional ``"default"`` prompt for the images it does not name. An image without a prompt gets
    no ``text`` key (bundles that have default prompts, such as the CT organs bundle, fill it in).

    Raises:
        FileNotFoundError: ``path`` does not exist or holds no PNG / NIfTI image.
        ValueError: ``prompts.json`` is not a JSON object of prompts, or names an image that is not there
            (the message names the file and the key).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    folder = path if path.is_dir() else path.parent
    in_folder = sorted(p for p in folder.iterdir() if _is_image(p))
    images = in_folder if path.is_dir() else [path]
    if not images or not all(_is_image(p) for p in images):
        raise FileNotFoundError(f"input {path}: no image ({', '.join(IMAGE_SUFFIXES)}) to segment")
    prompts_file = folder / PROMPTS_FILE
    prompts: dict = {}
    if prompts_file.is_file():
        try:
            prompts = json.loads(prompts_file.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{prompts_file}: not valid JSON ({e})") from None
        if not isinstance(prompts, dict):
            raise ValueError(f"{prompts_file}: must be a JSON object mapping image file names to prompts")
        names = {p.name for p in in_folder}
        for key, value in prompts.items():
            if key != "default" and key not in names:
                raise ValueError(f"{prompts_file}: key {key!r} names no image in {folder}")
            prompts[key] = _check_prompt(value, f"{prompts_file}: key {key!r}")
    records = []
    for image in images:
        record = {"image": str(image)}
        text = prompts.get(image.name, prompts.get("default"))
        if text is not None:
            record["text"] = text
        records.append(record)
    return records
