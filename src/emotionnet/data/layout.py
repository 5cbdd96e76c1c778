"""Where FER2013 lies under a root: the on-disk forms, the splits, and how problems are reported."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from .._checks import check_int
from ..errors import (
    DatasetNotFoundError,
    InvalidArgumentError,
    MalformedDataError,
)

__all__ = ["IMAGE_EXTENSIONS", "SOURCES", "SPLITS"]

logger = logging.getLogger("emotionnet.data")  # one logger for the package

SPLITS: Final[tuple[str, ...]] = ("train", "public_test", "private_test", "test")
"""The split names :class:`FER2013` accepts: the three FER2013 usages ``train``,
``public_test`` and ``private_test``, and ``test``: every test image the source holds."""

SOURCES: Final[tuple[str, ...]] = ("fer2013_csv", "icml_csv", "folders", "challenge_csv")
"""On-disk forms :class:`FER2013` reads, in the order ``source="auto"`` prefers them."""

IMAGE_EXTENSIONS: Final[frozenset[str]] = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
"""File extensions (any case) read as images in the folder layout."""

ImageArray = npt.NDArray[np.uint8]
LabelArray = npt.NDArray[np.int64]

_MAX_LOGGED_PROBLEMS: Final[int] = 10
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
