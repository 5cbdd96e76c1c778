r"""The FER2013 data set in every common on-disk form, and a uniform way to get tensors out.

:class:`FER2013` reads whichever of these it finds under ``root`` (or ``root/fer2013``):

========================  ===========================================================
``source``                on disk
========================  ===========================================================
``"fer2013_csv"``         ``fer2013.csv`` with columns ``emotion,pixels,Usage``
``"icml_csv"``            ``icml_face_data.csv`` (``emotion, Usage, pixels``; the names
                          have leading spaces, which are ignored)
``"folders"``             the Kaggle image folders ``train/<emotion>/*.png``,
                          ``test/<emotion>/PublicTest_*.jpg`` ...
``"challenge_csv"``       the Kaggle challenge files ``train.csv`` (``emotion,pixels``)
                          and ``test.csv`` (``pixels``, no labels)
========================  ===========================================================

With ``source="auto"`` the first one present in that order is used: the CSV files are the
original, lossless data and hold all three usages, the image folders are a re-encoding, and the
challenge files lack the test labels. Pass ``source=`` to pick one explicitly.

Splits (:data:`SPLITS`): ``train``, ``public_test`` and ``private_test`` are the three FER2013
usages (``Training``, ``PublicTest``, ``PrivateTest``); ``test`` is every test image the source
holds, public ones first, then private ones. The standard protocol trains on ``train``, selects
models and hyper-parameters on ``public_test`` and reports ``private_test`` once, at the end.

Decoded images are cached on disk (see :class:`FER2013`), so the second load of a split takes a
fraction of a second; any change to the source files rebuilds the cache.

Run ``python -m emotionnet.data ROOT`` to print the images per split and class of the data
under ``ROOT``.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from emotionnet.data import FER2013
    >>> tmp = tempfile.TemporaryDirectory()
    >>> face = " ".join(["128"] * 48 * 48)
    >>> rows = [f"3,{face},Training", f"6,{face},Training", f"0,{face},PublicTest"]
    >>> _ = Path(tmp.name, "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows))
    >>> train = FER2013(tmp.name, "train", cache=False)
    >>> len(train), train.images.shape, train.targets.tolist()
    (2, torch.Size([2, 48, 48]), [3, 6])
    >>> image, label = train[1]
    >>> image.mode, image.size, label
    ('L', (48, 48), 6)
    >>> FER2013(tmp.name, "public_test", cache=False).class_counts().tolist()
    [1, 0, 0, 0, 0, 0, 0]
    >>> tmp.cleanup()
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import current_process
from pathlib import Path
from stat import S_ISREG
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset, TensorDataset

from ._atomic import atomic_write_bytes
from ._checks import check_choice, check_int
from ._io import open_regular_file
from .errors import (
    CorruptImageError,
    DatasetNotFoundError,
    EmotionNetError,
    InvalidArgumentError,
    MalformedDataError,
    MissingLabelsError,
    SplitNotAvailableError,
    UnknownEmotionError,
    UnsupportedInputError,
)
from .images import load_image
from .labels import EMOTIONS, NUM_CLASSES, emotion_to_index
from .preprocessing import IMAGE_SIZE, as_uint8_batch, to_face_array

__all__ = [
    "FER2013",
    "IMAGE_EXTENSIONS",
    "SOURCES",
    "SPLITS",
    "as_tensors",
    "default_cache_dir",
    "main",
]

logger = logging.getLogger(__name__)

SPLITS: Final[tuple[str, ...]] = ("train", "public_test", "private_test", "test")
"""The split names :class:`FER2013` accepts: the three FER2013 usages ``train``,
``public_test`` and ``private_test``, and ``test``: every test image the source holds."""

SOURCES: Final[tuple[str, ...]] = ("fer2013_csv", "icml_csv", "folders", "challenge_csv")
"""On-disk forms :class:`FER2013` reads, in the order ``source="auto"`` prefers them."""

IMAGE_EXTENSIONS: Final[frozenset[str]] = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
"""File extensions (any case) read as images in the folder layout."""

ImageArray = npt.NDArray[np.uint8]
LabelArray = npt.NDArray[np.int64]

_PIXELS: Final[int] = IMAGE_SIZE * IMAGE_SIZE
_CACHE_FORMAT_VERSION: Final[int] = 2  # 2: CSV "test" split ordered public, then private
_CSV_CHUNK_ROWS: Final[int] = 1024
# Below this many files a process pool costs more to start than it saves.
_MIN_FILES_FOR_POOL: int = 2048
_MAX_LOGGED_PROBLEMS: Final[int] = 10
_JUNK_FILES: Final[frozenset[str]] = frozenset({"thumbs.db", "desktop.ini", "__macosx"})
_USAGES: Final[dict[bytes, str]] = {
    b"training": "train",
    b"publictest": "public_test",
    b"privatetest": "private_test",
}
_TEST_PARTS: Final[frozenset[str]] = frozenset({"public_test", "private_test", "test"})
_TEST_ORDER: Final[dict[str, int]] = {"public_test": 0, "private_test": 1, "test": 2, "train": 3}
_SOURCE_DESCRIPTIONS: Final[dict[str, str]] = {
    "fer2013_csv": "fer2013.csv",
    "icml_csv": "icml_face_data.csv",
    "folders": "train/ and test/ image folders (one sub-folder per emotion)",
    "challenge_csv": "train.csv and/or test.csv (Kaggle challenge)",
}


# --------------------------------------------------------------------------------------------
# Argument checks


def _check_md5(md5: object) -> str | None:
    if md5 is None:
        return None
    if (
        not isinstance(md5, str)
        or len(md5) != 32
        or any(c not in "0123456789abcdef" for c in md5.lower())
    ):
        raise InvalidArgumentError(
            f"md5 must be None or a 32-character hexadecimal MD5 digest, got {md5!r}."
        )
    return md5.lower()


def _check_workers(num_workers: object) -> int:
    if num_workers is None:
        return _available_cpus()
    return check_int("num_workers", num_workers, minimum=0, hint="or None for all CPU cores")


def _available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------
# Finding the source


@dataclass(frozen=True)
class _Located:
    kind: str
    directory: Path
    paths: dict[str, Path]  # role ("csv", "train", "test") -> file or folder


def _children(directory: Path) -> dict[str, Path]:
    """Map lower-cased child names to paths, so that ``Train/`` or ``FER2013.CSV`` match too."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return {}
    return {name.lower(): directory / name for name in names}


def _detect(directory: Path) -> list[_Located]:
    children = _children(directory)
    found: list[_Located] = []
    for kind, file_name in (("fer2013_csv", "fer2013.csv"), ("icml_csv", "icml_face_data.csv")):
        path = children.get(file_name)
        if path is not None and path.is_file():
            found.append(_Located(kind, directory, {"csv": path}))
    folders: dict[str, Path] = {
        role: children[role]
        for role in ("train", "test")
        if role in children and children[role].is_dir()
    }
    if folders:
        found.append(_Located("folders", directory, folders))
    challenge: dict[str, Path] = {
        role: children[f"{role}.csv"]
        for role in ("train", "test")
        if f"{role}.csv" in children and children[f"{role}.csv"].is_file()
    }
    if challenge:
        found.append(_Located("challenge_csv", directory, challenge))
    return found


def _locate(root: Path, source: str) -> _Located:
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"FER2013 root {str(root)!r} does not exist or is not a folder; pass the folder that "
            f"holds one of: {_looked_for()}."
        )
    directories = [root]
    nested = _children(root).get("fer2013")
    if nested is not None and nested.is_dir():
        directories.append(nested)
    for directory in directories:
        candidates = _detect(directory)
        if source != "auto":
            candidates = [c for c in candidates if c.kind == source]
        if candidates:
            return candidates[0]
    where = " or ".join(repr(str(d)) for d in directories)
    if source == "auto":
        raise DatasetNotFoundError(
            f"No FER2013 data found in {where}. Looked for: {_looked_for()}. Download FER2013 "
            "(for example from Kaggle) and pass the folder that holds it as root."
        )
    others = sorted({c.kind for d in directories for c in _detect(d)})
    hint = (
        f" Found instead: {', '.join(others)}; pass source='auto' or one of these."
        if others
        else ""
    )
    raise DatasetNotFoundError(
        f"source={source!r} needs {_SOURCE_DESCRIPTIONS[source]}, but there is none in {where}."
        + hint
    )


def _looked_for() -> str:
    return "; ".join(_SOURCE_DESCRIPTIONS[kind] for kind in SOURCES)


# --------------------------------------------------------------------------------------------
# Problems: raised at once, or logged and counted with on_error="skip"


class _Problems:
    def __init__(self, on_error: str) -> None:
        self.on_error = on_error
        self.skipped: list[str] = []

    def report(self, where: str, message: str, error: type[MalformedDataError]) -> None:
        if self.on_error == "raise":
            raise error(
                f"{where}: {message}. Fix or remove it, or pass on_error='skip' to skip such "
                "items (they are listed in dataset.skipped)."
            )
        self.skipped.append(f"{where}: {message}")
        if len(self.skipped) <= _MAX_LOGGED_PROBLEMS:
            logger.warning("Skipping %s: %s", where, message)

    def finish(self, what: str) -> None:
        if len(self.skipped) > _MAX_LOGGED_PROBLEMS:
            logger.warning(
                "Skipped %d %s in total (only the first %d were logged); see dataset.skipped.",
                len(self.skipped),
                what,
                _MAX_LOGGED_PROBLEMS,
            )


# --------------------------------------------------------------------------------------------
# Image folders


@dataclass(frozen=True)
class _FileItem:
    relpath: str  # posix path relative to the source folder: the sort key and the cache key
    label: int
    size: int
    mtime_ns: int


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in _JUNK_FILES


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link loop
        return False


def _list_split_folder(folder: Path, base: Path) -> list[_FileItem]:
    items: list[_FileItem] = []
    ignored: list[str] = []
    prefix = folder.relative_to(base).as_posix()
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if _is_junk(entry.name):
            continue
        if not _is_dir(entry):
            ignored.append(entry.name)
            continue
        try:
            label = emotion_to_index(entry.name)
        except UnknownEmotionError:
            raise UnknownEmotionError(
                f"Folder {entry.path!r} is not an emotion: every folder in {str(folder)!r} must "
                f"be named after one of {', '.join(EMOTIONS)} (any case; aliases such as "
                "'happiness' or 'surprised' work too). Rename or remove it."
            ) from None
        for file in sorted(os.scandir(entry.path), key=lambda e: e.name):
            if _is_junk(file.name):
                continue
            extension = "." + file.name.rpartition(".")[2].lower()
            if extension not in IMAGE_EXTENSIONS:
                ignored.append(f"{entry.name}/{file.name}")
                continue
            relpath = f"{prefix}/{entry.name}/{file.name}"
            try:
                stat = file.stat()
            except OSError:
                # A dangling link or a link loop: kept, so that decoding reports it by name
                # (raised, or skipped with on_error="skip") instead of aborting the listing.
                items.append(_FileItem(relpath, label, -1, 0))
                continue
            if not S_ISREG(stat.st_mode):  # a folder, pipe, device: not an image file
                ignored.append(f"{entry.name}/{file.name}")
                continue
            items.append(_FileItem(relpath, label, stat.st_size, stat.st_mtime_ns))
    if ignored:
        logger.warning(
            "Ignored %d entries in %s that are not images inside an emotion folder (%s%s); "
            "images must be %s files in <split>/<emotion>/.",
            len(ignored),
            folder,
            ", ".join(ignored[:3]),
            ", ..." if len(ignored) > 3 else "",
            "/".join(sorted(IMAGE_EXTENSIONS)),
        )
    items.sort(key=lambda item: item.relpath)
    return items


def _usage_of_file(item: _FileItem) -> str:
    name = item.relpath.rsplit("/", 1)[-1].lower()
    if name.startswith("publictest_"):
        return "public_test"
    if name.startswith("privatetest_"):
        return "private_test"
    return "test"


def _folder_items(located: _Located, split: str) -> list[_FileItem]:
    role = "train" if split == "train" else "test"
    folder = located.paths.get(role)
    items = _list_split_folder(folder, located.directory) if folder is not None else []
    if split == "train":
        selected = items
    else:
        parts: dict[str, list[_FileItem]] = {"public_test": [], "private_test": [], "test": []}
        for item in items:
            parts[_usage_of_file(item)].append(item)
        selected = (
            parts["public_test"] + parts["private_test"] + parts["test"]
            if split == "test"
            else parts[split]
        )
    if not selected:
        raise SplitNotAvailableError(
            f"Split {split!r} is not in the image folders at {str(located.directory)!r}: "
            f"{_folder_held(located)}"
        )
    return selected


def _folder_held(located: _Located) -> str:
    held: list[str] = []
    train = located.paths.get("train")
    if train is not None and _list_split_folder(train, located.directory):
        held.append("train")
    test = located.paths.get("test")
    if test is not None:
        usages = {_usage_of_file(item) for item in _list_split_folder(test, located.directory)}
        held += [s for s in ("public_test", "private_test") if s in usages]
        if usages:
            held.append("test")
    listed = ", ".join(repr(s) for s in held) if held else "none"
    return (
        f"they hold {listed}. public_test and private_test come from the PublicTest_ and "
        "PrivateTest_ file-name prefixes in test/."
    )


def _decode_image_files(paths: Sequence[str]) -> tuple[ImageArray, list[tuple[int, str]]]:
    """Decode image files to 48x48 grayscale; runs in worker processes, so it never raises."""
    out = np.zeros((len(paths), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    errors: list[tuple[int, str]] = []
    for index, path in enumerate(paths):
        try:
            # The one image door: regular files only, the decoder allow-list, the pixel
            # limit and the EXIF orientation, as for predict.
            out[index] = to_face_array(load_image(path))
        except Exception as error:  # any failure is reported with its file name
            errors.append((index, f"{type(error).__name__}: {error}"))
    return out, errors


def _decode_in_parallel(
    paths: Sequence[str], workers: int
) -> tuple[ImageArray, list[tuple[int, str]]]:
    # Daemonic processes (DataLoader workers, for one) may not start children.
    if workers <= 1 or len(paths) < max(_MIN_FILES_FOR_POOL, 2) or current_process().daemon:
        return _decode_image_files(paths)
    # A few chunks per worker keep both cores busy to the end without much pickling.
    size = max(64, math.ceil(len(paths) / (workers * 4)))
    starts = range(0, len(paths), size)
    out = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    errors: list[tuple[int, str]] = []
    try:
        with ProcessPoolExecutor(max_workers=min(workers, len(starts))) as pool:
            chunks = pool.map(_decode_image_files, [paths[s : s + size] for s in starts])
            for start, (array, chunk_errors) in zip(starts, chunks, strict=True):
                out[start : start + len(array)] = array
                errors.extend((start + i, message) for i, message in chunk_errors)
    except (OSError, BrokenProcessPool) as error:
        logger.warning("Decoding in one process: the process pool failed (%s).", error)
        return _decode_image_files(paths)
    return out, errors


def _load_folder_items(
    located: _Located, items: Sequence[_FileItem], problems: _Problems, workers: int
) -> tuple[ImageArray, LabelArray]:
    paths = [str(located.directory / item.relpath) for item in items]
    images, errors = _decode_in_parallel(paths, workers)
    targets = np.fromiter((item.label for item in items), dtype=np.int64, count=len(items))
    if not errors:
        return images, targets
    keep = np.ones(len(items), dtype=bool)
    for index, message in errors:
        problems.report(
            f"image {paths[index]!r}", f"cannot be decoded ({message})", CorruptImageError
        )
        keep[index] = False
    problems.finish("unreadable images")
    return images[keep], targets[keep]


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


# --------------------------------------------------------------------------------------------
# What to read for a split, and its fingerprint


@dataclass(frozen=True)
class _Plan:
    fingerprint: str
    checksum_file: Path | None
    load: Callable[[_Problems, int], tuple[ImageArray, LabelArray]]


def _held_text(held: set[str]) -> str:
    return ", ".join(repr(s) for s in SPLITS if s in held) or "none"


def _plan(located: _Located, split: str) -> _Plan:
    if located.kind == "folders":
        items = _folder_items(located, split)
        digest = hashlib.sha256()
        for item in items:
            digest.update(f"{item.relpath}\t{item.label}\t{item.size}\t{item.mtime_ns}\n".encode())

        def load_folders(problems: _Problems, workers: int) -> tuple[ImageArray, LabelArray]:
            return _load_folder_items(located, items, problems, workers)

        return _Plan(digest.hexdigest(), None, load_folders)

    default_usage: str | None = None
    if located.kind == "challenge_csv":
        default_usage = "train" if split == "train" else "test"
        path = located.paths.get(default_usage)
        if path is None:
            raise SplitNotAvailableError(
                f"Split {split!r} needs {default_usage}.csv, which is not in "
                f"{str(located.directory)!r}; the challenge files there hold "
                f"{_held_text(set(located.paths))}."
            )
    else:
        path = located.paths["csv"]
    stat = path.stat()
    fingerprint = hashlib.sha256(
        f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}".encode()
    ).hexdigest()

    def load_csv(problems: _Problems, workers: int) -> tuple[ImageArray, LabelArray]:
        result = _read_csv(path, split, default_usage=default_usage, problems=problems)
        if split not in result.held:
            held = result.held | ({"train"} if "train" in located.paths else set())
            note = ""
            if default_usage == "test":
                note = (
                    " The challenge's test.csv does not say which rows are PublicTest or "
                    "PrivateTest; use fer2013.csv or icml_face_data.csv for those splits."
                )
            raise SplitNotAvailableError(
                f"Split {split!r} is not in {str(path)!r}: it holds {_held_text(held)}.{note}"
            )
        return result.images, result.targets

    return _Plan(fingerprint, path, load_csv)


def _verify_md5(path: Path | None, expected: str) -> None:
    if path is None:
        logger.warning(
            "md5 is ignored for the image-folder layout: it has no single file to hash. "
            "The cache still notices any added, removed or changed image."
        )
        return
    digest = hashlib.md5(usedforsecurity=False)
    with open_regular_file(path) as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    actual = digest.hexdigest()
    if actual != expected:
        raise MalformedDataError(
            f"MD5 of {str(path)!r} is {actual}, expected {expected}: the file differs from the "
            "one you meant (an interrupted download or another version). Download it again, or "
            "pass md5=None to skip the check."
        )


# --------------------------------------------------------------------------------------------
# On-disk cache


def default_cache_dir() -> Path:
    """Return the folder where :class:`FER2013` caches decoded splits by default.

    It is ``$EMOTIONNET_CACHE_DIR/fer2013`` when that variable is set, else
    ``$XDG_CACHE_HOME/emotionnet/fer2013``, else ``~/.cache/emotionnet/fer2013``.
    The files there can be deleted at any time; they are rebuilt on the next load.

    Returns:
        The cache folder (it may not exist yet).

    Example:
        >>> default_cache_dir().name
        'fer2013'
    """
    override = os.environ.get("EMOTIONNET_CACHE_DIR")
    if override:
        base = Path(override).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "emotionnet"
    return base / "fer2013"


def _cache_file(cache_dir: Path, located: _Located, split: str, on_error: str) -> Path:
    # One file per source folder, split and error mode: a changed source overwrites its file
    # instead of piling up stale copies. The content fingerprint is checked inside.
    identity = "|".join(
        (
            str(located.directory.resolve()),
            located.kind,
            split,
            on_error,
            str(_CACHE_FORMAT_VERSION),
        )
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return cache_dir / f"{located.kind}-{split}-{digest}.safetensors"


def _read_cache(path: Path, fingerprint: str) -> tuple[ImageArray, LabelArray, list[str]] | None:
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as file:
            metadata = file.metadata() or {}
            if metadata.get("fingerprint") != fingerprint or metadata.get("format_version") != str(
                _CACHE_FORMAT_VERSION
            ):
                logger.info("The source of %s changed; rebuilding the cache.", path)
                return None
            images = file.get_tensor("images")
            targets = file.get_tensor("targets")
        skipped = json.loads(metadata.get("skipped", "[]"))
        if (
            images.dtype != np.uint8
            or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE)
            or targets.dtype != np.int64
            or targets.shape != images.shape[:1]
            or (targets.size and (targets.min() < -1 or targets.max() >= NUM_CLASSES))
            or not isinstance(skipped, list)
            or not all(isinstance(item, str) for item in skipped)
        ):
            raise MalformedDataError("unexpected tensors or metadata")
    except Exception as error:  # a cache file is never trusted: any doubt means rebuild
        logger.warning(
            "Ignoring the unreadable cache file %s (%s: %s); rebuilding it.",
            path,
            type(error).__name__,
            error,
        )
        return None
    return images, targets, skipped


def _write_cache(
    path: Path, images: ImageArray, targets: LabelArray, fingerprint: str, skipped: list[str]
) -> None:
    from safetensors.numpy import save

    metadata = {
        "format_version": str(_CACHE_FORMAT_VERSION),
        "fingerprint": fingerprint,
        "skipped": json.dumps(skipped),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = save(
            {"images": np.ascontiguousarray(images), "targets": np.ascontiguousarray(targets)},
            metadata=metadata,
        )
        # Owner-only (0o600), as the cache has always been written: it copies the user's
        # dataset images into their cache folder and stays private to their account.
        atomic_write_bytes(path, data, mode=0o600)
    except Exception as error:  # the cache is an optimisation: loading must not fail for it
        logger.warning(
            "Could not write the cache file %s (%s); continuing without it.", path, error
        )


# --------------------------------------------------------------------------------------------
# The dataset


class FER2013(Dataset[tuple[Any, Any]]):
    """The FER2013 facial-expression data set, from any of its common on-disk forms.

    Like :class:`torchvision.datasets.FER2013`, an item is ``(PIL image, label)``: a 48x48
    grayscale (mode ``"L"``) image and its class index in :data:`~emotionnet.labels.EMOTIONS`
    (``0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral``). The whole split
    is also decoded up front into :attr:`images` and :attr:`targets`, for pipelines that
    batch and augment on the GPU (see :func:`as_tensors`).

    **Sources.** Under ``root`` or ``root/fer2013``, ``source="auto"`` takes the first of
    :data:`SOURCES` it finds: ``fer2013.csv``, ``icml_face_data.csv``, the Kaggle image
    folders, the Kaggle challenge's ``train.csv``/``test.csv``. In the image folders, labels
    come from the emotion folder names (any case, aliases such as ``Happiness`` accepted),
    never from a folder's alphabetical position; images that are not 48x48 grayscale go
    through :func:`~emotionnet.preprocessing.to_face_array`, the one resize rule; hidden files,
    ``Thumbs.db`` and ``desktop.ini`` are skipped and other non-image files are logged and
    skipped.

    **Splits.** ``train``, ``public_test`` and ``private_test`` are the FER2013 usages
    (the ``Usage`` column, or the ``Training_``/``PublicTest_``/``PrivateTest_`` file-name
    prefixes in the folders); ``test`` is every test image the source holds, public ones first.
    The standard protocol: train on ``train``, select models and settings on ``public_test``,
    report ``private_test`` once at the end. The challenge's ``test.csv`` has no labels and
    does not say which rows are public or private, so that source holds ``train`` and an
    unlabeled ``test`` (targets ``-1``, items ``(image, None)`` as in torchvision).

    **Order.** Deterministic: CSV row order, or sorted relative paths in the folders.

    **Speed.** Image files are decoded by ``num_workers`` processes, CSV pixels by whole-array
    numpy parsing. With ``cache=True`` the decoded split is saved to a safetensors file in
    ``cache_dir`` (default :func:`default_cache_dir`); the next load of the same split reads
    that file instead. The file is keyed by the source's fingerprint (every image's relative
    path, size and modification time, or the CSV file's size and modification time), the
    split, ``on_error`` and a format version, so any change to the source rebuilds it. It is
    written atomically; an unreadable cache file is logged and rebuilt, never trusted.

    Args:
        root: Folder holding the data set (or a ``fer2013`` sub-folder holding it).
        split: One of :data:`SPLITS`.
        transform: Applied to the PIL image of each item, as in torchvision.
        target_transform: Applied to each label (not to the ``None`` of unlabeled items).
        source: ``"auto"`` or one of :data:`SOURCES`.
        cache: Read and write the on-disk cache.
        cache_dir: Folder of the cache files (default :func:`default_cache_dir`).
        md5: Optional MD5 hex digest of the CSV file the split is read from (``train.csv`` or
            ``test.csv`` for the challenge files), checked on every load. The folder layout
            has no single file to hash: the check is skipped there with a logged warning.
        on_error: ``"raise"`` stops at the first malformed row or undecodable image;
            ``"skip"`` leaves it out, logs it and lists it in :attr:`skipped`.
        num_workers: Processes that decode image files; ``None`` uses every available CPU
            core, ``0`` or ``1`` decodes in this process.

    Attributes:
        images: ``uint8`` tensor ``N x 48 x 48``.
        targets: ``int64`` tensor ``N``; ``-1`` where the source has no labels.
        classes: The class names, :data:`~emotionnet.labels.EMOTIONS`.
        split: The split name.
        source: Which of :data:`SOURCES` was read.
        source_path: The folder the source was found in.
        skipped: One line per item left out with ``on_error="skip"`` (file or CSV line, and
            what was wrong).
        cache_file: The cache file used, or ``None`` with ``cache=False``.

    Raises:
        InvalidArgumentError: If an argument has an unknown value.
        DatasetNotFoundError: If no (or not the requested) source is under ``root``.
        SplitNotAvailableError: If the source does not hold ``split``; the message lists the
            splits it holds.
        UnknownEmotionError: If a folder in ``train/`` or ``test/`` is not an emotion name.
        MalformedDataError: If a CSV file lacks a column, or a row has the wrong number of
            fields or pixels, a non-integer or out-of-range pixel, an unknown emotion code or
            an unknown Usage (the message gives the line number); or the md5 does not match.
        CorruptImageError: If an image file cannot be decoded (the message names it).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> tmp = tempfile.TemporaryDirectory()
        >>> for name, shade in [("Training_0.png", 0), ("Training_1.png", 255)]:
        ...     folder = Path(tmp.name, "train", "Neutral")
        ...     folder.mkdir(parents=True, exist_ok=True)
        ...     Image.new("L", (48, 48), shade).save(folder / name)
        >>> data = FER2013(tmp.name, cache_dir=Path(tmp.name, "cache"))
        >>> data
        Dataset FER2013
            Number of datapoints: 2
            Root location: ...
            Split: train
            Source: folders
        >>> data.targets.tolist(), data.class_counts().tolist()
        ([6, 6], [0, 0, 0, 0, 0, 0, 2])
        >>> FER2013(tmp.name, "private_test", cache=False)
        Traceback (most recent call last):
            ...
        emotionnet.errors.SplitNotAvailableError: Split 'private_test' is not in the image ...
        >>> tmp.cleanup()
    """

    classes: tuple[str, ...] = EMOTIONS

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        *,
        transform: Callable[[Image.Image], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        source: str = "auto",
        cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        md5: str | None = None,
        on_error: str = "raise",
        num_workers: int | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        self.split = check_choice("split", split, SPLITS)
        check_choice("source", source, ("auto", *SOURCES))
        self.on_error = check_choice("on_error", on_error, ("raise", "skip"))
        expected_md5 = _check_md5(md5)
        workers = _check_workers(num_workers)
        self.transform = transform
        self.target_transform = target_transform

        located = _locate(self.root, source)
        self.source: str = located.kind
        self.source_path: Path = located.directory
        plan = _plan(located, self.split)
        if expected_md5 is not None:
            _verify_md5(plan.checksum_file, expected_md5)

        self.cache_file: Path | None = None
        cached = None
        if cache:
            folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
            self.cache_file = _cache_file(folder, located, self.split, self.on_error)
            cached = _read_cache(self.cache_file, plan.fingerprint)
        if cached is None:
            problems = _Problems(self.on_error)
            started = time.perf_counter()
            images, targets = plan.load(problems, workers)
            skipped = problems.skipped
            logger.info(
                "Decoded %d images of FER2013 %s from %s in %.1f s.",
                len(images),
                self.split,
                self.source_path,
                time.perf_counter() - started,
            )
            if self.cache_file is not None:
                _write_cache(self.cache_file, images, targets, plan.fingerprint, skipped)
        else:
            images, targets, skipped = cached
            logger.debug("Loaded FER2013 %s from the cache %s.", self.split, self.cache_file)
            if skipped:
                logger.warning(
                    "%d items of FER2013 %s were skipped as malformed (from the cache); see "
                    "dataset.skipped.",
                    len(skipped),
                    self.split,
                )
        if len(images) == 0:
            logger.warning("FER2013 %s from %s has no images.", self.split, self.source_path)
        self.images: torch.Tensor = torch.from_numpy(images)
        self.targets: torch.Tensor = torch.from_numpy(targets)
        self.skipped: list[str] = skipped

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        """Return ``(image, target)``: a PIL ``"L"`` image and an int (``None`` if unlabeled).

        Both pass through ``transform`` / ``target_transform`` when given.
        """
        image: Any = Image.fromarray(self.images[index].numpy())
        label = int(self.targets[index])
        target: Any = label if label >= 0 else None
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None and target is not None:
            target = self.target_transform(target)
        return image, target

    def class_counts(self) -> torch.Tensor:
        r"""Return the number of images of each class.

        Returns:
            An ``int64`` tensor of shape ``(7,)``, in :data:`~emotionnet.labels.EMOTIONS` order.

        Raises:
            MissingLabelsError: If the split has unlabeled images (the challenge's test.csv).

        Example:
            >>> import tempfile
            >>> from pathlib import Path
            >>> tmp = tempfile.TemporaryDirectory()
            >>> face = " ".join(["9"] * 48 * 48)
            >>> _ = Path(tmp.name, "train.csv").write_text(f"emotion,pixels\n5,{face}\n5,{face}\n")
            >>> FER2013(tmp.name, cache=False).class_counts()
            tensor([0, 0, 0, 0, 0, 2, 0])
            >>> tmp.cleanup()
        """
        unlabeled = int((self.targets < 0).sum())
        if unlabeled:
            raise MissingLabelsError(
                f"{unlabeled} of the {len(self)} images of split {self.split!r} "
                f"({self.source} in {str(self.source_path)!r}) have no label, so there are no "
                "class counts. The challenge's test.csv is unlabeled: count classes on 'train', "
                "or use fer2013.csv / icml_face_data.csv, which label every split."
            )
        return torch.bincount(self.targets, minlength=NUM_CLASSES)

    def extra_repr(self) -> str:
        """Return the dataset-specific lines of ``repr``, as torchvision's ``extra_repr``."""
        lines = [f"Split: {self.split}", f"Source: {self.source}"]
        if self.skipped:
            lines.append(f"Skipped: {len(self.skipped)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        body = [f"Number of datapoints: {len(self)}", f"Root location: {self.root}"]
        body += self.extra_repr().splitlines()
        if self.transform is not None:
            body += f"Transform: {self.transform!r}".splitlines()
        if self.target_transform is not None:
            body += f"Target transform: {self.target_transform!r}".splitlines()
        return "\n".join([f"Dataset {type(self).__name__}"] + ["    " + line for line in body])


# --------------------------------------------------------------------------------------------
# Tensors from any data set


def _images_tensor(images: Any, what: str) -> torch.Tensor:
    return as_uint8_batch(images, what)


def _targets_tensor(targets: Any, count: int, what: str) -> torch.Tensor:
    try:
        array = np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets)
    except (TypeError, ValueError) as error:
        raise UnsupportedInputError(
            f"{what}: expected the targets as a 1-D sequence of integer labels, "
            f"got {type(targets).__name__} ({error})."
        ) from None
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or (array.size == 0 and array.dtype == np.float64)
    ):
        raise InvalidArgumentError(
            f"{what}: expected integer labels, got dtype {array.dtype}; pass class indices "
            "0..6 (or -1 for unlabeled images)."
        )
    if array.ndim != 1 or array.shape[0] != count:
        raise InvalidArgumentError(
            f"{what}: expected one label per image ({count} labels, shape ({count},)), "
            f"got shape {array.shape}."
        )
    result = torch.from_numpy(array.astype(np.int64, copy=False))
    return result.to(targets.device) if isinstance(targets, torch.Tensor) else result


def _sample_image(image: Any, index: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    if isinstance(image, Image.Image):
        return to_face_array(image)
    array = image.cpu().numpy() if isinstance(image, torch.Tensor) else image
    if not isinstance(array, np.ndarray):
        raise UnsupportedInputError(
            f"Sample {index}: expected a PIL image or a uint8 tensor/array, got "
            f"{type(image).__name__}; remove transforms that turn images into other types."
        )
    if array.dtype != np.uint8:
        raise InvalidArgumentError(
            f"Sample {index}: expected uint8 pixels, got dtype {array.dtype}; as_tensors needs "
            "the raw images, so build the dataset without ToTensor/Normalize transforms."
        )
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise InvalidArgumentError(
            f"Sample {index}: expected a grayscale image H x W or 1 x H x W, "
            f"got shape {array.shape}; pass PIL images (converted with to_face_array) instead."
        )
    return array


def _sample_target(target: Any, index: int) -> int:
    if target is None:
        return -1
    if isinstance(target, torch.Tensor) and target.numel() == 1:
        target = target.item()
    if isinstance(target, (bool, np.bool_)) or not isinstance(target, (int, np.integer)):
        raise InvalidArgumentError(
            f"Sample {index}: expected an integer label (or None when unlabeled), "
            f"got {type(target).__name__} {target!r}; remove the target_transform."
        )
    return int(target)


def _from_dataset(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    images: list[np.ndarray[Any, np.dtype[np.uint8]]] = []
    labels: list[int] = []
    for index in range(len(data)):
        sample = data[index]
        if not isinstance(sample, (tuple, list)) or len(sample) != 2:
            raise UnsupportedInputError(
                f"Sample {index} of {type(data).__name__} is a {type(sample).__name__}; "
                "as_tensors expects a dataset yielding (image, label) pairs."
            )
        image = _sample_image(sample[0], index)
        if images and image.shape != images[0].shape:
            raise InvalidArgumentError(
                f"Sample {index} has shape {image.shape} but sample 0 has {images[0].shape}; "
                "all images must have the same size (return PIL images to get the shared "
                "48x48 resize rule)."
            )
        images.append(image)
        labels.append(_sample_target(sample[1], index))
    if not images:
        return torch.empty(0, 48, 48, dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64)


def as_tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the images of a data set as one ``uint8`` tensor and its labels as ``int64``.

    This is how :class:`~emotionnet.training.Trainer`, :func:`~emotionnet.metrics.evaluate`
    and the recognizer read data, so each accepts any of these inputs:

    * an object with ``.images`` and ``.targets`` tensors, such as :class:`FER2013` (no copy:
      the tensors are returned as they are, and the dataset's ``transform`` is not applied);
    * a :class:`torch.utils.data.Subset` of such an object (indexed without decoding) or a
      :class:`torch.utils.data.TensorDataset` of ``(images, targets)``;
    * an ``(images, targets)`` tuple of tensors or arrays, images ``uint8`` ``N x H x W`` or
      ``N x 1 x H x W``, targets a sequence of ``N`` integers;
    * any map-style dataset yielding ``(image, label)``, the image a PIL image (converted with
      :func:`~emotionnet.preprocessing.to_face_array`, the shared 48x48 rule) or a ``uint8``
      ``H x W`` / ``1 x H x W`` tensor or array, the label an integer or ``None`` (unlabeled).

    Unlabeled images have the target ``-1``.

    Args:
        data: The data set, in one of the forms above.

    Returns:
        ``(images, targets)``: ``uint8`` ``N x H x W`` and ``int64`` ``N``.

    Raises:
        UnsupportedInputError: If ``data`` is none of the accepted forms.
        InvalidArgumentError: If the images are not ``uint8``, have the wrong shape, differ in
            size, or the labels are not one integer per image.

    Example:
        >>> import numpy as np
        >>> from PIL import Image
        >>> samples = [(Image.new("L", (96, 96), 200), 3), (Image.new("RGB", (48, 48)), 0)]
        >>> images, targets = as_tensors(samples)
        >>> images.shape, images.dtype, targets.tolist()
        (torch.Size([2, 48, 48]), torch.uint8, [3, 0])
    """
    if isinstance(data, Subset):
        images, targets = as_tensors(data.dataset)
        indices = torch.as_tensor(list(data.indices), dtype=torch.int64)
        return images[indices.to(images.device)], targets[indices.to(targets.device)]
    if isinstance(data, TensorDataset):
        if len(data.tensors) != 2:
            raise UnsupportedInputError(
                f"as_tensors expects a TensorDataset of (images, targets), got "
                f"{len(data.tensors)} tensors."
            )
        images = _images_tensor(data.tensors[0], "TensorDataset images")
        return images, _targets_tensor(data.tensors[1], images.shape[0], "TensorDataset targets")
    images_attr = getattr(data, "images", None)
    targets_attr = getattr(data, "targets", None)
    if isinstance(images_attr, torch.Tensor) and isinstance(targets_attr, torch.Tensor):
        what = f"{type(data).__name__}.images"
        images = _images_tensor(images_attr, what)
        return images, _targets_tensor(
            targets_attr, images.shape[0], f"{type(data).__name__}.targets"
        )
    if (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and isinstance(data[0], (torch.Tensor, np.ndarray))
        and data[0].ndim in (3, 4)
    ):
        images = _images_tensor(data[0], "images")
        return images, _targets_tensor(data[1], images.shape[0], "targets")
    if isinstance(data, (str, bytes)) or not (
        hasattr(data, "__len__") and hasattr(data, "__getitem__")
    ):
        raise UnsupportedInputError(
            f"as_tensors cannot read a {type(data).__name__}: pass a FER2013 data set, an "
            "(images, targets) tuple of uint8 images and integer labels, or a map-style dataset "
            "yielding (PIL image, label) pairs."
        )
    return _from_dataset(data)


# --------------------------------------------------------------------------------------------
# `python -m emotionnet.data ROOT`


def main(argv: Sequence[str] | None = None) -> int:
    r"""Print the images per split and class of the FER2013 data under a folder.

    This is ``python -m emotionnet.data ROOT``: it loads every split the source holds (using
    and filling the cache) and prints one table row per split.

    Args:
        argv: Command-line arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 when the data cannot be read.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> tmp = tempfile.TemporaryDirectory()
        >>> face = " ".join(["1"] * 48 * 48)
        >>> csv_text = f"emotion,pixels,Usage\n3,{face},Training\n4,{face},PublicTest\n"
        >>> _ = Path(tmp.name, "fer2013.csv").write_text(csv_text)
        >>> main([tmp.name, "--no-cache"])  # doctest: +NORMALIZE_WHITESPACE
        FER2013 (fer2013_csv) in ...
        split        images angry disgust fear happy  sad surprise neutral
        train             1     0       0    0     1    0        0       0
        public_test       1     0       0    0     0    1        0       0
        test              1     0       0    0     0    1        0       0
        not held: private_test
        0
        >>> tmp.cleanup()
    """
    parser = argparse.ArgumentParser(
        prog="python -m emotionnet.data",
        description="Print the images per split and class of the FER2013 data under ROOT.",
    )
    parser.add_argument(
        "root",
        nargs="?",
        default=os.environ.get("EMOTIONNET_FER2013"),
        help="folder holding FER2013 (default: $EMOTIONNET_FER2013)",
    )
    parser.add_argument("--source", default="auto", choices=("auto", *SOURCES))
    parser.add_argument("--cache-dir", default=None, help="cache folder (default: see docs)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write a cache")
    parser.add_argument("--on-error", default="raise", choices=("raise", "skip"))
    args = parser.parse_args(argv)
    if args.root is None:
        parser.error("pass ROOT, the folder holding FER2013, or set EMOTIONNET_FER2013")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")

    names = [f"{name:>{max(len(name), 4)}}" for name in EMOTIONS]
    lines = [f"{'split':<12} {'images':>6} " + " ".join(names)]
    missing: list[str] = []
    header = ""
    for split in SPLITS:
        try:
            data = FER2013(
                args.root,
                split,
                source=args.source,
                cache=not args.no_cache,
                cache_dir=args.cache_dir,
                on_error=args.on_error,
            )
        except SplitNotAvailableError:
            missing.append(split)
            continue
        except (EmotionNetError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        header = f"FER2013 ({data.source}) in {data.source_path}"
        row = f"{split:<12} {len(data):>6} "
        if bool((data.targets < 0).any()):
            row += "unlabeled"
        else:
            counts = data.class_counts().tolist()
            row += " ".join(f"{c:>{len(n)}}" for c, n in zip(counts, names, strict=True))
        if data.skipped:
            row += f"  ({len(data.skipped)} skipped)"
        lines.append(row)
    print(header)
    print("\n".join(lines))
    if missing:
        print(f"not held: {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    from emotionnet.data import main as _main

    sys.exit(_main())
