"""Can a frozen text encoder carry a report's zone to wording the training never saw? A probe of the encoder alone,
before any segmentation: TIRNet's text path (the encoder's token features, a trainable ``Conv1d(D, 256, 3)``,
ReLU, the mean over tokens) and a linear head learn the zone of one-zone reports written by the augmentation
grammar (:data:`~lmseg_components.text.phrasing.AUGMENTATION`: side x level, 6 classes), then classify reports of
the same zones written by the held-out grammar (:data:`~lmseg_components.text.phrasing.HELD_OUT`: the benchmark's
``paraphrased`` condition) and fresh augmentation reports. Chance is 1/2 for the side and 1/3 for the level.

A segmenter reads its prompt through the same frozen features: where this probe cannot tell the held-out zones
apart, no amount of report rewriting in other words will make the bundle follow them. The probe is a
classifier on the encoder, not a bundle: it trains its own small head (not a bundle config) for that reason.

    python benchmarks/encoder_probe.py --out runs/encoder_probe --seeds 0,1,2
    python benchmarks/encoder_probe.py --encoder hf:microsoft/BiomedVLP-CXR-BERT-specialized  # with hub access

Writes ``<out>/<encoder>/seed<k>.json`` per seed, prints mean ± sample std over the seeds, and writes the result
to ``benchmarks/results/encoder_probe_<encoder>.json`` (``--results`` another folder), which the TIRNet docs
render (``python benchmarks/results.py``).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lmseg_components.files import atomic_write
from lmseg_components.text import create_text_encoder
from lmseg_components.text.phrasing import AUGMENTATION, HELD_OUT, LEVELS, SIDES, Area, ReportGrammar

if __package__ in (None, ""):  # run as a script: the repository root holds the benchmarks package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.results import RESULTS_DIR, provenance, save_results  # noqa: E402
from benchmarks.script import comma_seeds, run_script, sample_std  # noqa: E402

COLUMNS = ("train_accuracy", "augmentation_side", "augmentation_level", "held_out_side", "held_out_level")
TITLES = ("train accuracy", "side, new reports", "level, new reports", "side, held-out words", "level, held-out words")


def reports(grammar: ReportGrammar, n: int, rng: np.random.Generator) -> tuple[list[str], torch.Tensor]:
    """``n`` one-zone reports and their class, ``3 * side + level``."""
    classes = rng.integers(0, 2 * len(LEVELS), n)
    texts = [grammar.describe([Area(SIDES[c // 3], (LEVELS[c % 3],))], rng) for c in classes]
    return texts, torch.as_tensor(classes)


@torch.no_grad()
def features(encoder, texts: list[str], batch: int = 256) -> torch.Tensor:
    """(N, L, D) token features."""
    return torch.cat([encoder.encode(texts[i : i + batch]).tokens for i in range(0, len(texts), batch)])


class Readout(nn.Module):
    """TIRNet's sentence vector (Conv1d over the tokens, mean over tokens) and a linear zone classifier."""

    def __init__(self, token_dim: int, width: int = 256):
        super().__init__()
        self.conv = nn.Conv1d(token_dim, width, 3, padding=1)
        self.head = nn.Linear(width, 2 * len(LEVELS))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(tokens.transpose(1, 2))).mean(2))


def accuracies(logits: torch.Tensor, classes: torch.Tensor) -> tuple[float, float]:
    """Side and level accuracy."""
    predicted = logits.argmax(1)
    side = (predicted // 3 == classes // 3).float().mean().item()
    level = (predicted % 3 == classes % 3).float().mean().item()
    return side, level


def probe(encoder, seed: int, n_train: int = 2000, n_test: int = 600, steps: int = 800) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    train_texts, train_classes = reports(AUGMENTATION, n_train, rng)
    aug_texts, aug_classes = reports(AUGMENTATION, n_test, rng)
    held_texts, held_classes = reports(HELD_OUT, n_test, rng)
    train, aug, held = (features(encoder, t) for t in (train_texts, aug_texts, held_texts))
    torch.manual_seed(seed)
    readout = Readout(train.shape[-1])
    optimizer = torch.optim.Adam(readout.parameters(), lr=1e-3)
    for _ in range(steps):
        index = torch.randint(0, len(train), (128,))
        loss = nn.functional.cross_entropy(readout(train[index]), train_classes[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        train_accuracy = (readout(train).argmax(1) == train_classes).float().mean().item()
        aug_side, aug_level = accuracies(readout(aug), aug_classes)
        held_side, held_level = accuracies(readout(held), held_classes)
    return dict(zip(COLUMNS, (train_accuracy, aug_side, aug_level, held_side, held_level), strict=True))


def run(
    out: str = "runs/encoder_probe",
    encoder: str = "minilm",
    pretrained: str | None = None,
    context_length: int = 32,
    seeds: str | int | tuple = "0,1,2",
    results: str = str(RESULTS_DIR),
) -> dict[str, list[float]]:
    started = time.perf_counter()
    text_encoder = create_text_encoder(encoder, pretrained=pretrained, context_length=context_length)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder)
    folder = Path(out) / slug
    rows = []
    for seed in comma_seeds(seeds):
        path = folder / f"seed{seed}.json"
        if not path.is_file():
            result = probe(text_encoder, seed)
            atomic_write(path, lambda tmp, r=result: Path(tmp).write_text(json.dumps(r, indent=1) + "\n"))
        rows.append(json.loads(path.read_text()))
        print(f"[seed {seed}] " + ", ".join(f"{k} {v:.3f}" for k, v in rows[-1].items()), flush=True)
    summary = {key: [r[key] for r in rows] for key in COLUMNS}
    print(f"\n{encoder} (context {context_length}), seeds {seeds}; mean ± sample std; chance: side 0.5, level 0.333")
    print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS))
    print("| " + " | ".join(f"{np.mean(v):.3f} ± {sample_std(np.array(v)):.3f}" for v in summary.values()) + " |")
    caption = (
        f"The encoder probe ({encoder}, context {context_length}): TIRNet's text path and a linear head learn the zone "
        "of one-zone reports in the augmentation's words, then name it in fresh reports and in the held-out words; "
        "accuracy (chance: side 0.5, level 0.333)."
    )
    settings = {"encoder": encoder, "pretrained": pretrained, "context_length": context_length}
    measured = provenance("tirnet_lmis", "cpu", comma_seeds(seeds), started)
    columns = list(zip(COLUMNS, TITLES, strict=True))
    path = save_results(f"encoder_probe_{slug}", {encoder: rows}, columns, measured, caption, settings, Path(results))
    print(f"result: {path}")
    return summary


if __name__ == "__main__":
    run_script(run, __doc__)
