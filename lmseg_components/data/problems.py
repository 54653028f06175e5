"""Problems found while reading a dataset, reported all at once with the file and row they concern."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DataProblem", "DatasetValidationError"]


@dataclass(frozen=True)
class DataProblem:
    """One problem in a dataset.

    Args:
        file: the file the problem concerns (image, mask, text table or ``dataset.json``).
        message: what is wrong, in plain words.
        row: 1-based spreadsheet row of the text table (header is row 1), when the problem comes from a row.
    """

    file: str
    message: str
    row: int | None = None

    def __str__(self) -> str:
        where = f"{self.file} (row {self.row})" if self.row is not None else self.file
        return f"{where}: {self.message}"


class DatasetValidationError(ValueError):
    """Raised when a dataset has one or more problems; ``problems`` lists every one found."""

    def __init__(self, problems: Sequence[DataProblem]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) found in the dataset:\n{lines}")
