"""Find faces in a photo and crop them the way FER2013 framed its faces.

The default detector is OpenCV's bundled Haar cascade (the ``face`` extra:
``pip install "emotionnet[face]"``); OpenCV is imported only when a detector is first used.
Any callable taking a grayscale ``uint8`` ``H x W`` array and returning ``(x, y, w, h)``
boxes can replace it, for example a wrapper around a DNN detector.

Example:
    >>> import numpy as np
    >>> from PIL import Image
    >>> def one_box(gray):
    ...     return [(10, 10, 20, 20)]
    >>> photo = Image.new("L", (64, 64))
    >>> detect_faces(photo, detector=one_box)
    [(10, 10, 20, 20)]
    >>> crop_face(photo, (10, 10, 20, 20), margin=0.25).size
    (30, 30)
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt
from PIL import Image

from .errors import InvalidArgumentError, MissingDependencyError
from .images import ImageInput, load_image, original_size
from .preprocessing import to_grayscale

__all__ = [
    "DEFAULT_MARGIN",
    "MAX_DETECTION_SIDE",
    "Box",
    "FaceDetector",
    "HaarCascadeDetector",
    "crop_face",
    "detect_faces",
]

Box: TypeAlias = tuple[int, int, int, int]
"""A face box ``(x, y, w, h)`` in pixels: top-left corner, width and height."""

FaceDetector: TypeAlias = Callable[[npt.NDArray[np.uint8]], Iterable[Sequence[Any]]]
"""A callable taking a grayscale ``uint8`` ``H x W`` array and returning ``(x, y, w, h)`` boxes."""

DEFAULT_MARGIN: Final[float] = 0.02
"""Margin added on each side of a detected box, as a fraction of the box side.

Measured, not guessed: on FER2013 test faces upscaled onto a background, the Haar cascade's
box is a centred square about 0.96 of the FER2013 crop, so a 2% margin per side reproduces
the framing the models were trained on.
"""

MAX_DETECTION_SIDE: int = 2048
"""Longest side, in pixels, of the image a face detector is given.

A larger photo is reduced (bilinear) before detection and the boxes are mapped back to its
pixels; the crops are cut from the full photo. This bounds the detector's time and memory
(OpenCV's Haar cascade needs several bytes per pixel and pyramid level); faces smaller than
``min_size`` times the reduction factor are not found.
"""

_INSTALL_HINT: Final[str] = 'pip install "emotionnet[face]"'


def _import_cv2() -> Any:
    try:
        return importlib.import_module("cv2")
    except ImportError as error:
        raise MissingDependencyError(
            "Face detection needs OpenCV, which is not installed; install it with "
            f"`{_INSTALL_HINT}` (or pass your own detector)."
        ) from error


class HaarCascadeDetector:
    """OpenCV's Haar cascade face detector, with settings that suit photos of people.

    Args:
        cascade: File name of one of OpenCV's bundled cascades, or a path to a cascade XML.
        scale_factor: Scale step of the detection pyramid (> 1); smaller finds more faces,
            slower.
        min_neighbors: Overlapping detections needed to keep a face; higher means fewer false
            positives.
        min_size: Smallest face side in pixels. Faces much smaller than the 48 px model input
            carry little expression detail.

    Raises:
        MissingDependencyError: If OpenCV (the ``face`` extra) is not installed.
        InvalidArgumentError: If a setting is out of range or the cascade cannot be loaded.

    One detector may be called from several threads (a web app serving sessions on threads
    shares one recognizer): calls take turns on the underlying OpenCV classifier, which
    OpenCV does not allow to be used by two threads at once.

    Example:
        >>> import numpy as np
        >>> detector = HaarCascadeDetector()
        >>> detector(np.zeros((100, 100), dtype=np.uint8))
        []
    """

    def __init__(
        self,
        *,
        cascade: str = "haarcascade_frontalface_default.xml",
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 24,
    ) -> None:
        if not scale_factor > 1.0:
            raise InvalidArgumentError(f"scale_factor must be > 1, got {scale_factor!r}.")
        if min_neighbors < 0:
            raise InvalidArgumentError(f"min_neighbors must be >= 0, got {min_neighbors!r}.")
        if min_size < 1:
            raise InvalidArgumentError(f"min_size must be >= 1 pixel, got {min_size!r}.")
        cv2 = _import_cv2()
        path = cascade if os.path.isfile(cascade) else os.path.join(cv2.data.haarcascades, cascade)
        classifier = cv2.CascadeClassifier(path)
        if classifier.empty():
            raise InvalidArgumentError(
                f"Could not load the Haar cascade {cascade!r}; pass the name of a cascade "
                f"bundled with OpenCV (see {cv2.data.haarcascades}) or a path to a cascade XML."
            )
        self._classifier = classifier
        self._lock = threading.Lock()
        self.cascade = cascade
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size

    def __call__(self, gray: npt.NDArray[np.uint8]) -> list[Box]:
        """Detect faces in a grayscale image.

        Args:
            gray: A ``uint8`` ``H x W`` array.

        Returns:
            The face boxes ``(x, y, w, h)``, in no particular order.
        """
        pixels = np.ascontiguousarray(gray)
        # OpenCV algorithm objects must not be used by two threads at once (detectMultiScale
        # releases the GIL); one lock per detector, as the module default is shared.
        with self._lock:
            found = self._classifier.detectMultiScale(
                pixels,
                scaleFactor=self.scale_factor,
                minNeighbors=self.min_neighbors,
                minSize=(self.min_size, self.min_size),
            )
        return [(int(x), int(y), int(w), int(h)) for x, y, w, h in found]

    def __repr__(self) -> str:
        return (
            f"HaarCascadeDetector(cascade={self.cascade!r}, scale_factor={self.scale_factor}, "
            f"min_neighbors={self.min_neighbors}, min_size={self.min_size})"
        )


def _clip_box(
    raw: Sequence[Any], scale: tuple[float, float], width: int, height: int
) -> Box | None:
    try:
        values = [float(v) for v in raw]
    except (TypeError, ValueError):
        values = []
    if len(values) != 4 or not all(np.isfinite(values)):
        raise InvalidArgumentError(
            f"The face detector returned {raw!r}; a detector must return (x, y, w, h) boxes "
            "of four finite numbers."
        )
    sx, sy = scale
    x, y, w, h = (round(v * f) for v, f in zip(values, (sx, sy, sx, sy), strict=True))
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def _detect_gray(gray: Image.Image, detector: FaceDetector) -> list[Box]:
    factor = max(gray.size) / MAX_DETECTION_SIDE
    work = gray
    if factor > 1.0:
        # The detector sees a reduced copy; boxes are mapped back to the photo's pixels.
        size = (max(1, round(gray.width / factor)), max(1, round(gray.height / factor)))
        work = gray.resize(size, Image.Resampling.BILINEAR)
    scale = (gray.width / work.width, gray.height / work.height)
    found = detector(np.asarray(work, dtype=np.uint8))
    if found is None or isinstance(found, (str, bytes)) or not isinstance(found, Iterable):
        raise InvalidArgumentError(
            f"The face detector {detector!r} returned {type(found).__name__}; a detector must "
            "return an iterable of (x, y, w, h) boxes (an empty list when there is no face)."
        )
    boxes = [_clip_box(raw, scale, gray.width, gray.height) for raw in found]
    kept = [box for box in boxes if box is not None]
    # Largest first; ties broken top-to-bottom, left-to-right so the order is deterministic.
    return sorted(kept, key=lambda b: (-b[2] * b[3], b[1], b[0]))


def _to_original(boxes: list[Box], size: tuple[int, int], original: tuple[int, int]) -> list[Box]:
    """Map boxes found in a reduced image to the pixels of the original one."""
    if size == original:
        return boxes
    sx, sy = original[0] / size[0], original[1] / size[1]
    mapped = []
    for x, y, w, h in boxes:
        x0, y0 = round(x * sx), round(y * sy)
        x1, y1 = min(round((x + w) * sx), original[0]), min(round((y + h) * sy), original[1])
        mapped.append((x0, y0, max(1, x1 - x0), max(1, y1 - y0)))
    return mapped


_default_detector: HaarCascadeDetector | None = None
_default_detector_lock = threading.Lock()


def _get_default_detector() -> HaarCascadeDetector:
    global _default_detector
    with _default_detector_lock:  # one shared detector, even when first used by two threads
        if _default_detector is None:
            _default_detector = HaarCascadeDetector()
        return _default_detector


def detect_faces(image: ImageInput, *, detector: FaceDetector | None = None) -> list[Box]:
    """Find the faces in a photo.

    Args:
        image: A photo in any form :func:`~emotionnet.images.load_image` accepts.
        detector: A callable taking a grayscale ``uint8`` ``H x W`` array and returning
            ``(x, y, w, h)`` boxes; ``None`` uses :class:`HaarCascadeDetector` with its
            defaults.

    Returns:
        The boxes clipped to the image, largest first, in the pixels of the image (of the
        file, when :func:`~emotionnet.images.load_image` reduced a very large one); an
        empty list when there is no face.

    Raises:
        MissingDependencyError: If ``detector`` is ``None`` and OpenCV is not installed.
        InvalidArgumentError: If the detector returns something that is not a box.

    Example:
        >>> import numpy as np
        >>> detect_faces(np.zeros((50, 80), dtype=np.uint8), detector=lambda g: [(70, 40, 30, 30)])
        [(70, 40, 10, 10)]
    """
    photo = load_image(image)
    gray = to_grayscale(photo)
    boxes = _detect_gray(gray, detector if detector is not None else _get_default_detector())
    return _to_original(boxes, gray.size, original_size(photo))


def crop_face(image: Image.Image, box: Box, *, margin: float = DEFAULT_MARGIN) -> Image.Image:
    """Cut a square face crop around a box, with a margin, kept inside the image.

    The crop is a square of side ``max(w, h) * (1 + 2 * margin)`` centred on the box. Near
    an edge it is shifted to stay inside the image (so it stays square); only when the
    image itself is smaller than the square is it clipped.

    Args:
        image: The photo (any mode; the crop keeps it).
        box: ``(x, y, w, h)`` inside the image.
        margin: Extra context on each side, as a fraction of the box side (>= 0).

    Returns:
        The cropped PIL image.

    Raises:
        InvalidArgumentError: If ``margin`` is negative.

    Example:
        >>> from PIL import Image
        >>> crop_face(Image.new("RGB", (100, 80)), (0, 0, 40, 40), margin=0.5).size
        (80, 80)
    """
    if not margin >= 0:
        raise InvalidArgumentError(f"margin must be >= 0, got {margin!r}.")
    x, y, w, h = box
    side = max(1, round(max(w, h) * (1.0 + 2.0 * margin)))
    cx, cy = x + w / 2.0, y + h / 2.0

    def span(center: float, limit: int) -> tuple[int, int]:
        if side >= limit:
            return 0, limit
        start = min(max(round(center - side / 2.0), 0), limit - side)
        return start, start + side

    left, right = span(cx, image.width)
    top, bottom = span(cy, image.height)
    return image.crop((left, top, right, bottom))
