"""Deprecated aliases of moved modules: the old name keeps working and warns.

Example:
    >>> import warnings
    >>> getattr_ = moved_module("emotionnet.old", "emotionnet.labels")
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     getattr_("NUM_CLASSES")
    7
    >>> str(caught[0].message).split(":")[0]
    'emotionnet.old is deprecated'
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["moved_module"]


def moved_module(old: str, new: str, *, removal: str = "0.2") -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) for ``old`` that serves the names of ``new``.

    Each name is looked up in ``new`` and returned with a :class:`DeprecationWarning` that
    says where to import it from; an unknown name is an :class:`AttributeError` of ``old``.
    """

    def __getattr__(name: str) -> Any:
        try:
            value = getattr(importlib.import_module(new), name)
        except AttributeError:
            raise AttributeError(f"module {old!r} has no attribute {name!r}") from None
        warnings.warn(
            f"{old} is deprecated: import {name} from {new} instead (the alias goes in "
            f"emotionnet {removal}).",
            DeprecationWarning,
            stacklevel=2,
        )
        return value

    return __getattr__
