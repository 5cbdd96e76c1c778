"""Per-epoch metrics of a run: :class:`History`, a sequence of rows, to and from JSON/CSV.

Example:
    >>> History([{"epoch": 1, "train_loss": 0.9}]).column("epoch")
    [1]
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from .._atomic import atomic_write_text
from .._checks import check_choice
from .._io import read_text_file
from ..errors import InvalidArgumentError
from .config import MONITOR_ALIASES, MONITORS

__all__ = ["HISTORY_COLUMNS", "History"]

HISTORY_COLUMNS: Final[tuple[str, ...]] = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_macro_f1",
    "lr",
    "images_per_sec",
    "seconds",
)
"""Columns of each :class:`History` row (``val_*`` are ``None`` without a validation set)."""

Row = dict[str, Any]


class History(Sequence[Row]):
    """Per-epoch metrics of a run: a sequence of dict rows with :data:`HISTORY_COLUMNS`.

    Args:
        rows: Initial rows.

    Example:
        >>> history = History([{"epoch": 1, "train_loss": 1.5, "val_accuracy": 0.4}])
        >>> history.column("train_loss")
        [1.5]
        >>> print(history.to_csv().splitlines()[0])
        epoch,train_loss,val_loss,val_accuracy,val_macro_f1,lr,images_per_sec,seconds
    """

    def __init__(self, rows: Iterable[Mapping[str, Any]] = ()) -> None:
        self._rows: list[Row] = [dict(row) for row in rows]

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> Row:  # type: ignore[override]
        return self._rows[index]

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, History) and self._rows == other._rows

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"History({len(self)} epochs)"

    @property
    def rows(self) -> list[Row]:
        """The rows as a list of dicts (a copy)."""
        return [dict(row) for row in self._rows]

    def append(self, row: Mapping[str, Any]) -> None:
        """Add the row of one epoch.

        Args:
            row: Column names to values.
        """
        self._rows.append(dict(row))

    def column(self, name: str) -> list[Any]:
        """Return one column's values, ``None`` where a row lacks it.

        Args:
            name: Column name, e.g. ``"val_accuracy"``.

        Returns:
            One value per epoch.
        """
        return [row.get(name) for row in self._rows]

    def best(self, monitor: str = "val_accuracy") -> Row | None:
        """Return the row with the best value of a metric (the first one on ties).

        Args:
            monitor: One of :data:`MONITORS` or its short name.

        Returns:
            The row, or ``None`` when no row has the metric.

        Raises:
            InvalidArgumentError: If ``monitor`` is unknown.

        Example:
            >>> History([{"epoch": 1, "val_loss": 0.9}, {"epoch": 2, "val_loss": 0.7}]).best(
            ...     "loss")["epoch"]
            2
        """
        name = MONITOR_ALIASES.get(monitor, monitor)
        check_choice("monitor", name, MONITORS)
        rows = [row for row in self._rows if row.get(name) is not None]
        if not rows:
            return None
        sign = 1.0 if MONITORS[name] == "max" else -1.0
        best = rows[0]
        for row in rows[1:]:
            if sign * row[name] > sign * best[name]:
                best = row
        return best

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """Serialise the rows as a JSON list, optionally writing it to ``path`` atomically.

        Args:
            path: File to write, or ``None``.

        Returns:
            The JSON text.
        """
        text = json.dumps(self._rows, indent=2) + "\n"
        if path is not None:
            atomic_write_text(Path(path), text, parents=True)
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike[str]) -> History:
        """Read rows written by :meth:`to_json`.

        Args:
            source: A JSON file path, or the JSON text itself.

        Returns:
            The history.

        Raises:
            FileNotFoundError: If ``source`` names a file that does not exist.
            InvalidArgumentError: If the file cannot be read, is not UTF-8, or the JSON is
                not a list of objects.

        Example:
            >>> History.from_json('[{"epoch": 1}]')[0]
            {'epoch': 1}
        """
        text = str(source)
        if not text.lstrip().startswith("["):
            text = read_text_file(Path(source), "history file")
        try:
            rows = json.loads(text)
        except (ValueError, RecursionError) as exc:
            reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise InvalidArgumentError(f"Could not parse the history JSON: {reason}.") from exc
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise InvalidArgumentError("A history must be a JSON list of objects (one per epoch).")
        return cls(rows)

    def to_csv(self, path: str | os.PathLike[str] | None = None) -> str:
        """Serialise the rows as CSV, optionally writing it to ``path`` atomically.

        Columns are :data:`HISTORY_COLUMNS` followed by any extra keys in first-seen order;
        missing values are empty cells.

        Args:
            path: File to write, or ``None``.

        Returns:
            The CSV text.
        """
        columns = list(HISTORY_COLUMNS)
        for row in self._rows:
            columns.extend(key for key in row if key not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in self._rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        text = buffer.getvalue()
        if path is not None:
            atomic_write_text(Path(path), text, parents=True)
        return text
