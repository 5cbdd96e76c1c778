"""Deprecated alias of :mod:`emotionnet.models.hub` (where model files live).

The module moved into :mod:`emotionnet.models`; importing a name from
``emotionnet.hub`` still works and warns with :class:`DeprecationWarning`. The alias will be
removed in 0.2.

Example:
    >>> import warnings
    >>> import emotionnet.hub
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = emotionnet.hub.__all__
    >>> "emotionnet.models.hub" in str(caught[0].message)
    True
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_TARGET = "emotionnet.models.hub"


def __getattr__(name: str) -> Any:
    """Return ``name`` from :mod:`emotionnet.models.hub`, with a deprecation warning."""
    try:
        value = getattr(importlib.import_module(_TARGET), name)
    except AttributeError:
        raise AttributeError(f"module 'emotionnet.hub' has no attribute {name!r}") from None
    warnings.warn(
        f"emotionnet.hub is deprecated: import {name} from {_TARGET} instead (the alias "
        "goes in emotionnet 0.2).",
        DeprecationWarning,
        stacklevel=2,
    )
    return value
