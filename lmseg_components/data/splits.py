"""Reproducible train / val / test splits by case (patient), never by slice."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lmseg_components.data.problems import DataProblem, DatasetValidationError

__all__ = ["PARTS", "select_part", "split_by_case", "split_problems"]

PARTS = ("train", "val", "test")


def split_by_case(
    records: Sequence[dict], fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0
) -> tuple[list[dict], ...]:
    """Split records into len(fractions) parts **by case** (patient), never by slice, reproducibly.

    Every case goes to exactly one part; parts get about ``fraction`` of the cases each (at least one case
    when there are enough cases).
    """
    if not fractions or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {list(fractions)}.")
    cases = sorted({r["case_id"] for r in records})
    order = np.random.default_rng(seed).permutation(len(cases))
    counts = _case_counts(len(cases), fractions)
    bounds = np.cumsum(counts)
    starts = [0, *bounds[:-1]]
    assignment = {}
    for part, (start, end) in enumerate(zip(starts, bounds, strict=True)):
        for i in order[start:end]:
            assignment[cases[i]] = part
    parts: list[list[dict]] = [[] for _ in fractions]
    for record in records:
        parts[assignment[record["case_id"]]].append(record)
    return tuple(parts)


def _case_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Cases per part: largest-remainder rounding of ``n * fraction``, then at least one case for every part
    with a positive fraction while ``n`` allows (a 10 % validation share of 8 patients is 1 patient, not 0)."""
    exact = [f * n for f in fractions]
    counts = [int(e) for e in exact]
    for i in sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)[: n - sum(counts)]:
        counts[i] += 1
    for i, f in enumerate(fractions):
        if f > 0 and counts[i] == 0 and max(counts) > 1:
            counts[int(np.argmax(counts))] -= 1
            counts[i] = 1
    return counts


def split_problems(
    records: Sequence[dict], root: str | Path, fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0
) -> list[DataProblem]:
    """One problem naming ``root`` for each part of :func:`split_by_case` that gets no case: the part that
    :func:`select_part` refuses (``lmseg check-data`` reports what training will refuse)."""
    parts = split_by_case(records, fractions, seed)
    return [_empty_part(root, part, fractions) for part, selected in zip(PARTS, parts, strict=True) if not selected]


def _empty_part(root: str | Path, part: str, fractions: Sequence[float]) -> DataProblem:
    message = f"the {part!r} part of the case split {list(fractions)} is empty; add cases or change split_fractions"
    return DataProblem(str(root), message)


def select_part(
    records: Sequence[dict], part: str, fractions: Sequence[float], seed: int, root: str | Path
) -> list[dict]:
    """The ``part`` (one of :data:`PARTS`) of :func:`split_by_case` over ``records`` read from ``root``.

    Raises:
        ValueError: for an unknown part or fractions that are not three shares.
        DatasetValidationError: (a ``ValueError``) naming ``root`` when the part is empty.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}.")
    if len(fractions) != len(PARTS):
        raise ValueError(f"fractions must give train/val/test shares, got {list(fractions)}.")
    selected = split_by_case(records, fractions, seed)[PARTS.index(part)]
    if not selected:
        raise DatasetValidationError([_empty_part(root, part, fractions)])
    return selected
