"""The FER2013 CSV files (fer2013.csv, icml_face_data.csv, the challenge files), in chunks."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from .._io import open_regular_file
from ..errors import (
    MalformedDataError,
)
from ..labels import EMOTIONS, NUM_CLASSES
from ..preprocessing import IMAGE_SIZE
from .layout import ImageArray, LabelArray, _Problems

__all__: list[str] = []  # internal: read through FER2013

logger = logging.getLogger("emotionnet.data")  # one logger for the package

_PIXELS: Final[int] = IMAGE_SIZE * IMAGE_SIZE
_CSV_CHUNK_ROWS: Final[int] = 1024
_USAGES: Final[dict[bytes, str]] = {
    b"training": "train",
    b"publictest": "public_test",
    b"privatetest": "private_test",
}
_TEST_PARTS: Final[frozenset[str]] = frozenset({"public_test", "private_test", "test"})
_TEST_ORDER: Final[dict[str, int]] = {"public_test": 0, "private_test": 1, "test": 2, "train": 3}

# --------------------------------------------------------------------------------------------
# CSV files


def _split_csv_line(raw: bytes) -> list[bytes]:
    line = raw.rstrip(b"\r\n")
    if b'"' not in line:
        return line.split(b",")
    # Quoted fields are rare (pixels are space separated), so the csv module only sees them.
    text = line.decode("utf-8", errors="replace")
    return [field.encode("utf-8") for field in next(csv.reader([text]))]


def _parse_pixels_slowly(text: bytes) -> ImageArray | str:
    """Parse one pixel string in Python, returning what is wrong with it when it is invalid."""
    tokens = text.split()
    values: list[int] = []
    for position, token in enumerate(tokens, start=1):
        try:
            value = int(token)
        except ValueError:
            shown = token.decode("utf-8", errors="replace")
            return f"pixel {position} is {shown!r}, not an integer"
        if not 0 <= value <= 255:
            return f"pixel {position} is {value}, outside 0..255"
        values.append(value)
    if len(values) != _PIXELS:
        return (
            f"has {len(values)} pixel values, expected {_PIXELS} "
            f"({IMAGE_SIZE}x{IMAGE_SIZE}, space separated)"
        )
    return np.array(values, dtype=np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)


def _parse_pixel_rows(rows: Sequence[bytes]) -> tuple[ImageArray, dict[int, str]]:
    """Parse space-separated pixel strings with whole-array numpy operations.

    Rows the vectorised pass cannot vouch for (bad characters, a token longer than three
    digits, a value over 255, a wrong count) go through :func:`_parse_pixels_slowly`, which
    either parses them (leading zeros) or says what is wrong.
    """
    count = len(rows)
    out = np.zeros((count, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    if count == 0:
        return out, {}
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=count)
    row_start = np.zeros(count, dtype=np.int64)
    np.cumsum(lengths[:-1] + 1, out=row_start[1:])
    buffer = np.frombuffer(b" ".join(rows), dtype=np.uint8)
    digit = (buffer >= ord("0")) & (buffer <= ord("9"))
    suspect = np.zeros(count, dtype=bool)
    invalid = ~digit & (buffer != ord(" ")) & (buffer != ord("\t"))
    if invalid.any():
        suspect[np.searchsorted(row_start, np.flatnonzero(invalid), side="right") - 1] = True
    edges = np.diff(digit.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    token_start = np.flatnonzero(edges == 1)
    token_end = np.flatnonzero(edges == -1)
    token_length = token_end - token_start
    # Two leading zeros let the three-digit gather below index before the first token.
    digits = np.concatenate((np.zeros(2, dtype=np.int16), buffer.astype(np.int16) - ord("0")))
    values = digits[token_end + 1]
    values += np.where(token_length >= 2, digits[token_end] * 10, 0).astype(np.int16)
    values += np.where(token_length >= 3, digits[token_end - 1] * 100, 0).astype(np.int16)
    token_row = np.searchsorted(row_start, token_start, side="right") - 1
    suspect |= np.bincount(token_row, minlength=count) != _PIXELS
    bad_token = (token_length > 3) | (values > 255)
    if bad_token.any():
        suspect[token_row[bad_token]] = True
    good = ~suspect
    out[good] = values[good[token_row]].astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    errors: dict[int, str] = {}
    for index in np.flatnonzero(suspect).tolist():
        parsed = _parse_pixels_slowly(rows[index])
        if isinstance(parsed, str):
            errors[index] = parsed
        else:
            out[index] = parsed
    return out, errors


def _no_images() -> ImageArray:
    return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)


@dataclass
class _CsvResult:
    images: ImageArray
    targets: LabelArray
    held: set[str]


def _read_csv(
    path: Path, split: str, *, default_usage: str | None, problems: _Problems
) -> _CsvResult:
    """Read the rows of ``split`` from a FER2013-style CSV file.

    A ``Usage`` column decides each row's split; without one every row belongs to
    ``default_usage`` (``"train"`` for the challenge's train.csv, ``"test"`` for its test.csv,
    whose public/private halves are unknown). ``emotion`` may be absent only then.
    """
    name = path.name
    chunks: list[ImageArray] = []
    labels: list[LabelArray] = []
    pending_pixels: list[bytes] = []
    pending_lines: list[int] = []
    pending_labels: list[int] = []
    # Each kept row's place in the "test" split's documented order: public, private, unknown.
    parts: list[npt.NDArray[np.int8]] = []
    pending_parts: list[int] = []
    held: set[str] = set()

    def flush() -> None:
        if not pending_pixels:
            return
        images, errors = _parse_pixel_rows(pending_pixels)
        targets = np.array(pending_labels, dtype=np.int64)
        order = np.array(pending_parts, dtype=np.int8)
        if errors:
            keep = np.ones(len(pending_pixels), dtype=bool)
            for index in sorted(errors):
                problems.report(
                    f"{name} line {pending_lines[index]}", errors[index], MalformedDataError
                )
                keep[index] = False
            images, targets, order = images[keep], targets[keep], order[keep]
        chunks.append(images)
        labels.append(targets)
        parts.append(order)
        pending_pixels.clear()
        pending_lines.clear()
        pending_labels.clear()
        pending_parts.clear()

    def bad_row(line_number: int, message: str) -> None:
        flush()  # earlier rows first, so that on_error="raise" names the first bad line
        problems.report(f"{name} line {line_number}", message, MalformedDataError)

    with open_regular_file(path) as file:
        header_line = file.readline()
        header = [
            field.decode("utf-8-sig", errors="replace").strip().strip('"').lower()
            for field in _split_csv_line(header_line)
        ]
        column = {field: index for index, field in enumerate(header)}
        required = ["pixels"] + (["emotion", "usage"] if default_usage is None else [])
        if default_usage == "train":
            required.append("emotion")
        missing = [c for c in required if c not in column]
        if missing:
            raise MalformedDataError(
                f"{str(path)!r} has no {', '.join(missing)} column (its header is "
                f"{header_line.decode('utf-8', errors='replace').strip()!r}); expected a header "
                f"with the columns {', '.join(required)}, as in the original {name}."
            )
        pixels_at = column["pixels"]
        emotion_at = column.get("emotion")
        usage_at = column.get("usage")
        if usage_at is None and default_usage is not None and split != default_usage:
            # Without a Usage column the file holds nothing but its default split.
            return _CsvResult(_no_images(), np.zeros(0, np.int64), {default_usage})
        width = len(header)
        for line_number, raw in enumerate(file, start=2):
            if not raw.strip():
                continue
            fields = _split_csv_line(raw)
            if len(fields) != width:
                bad_row(
                    line_number,
                    f"has {len(fields)} fields, expected {width} ({','.join(header)})",
                )
                continue
            usage_text = fields[usage_at].strip() if usage_at is not None else b""
            row_usage = default_usage if usage_at is None else _USAGES.get(usage_text.lower())
            if row_usage is None:
                shown = usage_text.decode("utf-8", errors="replace")
                bad_row(
                    line_number,
                    f"unknown Usage {shown!r} (expected Training, PublicTest or PrivateTest)",
                )
                continue
            held.add(row_usage)
            if not (row_usage == split or (split == "test" and row_usage in _TEST_PARTS)):
                continue
            label = -1
            if emotion_at is not None:
                code = fields[emotion_at].strip()
                label = int(code) if code.isdigit() else -2
                if not 0 <= label < NUM_CLASSES:
                    shown = code.decode("utf-8", errors="replace")
                    bad_row(
                        line_number,
                        f"unknown emotion code {shown!r} (expected an integer 0..{NUM_CLASSES - 1}:"
                        f" {', '.join(f'{i} {e}' for i, e in enumerate(EMOTIONS))})",
                    )
                    continue
            pending_pixels.append(fields[pixels_at])
            pending_lines.append(line_number)
            pending_labels.append(label)
            pending_parts.append(_TEST_ORDER[row_usage])
            if len(pending_pixels) >= _CSV_CHUNK_ROWS:
                flush()
    flush()
    problems.finish("bad rows")
    if held & {"public_test", "private_test"}:
        held.add("test")
    images = np.concatenate(chunks) if chunks else _no_images()
    targets = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    if split == "test" and parts:
        # File order within each part, public rows before private ones whatever the file's
        # order, as the folder layout gives them.
        order = np.argsort(np.concatenate(parts), kind="stable")
        images, targets = images[order], targets[order]
    return _CsvResult(images, targets, held)
