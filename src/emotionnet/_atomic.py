"""Atomic file writes: readers see the old file or the new one, never half of one.

Every file emotionnet writes (weights, configs, model cards, reports, checkpoints, the
dataset cache, ONNX graphs) goes through :func:`atomic_write`: the bytes go to a temporary
file in the destination's folder (same file system, so the rename is atomic), are flushed to
disk, and the temporary file is renamed over the destination. On any error, a crash or a
``KeyboardInterrupt`` included, the temporary file is removed and the previous file is intact.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text"]

_DEFAULT_MODE = 0o666


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[IO[bytes]], object],
    *,
    mode: int = _DEFAULT_MODE,
) -> Path:
    """Write ``path`` atomically through ``write(handle)``; the folder must exist.

    Args:
        path: The destination file.
        write: Called once with a binary file handle to write the content to (its return
            value is ignored).
        mode: Permission bits of the new file, reduced by the umask as for :func:`open`
            (the default gives the usual ``0o644`` under umask ``022``).

    Returns:
        The destination path.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     written = atomic_write(Path(folder, "a.bin"), lambda handle: handle.write(b"hi"))
        ...     written.read_bytes(), sorted(p.name for p in Path(folder).iterdir())
        (b'hi', ['a.bin'])
    """
    target = Path(path)
    # Unique per process and call: concurrent writers (DDP ranks, two trainers) never share
    # a temporary file. The leading dot keeps it out of globs such as ``*.json``.
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    # os.open with O_EXCL, not tempfile.mkstemp: mkstemp always creates 0o600 files.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    descriptor = os.open(temporary, flags, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)
    return target


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, mode: int = _DEFAULT_MODE
) -> Path:
    """Write ``data`` to ``path`` atomically, see :func:`atomic_write`."""
    return atomic_write(path, lambda handle: handle.write(data), mode=mode)


def atomic_write_text(
    path: str | os.PathLike[str], text: str, *, mode: int = _DEFAULT_MODE
) -> Path:
    """Write ``text`` to ``path`` atomically as UTF-8, see :func:`atomic_write`."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def _fsync_folder(folder: Path) -> None:
    """Persist the rename itself, where the platform can open a folder (POSIX can)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)
