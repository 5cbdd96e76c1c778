"""What to read for a split, and the fingerprint of those files (for the cache)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._io import open_regular_file
from ..errors import (
    MalformedDataError,
    SplitNotAvailableError,
)
from .csvfiles import _read_csv
from .folders import _folder_items, _load_folder_items
from .layout import SPLITS, ImageArray, LabelArray, _Located, _Problems

__all__: list[str] = []  # internal: read through FER2013

logger = logging.getLogger("emotionnet.data")  # one logger for the package

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
