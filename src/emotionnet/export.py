"""Deprecated alias of :mod:`emotionnet.models.onnx` (ONNX export and the onnxruntime classifier).

The module moved into :mod:`emotionnet.models`; importing a name from
``emotionnet.export`` still works and warns with :class:`DeprecationWarning`. The alias will be
removed in 0.2.

Example:
    >>> import warnings
    >>> import emotionnet.export
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = emotionnet.export.__all__
    >>> "emotionnet.models.onnx" in str(caught[0].message)
    True
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_TARGET = "emotionnet.models.onnx"


def __getattr__(name: str) -> Any:
    """Return ``name`` from :mod:`emotionnet.models.onnx`, with a deprecation warning."""
    try:
        value = getattr(importlib.import_module(_TARGET), name)
    except AttributeError:
        raise AttributeError(f"module 'emotionnet.export' has no attribute {name!r}") from None
    warnings.warn(
        f"emotionnet.export is deprecated: import {name} from {_TARGET} instead (the alias "
        "goes in emotionnet 0.2).",
        DeprecationWarning,
        stacklevel=2,
    )
    return value
