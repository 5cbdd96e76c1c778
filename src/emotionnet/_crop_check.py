"""Is a picture given as one face really a face crop? The rule of NotAFaceCropWarning.

``predict`` (not ``predict_faces``) scores each image whole. :class:`FaceCropCheck` looks at
the first image of a call that is large enough to hold a face much smaller than itself, and
finds a :class:`~emotionnet.errors.NotAFaceCropWarning` when OpenCV's Haar cascade sees such a
face in it (see that class for the rule). It costs one detection on a copy at most
:data:`_CHECK_SIDE` pixels long per call, and nothing for FER2013-sized faces and ready
``uint8`` face batches, which never reach it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from PIL import Image

from .errors import MissingDependencyError, NotAFaceCropWarning
from .images import _unchanged_by_the_rule, load_image, original_size
from .preprocessing import to_face_array, to_grayscale

_MIN_SIDE_FACTOR: Final[int] = 2  # checked when the shorter side is >= 2x the model input
_CHECK_SIDE: Final[int] = 160  # the detection runs on a copy at most this long
_SCALE_FACTOR: Final[float] = 1.2  # a coarse pyramid: about 5 ms a check on one core
_FACE_SHARE: Final[float] = 1 / 3  # a face under a third of the shorter side: a photo

_lock = threading.Lock()
_detector: list[Any] = []  # [] not tried yet; [None] OpenCV missing; [detector]


def _after_fork_in_child() -> None:
    """A child forked while another thread held the lock would wait on it forever: renew it.

    The detector itself is renewed by :mod:`emotionnet.faces`' own fork handler; one made while
    the lock was held may be half-built, so it is dropped and made again.
    """
    global _lock
    held = _lock.locked()
    _lock = threading.Lock()
    if held:
        _detector.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _haar() -> Any:
    """OpenCV's Haar cascade (a coarser pyramid than the default), or ``None`` without it."""
    with _lock:
        if not _detector:
            from .faces import HaarCascadeDetector

            try:
                _detector.append(HaarCascadeDetector(scale_factor=_SCALE_FACTOR))
            except MissingDependencyError:
                _detector.append(None)
        return _detector[0]


def _source(item: object) -> str | None:
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else None


def not_a_face_crop(
    gray: Image.Image, size: tuple[int, int], *, input_size: int, source: str | None
) -> NotAFaceCropWarning | None:
    """The warning for a grayscale image that holds a face much smaller than itself, or None.

    Args:
        gray: The image, in mode ``L``.
        size: The image's size in the file's pixels (:func:`~emotionnet.images.original_size`).
        input_size: The model's input side.
        source: The image's path, for the message.
    """
    if min(gray.size) < _MIN_SIDE_FACTOR * input_size:
        return None
    detector = _haar()
    if detector is None:
        return None
    scale = min(1.0, _CHECK_SIDE / max(gray.size))
    small = gray
    if scale < 1.0:
        small = gray.resize(
            (max(1, round(gray.width * scale)), max(1, round(gray.height * scale))),
            Image.Resampling.BILINEAR,
            reducing_gap=3.0,  # a fast box reduction first: a phone photo in a few ms
        )
    boxes = [tuple(int(v) for v in box[:4]) for box in detector(np.asarray(small))]
    if not boxes:
        return None
    x, y, w, h = max(boxes, key=lambda box: box[2] * box[3])
    if max(w, h) >= _FACE_SHARE * min(small.size):
        return None
    fx, fy = size[0] / small.width, size[1] / small.height
    box = (round(x * fx), round(y * fy), round(w * fx), round(h * fy))
    what = repr(source) if source is not None else "The image"
    return NotAFaceCropWarning(
        f"{what} looks like a photo, not a face crop: it holds a face of about "
        f"{box[2]}x{box[3]} px at ({box[0]}, {box[1]}) in its {size[0]}x{size[1]} px, and it "
        "was scored whole, as one face, mostly background. Use predict_faces (faces=True in "
        "predict_paths and BatchScorer) to find and crop the faces first, or crop the face "
        "yourself (see NotAFaceCropWarning for the rule).",
        source=source,
        box=box,
        image_size=size,
    )


class FaceCropCheck:
    """Loads images as faces, checking the first large enough one of a call.

    Attributes:
        warning: The warning found, if any (the caller issues it).
    """

    def __init__(self, input_size: int) -> None:
        self.input_size = input_size
        self.done = False
        self.warning: NotAFaceCropWarning | None = None

    def face_array(self, image: Image.Image, *, source: str | None) -> npt.NDArray[np.uint8]:
        """:func:`~emotionnet.preprocessing.to_face_array` of a decoded image, checked."""
        if self.done or min(image.size) < _MIN_SIDE_FACTOR * self.input_size:
            return to_face_array(image, self.input_size)
        self.done = True
        if image.width == 0 or image.height == 0:  # to_face_array says what is wrong
            return to_face_array(image, self.input_size)
        # One grayscale conversion for both: to_face_array converts, then resizes.
        gray = to_grayscale(image)
        self.warning = not_a_face_crop(
            gray, original_size(image), input_size=self.input_size, source=source
        )
        return to_face_array(gray, self.input_size)

    def face_batch(self, items: Sequence[Any]) -> npt.NDArray[np.uint8]:
        """:func:`~emotionnet.images.to_face_batch`, with the check."""
        size = self.input_size
        faces = []
        for item in items:
            ready = _unchanged_by_the_rule(item, size)
            faces.append(
                ready
                if ready is not None
                else self.face_array(load_image(item), source=_source(item))
            )
        if not faces:
            return np.empty((0, size, size), dtype=np.uint8)
        return np.stack(faces)
