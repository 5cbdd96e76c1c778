"""Test-time augmentation: the views of a face batch, in numpy.

With test-time augmentation (TTA) the model sees several *views* of each face, and the softmax
probabilities of the views are averaged (arithmetic mean, every view weighted equally). The
views of an ``H x W`` face (48x48 for FER2013) are:

``"none"`` (``tta=False``)
    1 view: the face itself.
``"flip"`` (``tta=True``)
    2 views: the face and its horizontal mirror.
``"flip_shift"``
    10 views: the face shifted by ``(dy, dx)`` in ``{(0, 0), (0, 2), (0, -2), (2, 0),
    (-2, 0)}`` pixels (:data:`TTA_SHIFT`), each also mirrored. A shift moves the content and
    fills the uncovered border by repeating the edge pixels; the size does not change.
``"flip_crop"``
    4 views: the face, its centre crop of ``round(H * 44 / 48) x round(W * 44 / 48)`` pixels
    resized back to ``H x W`` (the ``"ten_crop"`` centre view), and the mirrors of both.
``"ten_crop"``
    10 views: crops of ``round(H * 44 / 48) x round(W * 44 / 48)`` pixels (44x44 for FER2013,
    :data:`TEN_CROP_SIZE`) at the four corners and the centre of the face and of its mirror
    (torchvision's ``ten_crop`` order), each resized back to ``H x W`` with bilinear
    interpolation (``align_corners=False``, no antialiasing), because emotionnet models take
    whole 48x48 faces.

This module is the numpy definition of the views, used by the onnxruntime path, which never
imports torch; :mod:`emotionnet.inference` computes the same views with torch on the model's
device (a test holds the two to 1e-5 on every PublicTest face).

Example:
    >>> import numpy as np
    >>> batch = np.zeros((2, 1, 48, 48), dtype=np.float32)
    >>> [view.shape for view in tta_views(batch, "flip")]
    [(2, 1, 48, 48), (2, 1, 48, 48)]
    >>> len(tta_views(batch, resolve_tta("ten_crop")))
    10
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from .errors import InvalidArgumentError

__all__ = [
    "TEN_CROP_SIZE",
    "TTA_MODES",
    "TTA_SHIFT",
    "average_log_softmax",
    "crop_side",
    "resolve_tta",
    "tta_views",
]

TTA_MODES: Final[tuple[str, ...]] = ("none", "flip", "flip_shift", "flip_crop", "ten_crop")
"""Names accepted by ``tta`` (besides ``False``, meaning ``"none"``, and ``True``, ``"flip"``)."""

TTA_SHIFT: Final[int] = 2
"""Shift in pixels of the ``"flip_shift"`` views."""

TEN_CROP_SIZE: Final[int] = 44
"""Crop side of the ``"ten_crop"`` views for a 48 px image (scaled for other sizes)."""

_SHIFTS: Final[tuple[tuple[int, int], ...]] = (
    (0, 0),
    (0, TTA_SHIFT),
    (0, -TTA_SHIFT),
    (TTA_SHIFT, 0),
    (-TTA_SHIFT, 0),
)

_Array = npt.NDArray[np.float32]


def resolve_tta(tta: bool | str) -> str:
    """Return the name of a test-time augmentation mode.

    Args:
        tta: ``False``/``"none"``, ``True``/``"flip"``, ``"flip_shift"``, ``"flip_crop"`` or
            ``"ten_crop"``.

    Returns:
        The mode's name, one of :data:`TTA_MODES`.

    Raises:
        InvalidArgumentError: If ``tta`` is none of those.

    Example:
        >>> resolve_tta(True), resolve_tta(False), resolve_tta("ten_crop")
        ('flip', 'none', 'ten_crop')
    """
    if tta is False:
        return "none"
    if tta is True:
        return "flip"
    if isinstance(tta, str) and tta in TTA_MODES:
        return tta
    raise InvalidArgumentError(
        f"Unknown value {tta!r} for argument tta. Valid values are False, True, "
        f"{', '.join(repr(m) for m in TTA_MODES)} (see emotionnet.tta for what each does)."
    )


def crop_side(side: int) -> int:
    """The crop side of the crop views for a face ``side`` pixels wide (44 for 48).

    Example:
        >>> crop_side(48), crop_side(96)
        (44, 88)
    """
    return max(1, round(side * TEN_CROP_SIZE / 48))


def _resize_matrix(size_in: int, size_out: int) -> _Array:
    """The ``size_out x size_in`` matrix of bilinear resampling (``align_corners=False``).

    PyTorch's rule (``F.interpolate(..., mode="bilinear", align_corners=False)`` without
    antialiasing): output pixel ``i`` samples the input at ``(i + 0.5) * in / out - 0.5``,
    clamped at 0, between its two neighbours.
    """
    scale = np.float32(size_in) / np.float32(size_out)
    # One rounding to float32 at the end, as PyTorch's fused multiply-add gives.
    exact = (np.arange(size_out, dtype=np.float64) + 0.5) * np.float64(scale) - 0.5
    source = np.maximum(exact.astype(np.float32), np.float32(0.0))
    low = np.minimum(np.floor(source).astype(np.int64), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    weight_high = source - low.astype(np.float32)
    matrix = np.zeros((size_out, size_in), dtype=np.float32)
    rows = np.arange(size_out)
    np.add.at(matrix, (rows, low), np.float32(1.0) - weight_high)
    np.add.at(matrix, (rows, high), weight_high)
    return matrix


def _resize(batch: _Array, height: int, width: int) -> _Array:
    """Bilinear resize of an ``N x C x h x w`` batch to ``height x width``."""
    rows = _resize_matrix(batch.shape[-2], height)
    cols = _resize_matrix(batch.shape[-1], width)
    resized: _Array = np.matmul(rows, np.matmul(batch, cols.T))
    return resized


def _crop(batch: _Array, top: int, left: int, height: int, width: int) -> _Array:
    return batch[..., top : top + height, left : left + width]


def _five_crop(batch: _Array, height: int, width: int) -> list[_Array]:
    """Torchvision's ``five_crop`` order: top-left, top-right, bottom-left, bottom-right, centre."""
    full_h, full_w = batch.shape[-2:]
    return [
        _crop(batch, 0, 0, height, width),
        _crop(batch, 0, full_w - width, height, width),
        _crop(batch, full_h - height, 0, height, width),
        _crop(batch, full_h - height, full_w - width, height, width),
        _center_crop(batch, height, width),
    ]


def _center_crop(batch: _Array, height: int, width: int) -> _Array:
    full_h, full_w = batch.shape[-2:]
    top = round((full_h - height) / 2.0)
    left = round((full_w - width) / 2.0)
    return _crop(batch, top, left, height, width)


def _shift(batch: _Array, dy: int, dx: int) -> _Array:
    """Move the content by ``(dy, dx)`` pixels, repeating the edge into the uncovered border."""
    if dy == 0 and dx == 0:
        return batch
    pad = max(abs(dy), abs(dx))
    height, width = batch.shape[-2:]
    widths = [(0, 0)] * (batch.ndim - 2) + [(pad, pad), (pad, pad)]
    padded = np.pad(batch, widths, mode="edge")
    return padded[..., pad - dy : pad - dy + height, pad - dx : pad - dx + width]


def tta_views(batch: _Array, mode: str) -> list[_Array]:
    """Return the views of a normalised ``N x C x H x W`` batch for a TTA mode.

    Args:
        batch: The normalised ``float32`` batch.
        mode: A name from :data:`TTA_MODES` (see :func:`resolve_tta`).

    Returns:
        The views, each ``N x C x H x W`` ``float32``, in the order the module docstring
        gives (the same order as :mod:`emotionnet.inference`).

    Raises:
        InvalidArgumentError: If ``mode`` is not a TTA mode's name.

    Example:
        >>> import numpy as np
        >>> batch = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
        >>> tta_views(batch, "flip")[1][0, 0, 0].tolist()
        [3.0, 2.0, 1.0, 0.0]
    """
    if mode == "none":
        return [batch]
    mirrored = np.ascontiguousarray(batch[..., ::-1])
    if mode == "flip":
        return [batch, mirrored]
    if mode == "flip_shift":
        views = []
        for dy, dx in _SHIFTS:
            views.append(_shift(batch, dy, dx))
            views.append(_shift(mirrored, dy, dx))
        return views
    if mode in ("flip_crop", "ten_crop"):
        height, width = batch.shape[-2:]
        crop_h, crop_w = crop_side(height), crop_side(width)
        if mode == "flip_crop":
            crops = [_center_crop(batch, crop_h, crop_w), _center_crop(mirrored, crop_h, crop_w)]
            head = [batch, mirrored]
        else:
            crops = _five_crop(batch, crop_h, crop_w) + _five_crop(mirrored, crop_h, crop_w)
            head = []
        return head + [_resize(view, height, width) for view in crops]
    raise InvalidArgumentError(
        f"Unknown TTA mode {mode!r}; valid modes are {', '.join(map(repr, TTA_MODES))}."
    )


def average_log_softmax(outputs: list[_Array]) -> _Array:
    """The log of the mean softmax of several ``N x C`` logit arrays (one per view).

    ``log(mean_v softmax(z_v))``: a valid logit vector whose softmax is the view-averaged
    probabilities (computed stably with log-sum-exp).

    Example:
        >>> import numpy as np
        >>> z = np.array([[0.0, 1.0]], dtype=np.float32)
        >>> bool(np.allclose(average_log_softmax([z, z]), z - np.log(1 + np.e)))
        True
    """
    stacked = np.stack([_log_softmax(output.astype(np.float32)) for output in outputs])
    if stacked.shape[0] == 1:
        single: _Array = stacked[0]
        return single
    top = stacked.max(axis=0)
    summed = np.log(np.exp(stacked - top).sum(axis=0)) + top
    averaged: _Array = (summed - np.float32(np.log(stacked.shape[0]))).astype(np.float32)
    return averaged


def _log_softmax(logits: _Array) -> _Array:
    shifted = logits - logits.max(axis=1, keepdims=True)
    result: _Array = (shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))).astype(
        np.float32
    )
    return result
