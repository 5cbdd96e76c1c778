"""Reading user files without blocking: only regular files are ever opened.

A path can name a named pipe (FIFO), a character device or a socket; ``open()`` on a FIFO
blocks until a writer appears, which may be never. :func:`open_regular_file` opens without
blocking, after resolving links, and refuses anything that is not a regular file with an
error that names the path. Every file emotionnet reads on a user's behalf (images, data
sets, recipes, model configs) goes through it.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

__all__ = ["NotARegularFileError", "open_regular_file"]

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)


class NotARegularFileError(OSError):
    """The path exists but is a folder, a pipe, a device or a socket, not a regular file.

    An :class:`OSError` so that callers that already turn ``OSError`` into their own error
    (with the path and a fix) handle it the same way; ``strerror`` is the reason.
    """


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular_file(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for binary reading if, after resolving links, it is a regular file.

    The file is opened with ``O_NONBLOCK`` (so a FIFO does not wait for a writer) and
    checked with ``fstat`` on the open descriptor (so the check and the read see the same
    file); reads then block as usual.

    Args:
        path: The file.

    Returns:
        A binary file object; close it (``with``).

    Raises:
        NotARegularFileError: If the path is a directory, FIFO, device or socket.
        OSError: As :func:`open` raises it (``FileNotFoundError``, ``PermissionError``,
            too many levels of symbolic links, ...).

    Example:
        >>> import os, tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     open_regular_file(folder)
        Traceback (most recent call last):
        ...
        emotionnet._io.NotARegularFileError: [Errno 21] a directory: ...
    """
    fd = os.open(path, os.O_RDONLY | _NONBLOCK | _CLOEXEC | _BINARY)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            code = errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL
            raise NotARegularFileError(code, _kind(mode), str(path))
        if _NONBLOCK:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
