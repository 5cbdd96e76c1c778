"""One run per checkpoint folder: the ``train.lock`` file that :meth:`Trainer.fit` holds.

Two runs writing one folder would mix their ``last.ckpt``, ``best.safetensors`` and
histories, and both would seem to succeed. A run therefore creates ``train.lock`` in its
``checkpoint_dir`` (atomically: a hard link of a finished file, which fails if the lock
exists) with its process id, host name and start time, and removes it when
:meth:`~emotionnet.training.Trainer.fit` returns or raises. A second run on the folder is
refused with :class:`~emotionnet.errors.CheckpointError` naming the holder. A lock left by a
process that no longer runs on this host (killed, or the machine lost power) is stale: the
next run takes it over and logs a warning. A lock from another host is never taken over
(its process cannot be checked from here); the message says how to remove it.

Example:
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     with FolderLock(pathlib.Path(folder)) as lock:
    ...         lock.path.name, lock.path.is_file()
    ('train.lock', True)
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from ..errors import CheckpointError

__all__ = ["LOCK_FILE"]  # FolderLock: internal, held by Trainer.fit

logger = logging.getLogger("emotionnet.training")

# os.link's errors where the file system has no hard links (FAT, some network shares).
_NO_HARD_LINKS: Final[frozenset[int]] = frozenset(
    code
    for code in (
        getattr(errno, name, None) for name in ("EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EXDEV")
    )
    if code is not None
)

LOCK_FILE: Final[str] = "train.lock"
"""Name of the lock file a running :meth:`Trainer.fit` holds in its ``checkpoint_dir``."""


def _process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (a zombie counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OSError:
        return True
    return True


def _describe(holder: dict[str, Any]) -> str:
    started = holder.get("started")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
        if isinstance(started, (int, float))
        else "an unknown time"
    )
    return f"process {holder.get('pid')!r} on host {holder.get('host')!r}, started {when}"


class FolderLock:
    """Hold ``folder/train.lock`` while a run writes ``folder``.

    Args:
        folder: The checkpoint folder (created if missing).

    Raises:
        CheckpointError: On :meth:`acquire`, if another live run holds the folder, or the
            lock cannot be written.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._held = False

    def _read_holder(self) -> dict[str, Any] | None:
        """The holder recorded in the lock file, ``{}`` if unreadable, ``None`` if no lock."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            holder = json.loads(text)
        except ValueError:
            return {}
        return holder if isinstance(holder, dict) else {}

    def _try_create(self, record: str) -> bool:
        """Create the lock with ``record`` atomically; ``False`` if a lock exists already."""
        handle, temporary = tempfile.mkstemp(prefix=".train.lock.", dir=self.folder)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(record)
            try:
                os.link(temporary, self.path)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                return self._create_exclusive(record)  # a file system without hard links
            return True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)

    def _create_exclusive(self, record: str) -> bool:
        """Create the lock with ``O_EXCL`` (its content is written just after it appears)."""
        try:
            handle = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(record)
        return True

    def acquire(self) -> FolderLock:
        """Take the lock (taking over a stale one of a dead process on this host).

        Returns:
            This lock.

        Raises:
            CheckpointError: If another run holds it, or it cannot be written.
        """
        host = socket.gethostname()
        record = json.dumps({"pid": os.getpid(), "host": host, "started": time.time()})
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for _ in range(3):
                if self._try_create(record):
                    self._held = True
                    return self
                holder = self._read_holder()
                if holder is None:  # released meanwhile
                    continue
                pid = holder.get("pid")
                stale = (
                    holder.get("host") == host
                    and isinstance(pid, int)
                    and pid != os.getpid()
                    and not _process_alive(pid)
                )
                if not stale:
                    raise CheckpointError(
                        f"The checkpoint folder {self.folder} is in use by another training "
                        f"run ({_describe(holder) if holder else 'an unreadable lock'}): two "
                        "runs in one folder would mix each other's checkpoints. Give this run "
                        "another checkpoint_dir (--output in the CLI), or wait for that run to "
                        f"end. If no such run exists any more, delete {self.path}."
                    )
                logger.warning(
                    "taking over the stale lock %s of %s, which no longer runs",
                    self.path,
                    _describe(holder),
                )
                # Only the stale record goes: another run may have taken it over meanwhile.
                if self._read_holder() == holder:
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
        except OSError as exc:
            raise CheckpointError(
                f"Could not lock the checkpoint folder {self.folder} ({exc}); make it a folder "
                "you can write to, or choose another checkpoint_dir."
            ) from exc
        raise CheckpointError(
            f"Could not lock the checkpoint folder {self.folder}: other runs keep taking "
            f"{self.path}; give this run another checkpoint_dir."
        )

    def release(self) -> None:
        """Remove the lock if this object holds it (and it is still this process's)."""
        if not self._held:
            return
        self._held = False
        holder = self._read_holder()
        if holder is not None and holder.get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                self.path.unlink()

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
