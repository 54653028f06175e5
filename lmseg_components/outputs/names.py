"""Output file names of the inference writers: distinct inputs always get distinct files."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from monai.data import FolderLayout, MetaTensor
from monai.transforms import Compose, SaveImaged

from lmseg_components.data import SelectSliced
from lmseg_components.outputs.overlay import SaveOverlayd

__all__ = ["OutputNameCollisionError", "prepare_output_names", "writer_layouts"]

logger = logging.getLogger(__name__)


class OutputNameCollisionError(ValueError):
    """Two distinct inputs would be written to the same output file."""


def writer_layouts(transforms: Compose | Sequence[Callable]) -> list[FolderLayout]:
    """The folder layouts (MONAI's :class:`~monai.data.FolderLayout`, which names each output file after its input)
    of the file writers among ``transforms``: ``SaveImaged`` and :class:`~lmseg_components.outputs.SaveOverlayd`."""
    layouts = []
    for transform in transforms.transforms if isinstance(transforms, Compose) else transforms:
        if isinstance(transform, SaveImaged) and isinstance(transform.saver.folder_layout, FolderLayout):
            layouts.append(transform.saver.folder_layout)
        elif isinstance(transform, SaveOverlayd):
            layouts.append(transform.folder_layout)
    return layouts


def _subject(record: dict, key: str, slice_key: str | None) -> str:
    """The ``filename_or_obj`` a writer sees for ``record``: its ``key`` path, or for a slice record the name
    :class:`~lmseg_components.data.SelectSliced` gives the slice."""
    path = str(record[key])
    if slice_key is None:
        return path
    z = int(record[slice_key])
    volume = MetaTensor(torch.zeros(1, 1, 1, z + 1), meta={"filename_or_obj": path})
    return str(SelectSliced(keys=key, slice_key=slice_key)({key: volume, slice_key: z})[key].meta["filename_or_obj"])


def _outputs(
    datalist: Sequence[dict], layouts: Sequence[FolderLayout], key: str, slice_key: str | None, root: str
) -> dict[str, set[str]]:
    """Output path -> the inputs written to it, by the writers' layouts with ``data_root_dir=root``."""
    outputs: dict[str, set[str]] = {}
    for layout in layouts:
        # the writer's own layout without makedirs (naming must not create folders; the writer does)
        naming = FolderLayout(
            layout.output_dir, layout.postfix, layout.ext, layout.parent, makedirs=False, data_root_dir=root
        )
        for record in datalist:
            name = str(record[key]) if slice_key is None else f"{record[key]} (slice {record[slice_key]})"
            subject = os.path.abspath(_subject(record, key, slice_key))
            outputs.setdefault(os.path.normpath(naming.filename(subject=subject)), set()).add(name)
    return outputs


def prepare_output_names(
    datalist: Sequence[dict],
    postprocessing: Compose | Sequence[Callable],
    key: str = "image",
    slice_key: str | None = None,
) -> list[dict]:
    """Make the file writers of ``postprocessing`` name every input of ``datalist`` apart, before inference.

    The writers name an output after its input's file name (``x.png`` -> ``x_mask.png``), so inputs of the same
    name in different folders would overwrite each other's outputs. Where the flat names collide, the layouts get
    the inputs' common folder as MONAI's ``data_root_dir``: an input's sub-folder under it is kept under the output
    folder (``a/x.png`` -> ``a/x_mask.png``, ``b/x.png`` -> ``b/x_mask.png``); otherwise the names stay flat.
    Inputs that would still share an output (``x.png`` and ``x.jpg`` in one folder), or an output that would
    replace an input, raise an error naming them. Outputs already present (a rerun) are logged as a warning.

    Args:
        datalist: the inference records.
        postprocessing: the transforms that write the outputs (their ``SaveImaged`` and ``SaveOverlayd``).
        key: the record key of the input file.
        slice_key: for 2D slice records of volumes (ACDC), the record key of the slice index.

    Returns:
        ``datalist`` (so that a bundle config can wrap its dataset's ``data`` in this call).

    Raises:
        OutputNameCollisionError: distinct inputs map to one output file, or an output is an input file.
    """
    datalist = list(datalist)
    layouts = writer_layouts(postprocessing)
    if not datalist or not layouts:
        return datalist
    outputs = _outputs(datalist, layouts, key, slice_key, "")
    if any(len(names) > 1 for names in outputs.values()):
        root = os.path.commonpath([os.path.dirname(os.path.abspath(record[key])) for record in datalist])
        for layout in layouts:
            layout.data_root_dir = root
        outputs = _outputs(datalist, layouts, key, slice_key, root)
    inputs = {os.path.abspath(record[key]) for record in datalist}
    problems = [f"{path} <- {', '.join(sorted(names))}" for path, names in sorted(outputs.items()) if len(names) > 1]
    problems += [f"{path} is an input file" for path in sorted(outputs) if path in inputs]
    if problems:
        raise OutputNameCollisionError(
            f"{len(problems)} output file(s) would be written twice or over an input: " + "; ".join(problems)
        )
    existing = sum(os.path.exists(path) for path in outputs)
    if existing:
        folders = sorted({str(Path(layout.output_dir)) for layout in layouts})
        logger.warning(
            "%d of the %d output files already exist in %s (an earlier run?): they will be replaced",
            existing,
            len(outputs),
            ", ".join(folders),
        )
    return datalist
