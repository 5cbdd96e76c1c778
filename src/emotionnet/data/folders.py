"""The Kaggle image-folder layout: listing ``train/<emotion>/*`` and decoding in parallel."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import current_process
from pathlib import Path
from stat import S_ISREG
from typing import Final

import numpy as np

from ..errors import (
    CorruptImageError,
    SplitNotAvailableError,
    UnknownEmotionError,
)
from ..images import load_image
from ..labels import EMOTIONS, emotion_to_index
from ..preprocessing import IMAGE_SIZE, to_face_array
from .layout import IMAGE_EXTENSIONS, ImageArray, LabelArray, _Located, _Problems

__all__: list[str] = []  # internal: read through FER2013

logger = logging.getLogger("emotionnet.data")  # one logger for the package

# Below this many files a process pool costs more to start than it saves.
_MIN_FILES_FOR_POOL: int = 2048
_JUNK_FILES: Final[frozenset[str]] = frozenset({"thumbs.db", "desktop.ini", "__macosx"})

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
