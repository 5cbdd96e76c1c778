"""Where model files live: the bundled default model, local folders and the Hugging Face Hub.

A saved model is a folder in the layout of ``huggingface_hub``'s ``PyTorchModelHubMixin``,
written by :meth:`EmotionNet.save_pretrained <emotionnet.models.EmotionNet.save_pretrained>`
(which :meth:`EmotionRecognizer.save_pretrained <emotionnet.EmotionRecognizer.save_pretrained>`
calls): ``model.safetensors`` (the state dict, torchvision's ResNet18 keys), ``model.onnx``
(its graph, for the torch-free install), ``config.json``
(:meth:`emotionnet.models.ModelConfig.to_dict` plus a ``"metadata"`` entry) and the
``README.md`` model card.

This module holds what the mixin does not do: :func:`resolve_model_files` finds such a folder
for both :meth:`EmotionRecognizer.from_pretrained <emotionnet.EmotionRecognizer.from_pretrained>`
and :meth:`EmotionNet.from_pretrained <emotionnet.models.EmotionNet.from_pretrained>` (the
bundled default model, a local folder, or a Hub repository downloaded within time and size
bounds in a child process, its cached files checked against their checksums), and
:func:`read_config` reads a ``config.json`` with its metadata.

Example:
    >>> import tempfile
    >>> from emotionnet.models import ModelConfig, build_model
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = build_model(ModelConfig()).save_pretrained(folder)
    ...     files = resolve_model_files(folder)
    ...     sorted(p.name for p in files.folder.iterdir())
    ['README.md', 'config.json', 'model.onnx', 'model.safetensors']
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import json
import logging
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, cast
from urllib.parse import urlsplit

from .._checks import check_number
from .._io import file_kind
from ..errors import (
    EmotionNetError,
    InvalidArgumentError,
    ModelLoadError,
    WeightsNotFoundError,
)
from ..runtime import ONNX_NAME
from .config import ModelConfig, _read_config_json

__all__ = [
    "CONFIG_NAME",
    "MODEL_CARD_NAME",
    "ONNX_NAME",
    "WEIGHTS_NAME",
    "ModelFiles",
    "bundled_model_dir",
    "read_config",
    "resolve_model_files",
    "weights_sha256",
]

logger = logging.getLogger(__name__)

WEIGHTS_NAME: Final[str] = "model.safetensors"
"""The name of the weights file in a model folder (the state dict, in safetensors format)."""

CONFIG_NAME: Final[str] = "config.json"
"""The name of the config file in a model folder (the
:class:`~emotionnet.models.ModelConfig` as JSON, with a ``"metadata"`` entry)."""

MODEL_CARD_NAME: Final[str] = "README.md"
"""The name of the model card in a model folder (Markdown, shown by the Hugging Face Hub)."""

_METADATA_KEY: Final[str] = "metadata"
_TIMEOUT_ENV: Final[str] = "EMOTIONNET_HUB_TIMEOUT"
_DEFAULT_TIMEOUT_S: Final[float] = 30.0
# The files of a model on the Hub, in the order resolve_model_files returns them.
_HUB_FILES: Final[tuple[str, ...]] = (CONFIG_NAME, WEIGHTS_NAME)
# The most bytes a Hub file may have (documented in resolve_model_files): a config.json as
# read_config reads it, and a model file several times the largest emotionnet model (a
# float32 ResNet18 is 45 MB).
_MAX_CONFIG_BYTES: Final[int] = 16 * 2**20
_MAX_MODEL_FILE_BYTES: Final[int] = 2**30
_REPO_ID: Final[re.Pattern[str]] = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRUE: Final[frozenset[str]] = frozenset({"1", "on", "yes", "true"})


@dataclass(frozen=True)
class ModelFiles:
    """The files of one saved model, resolved to local paths.

    Attributes:
        config: Path of ``config.json``.
        weights: Path of ``model.safetensors``; ``None`` for a deployment folder that holds
            only the ONNX graph.
        source: Human-readable origin, used in messages (``"the bundled default model"``,
            a folder path, or ``"org/name@revision"``).
        onnx: Path of ``model.onnx`` when the model has one (exported when it was saved).

    Example:
        >>> from pathlib import Path
        >>> ModelFiles(Path("m/config.json"), Path("m/model.safetensors"), "m").folder
        PosixPath('m')
    """

    config: Path
    weights: Path | None
    source: str
    onnx: Path | None = None

    @property
    def folder(self) -> Path:
        """The folder holding the files."""
        return self.config.parent


def _onnx_in(folder: Path) -> Path | None:
    path = folder / ONNX_NAME
    return path if path.is_file() else None


def bundled_model_dir() -> Path:
    """Return the folder of the default model shipped inside the package.

    Returns:
        ``<site-packages>/emotionnet/weights/default``.

    Raises:
        WeightsNotFoundError: If the package was installed without its bundled weights.

    Example:
        >>> bundled_model_dir().parts[-2:]  # doctest: +SKIP
        ('weights', 'default')
    """
    folder = importlib.resources.files("emotionnet").joinpath("weights").joinpath("default")
    # Wheels and editable installs put the package on disk; a zipped install cannot be read
    # by safetensors' memory map, and is not supported.
    path = Path(str(folder))
    if not (path / WEIGHTS_NAME).is_file() or not (path / CONFIG_NAME).is_file():
        raise WeightsNotFoundError(
            f"The bundled default model is missing from {path} (expected {WEIGHTS_NAME} and "
            f"{CONFIG_NAME}); the installation is incomplete. Reinstall emotionnet "
            "(pip install --force-reinstall emotionnet), or pass a local folder or a Hub repo "
            "id to from_pretrained."
        )
    return path


def _hub_offline() -> bool:
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; reading the variable here as well
    # honours it when it is set after huggingface_hub was imported (as tests and notebooks do).
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return env.strip().lower() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def _check_timeout(timeout: object) -> float | None:
    """Validate the ``timeout`` argument: ``None`` or a positive, finite number of seconds."""
    if timeout is None:
        return None
    return check_number(
        "timeout",
        timeout,
        low=0,
        low_open=True,
        hint=(
            f"seconds; pass e.g. 60, or None for {_TIMEOUT_ENV} (default {_DEFAULT_TIMEOUT_S:g} s)"
        ),
    )


def _hub_timeout(timeout: float | None) -> float:
    """The time bound of the Hub calls: the argument, else EMOTIONNET_HUB_TIMEOUT, else 30 s."""
    if timeout is not None:
        return timeout
    text = os.environ.get(_TIMEOUT_ENV, "").strip()
    if not text:
        return _DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InvalidArgumentError(
            f"{_TIMEOUT_ENV}={text!r} is not a positive number of seconds; set it to e.g. 60, "
            f"or unset it for the default ({_DEFAULT_TIMEOUT_S:g} s)."
        )
    return value


def _hub_endpoint() -> str:
    """The Hub URL (``HF_ENDPOINT``, read now), refused unless it is ``http(s)://host...``."""
    from huggingface_hub import constants

    raw = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    endpoint = raw.rstrip("/")
    try:
        url = urlsplit(endpoint)
        _ = url.port  # raises ValueError for a port that is not a number in 0..65535
        valid = (
            url.scheme in ("http", "https")
            and bool(url.hostname)
            and not url.query
            and not url.fragment
            and not any(char.isspace() or not char.isprintable() for char in endpoint)
        )
    except ValueError:
        valid = False
    if not valid:
        raise InvalidArgumentError(
            f"HF_ENDPOINT={raw!r} is not an http(s) URL of a Hub server, such as "
            "'https://huggingface.co' or 'http://mirror.example:8080'; fix it, or unset it to "
            "use the Hugging Face Hub."
        )
    return endpoint


def _check_repo_id(repo_id: str) -> None:
    """Refuse, before any network call, what huggingface_hub would refuse as a repo id."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id  # type: ignore[attr-defined]

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise InvalidArgumentError(
            f"{repo_id!r} is not a valid Hub repo id ({error}). Repo ids look like "
            "'org/name' (letters, digits, '-', '_' and '.'; no '--' or '..'); check the "
            "spelling, or pass an existing local folder."
        ) from None


class _DeadlineExceeded(Exception):
    """The Hub calls did not finish within the time bound."""


class _DownloadTooLarge(Exception):
    """A file being downloaded grew past the most bytes allowed."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class _ChildError(Exception):
    """An exception raised in the download process, as it described it (see _hub_child)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.names = frozenset(str(name) for name in data.get("names") or ())
        status = data.get("status")
        self.status = status if isinstance(status, int) else None
        self.description = str(data.get("describe") or "")
        self.file = str(data.get("file") or "")
        size = data.get("size")
        self.size = size if isinstance(size, int) else None
        super().__init__(self.description)


def _kinds(error: BaseException) -> frozenset[str]:
    """The names of an error's classes, also for an error of the download process."""
    if isinstance(error, _ChildError):
        return error.names
    return frozenset(kind.__name__ for kind in type(error).__mro__)


def _status(error: BaseException) -> int | None:
    if isinstance(error, _ChildError):
        return error.status
    status = getattr(getattr(error, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _file_limit(name: str) -> int:
    """The most bytes a Hub file may have: see resolve_model_files."""
    return _MAX_CONFIG_BYTES if name == CONFIG_NAME else _MAX_MODEL_FILE_BYTES


def _size_text(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def _cached(repo_id: str, revision: str | None, cache_path: Path | None) -> list[Path | None]:
    """The cached ``config.json``, weights and ``model.onnx`` of a revision (``None``: absent)."""
    from huggingface_hub import try_to_load_from_cache

    found = [
        try_to_load_from_cache(repo_id, name, cache_dir=cache_path, revision=revision)
        for name in (*_HUB_FILES, ONNX_NAME)
    ]
    return [Path(path) if isinstance(path, str) else None for path in found]


# --- the cache's own checksums ---------------------------------------------------------------

# Verified blobs, by (path, size, mtime, inode): a model loaded twice is hashed once.
_intact: dict[tuple[str, int, int, int], bool] = {}
_SHA256_NAME: Final[re.Pattern[str]] = re.compile(r"^[0-9a-f]{64}$")
_SHA1_NAME: Final[re.Pattern[str]] = re.compile(r"^[0-9a-f]{40}$")


def _blob_is_intact(path: Path) -> bool | None:
    """Whether a cached file holds what its blob is named after; ``None`` when unknown.

    huggingface_hub names each blob by the file's ETag: the SHA-256 of the content for
    large (LFS) files such as the weights, the git blob SHA-1 for small ones such as
    ``config.json``. A truncated or overwritten blob no longer matches its name.
    """
    try:
        blob = path.resolve(strict=True)
        info = blob.stat()
    except OSError:
        return False  # a dangling link: the blob is gone
    if _SHA256_NAME.match(blob.name):
        digest = hashlib.sha256()
    elif _SHA1_NAME.match(blob.name):
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(b"blob %d\0" % info.st_size)
    else:
        return None  # no symlinks (a copy in the snapshot), or an ETag of another form
    key = (str(blob), info.st_size, info.st_mtime_ns, info.st_ino)
    if key not in _intact:
        try:
            with blob.open("rb") as file:
                while chunk := file.read(2**20):
                    digest.update(chunk)
        except OSError:
            return False
        _intact[key] = digest.hexdigest() == blob.name
    return _intact[key]


def _discard(path: Path) -> None:
    """Remove a cached file: its snapshot link and the blob it points at."""
    blob = path.resolve()
    for item in (path, blob):
        try:
            item.unlink(missing_ok=True)
        except OSError as error:
            logger.warning("Could not remove %s from the Hugging Face cache: %s", item, error)


def _corrupt_file_error(path: Path, where: str, *, removed: bool) -> ModelLoadError:
    blob = path.resolve()
    if removed:
        return ModelLoadError(
            f"The file {path.name} of {where!r} in the Hugging Face cache ({blob}) does not match "
            "the checksum it is named after (the Hub served a damaged file, or it was changed "
            "on disk); it was removed from the cache. Load the model again to download it anew."
        )
    return ModelLoadError(
        f"The file {path.name} of {where!r} in the Hugging Face cache is corrupt: {blob} does "
        "not match the checksum it is named after (an interrupted copy, or it was changed on "
        f"disk). Delete it (rm {str(path)!r} {str(blob)!r}) and load the model again with "
        "network access to download it anew."
    )


# --- the download, in a process that can be stopped ------------------------------------------

_CHILD_SCRIPT: Final[Path] = Path(__file__).with_name("_hub_child.py")
# Runs the child script by path: ``-I`` keeps the working directory and PYTHON* variables
# out of sys.path (the child takes the parent's), and nothing of emotionnet or torch loads.
_CHILD_BOOT: Final[str] = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"
_POLL_S: Final[float] = 0.05


def _partial_downloads(storage: Path) -> list[Path]:
    try:
        return sorted((storage / "blobs").glob("*.incomplete"))
    except OSError:
        return []


def _largest_partial(storage: Path) -> int:
    sizes = [0]
    for partial in _partial_downloads(storage):
        with contextlib.suppress(OSError):  # finished or removed meanwhile
            sizes.append(partial.stat().st_size)
    return max(sizes)


def _remove_partial_downloads(storage: Path, cache_root: Path) -> None:
    """Remove the unfinished downloads of a repository, and its lock files.

    A download in progress holds its lock (huggingface_hub locks ``.locks/<repo>/<etag>.lock``
    for the whole download): only files whose lock can be taken at once are removed, so
    another process's download is left alone.
    """
    from huggingface_hub.utils import WeakFileLock  # type: ignore[attr-defined]

    locks = cache_root / ".locks" / storage.name
    for partial in _partial_downloads(storage):
        lock = locks / f"{partial.name.split('.', 1)[0]}.lock"
        try:
            with WeakFileLock(lock, timeout=0.01):
                partial.unlink(missing_ok=True)
        except Exception as error:  # filelock.Timeout (in use), or an OSError
            logger.debug("Left %s in the cache: %s", partial, error)
    try:
        lock_files = sorted(locks.glob("*.lock"))
    except OSError:
        lock_files = []
    for lock in lock_files:
        try:
            with WeakFileLock(lock, timeout=0.01):
                pass
            lock.unlink(missing_ok=True)
        except Exception as error:
            logger.debug("Left %s in the cache: %s", lock, error)
    with contextlib.suppress(OSError):  # not empty: another download is under way
        locks.rmdir()


def _run_download(
    repo_id: str,
    *,
    revision: str | None,
    cache_root: Path,
    token: str | bool | None,
    endpoint: str,
    seconds: float,
) -> list[Path | None]:
    """Download (or find in the cache) the model files in a child process, within ``seconds``.

    Returns the paths of ``config.json``, ``model.safetensors`` and ``model.onnx`` (``None``
    when the repository has none).

    huggingface_hub retries failed requests (for minutes against a server that accepts
    connections and never answers) and cannot be stopped from another thread, so it runs in
    a child process that is killed when the time is up or a file grows past its limit; the
    child's partial files are then removed. Raises :class:`_DeadlineExceeded`,
    :class:`_DownloadTooLarge`, or :class:`_ChildError` for an error the child met.
    """
    storage = cache_root / f"models--{repo_id.replace('/', '--')}"
    deadline = time.monotonic() + seconds
    request = {
        "sys_path": list(sys.path),
        "repo_id": repo_id,
        "revision": revision,
        "cache_dir": str(cache_root),
        "token": token,
        "endpoint": endpoint,
        "files": list(_HUB_FILES),
        # model.onnx too, when the repository has one (else the weights are exported on load).
        "optional": [ONNX_NAME],
        "limits": {name: _file_limit(name) for name in (*_HUB_FILES, ONNX_NAME)},
        "seconds": seconds,
    }
    limit = max(_file_limit(name) for name in (*_HUB_FILES, ONNX_NAME))
    env = {**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    command = [sys.executable, "-I", "-c", _CHILD_BOOT, str(_CHILD_SCRIPT)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out, stderr=err, env=env)
        stdin = cast(IO[bytes], process.stdin)  # kept open: the child ends when it closes
        try:
            with contextlib.suppress(OSError):  # the child ended at once; its exit says why
                stdin.write((json.dumps(request) + "\n").encode())
                stdin.flush()
            while process.poll() is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _DeadlineExceeded
                size = _largest_partial(storage)
                if size > limit:
                    raise _DownloadTooLarge(size)
                time.sleep(min(_POLL_S, left))
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            with contextlib.suppress(OSError):
                stdin.close()
            _remove_partial_downloads(storage, cache_root)
        out.seek(0)
        text = out.read()
        err.seek(0)
        errors = err.read()[-2000:].decode(errors="replace")
    lines = text.strip().splitlines()
    try:  # the last line: anything a library printed before it is ignored
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        last = errors.strip().splitlines()[-1] if errors.strip() else "no message"
        raise _ChildError(
            {
                "names": ["DownloadProcessError"],
                "describe": f"the download process ({sys.executable}) ended with exit code "
                f"{process.returncode} ({last})",
            }
        )
    if "error" in answer:
        raise _ChildError(answer["error"])
    return [None if path is None else Path(path) for path in answer["paths"]]


def _describe(error: BaseException) -> str:
    if isinstance(error, _ChildError):
        return error.description
    text = " ".join(str(error).split())
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _hub_error(
    error: BaseException,
    *,
    repo_id: str,
    revision: str | None,
    where: str,
    cache: str,
    endpoint: str,
    local_files_only: bool,
    offline: bool,
) -> EmotionNetError:
    """Translate an error of huggingface_hub into emotionnet's, with what to do about it."""
    kinds = _kinds(error)
    missing = error.file if isinstance(error, _ChildError) and error.file else CONFIG_NAME
    fixes = (
        f"Check the network connection, proxy settings and HF_ENDPOINT ({endpoint}); set "
        "HF_HUB_OFFLINE=1 to use only models already in the cache; or pass a local folder "
        "written by save_pretrained."
    )
    if {"LocalEntryNotFoundError", "OfflineModeIsEnabled"} & kinds and offline:
        why = (
            "local_files_only=True was passed"
            if local_files_only
            else "offline mode is on (HF_HUB_OFFLINE=1)"
        )
        return WeightsNotFoundError(
            f"The model {where!r} is not in the Hugging Face cache ({cache}) and {why}, "
            "so it was not downloaded. Download it once with network access (unset "
            "HF_HUB_OFFLINE and pass local_files_only=False), point cache_dir/HF_HUB_CACHE "
            "at a cache that holds it, or pass a local folder written by save_pretrained."
        )
    if "_TooLarge" in kinds:
        size = error.size if isinstance(error, _ChildError) and error.size else 0
        return ModelLoadError(
            f"The Hub at {endpoint} announces {missing} of {where!r} as {_size_text(size)}, "
            f"more than the {_size_text(_file_limit(missing))} an emotionnet model file may "
            "have; it was not downloaded. Check the repository: it does not hold an "
            "emotionnet model as save_pretrained writes it."
        )
    if "_Unreachable" in kinds:
        return WeightsNotFoundError(
            f"The model {where!r} is not in the Hugging Face cache ({cache}) and the Hub at "
            f"{endpoint} could not be reached ({_describe(error)}). {fixes}"
        )
    if "GatedRepoError" in kinds:
        return WeightsNotFoundError(
            f"The Hub repository {repo_id!r} is gated: accept its conditions on the Hub and "
            "pass token=... (or log in with `hf auth login`)."
        )
    if "RepositoryNotFoundError" in kinds:
        return WeightsNotFoundError(
            f"There is no Hub repository {repo_id!r} (or it is private: pass token=...). "
            "Check the name, or pass a local folder written by save_pretrained."
        )
    if "RevisionNotFoundError" in kinds:
        return WeightsNotFoundError(
            f"The Hub repository {repo_id!r} has no revision {revision!r}; pass an existing "
            "branch, tag or commit hash."
        )
    if "EntryNotFoundError" in kinds and "LocalEntryNotFoundError" not in kinds:
        return WeightsNotFoundError(
            f"The Hub repository {where!r} has no {missing}, so it does not hold an "
            f"emotionnet model (expected {WEIGHTS_NAME} and {CONFIG_NAME}, as save_pretrained "
            "writes them)."
        )
    if "HFValidationError" in kinds:
        return InvalidArgumentError(f"{repo_id!r} is not a valid Hub repo id: {_describe(error)}")
    if "HfHubHTTPError" in kinds:
        status = _status(error)
        answer = f"answered HTTP {status}" if status is not None else "failed"
        retry = " Try again later, or" if status is None or status >= 500 or status == 429 else ""
        return WeightsNotFoundError(
            f"Downloading {where!r}: the Hub at {endpoint} {answer} ({_describe(error)}), and "
            f"the model is not in the cache ({cache}).{retry} {fixes}"
        )
    return WeightsNotFoundError(
        f"The model {where!r} could not be downloaded from {endpoint} ({_describe(error)}) and "
        f"is not in the Hugging Face cache ({cache}). {fixes} If the cache folder is not "
        "writable, point cache_dir or HF_HUB_CACHE at one that is."
    )


def _download(
    repo_id: str,
    *,
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
    token: str | bool | None,
    timeout: float | None,
) -> ModelFiles:
    from huggingface_hub import constants, hf_hub_download

    offline = local_files_only or _hub_offline()
    where = f"{repo_id}@{revision}" if revision else repo_id
    cache_path = None if cache_dir is None else Path(cache_dir)
    cache = str(cache_path) if cache_path is not None else constants.HF_HUB_CACHE
    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT  # validated when used
    seconds = 0.0
    late = False  # the Hub did not answer in time: the cached copy is used
    paths: list[Path | None]
    try:
        if offline:
            paths = [
                Path(
                    hf_hub_download(
                        repo_id,
                        name,
                        revision=revision,
                        cache_dir=cache_path,
                        local_files_only=True,
                        token=token,
                    )
                )
                for name in _HUB_FILES
            ]
            paths.append(_cached(repo_id, revision, cache_path)[-1])
        else:
            # Both read now, not when huggingface_hub was imported, and checked before any
            # network call.
            endpoint = _hub_endpoint()
            seconds = _hub_timeout(timeout)
            for path in _cached(repo_id, revision, cache_path)[: len(_HUB_FILES)]:
                if path is not None and _blob_is_intact(path) is False:  # downloaded anew
                    logger.warning("Removing a corrupt file from the Hugging Face cache: %s", path)
                    _discard(path)
            downloaded = _run_download(
                repo_id,
                revision=revision,
                cache_root=Path(cache),
                token=token,
                endpoint=endpoint,
                seconds=seconds,
            )
            paths = [*downloaded, None][: len(_HUB_FILES) + 1]
    except _DeadlineExceeded:
        paths = _cached(repo_id, revision, cache_path)
        if None in paths[: len(_HUB_FILES)]:
            raise WeightsNotFoundError(
                f"The model {where!r} could not be fetched from the Hub at {endpoint} within "
                f"{seconds:g} s (the bound set by timeout= or {_TIMEOUT_ENV}), and it is not "
                f"in the Hugging Face cache ({cache}); the unfinished download was stopped and "
                "its partial file removed. Check the network connection, proxy settings and "
                "HF_ENDPOINT; set HF_HUB_OFFLINE=1 to use only models already in the cache; "
                "pass a local folder written by save_pretrained; or, on a slow connection, "
                f"allow more time with timeout=... or {_TIMEOUT_ENV}=..."
            ) from None
        late = True
    except _DownloadTooLarge as error:
        raise ModelLoadError(
            f"A file of {where!r} from the Hub at {endpoint} grew past "
            f"{_size_text(error.size)} while downloading, more than the "
            f"{_size_text(_MAX_MODEL_FILE_BYTES)} an emotionnet model file may have; the "
            "download was stopped and its partial file removed. Check the repository: it does "
            "not hold an emotionnet model as save_pretrained writes it."
        ) from None
    except EmotionNetError:
        raise
    except Exception as error:  # huggingface_hub's and the HTTP client's, translated
        raise _hub_error(
            error,
            repo_id=repo_id,
            revision=revision,
            where=where,
            cache=cache,
            endpoint=endpoint,
            local_files_only=local_files_only,
            offline=offline,
        ) from None
    for index, path in enumerate(paths):
        if path is None or _blob_is_intact(path) is not False:
            continue
        if late and index == len(_HUB_FILES):
            paths[index] = None  # a corrupt graph: the weights are there, exported on load
        elif offline or late:
            raise _corrupt_file_error(path, where, removed=False)
        else:  # just downloaded: the Hub (or a mirror) served a damaged file
            damaged = _corrupt_file_error(path, where, removed=True)
            _discard(path)
            raise damaged
    if late:
        logger.warning(
            "The Hub at %s did not answer within %g s; using the cached copy of %r.",
            endpoint,
            seconds,
            where,
        )
    config, weights, onnx = paths
    return ModelFiles(config=cast(Path, config), weights=weights, source=where, onnx=onnx)


def _looks_like_a_path(text: str) -> str | None:
    """Why a name that is no existing folder must still be a local path, or ``None``.

    A Hub repo id is ``org/name``: one separator, no leading ``./``, ``../``, ``~`` or root.
    A name with more separators, or one whose first part is a folder here (``runs/typo`` when
    ``runs/`` exists), is a mistyped path: it gets "no such folder", not a Hub download.
    """
    separators = {"/", os.sep, *([os.altsep] if os.altsep else [])}
    for prefix in ("~", "./", "../", ".\\", "..\\"):
        if text.startswith(prefix):
            return f"it starts with {prefix!r}"
    if os.path.isabs(text):
        return "it is an absolute path"
    count = sum(text.count(separator) for separator in separators)
    if count > 1:
        return f"it has {count} path separators (a Hub repo id has one: 'org/name')"
    first = re.split(r"[/\\]", text, maxsplit=1)[0]
    if count == 1 and first and os.path.isdir(first):
        return (
            f"its first part {first!r} is a folder here (to download the Hub repository "
            f"{text!r} instead, run from another folder)"
        )
    return None


def _no_such_folder(text: str, path: Path, why_local: str) -> str:
    """The message for a local path that does not exist, naming what does exist nearby."""
    absolute = path.absolute()
    nearest = absolute.parent
    while not nearest.is_dir() and nearest != nearest.parent:
        nearest = nearest.parent
    try:
        entries = sorted(
            entry.name
            for entry in nearest.iterdir()
            if entry.is_dir() and not entry.name.startswith(".")
        )
    except OSError:
        entries = []
    shown = ", ".join(entries[:8]) + (f" and {len(entries) - 8} more" if len(entries) > 8 else "")
    holds = f"; it holds the folders {shown}" if entries else ", which holds no folder"
    return (
        f"No such folder: {text!r} ({absolute}). The nearest existing folder is {nearest}"
        f"{holds}. Check the path. {text!r} is taken as a local folder, not a Hub repo id, "
        f"because {why_local}."
    )


def resolve_model_files(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    timeout: float | None = None,
) -> ModelFiles:
    """Find ``config.json`` and ``model.safetensors`` of a model, downloading them if needed.

    Hub calls are bounded in time: after ``timeout`` seconds (default: the
    ``EMOTIONNET_HUB_TIMEOUT`` environment variable, else 30) the download is stopped, its
    partial files and lock files are removed from the cache, and
    :class:`~emotionnet.errors.WeightsNotFoundError` says what to do, unless the model is in
    the cache, which is then used. The download runs in a child process of this Python
    (huggingface_hub's, without progress bars), killed when a bound is passed: nothing of it
    keeps running after the error. A Hub that cannot be reached at all (connection refused,
    unknown host) or answers with an error fails at once, without retries. huggingface_hub's
    per-request settings (``HF_HUB_ETAG_TIMEOUT``, ``HF_HUB_DOWNLOAD_TIMEOUT``) still apply
    within that bound.

    Hub files are bounded in size: a model file (the weights) may have at most 1 GiB, a
    ``config.json`` 16 MiB. A larger size announced by the Hub is refused before the
    download; a file that grows past the bound while it arrives (a server that announces no
    size, or a wrong one) is stopped within about 10 MB (huggingface_hub's write size).

    Files found in the Hugging Face cache are checked against the checksum their blob is
    named after (SHA-256 for the weights, the git blob hash for ``config.json``). A
    truncated or overwritten file is removed and downloaded anew when online; offline, the
    :class:`~emotionnet.errors.ModelLoadError` names the file and how to remove it.

    Args:
        name_or_path: ``None`` for the bundled default model; an existing local folder
            written by ``save_pretrained``; or a Hub repo id ``"org/name"``. A name that
            looks like a path is never looked up on the Hub: a :class:`os.PathLike`, one that
            starts with ``./``, ``../``, ``~`` or the root, one with more than one separator
            (``runs/fer2013/model``), or one whose first part is a folder in the working
            directory (``runs/fer2013_resnet18`` when ``runs/`` exists).
        revision: Hub branch, tag or commit hash (Hub only).
        cache_dir: Hugging Face cache folder (Hub only; default ``HF_HUB_CACHE``).
        local_files_only: Only look in the cache, never on the network (Hub only). Implied
            by ``HF_HUB_OFFLINE=1``.
        token: Hub access token for private or gated repositories.
        timeout: Most seconds spent on the Hub in all (Hub only): a positive number, or
            ``None`` for ``EMOTIONNET_HUB_TIMEOUT`` (default 30). Raise it to download a
            large model over a slow connection.

    Returns:
        The local paths of the files.

    Raises:
        WeightsNotFoundError: If the folder or repository does not hold a model, a name that
            looks like a path names no folder ("No such folder", with the nearest folder
            that exists), or the model is neither cached nor downloadable (in time).
        ModelLoadError: If a Hub file is larger than allowed, or a file in the Hugging Face
            cache is corrupt (offline, or the Hub served a damaged file).
        InvalidArgumentError: If ``name_or_path`` is neither a folder nor a valid repo id,
            ``timeout``, ``revision``, ``EMOTIONNET_HUB_TIMEOUT`` or ``HF_ENDPOINT`` is
            invalid (checked before any network call).

    Example:
        >>> resolve_model_files("no/such-model", local_files_only=True)
        Traceback (most recent call last):
        ...
        emotionnet.errors.WeightsNotFoundError: The model 'no/such-model' is not in the Hugging Face cache ...
        >>> resolve_model_files("org/a--b", timeout=5)
        Traceback (most recent call last):
        ...
        emotionnet.errors.InvalidArgumentError: 'org/a--b' is not a valid Hub repo id ...
        >>> resolve_model_files("./runs/no-such-run")
        Traceback (most recent call last):
        ...
        emotionnet.errors.WeightsNotFoundError: No such folder: './runs/no-such-run' ...
    """  # noqa: E501
    timeout = _check_timeout(timeout)
    if name_or_path is None:
        folder = bundled_model_dir()
        return ModelFiles(
            folder / CONFIG_NAME,
            folder / WEIGHTS_NAME,
            "the bundled default model",
            onnx=_onnx_in(folder),
        )
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise InvalidArgumentError(
            f"name_or_path must be None, a folder or a Hub repo id, got "
            f"{type(name_or_path).__name__} {name_or_path!r}."
        )
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        weights, config, onnx = path / WEIGHTS_NAME, path / CONFIG_NAME, path / ONNX_NAME
        # A deployment folder may hold the ONNX graph without the PyTorch weights.
        needed = (weights, config) if not onnx.exists() or weights.exists() else (config,)
        missing = [p.name for p in needed if not p.exists()]
        if missing:
            raise WeightsNotFoundError(
                f"The folder {text!r} has no {' or '.join(missing)}; expected a folder "
                "written by EmotionRecognizer.save_pretrained. For a .pt/.pth state dict use "
                "EmotionRecognizer.from_state_dict(path, config=...)."
            )
        present = [file for file in (weights, config, onnx) if file.exists()]
        for file in present:
            kind = file_kind(file)
            if kind is not None:
                raise ModelLoadError(
                    f"{str(file)!r} is {kind}, not a regular file; a model folder holds the "
                    "files written by EmotionRecognizer.save_pretrained."
                )
        return ModelFiles(
            config,
            weights if weights in present else None,
            text,
            onnx=onnx if onnx in present else None,
        )
    if path.exists():
        raise InvalidArgumentError(
            f"{text!r} is a file, not a model folder; pass the folder written by "
            "save_pretrained, an .onnx file written by export_onnx (to "
            "EmotionRecognizer.from_pretrained), or load a .pt/.pth state dict with "
            "EmotionRecognizer.from_state_dict(path, config=...)."
        )
    why_local = "it is a path object" if isinstance(name_or_path, os.PathLike) else None
    why_local = why_local or _looks_like_a_path(text)
    if why_local is not None:
        raise WeightsNotFoundError(_no_such_folder(text, path, why_local))
    if not _REPO_ID.match(text):
        raise WeightsNotFoundError(
            f"{text!r} is neither an existing folder nor a Hub repo id like 'org/name'; "
            "check the path."
        )
    _check_repo_id(text)
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise InvalidArgumentError(
            f"revision must be None or a branch, tag or commit hash, got {revision!r}."
        )
    return _download(
        text,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
        timeout=timeout,
    )


def read_config(path: str | os.PathLike[str]) -> tuple[ModelConfig, dict[str, Any]]:
    """Read a ``config.json``: the model config and the metadata saved with it.

    Only a regular file is opened (a FIFO or device named ``config.json`` is refused at
    once), of at most 16 MiB.

    Args:
        path: The ``config.json`` file.

    Returns:
        The :class:`~emotionnet.models.ModelConfig` and the ``"metadata"`` dict (empty when
        the file has none, as for a bare ``ModelConfig.save``).

    Raises:
        ModelLoadError: If the file is not a regular file, not JSON (or nested too deeply),
            or not a valid model config.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     written = ModelConfig(stem="small").save(folder)
        ...     read_config(written)[0].stem
        'small'
    """
    try:
        data = _read_config_json(Path(path))
    except (OSError, InvalidArgumentError) as error:
        raise ModelLoadError(f"Cannot read the model config {str(path)!r}: {error}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(
            f"The model config {str(path)!r} holds {type(data).__name__}, not a JSON object."
        )
    metadata = data.pop(_METADATA_KEY, None) or {}
    try:
        config = ModelConfig.from_dict(data)
    except InvalidArgumentError as error:
        raise ModelLoadError(f"The model config {str(path)!r} is invalid: {error}") from None
    return config, dict(metadata) if isinstance(metadata, Mapping) else {}


def weights_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a weights file, as recorded in the ``model.onnx`` exported from it.

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile() as file:
        ...     weights_sha256(file.name)[:12]
        'e3b0c44298fc'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
