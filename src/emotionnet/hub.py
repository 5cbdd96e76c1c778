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

from ._moved import moved_module

__getattr__ = moved_module("emotionnet.hub", "emotionnet.models.hub")
