"""Atomic file writes: readers see the old file or the new one, never half of one.

Every file emotionnet writes (weights, configs, model cards, reports, checkpoints, the
dataset cache, ONNX graphs) goes through :func:`atomic_write`: the bytes go to a temporary
file in the destination's folder (same file system, so the rename is atomic), are flushed to
disk, and the temporary file is renamed over the destination. On any error, a crash or a
``KeyboardInterrupt`` included, the temporary file is removed and the previous file is intact.

A process killed outright (``SIGKILL``, power loss) cannot remove its temporary file. The next
write of the same destination removes such leftovers: files named like this module's
temporaries of that destination, older than a minute, whose writing process is gone (a
temporary named with this process's id but not being written by it was left by an earlier
process that had the same id, as after a container restart). Where a process's liveness cannot
be checked (Windows), only this process's own leftovers are removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Final

__all__ = [
    "atomic_open",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "remove_stale_temporaries",
    "temporary_path",
]

_DEFAULT_MODE = 0o666
# A live writer keeps writing to its temporary file; one untouched for this long whose process
# is gone is a leftover. The age also spares writers whose process id means nothing here
# (another host or PID namespace on a shared file system) while they are writing.
_STALE_AFTER_S: Final[float] = 60.0
# The optional suffix after ``.tmp`` is for writers that choose a format by the file name
# (OpenCV's VideoWriter: ``.mp4``, ``.avi``).
_TEMPORARY: Final[str] = (
    r"\.(?P<pid>[0-9]+)\.[0-9a-f]{8}\.tmp(?:\.(?:mp4|m4v|mov|mkv|avi|MP4|M4V|MOV|MKV|AVI))?"
)
# Temporary files this process is writing now (any thread).
_in_flight: set[str] = set()
_in_flight_lock = threading.Lock()


def temporary_path(path: str | os.PathLike[str], *, suffix: str = "") -> Path:
    """A fresh temporary file name next to ``path``, as :func:`atomic_write` names them.

    ``.NAME.PID.XXXXXXXX.tmp`` plus ``suffix`` (a video suffix such as ``".mp4"``, for writers
    that pick a format by the name): unique per process and call, hidden by the leading dot
    (out of globs such as ``*.json``), and removed by :func:`remove_stale_temporaries` if its
    writer is killed (for the suffixes ``.mp4``, ``.m4v``, ``.mov``, ``.mkv`` and ``.avi``).

    Example:
        >>> temporary_path("out/clip.mp4", suffix=".mp4").name.startswith(".clip.mp4.")
        True
    """
    target = Path(path)
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffix}")


@contextlib.contextmanager
def marked_in_flight(temporary: Path) -> Iterator[None]:
    """Mark ``temporary`` as being written by this process (never a stale leftover)."""
    with _in_flight_lock:
        _in_flight.add(temporary.name)
    try:
        yield
    finally:
        with _in_flight_lock:
            _in_flight.discard(temporary.name)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], *, mode: int = _DEFAULT_MODE) -> Iterator[IO[bytes]]:
    """Open ``path`` for writing atomically: the file appears, complete, when the block ends.

    The handle writes to a temporary file in the destination's folder; when the ``with``
    block ends without an error the data is flushed to disk and the temporary file renamed
    over ``path``. If the block raises (``KeyboardInterrupt`` included), the temporary file is
    removed and a previous ``path`` is left as it was.

    Args:
        path: The destination file; its folder must exist.
        mode: Permission bits of the new file, reduced by the umask.

    Yields:
        A binary file handle.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     with atomic_open(Path(folder, "a.txt")) as handle:
        ...         _ = handle.write(b"new")
        ...     Path(folder, "a.txt").read_bytes()
        b'new'
    """
    target = Path(path)
    remove_stale_temporaries(target)
    temporary = temporary_path(target)
    # os.open with O_EXCL, not tempfile.mkstemp: mkstemp always creates 0o600 files.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    with marked_in_flight(temporary):
        descriptor = os.open(temporary, flags, mode)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    _fsync_folder(target.parent)


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
    with atomic_open(path, mode=mode) as handle:
        write(handle)
    return Path(path)


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, mode: int = _DEFAULT_MODE
) -> Path:
    """Write ``data`` to ``path`` atomically, see :func:`atomic_write`."""
    return atomic_write(path, lambda handle: handle.write(data), mode=mode)


def atomic_write_text(
    path: str | os.PathLike[str], text: str, *, mode: int = _DEFAULT_MODE, parents: bool = False
) -> Path:
    """Write ``text`` to ``path`` atomically as UTF-8, see :func:`atomic_write`.

    With ``parents=True`` missing parent folders are created first.
    """
    if parents:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that killed writes of ``path`` left behind.

    Only files in ``path``'s folder named exactly as :func:`atomic_write` names the
    temporaries of ``path`` (``.NAME.PID.XXXXXXXX.tmp``, optionally with a suffix such as
    ``.mp4`` or ``.avi``, see :func:`temporary_path`) are considered, and only regular
    files (never links), not modified for a minute, whose writing process is gone. Errors
    (a folder that cannot be listed, a file that cannot be removed) are ignored: cleaning up
    never fails a write. :func:`atomic_write` calls this before every write.

    Args:
        path: The destination file whose leftovers to remove.

    Returns:
        The files removed.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     # Named with this process's id, but this process is not writing it: left by
        ...     # an earlier process that had the same id, untouched since 1970.
        ...     stale = Path(folder, f".a.bin.{os.getpid()}.0123abcd.tmp")
        ...     _ = stale.write_bytes(b"half a file")
        ...     os.utime(stale, (0, 0))
        ...     remove_stale_temporaries(Path(folder, "a.bin")) == [stale], stale.exists()
        (True, False)
    """
    target = Path(path)
    pattern = re.compile(re.escape(f".{target.name}") + _TEMPORARY)
    prefix = f".{target.name}."
    removed: list[Path] = []
    now = time.time()
    try:
        with os.scandir(target.parent) as listing:
            entries = list(listing)
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or now - info.st_mtime < _STALE_AFTER_S:
                continue
            if _writer_alive(int(match["pid"]), entry.name):
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def _writer_alive(pid: int, name: str) -> bool:
    """Whether the process that names its temporary file ``name`` may still be writing it."""
    if pid == os.getpid():
        with _in_flight_lock:
            return name in _in_flight
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, OSError):
        return True  # another user's process, or a pid this system cannot hold: keep the file
    return True


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
