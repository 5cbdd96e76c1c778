"""The on-disk cache of decoded splits: one safetensors file per source, split and error mode."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Final

import numpy as np

from .._atomic import atomic_write_bytes
from ..errors import (
    MalformedDataError,
)
from ..labels import NUM_CLASSES
from ..preprocessing import IMAGE_SIZE
from .layout import ImageArray, LabelArray, _Located

__all__ = ["default_cache_dir"]

logger = logging.getLogger("emotionnet.data")  # one logger for the package

_CACHE_FORMAT_VERSION: Final[int] = 2  # 2: CSV "test" split ordered public, then private

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
