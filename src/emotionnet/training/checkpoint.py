"""Training checkpoints on disk: ``last.ckpt``, ``best.safetensors`` and the RNG states.

``last.ckpt`` is the resume state, ``best.safetensors`` the best epoch's weights; the RNG
states are what a resume restores to continue bit-exactly.

``last.ckpt`` is the zip file :func:`torch.save` writes, with a SHA-256 digest of its content
as the zip comment; ``best.safetensors`` holds the digest of its tensor data in its metadata.
A file that no longer matches its digest is refused with
:class:`~emotionnet.errors.CheckpointError`. Everything is read with ``weights_only`` loading:
no code in a checkpoint ever runs.

Example:
    >>> LAST_CHECKPOINT, BEST_WEIGHTS
    ('last.ckpt', 'best.safetensors')
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import string
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Final, cast

import numpy as np
import torch

from .._io import open_regular_file
from ..errors import CheckpointError

__all__ = ["BEST_WEIGHTS", "LAST_CHECKPOINT", "load_checkpoint"]

logger = logging.getLogger("emotionnet.training")  # one logger for the package

CHECKPOINT_FORMAT: Final[str] = "emotionnet.training-checkpoint"
CHECKPOINT_VERSION: Final[int] = 1
LAST_CHECKPOINT: Final[str] = "last.ckpt"
"""File name of the resume state in ``checkpoint_dir``."""
BEST_WEIGHTS: Final[str] = "best.safetensors"
"""File name of the best epoch's weights in ``checkpoint_dir``."""
# Keys every checkpoint holds, with their types (the others are optional, see load_checkpoint).
_CHECKPOINT_KEYS: Final[dict[str, type]] = {
    "epoch": int,
    "global_step": int,
    "model": dict,
    "optimizer": dict,
    "scheduler": dict,
    "rng": list,
    "history": list,
    "config": dict,
    "best": dict,
    "bad_epochs": int,
}
# last.ckpt is the zip file torch.save writes, with a SHA-256 digest of everything before the
# zip comment in the comment: any zip reader (torch.load too) still reads it.
_ZIP_END: Final[bytes] = b"PK\x05\x06"  # signature of the zip end-of-central-directory record
_ZIP_END_SIZE: Final[int] = 22  # that record without its comment
_DIGEST_TAG: Final[bytes] = b"emotionnet-sha256:"
_DIGEST_COMMENT_SIZE: Final[int] = len(_DIGEST_TAG) + 64
# best.safetensors holds the SHA-256 of its tensor data under this metadata key.
_WEIGHTS_DIGEST_KEY: Final[str] = "emotionnet.sha256"
_READ_CHUNK: Final[int] = 1 << 20


class _DigestWriter:
    """The file object :func:`torch.save` writes ``last.ckpt`` through.

    The bytes go on to ``handle`` and into a SHA-256 digest, except the last
    :data:`_ZIP_END_SIZE`, held back until :meth:`finish` has checked that they are the zip
    end record: its comment length is then set and the digest appended as the comment.
    """

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._digest = hashlib.sha256()
        self._tail = b""

    def _emit(self, chunk: bytes | memoryview) -> None:
        if len(chunk):
            self._digest.update(chunk)
            self._handle.write(chunk)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if view.nbytes >= _ZIP_END_SIZE:
            self._emit(self._tail)
            self._emit(view[:-_ZIP_END_SIZE])
            self._tail = bytes(view[-_ZIP_END_SIZE:])
        else:
            joined = self._tail + bytes(view)
            self._emit(joined[:-_ZIP_END_SIZE])
            self._tail = joined[-_ZIP_END_SIZE:]
        return view.nbytes

    def flush(self) -> None:
        self._handle.flush()

    def finish(self) -> None:
        tail = self._tail
        if len(tail) != _ZIP_END_SIZE or not tail.startswith(_ZIP_END) or tail[-2:] != b"\0\0":
            raise CheckpointError(
                "torch.save did not end the checkpoint with a plain zip end record, so no "
                "integrity digest can be added; this torch version is not supported by this "
                "emotionnet."
            )
        self._emit(tail[:-2])  # the digest covers everything up to the comment length
        comment = _DIGEST_TAG + self._digest.hexdigest().encode("ascii")
        self._handle.write(struct.pack("<H", len(comment)) + comment)


def save_checkpoint_file(state: Mapping[str, Any], handle: IO[bytes]) -> None:
    """Write ``state`` with :func:`torch.save` and its SHA-256 digest to ``handle``."""
    writer = _DigestWriter(handle)
    torch.save(state, cast(Any, writer))
    writer.finish()


def _corrupt(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(
        f"The checkpoint {path} is corrupt: {reason}. Resuming from it would continue from "
        "damaged weights, so it is refused. Delete it (or move it away) and resume from a copy "
        f"you trust, or start afresh (resume=False), for example from the weights in "
        f"{BEST_WEIGHTS}."
    )


def _check_checkpoint_digest(handle: IO[bytes], path: Path) -> bool:
    """Check ``last.ckpt``'s digest: ``True`` if it matches, ``False`` for a file without one.

    Raises:
        CheckpointError: If the file does not match its digest, or ends neither in a digest
            nor in the plain zip end record of a checkpoint written before digests.
    """
    size = os.fstat(handle.fileno()).st_size
    if size >= _ZIP_END_SIZE:
        handle.seek(size - _ZIP_END_SIZE)
        end = handle.read(_ZIP_END_SIZE)
        if end.startswith(_ZIP_END) and end[-2:] == b"\0\0":
            return False  # written by an emotionnet version without digests
    trailer_size = _ZIP_END_SIZE + _DIGEST_COMMENT_SIZE
    if size < trailer_size:
        raise _corrupt(path, f"it is only {size} bytes long (truncated)")
    handle.seek(size - trailer_size)
    trailer = handle.read(trailer_size)
    comment = trailer[_ZIP_END_SIZE:]
    expected = comment[len(_DIGEST_TAG) :].decode("ascii", "replace")
    if (
        not trailer.startswith(_ZIP_END)
        or struct.unpack("<H", trailer[_ZIP_END_SIZE - 2 : _ZIP_END_SIZE])[0]
        != _DIGEST_COMMENT_SIZE
        or not comment.startswith(_DIGEST_TAG)
        or not set(expected) <= set(string.hexdigits.lower())
    ):
        raise _corrupt(path, "its end (the zip end record and the SHA-256 digest) is damaged")
    digest = hashlib.sha256()
    handle.seek(0)
    remaining = size - _DIGEST_COMMENT_SIZE - 2
    while remaining > 0:
        chunk = handle.read(min(_READ_CHUNK, remaining))
        if not chunk:
            raise _corrupt(path, "it changed while it was read")
        digest.update(chunk)
        remaining -= len(chunk)
    if digest.hexdigest() != expected:
        raise _corrupt(
            path,
            f"its content does not match the SHA-256 digest written with it (expected "
            f"{expected[:12]}..., found {digest.hexdigest()[:12]}...)",
        )
    return True


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a training checkpoint written by :class:`Trainer` (``last.ckpt``).

    The file is first checked against the SHA-256 digest written with it (the zip comment
    of the file :func:`torch.save` writes), so a flipped bit or a truncated copy is refused
    rather than resumed from. Checkpoints written by earlier emotionnet versions, which
    have no digest, still load, with a logged warning. Loading uses
    ``torch.load(weights_only=True)``: a checkpoint holds only tensors and plain
    containers, and no code in it is ever run.

    Its keys: ``format``, ``version``, ``epoch`` (completed epochs),
    ``global_step``, ``model`` (state dict), ``optimizer``, ``scheduler``, ``scaler`` (or
    ``None``), ``ema`` (the weight average's state dict, or ``None``; older checkpoints lack
    it), ``rng`` (per-rank torch/CUDA/numpy/python RNG states as tensors), ``history``
    (list of rows), ``config`` (:meth:`TrainConfig.to_dict`), ``model_config`` (dict or
    ``None``), ``best`` (``metric``, ``value``, ``epoch``), ``bad_epochs``,
    ``should_stop`` (the run stopped early; older checkpoints lack it) and
    ``nonfinite_steps`` (non-finite steps in a row at the end of the last epoch; older
    checkpoints lack it), ``data`` (``num_samples`` and ``steps_per_epoch`` of the training
    set, which a resume must match; older checkpoints lack it) and ``callbacks`` (the
    ``state_dict()`` of each callback that has one, keyed ``"<position>:<class name>"``;
    older checkpoints lack it). ``best`` is
    :meth:`BestWeights.state_dict <emotionnet.training.BestWeights.state_dict>`,
    ``bad_epochs`` the :class:`~emotionnet.training.EarlyStopping` count.

    Args:
        path: The checkpoint file.
        map_location: Where to load tensors.

    Returns:
        The checkpoint dict.

    Raises:
        CheckpointError: If the file is missing, unreadable, does not match its digest, is
            not an emotionnet checkpoint or lacks some of its keys.

    Example:
        >>> load_checkpoint("no/such/last.ckpt")
        Traceback (most recent call last):
        ...
        emotionnet.errors.CheckpointError: No checkpoint at no/such/last.ckpt; ...
    """
    target = Path(path)
    if not target.is_file():
        raise CheckpointError(
            f"No checkpoint at {target}; pass the last.ckpt of an earlier run (in its "
            "checkpoint_dir), or resume=False to start afresh."
        )
    try:
        # One open file for the check and the load: both see the same bytes.
        with open_regular_file(target) as handle:
            verified = _check_checkpoint_digest(handle, target)
            handle.seek(0)
            data = torch.load(handle, map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # pickle, zip and torch errors share no base class
        raise CheckpointError(
            f"Could not read the checkpoint {target} ({exc}); it is corrupt or not a "
            "training checkpoint. Resume from another one or start afresh."
        ) from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{target} is not an emotionnet training checkpoint (no format "
            f"{CHECKPOINT_FORMAT!r}); model weights load with build_model(config, weights=...)."
        )
    if data.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{target} has checkpoint version {data.get('version')!r}; this emotionnet reads "
            f"version {CHECKPOINT_VERSION}."
        )
    missing = [key for key in _CHECKPOINT_KEYS if key not in data]
    if missing:
        raise CheckpointError(
            f"The checkpoint {target} lacks the keys {missing}: it was not written whole by "
            "Trainer.save_checkpoint. Resume from another checkpoint, or start afresh "
            "(resume=False)."
        )
    wrong = [
        f"{key} is of type {type(data[key]).__name__}, expected {kind.__name__}"
        for key, kind in _CHECKPOINT_KEYS.items()
        if not isinstance(data[key], kind)
    ]
    if wrong:
        raise CheckpointError(
            f"The checkpoint {target} is malformed ({'; '.join(wrong)}). Resume from another "
            "checkpoint, or start afresh (resume=False)."
        )
    if not verified:
        logger.warning(
            "%s has no integrity digest (it was written by an older emotionnet), so it "
            "cannot be checked for corruption; the next checkpoint written will have one",
            target,
        )
    return data


def _weights_digest(data: bytes | memoryview) -> tuple[dict[str, str], str]:
    """Return the metadata of a safetensors file's bytes and the SHA-256 of its tensor data.

    Raises:
        ValueError: If the header is not a safetensors header.
    """
    view = memoryview(data)
    if view.nbytes < 8:
        raise ValueError(f"{view.nbytes} bytes is too short for a safetensors file")
    size = int.from_bytes(view[:8], "little")
    if size > view.nbytes - 8:
        raise ValueError(f"its header claims {size} bytes but the file has {view.nbytes}")
    header = json.loads(bytes(view[8 : 8 + size]))
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise ValueError("its metadata is not a JSON object")
    return metadata, hashlib.sha256(view[8 + size :]).hexdigest()


def weights_file_bytes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """Serialise ``tensors`` as safetensors, with the SHA-256 of the tensor data in metadata."""
    from safetensors.torch import save

    first = save(dict(tensors), metadata=dict(metadata))
    _, digest = _weights_digest(first)
    # The tensor data does not depend on the metadata: the same bytes, now with their digest.
    return save(dict(tensors), metadata={**metadata, _WEIGHTS_DIGEST_KEY: digest})


def load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """Read ``best.safetensors``, refusing a file that does not match its digest."""
    from safetensors.torch import load

    hint = (
        f"Delete the file (or move it away): the next improvement of the monitored metric "
        f"writes a new one; the latest weights are in {LAST_CHECKPOINT}."
    )
    try:
        with open_regular_file(path) as handle:
            data = handle.read()
    except OSError as exc:
        raise CheckpointError(f"Could not read the best weights {path} ({exc}). {hint}") from exc
    try:
        metadata, digest = _weights_digest(data)
        expected = metadata.get(_WEIGHTS_DIGEST_KEY)
        if expected is not None and expected != digest:
            raise CheckpointError(
                f"The best weights {path} are corrupt: their tensor data does not match the "
                f"SHA-256 digest written with them (expected {str(expected)[:12]}..., found "
                f"{digest[:12]}...). {hint}"
            )
        state = load(data)
    except CheckpointError:
        raise
    except Exception as exc:  # JSON, safetensors and value errors share no base class
        raise CheckpointError(
            f"The best weights {path} are corrupt or not a safetensors file ({exc}). {hint}"
        ) from exc
    if expected is None:
        logger.warning(
            "%s has no integrity digest (it was written by an older emotionnet), so it "
            "cannot be checked for corruption",
            path,
        )
    return state


def rng_state(device: torch.device) -> dict[str, Any]:
    np_state = cast(tuple[str, Any, int, int, float], np.random.get_state(legacy=True))
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
    }
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py_state = state["python"]
    random.setstate(
        (py_state["version"], tuple(int(v) for v in py_state["state"]), py_state["gauss_next"])
    )
