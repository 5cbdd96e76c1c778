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

from ._moved import moved_module

__getattr__ = moved_module("emotionnet.export", "emotionnet.models.onnx")
