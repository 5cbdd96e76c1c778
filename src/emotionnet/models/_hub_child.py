"""The Hub download, run in a child process that the parent can kill when its time is up.

:func:`emotionnet.models.hub.resolve_model_files` runs this file (``python -I``, by path, so
that neither torch nor emotionnet is imported here) and waits for it at most the time bound;
a download still running then is killed, not left streaming into the cache, and the parent
removes its partial files. Standard library and huggingface_hub only.

Protocol: one JSON line on stdin (the request, see :func:`main`), then stdin stays open; its
end (the parent gone) ends this process. One JSON object on stdout: ``{"paths": [...]}``, or
``{"error": {...}}`` describing the exception (its class names, HTTP status and text).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

# huggingface_hub's default per-request metadata timeout (HF_HUB_ETAG_TIMEOUT overrides it).
_ETAG_TIMEOUT_S = 10.0


class _Unreachable(Exception):
    """The Hub did not answer at all (no connection, DNS failure, proxy error, timeout)."""


class _TooLarge(Exception):
    """The Hub announced a file larger than the parent allows."""


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _error(error: BaseException, current: str) -> dict[str, Any]:
    cause = error.__cause__ if isinstance(error, _Unreachable) and error.__cause__ else error
    status = getattr(getattr(error, "response", None), "status_code", None)
    return {
        "names": [kind.__name__ for kind in type(error).__mro__],
        "status": status if isinstance(status, int) else None,
        "describe": _describe(cause),
        "file": current,
        "size": getattr(error, "size", None),
    }


def _watch(seconds: float) -> None:
    """End this process when the parent goes (stdin closes) or the time bound has passed."""

    def parent_gone() -> None:
        try:
            while sys.stdin.buffer.read(65536):
                pass
        finally:
            os._exit(3)

    def time_up() -> None:
        time.sleep(seconds)
        os._exit(4)

    threading.Thread(target=parent_gone, daemon=True).start()
    threading.Thread(target=time_up, daemon=True).start()


def _fetch(request: dict[str, Any], state: dict[str, str]) -> list[str | None]:
    from huggingface_hub import (
        constants,
        get_hf_file_metadata,
        hf_hub_download,
        hf_hub_url,
        try_to_load_from_cache,
    )
    from huggingface_hub.errors import HfHubHTTPError

    deadline = time.monotonic() + float(request["seconds"])
    own = float(getattr(constants, "HF_HUB_ETAG_TIMEOUT", _ETAG_TIMEOUT_S) or _ETAG_TIMEOUT_S)

    def request_timeout() -> float:
        return max(0.1, min(own, deadline - time.monotonic()))

    repo_id, revision, cache_dir = request["repo_id"], request["revision"], request["cache_dir"]
    token, endpoint = request["token"], request["endpoint"]
    paths: list[str | None] = []
    optional = list(request.get("optional", []))
    for name in [*request["files"], *optional]:
        state["current"] = name
        limit = int(request["limits"][name])
        cached = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir, revision=revision)
        if not isinstance(cached, str):
            # Not cached: one metadata request without retries first. A server that cannot
            # be reached or answers with an error fails at once instead of being retried for
            # minutes; a file announced larger than allowed is never downloaded.
            url = hf_hub_url(repo_id, name, revision=revision, endpoint=endpoint)
            try:
                metadata = get_hf_file_metadata(url, token=token, timeout=request_timeout())
            except HfHubHTTPError as error:
                if name in optional and _not_found(error):
                    paths.append(None)  # an optional file the repository does not have
                    continue
                raise
            except Exception as error:  # no HTTP answer: refused, DNS, proxy, timeout, TLS
                if name in optional:
                    paths.append(None)  # the required files are there: load without it
                    continue
                raise _Unreachable(error) from error
            if metadata.size is not None and metadata.size > limit:
                too_large = _TooLarge(name)
                too_large.size = metadata.size  # type: ignore[attr-defined]
                raise too_large
        path = hf_hub_download(
            repo_id,
            name,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            endpoint=endpoint,
            etag_timeout=request_timeout(),
        )
        paths.append(path)
    return paths


def _not_found(error: BaseException) -> bool:
    names = {kind.__name__ for kind in type(error).__mro__}
    status = getattr(getattr(error, "response", None), "status_code", None)
    return "EntryNotFoundError" in names or "RemoteEntryNotFoundError" in names or status == 404


def main() -> None:
    """Read the request, download, write the answer.

    The request: ``sys_path`` (the parent's, so the same huggingface_hub is imported),
    ``repo_id``, ``revision``, ``cache_dir``, ``token``, ``endpoint``, ``files`` (names, in
    order), ``limits`` (name to the most bytes allowed) and ``seconds`` (the time left).
    """
    request = json.loads(sys.stdin.buffer.readline())
    sys.path[:] = request["sys_path"]
    _watch(float(request["seconds"]) + 5.0)
    state = {"current": request["files"][0]}
    try:
        answer: dict[str, Any] = {"paths": _fetch(request, state)}
    except BaseException as error:  # described to the parent, which raises emotionnet's
        answer = {"error": _error(error, state["current"])}
    sys.stdout.write("\n" + json.dumps(answer) + "\n")
    sys.stdout.flush()
    os._exit(0)  # without waiting for huggingface_hub's threads or atexit hooks


if __name__ == "__main__":
    main()
