"""Reading user files without blocking, and never writing over them.

A path can name a named pipe (FIFO), a character device or a socket; ``open()`` on a FIFO
blocks until a writer appears, which may be never. :func:`open_regular_file` opens without
blocking, after resolving links, and refuses anything that is not a regular file with an
error that names the path. Every file emotionnet reads on a user's behalf (images, data
sets, recipes, model configs) goes through it.

:func:`check_outputs` is the other direction: every command that writes files checks, before
it writes anything, that no output is one of its inputs (by file identity, so through
symbolic links, hard links and ``..``) and that two outputs are not the same file.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterable, Mapping
from typing import Any, BinaryIO

__all__ = [
    "NotARegularFileError",
    "check_outputs",
    "file_kind",
    "open_regular_file",
    "read_json_file",
    "read_text_file",
]

_MAX_BYTES = 16 << 20
"""Largest config, recipe, history or report file read (16 MiB): far more than any is."""

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)


class NotARegularFileError(OSError):
    """The path exists but is a folder, a pipe, a device or a socket, not a regular file.

    An :class:`OSError` so that callers that already turn ``OSError`` into their own error
    (with the path and a fix) handle it the same way; ``strerror`` is the reason.
    """


def file_kind(path: str | os.PathLike[str]) -> str | None:
    """``None`` if ``path`` is a regular file (after links), else what it is, for messages.

    For readers that cannot take a file object (safetensors memory-maps a path): checked
    just before they open the path.

    Raises:
        OSError: If the path cannot be examined (missing, no permission, a link loop).
    """
    mode = os.stat(path).st_mode
    return None if stat.S_ISREG(mode) else _kind(mode)


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


def read_text_file(path: str | os.PathLike[str], what: str, *, max_bytes: int = _MAX_BYTES) -> str:
    """Read a small UTF-8 text file; refuse pipes, devices and folders at once.

    Raises:
        FileNotFoundError: If nothing is at ``path``.
        InvalidArgumentError: If it is not a regular file, cannot be read, is larger than
            ``max_bytes`` (16 MiB) or is not UTF-8.
    """
    from .errors import InvalidArgumentError

    try:
        with open_regular_file(path) as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise
    except NotARegularFileError as exc:
        kind = exc.strerror if exc.strerror != "not a regular file" else "a special file"
        raise InvalidArgumentError(
            f"The {what} {path} is {kind}, not a regular file; pass the path of a regular file."
        ) from exc
    except OSError as exc:
        raise InvalidArgumentError(
            f"Could not read the {what} {path} ({exc.strerror or exc}); check its permissions."
        ) from exc
    if len(data) > max_bytes:
        raise InvalidArgumentError(
            f"The {what} {path} is larger than {max_bytes >> 20} MiB, far more than any "
            f"{what}; pass the right file."
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgumentError(
            f"The {what} {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save it with the UTF-8 encoding."
        ) from exc


def read_json_file(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """Read a small JSON file (see :func:`read_text_file`), refusing one nested too deeply.

    Raises:
        FileNotFoundError: If nothing is at ``path``.
        InvalidArgumentError: As :func:`read_text_file`, or if the text is not valid JSON.
    """
    from .errors import InvalidArgumentError

    text = read_text_file(path, what)
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidArgumentError(
            f"The {what} {path} is not valid JSON: nested too deeply."
        ) from None
    except ValueError as exc:  # json.JSONDecodeError, and integers too long to convert
        raise InvalidArgumentError(f"The {what} {path} is not valid JSON: {exc}.") from None


PathText = str | os.PathLike[str]


def _identity(path: PathText) -> tuple[int, int] | None:
    """``(device, inode)`` of the file at ``path`` after links, ``None`` if there is none."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):  # missing, a dangling link, no permission, a NUL byte
        return None
    return (info.st_dev, info.st_ino)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_outputs(
    outputs: Mapping[str, PathText | None],
    inputs: Iterable[PathText],
    *,
    input_folders: Iterable[PathText] = (),
) -> None:
    """Refuse, before anything is written, an output that would destroy an input.

    An output is refused if it is the same file as one of ``inputs`` (same device and inode:
    the same name, a symbolic link to it, a hard link, a path through ``..``), if it is an
    existing file inside one of ``input_folders`` (after resolving links; a hard link to a
    file inside is found too), or if two outputs are the same file. An output that does not
    exist yet cannot be an input; only the outputs are then compared with each other.

    Args:
        outputs: Each output by the option that names it (``{"--output": "a.csv"}``, used in
            the message); ``None`` values (an option not given) are ignored.
        inputs: The files the command reads (missing ones are ignored).
        input_folders: Folders the command reads as a whole (a data set).

    Raises:
        InvalidArgumentError: Naming the output, the input it would overwrite, and the fix.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     image = os.path.join(folder, "face.jpg")
        ...     open(image, "wb").close()
        ...     check_outputs({"--output": os.path.join(folder, "out.csv")}, [image])
        ...     check_outputs({"--output": os.path.join(folder, ".", "face.jpg")}, [image])
        Traceback (most recent call last):
        ...
        emotionnet.errors.InvalidArgumentError: --output '...face.jpg' is the input '...face.jpg': writing it would destroy the input. Name another output file.
    """  # noqa: E501
    from .errors import InvalidArgumentError

    named = [(option, os.fspath(path)) for option, path in outputs.items() if path is not None]
    seen: dict[object, tuple[str, str]] = {}
    for option, path in named:
        # Not-yet-existing outputs are compared by their resolved name.
        key: object = _identity(path) or os.path.realpath(path)
        if key in seen:
            first_option, first = seen[key]
            raise InvalidArgumentError(
                f"{option} {path!r} and {first_option} {first!r} are the same file: one "
                "would overwrite the other. Name two different files."
            )
        seen[key] = (option, path)
    existing = [(option, path, _identity(path)) for option, path in named]
    existing = [item for item in existing if item[2] is not None]
    if not existing:
        return
    by_identity = {identity: (option, path) for option, path, identity in existing}
    for source in inputs:
        identity = _identity(source)
        if identity in by_identity:
            option, path = by_identity[identity]
            raise InvalidArgumentError(
                f"{option} {path!r} is the input {os.fspath(source)!r}: writing it would "
                "destroy the input. Name another output file."
            )
    folders = [os.fspath(folder) for folder in input_folders]
    for option, path, identity in existing:
        resolved = os.path.realpath(path)
        for folder in folders:
            if _inside(resolved, os.path.realpath(folder)) or (
                os.stat(path).st_nlink > 1 and _linked_inside(identity, folder)
            ):
                raise InvalidArgumentError(
                    f"{option} {path!r} is a file inside the input folder {folder!r}: writing "
                    "it would destroy part of the input. Name an output outside that folder."
                )


def _linked_inside(identity: tuple[int, int] | None, folder: str) -> bool:
    """Whether a file inside ``folder`` (recursively) has this identity (a hard link)."""
    for root, _, files in os.walk(folder):
        for name in files:
            if _identity(os.path.join(root, name)) == identity:
                return True
    return False
