"""The ACDC evaluation protocol for models that segment 2D slices: Dice and HD95 (mm) per structure and per 3D
frame, the way ACDC papers report them.

The segmenter sees one short-axis slice at a time; a frame (one patient at one cardiac phase, one NIfTI volume)
is scored as a whole. :class:`FrameDiceHD95` regroups an evaluation's slice predictions by the ground-truth
volume they came from, stacks them in ``z`` order back into that volume's grid, and scores each frame with
:func:`frame_dice_hd95` against the ground truth read from disk, HD95 in mm from the volume's affine.

Rules, per frame and structure (label ``c`` of prediction P and ground truth G):

- both present: MONAI's Dice and symmetric 95th-percentile Hausdorff distance of the surfaces, in mm;
- missed (G present, P empty) or hallucinated (P present, G empty): Dice 0 and HD95 = the **penalty**
  :func:`hd95_penalty`, the diagonal of the volume's field of view, sqrt(sum_i (n_i s_i)^2) mm, which is larger
  than any distance between two voxels of the volume, so no miss scores better than a hit;
- empty vs empty (neither has the structure): Dice 1 and HD95 0 -- nothing to find and nothing found.

No case is dropped, so every mean is over all frames; the mean over structures is taken per frame.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from ignite.distributed import get_world_size
from ignite.engine import Engine, Events
from monai.data.utils import affine_to_spacing
from monai.metrics import DiceMetric, compute_hausdorff_distance
from monai.networks.utils import one_hot
from monai.transforms import LoadImage

from lmseg_components.files import atomic_write

__all__ = ["ACDC_STRUCTURES", "FrameDiceHD95", "frame_dice_hd95", "hd95_penalty", "summarize_frames"]

ACDC_STRUCTURES = ("rv", "myo", "lv")  # labels 1, 2, 3 (right ventricle, myocardium, left ventricle)


def hd95_penalty(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """HD95 given to a missed or hallucinated structure: the diagonal of the volume's field of view in mm,
    ``sqrt(sum_i (shape_i * spacing_i)^2)``, an upper bound on the distance between any two of its voxels."""
    if len(shape) != len(spacing):
        raise ValueError(f"shape {tuple(shape)} and spacing {tuple(spacing)} must have the same length.")
    return float(np.linalg.norm(np.asarray(shape, float) * np.asarray(spacing, float)))


def frame_dice_hd95(
    pred: torch.Tensor, label: torch.Tensor, spacing: Sequence[float], num_classes: int = len(ACDC_STRUCTURES) + 1
) -> dict[str, torch.Tensor]:
    """Dice and HD95 (mm) of each foreground structure of one 3D frame, with the module's rules for missed,
    hallucinated and absent structures (Dice through ``monai.metrics.DiceMetric``, HD95 through
    ``monai.metrics.compute_hausdorff_distance``).

    Args:
        pred: (X, Y, Z) predicted integer labels of the whole frame (not a slice).
        label: (X, Y, Z) ground-truth integer labels.
        spacing: voxel size in mm along X, Y, Z, e.g. ``monai.data.utils.affine_to_spacing(affine, r=3)``.
        num_classes: K, classes including background 0.

    Returns:
        ``dice`` and ``hd95``: (K - 1,) float tensors, structures 1..K-1 in order; never NaN or inf.

    Raises:
        ValueError: shapes differ or are not 3D, ``spacing`` is not 3 positive numbers, labels outside 0..K-1.
    """
    if pred.shape != label.shape or pred.ndim != 3:
        raise ValueError(
            f"pred and label must both be (X, Y, Z) label volumes, got {tuple(pred.shape)}, {tuple(label.shape)}."
        )
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be 3 positive voxel sizes (mm), got {tuple(spacing)}.")
    for name, volume in (("pred", pred), ("label", label)):
        if volume.numel() and not 0 <= int(volume.min()) <= int(volume.max()) < num_classes:
            raise ValueError(f"{name} holds labels outside 0..{num_classes - 1}: {torch.unique(volume).tolist()}.")
    p = one_hot(pred.long()[None, None], num_classes)  # (1, K, X, Y, Z)
    g = one_hot(label.long()[None, None], num_classes)
    dice = DiceMetric(include_background=False, reduction="none", ignore_empty=False)(p, g)[0]
    in_pred, in_label = p[0, 1:].flatten(1).any(1), g[0, 1:].flatten(1).any(1)
    hd95 = torch.where(in_pred == in_label, 0.0, hd95_penalty(pred.shape, spacing))  # empty vs empty: 0
    both = torch.nonzero(in_pred & in_label).flatten()
    if len(both):
        channels = both + 1  # background is channel 0
        distances = compute_hausdorff_distance(
            p[:, channels], g[:, channels], include_background=True, percentile=95, spacing=list(spacing)
        )
        hd95[both] = distances[0].to(hd95.dtype)
    return {"dice": dice.float(), "hd95": hd95.float()}


def summarize_frames(
    table: Mapping[str, Mapping[str, torch.Tensor]], structures: Sequence[str] = ACDC_STRUCTURES
) -> dict[str, float]:
    """Mean over frames of each structure's Dice and HD95 and of the per-frame means over structures.

    Args:
        table: frame name -> :func:`frame_dice_hd95` result, each tensor (len(structures),).
        structures: names of labels 1..K-1.

    Returns:
        ``dice_<structure>``, ``mean_dice``, ``hd95_<structure>``, ``mean_hd95``.
    """
    if not table:
        raise ValueError("no frames to summarize.")
    dice = torch.stack([scores["dice"] for scores in table.values()])  # (frames, structures)
    hd95 = torch.stack([scores["hd95"] for scores in table.values()])
    if dice.shape[1] != len(structures):
        raise ValueError(f"scores hold {dice.shape[1]} structures, names given for {len(structures)}: {structures}.")
    means = {f"dice_{name}": float(v) for name, v in zip(structures, dice.mean(0), strict=True)}
    means["mean_dice"] = float(dice.mean(1).mean())
    means |= {f"hd95_{name}": float(v) for name, v in zip(structures, hd95.mean(0), strict=True)}
    means["mean_hd95"] = float(hd95.mean(1).mean())
    return means


class FrameDiceHD95:
    """Ignite handler for an evaluator over 2D slices of 3D frames: the ACDC per-frame protocol of this module.

    Each iteration, every item's predicted label slice is kept under the ground-truth volume it was cut from
    (the label's ``meta["source_filename"]``, set by :class:`~lmseg_components.data.SelectSliced`) at its ``z``
    (the batch's ``slice_key``). At the end of the epoch each frame's ground truth is loaded (``LoadImage``, as
    the bundle reads it), the slices are brought back to its in-plane grid by nearest-neighbour resizing (as the
    bundle's ``Resized`` resizes labels) and stacked in ``z`` order, and the frame is scored by
    :func:`frame_dice_hd95` with the voxel size of its NIfTI affine (``affine_to_spacing``: column norms, right
    for oblique orientations too). ``engine.state.metrics`` gets ``<prefix>dice_<structure>``,
    ``<prefix>mean_dice``, ``<prefix>hd95_<structure>`` and ``<prefix>mean_hd95`` (means over frames), so a
    ``MetricsSaver`` attached after this handler writes them to ``metrics.csv``; with ``output_dir`` the per-frame
    table goes to ``<output_dir>/<filename>``, with two last rows ``mean`` and ``std`` (population std over frames).
    ``self.table`` keeps the last epoch's scores per frame name.

    Args:
        structures: names of labels 1..K-1 (K classes with background).
        output_dir: folder of the per-frame CSV; None writes none.
        filename: name of the per-frame CSV.
        prefix: prefix of the metric names.
        pred_key: output key of the prediction, (K, H, W) one-hot or scores (argmax taken) or (1, H, W) labels.
        label_key: batch key of the label slice, a MetaTensor with ``source_filename`` in its meta.
        slice_key: batch key of the slice's ``z`` index in its volume.
        enabled: ``False`` attaches nothing (a config switch for datasets that are not slices of 3D frames).

    Raises:
        RuntimeError: at the end of the epoch, when a frame misses some of its slices (every slice of every frame
            must be evaluated: ``read_acdc_split`` with ``min_foreground=0``), when two volumes have the same
            frame name, or when run in several processes.
        ValueError: during the epoch, when a label lacks ``source_filename`` or a slice is seen twice.
    """

    def __init__(
        self,
        structures: Sequence[str] = ACDC_STRUCTURES,
        output_dir: str | Path | None = None,
        filename: str = "frame_metrics.csv",
        prefix: str = "frame_",
        pred_key: str = "pred",
        label_key: str = "label",
        slice_key: str = "slice",
        enabled: bool = True,
    ):
        self.structures, self.num_classes = tuple(structures), len(structures) + 1
        self.output_dir, self.filename, self.prefix = output_dir, filename, prefix
        self.pred_key, self.label_key, self.slice_key = pred_key, label_key, slice_key
        self.enabled = enabled
        self._slices: dict[str, dict[int, torch.Tensor]] = {}
        self.table: dict[str, dict[str, torch.Tensor]] = {}

    def attach(self, engine: Engine) -> None:
        if not self.enabled:
            return
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._score)

    def _reset(self, engine: Engine) -> None:
        self._slices, self.table = {}, {}

    def _collect(self, engine: Engine) -> None:
        batch = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch]
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        for item, output in zip(batch, outputs, strict=True):
            source = getattr(item[self.label_key], "meta", {}).get("source_filename")
            if source is None:
                raise ValueError(
                    f"{self.label_key!r} has no meta['source_filename'] naming its volume: cut the slices with "
                    "lmseg_components.data.SelectSliced (after LoadImaged) so that they can be regrouped by frame."
                )
            z = int(item[self.slice_key])
            frame = self._slices.setdefault(str(source), {})
            if z in frame:
                raise ValueError(f"slice {z} of {source} was evaluated twice; each slice must appear once.")
            pred = torch.as_tensor(output[self.pred_key]).detach().cpu()
            frame[z] = (pred.argmax(0) if pred.shape[0] > 1 else pred[0]).to(torch.uint8)

    def _score(self, engine: Engine) -> None:
        if get_world_size() > 1:
            raise RuntimeError(
                "FrameDiceHD95 regroups the slices of a frame in one process; run the evaluation on one device."
            )
        loader = LoadImage(image_only=True)
        for source in sorted(self._slices):
            label = loader(source)  # (X, Y, Z) MetaTensor
            slices = self._slices[source]
            missing = sorted(set(range(label.shape[-1])) - set(slices)) if label.ndim == 3 else []
            if missing or label.ndim != 3:
                raise RuntimeError(
                    f"{source}: a {tuple(label.shape)} volume, but slices {missing} were not evaluated; the per-frame "
                    "metrics need every slice of every 3D frame (read_acdc_split with min_foreground=0)."
                )
            name = _frame_name(source)
            if name in self.table:
                raise RuntimeError(f"two ground-truth volumes are both named {name!r}; frame names must be unique.")
            stack = torch.stack([slices[z] for z in range(label.shape[-1])]).float()  # (Z, H, W)
            pred = F.interpolate(stack[None], size=tuple(label.shape[:2]), mode="nearest")[0].permute(1, 2, 0)
            spacing = affine_to_spacing(label.affine, r=3).tolist()
            self.table[name] = frame_dice_hd95(pred.long(), label.as_tensor().long(), spacing, self.num_classes)
        means = summarize_frames(self.table, self.structures)
        engine.state.metrics |= {f"{self.prefix}{k}": v for k, v in means.items()}
        if self.output_dir is not None:
            atomic_write(Path(self.output_dir) / self.filename, self._write_table)

    def _write_table(self, path: str) -> None:
        columns = [f"dice_{s}" for s in self.structures] + ["mean_dice"]
        columns += [f"hd95_{s}" for s in self.structures] + ["mean_hd95"]
        rows = [
            [
                *scores["dice"].tolist(),
                scores["dice"].mean().item(),
                *scores["hd95"].tolist(),
                scores["hd95"].mean().item(),
            ]
            for scores in self.table.values()
        ]
        values = np.asarray(rows, dtype=float)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["frame", *columns])
            for name, row in zip(self.table, rows, strict=True):
                writer.writerow([name, *(f"{v:.6g}" for v in row)])
            writer.writerow(["mean", *(f"{v:.6g}" for v in values.mean(0))])
            writer.writerow(["std", *(f"{v:.6g}" for v in values.std(0))])


def _frame_name(source: str) -> str:
    """``.../patient001_frame01_gt.nii.gz`` -> ``patient001_frame01``."""
    stem = Path(source).name.split(".")[0]
    return stem.removesuffix("_gt")
