"""A trained text bundle as a Python object: ``Segmenter.from_run(run).segment(image, text)``.

    from lmseg_components import Segmenter

    segmenter = Segmenter.from_run("runs/demo")
    result = segmenter.segment("chest.png", "Bilateral pulmonary infection, lower left lung and lower right lung.")
    result.mask, result.found, result.score, result.overlay.save("overlay.png")

It runs the same bundle pipeline as ``lmseg segment`` (:class:`~lmseg_components.inference.TextBundlePredictor`:
the bundle's preprocessing, network, inferer and postprocessing with the values the model was trained with), so
its masks are those ``lmseg segment`` writes.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lmseg_components.inference.overlays import overlay_image
from lmseg_components.inference.predictor import TextBundlePredictor
from lmseg_components.inference.writer import prompt_caption
from lmseg_components.locations import TEXT_BUNDLES
from lmseg_components.runs import bundle_that_trained

__all__ = ["Segmentation", "Segmenter"]


@dataclass
class Segmentation:
    """What :meth:`Segmenter.segment` returns.

    Attributes:
        mask: (H, W) bool for the 2D bundles, as the image's rows and columns; (X, Y, Z) integer labels (0
            background, p the p-th prompt's organ) on the volume's grid for ``tgcnet_ct_organs``.
        overlay: the image with the mask and the prompt as caption (an RGB ``PIL.Image``; for a volume, its axial
            slice with the most foreground).
        text: the prompt, or one per organ.
        score: the presence score of each prompt (0-1).
        found: whether each prompt's finding is there (score at or above the threshold chosen on validation data
            when the model was trained; a prompt not found gets an empty mask); None for a model without one.
        inference_ms: preprocessing, network and postprocessing, wall time.
    """

    mask: np.ndarray
    overlay: object
    text: str | list[str]
    score: float | list[float]
    found: bool | list[bool] | None
    inference_ms: float


class Segmenter:
    """A trained text bundle that segments images given as files, NumPy arrays or tensors.

    Args:
        predictor: the bundle pipeline (see :meth:`from_run`).
    """

    def __init__(self, predictor: TextBundlePredictor):
        self.predictor = predictor

    @classmethod
    def from_run(
        cls, run: str | Path, bundle: str | Path | None = None, device: str | None = None, **overrides
    ) -> Segmenter:
        """The model of a training run or a published bundle.

        Args:
            run: a training run folder (the ``bundle_root`` of ``python -m monai.bundle run training`` or ``lmseg
                demo``: ``models/model.pt`` and its ``run_record.json``), a published bundle folder (``lmseg
                publish``), or the ``model.pt`` itself.
            bundle: the bundle that trained it (a name or a folder); default the published folder itself, or the one
                of lmseg's text bundles whose run record matches the model's.
            device: ``cpu``, ``cuda`` or ``cuda:N`` (default: CUDA when available).
            overrides: other bundle config values, e.g. ``text_cache_dir``.

        Raises:
            FileNotFoundError: no ``models/model.pt``; ValueError: the bundle cannot be told from the run record.
        """
        run = Path(run)
        model = run if run.is_file() else run / "models" / "model.pt"
        if not model.is_file():
            raise FileNotFoundError(
                f"{run}: no models/model.pt (give a training run's folder, a published bundle or the model.pt)"
            )
        root = model.parent.parent if model.parent.name == "models" else model.parent
        if bundle is None:
            bundle = (
                root
                if (root / "configs" / "metadata.json").is_file()
                else bundle_that_trained(model.parent, TEXT_BUNDLES, "bundle=...")
            )
        return cls(TextBundlePredictor(bundle, device, {"bundle_root": str(root), **overrides}, model=model))

    def segment(
        self, image: str | Path | np.ndarray | torch.Tensor, text: str | list[str] | None = None
    ) -> Segmentation:
        """Segment one image with a prompt.

        Args:
            image: a file (PNG, JPEG, DICOM; NIfTI for ``tgcnet_ct_organs``), or an array / tensor: (H, W) grey or
                (H, W, 3) RGB for the 2D bundles (uint8 is taken as it is; other types are scaled min-max to 0-255,
                as an 8-bit image file holds them), (X, Y, Z) for the CT bundle (in the volume's own units, e.g.
                Hounsfield).
            text: the prompt; for ``tgcnet_ct_organs`` one per organ (default: every organ it knows).

        Raises:
            ValueError: an image of the wrong kind or shape, or a prompt the bundle cannot take (the message says
                which).
        """
        with tempfile.TemporaryDirectory(prefix="lmseg-") as folder:
            path = image if isinstance(image, str | Path) else self._write(image, Path(folder))
            record = {"image": str(path)} if text is None else {"image": str(path), "text": text}
            start = time.perf_counter()
            item = self.predictor(record)
            milliseconds = (time.perf_counter() - start) * 1000
            pred = item["pred"]
            overlay = overlay_image(path, pred, prompt_caption(item["text"]))
        labels = pred[0].detach().cpu().numpy()
        mask = labels.round().astype(np.int64) if self.predictor.segments_volumes else labels.T > 0
        return Segmentation(mask, overlay, item["text"], item["score"], item["found"], round(milliseconds, 1))

    def _write(self, array: np.ndarray | torch.Tensor, folder: Path) -> Path:
        """``array`` as the image file the bundle reads: PNG for the 2D bundles, NIfTI for volumes."""
        values = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        if self.predictor.segments_volumes:
            if values.ndim != 3:
                raise ValueError(f"{self.predictor.bundle.name} segments volumes (X, Y, Z); got shape {values.shape}")
            import nibabel as nib

            path = folder / "image.nii.gz"
            nib.save(nib.Nifti1Image(values.astype(np.float32), np.eye(4)), str(path))
            return path
        if not (values.ndim == 2 or (values.ndim == 3 and values.shape[-1] == 3)):
            raise ValueError(
                f"{self.predictor.bundle.name} segments 2D images, (H, W) or (H, W, 3); got shape {values.shape}"
            )
        if values.dtype != np.uint8:
            low, high = float(values.min()), float(values.max())
            values = np.round((values - low) / (high - low or 1.0) * 255).astype(np.uint8)
        from PIL import Image

        path = folder / "image.png"
        Image.fromarray(values).save(path)
        return path
