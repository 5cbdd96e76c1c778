"""Find faces in a photo and crop them the way FER2013 framed its faces.

Two detectors are built in, chosen by name (:data:`DETECTORS`): ``"haar"``, OpenCV's bundled
Haar cascade (the ``face`` extra: ``pip install "emotionnet[face]"``), and ``"dlib"``, dlib's
HOG frontal face detector (the ``dlib`` extra: ``pip install "emotionnet[dlib]"``, a prebuilt
wheel whose model is built in, so it works offline). ``"auto"`` picks dlib when it is
installed, else the Haar cascade (:data:`DEFAULT_DETECTOR`). A library is imported only when
its detector is first used.

Any callable taking a grayscale ``uint8`` ``H x W`` array and returning ``(x, y, w, h)`` or
``(x, y, w, h, confidence)`` boxes can replace them, for example a wrapper around a DNN
detector. Both built-in detectors give a confidence (see each class for its scale), which
:func:`detect_faces` reports with ``with_confidence=True`` and filters with
``min_confidence``; ``min_face_size`` and ``max_faces`` drop small faces and keep the largest.

Example:
    >>> import numpy as np
    >>> from PIL import Image
    >>> def two_boxes(gray):
    ...     return [(10, 10, 20, 20, 0.4), (30, 30, 30, 30, 2.5)]
    >>> photo = Image.new("L", (64, 64))
    >>> detect_faces(photo, detector=two_boxes)
    [(30, 30, 30, 30), (10, 10, 20, 20)]
    >>> detect_faces(photo, detector=two_boxes, min_confidence=1.0, with_confidence=True)
    [FaceDetection(box=(30, 30, 30, 30), confidence=2.5)]
    >>> crop_face(photo, (10, 10, 20, 20), margin=0.25).size
    (30, 30)
"""

from __future__ import annotations

import math
import numbers
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal, NamedTuple, TypeAlias, overload

import numpy as np
import numpy.typing as npt
from PIL import Image

from ._checks import check_int, check_number
from ._optional import is_installed, require
from .errors import InvalidArgumentError, UnsupportedInputError
from .images import ImageInput, load_image, original_size
from .preprocessing import to_grayscale

__all__ = [
    "DEFAULT_DETECTOR",
    "DEFAULT_MARGIN",
    "DETECTORS",
    "MAX_DETECTION_SIDE",
    "Box",
    "DlibHogDetector",
    "FaceDetection",
    "FaceDetector",
    "HaarCascadeDetector",
    "crop_face",
    "detect_faces",
    "get_detector",
]

Box: TypeAlias = tuple[int, int, int, int]
"""A face box ``(x, y, w, h)`` in pixels: top-left corner, width and height."""

FaceDetector: TypeAlias = Callable[[npt.NDArray[np.uint8]], Iterable[Sequence[Any]]]
"""A callable taking a grayscale ``uint8`` ``H x W`` array and returning ``(x, y, w, h)`` or
``(x, y, w, h, confidence)`` boxes (a larger confidence: more surely a face)."""

DETECTORS: Final[tuple[str, ...]] = ("auto", "haar", "dlib")
"""The detector names :func:`get_detector` (and ``face_detector=``, ``--detector``) accept:
``"haar"`` (:class:`HaarCascadeDetector`), ``"dlib"`` (:class:`DlibHogDetector`) and
``"auto"`` (dlib when it is installed, else the Haar cascade)."""

DEFAULT_DETECTOR: Final[str] = "auto"
"""The detector used when none is named: dlib's HOG detector when the ``dlib`` extra is
installed, else OpenCV's Haar cascade.

Measured, not guessed (``benchmarks/bench_detectors.py``: 428 FER2013 faces of 64-200 px
pasted on 160 varied backgrounds, plus the example photos): dlib finds 68.5% of the faces
with 0.012 false positives per scene, the Haar cascade 67.8% with 0.154, in similar time.
dlib is an optional extra, so without it the Haar cascade is used. Name a detector
(``"haar"``) for results that do not depend on what is installed.
"""

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

# dlib's rectangle is 0.83 of the FER2013 crop and centred 7% of the crop lower (median over
# 212 faces of benchmarks/bench_detectors.py's scenes); scaled by 1.13 and moved up 0.09 of
# its side it gets the Haar cascade's framing, which DEFAULT_MARGIN turns into FER2013's.
_DLIB_SCALE: Final[float] = 1.13
_DLIB_SHIFT: Final[float] = 0.09


class FaceDetection(NamedTuple):
    """A face found by :func:`detect_faces` with ``with_confidence=True``.

    A named tuple, so ``box, confidence = detection`` works.

    Attributes:
        box: ``(x, y, w, h)`` of the face in the photo, in pixels.
        confidence: The detector's confidence that the box is a face, on the detector's own
            scale (see :class:`HaarCascadeDetector` and :class:`DlibHogDetector`); ``None``
            when the detector gives none.

    Example:
        >>> box, confidence = FaceDetection((10, 20, 64, 64), 1.5)
        >>> box, confidence
        ((10, 20, 64, 64), 1.5)
    """

    box: Box
    confidence: float | None


class HaarCascadeDetector:
    """OpenCV's Haar cascade face detector, with settings that suit photos of people.

    Each box comes with a confidence: the weight the cascade's last stage gives the box
    (OpenCV's ``levelWeights``, from ``detectMultiScale3(..., outputRejectLevels=True)``; the
    largest among the overlapping detections merged into the box). It is unbounded; on
    ``benchmarks/bench_detectors.py``'s scenes real faces score a median 6.0 and false
    positives 3.5, and ``min_confidence=3`` keeps 93% of the faces found and removes 44% of
    the false positives.

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
        cv2 = require("cv2", "Face detection", alternative="or pass your own detector")
        path = cascade if os.path.isfile(cascade) else os.path.join(cv2.data.haarcascades, cascade)
        classifier = cv2.CascadeClassifier(path)
        if classifier.empty():
            raise InvalidArgumentError(
                f"Could not load the Haar cascade {cascade!r}; pass the name of a cascade "
                f"bundled with OpenCV (see {cv2.data.haarcascades}) or a path to a cascade XML."
            )
        self._classifier = classifier
        self._path = path
        self._lock = threading.Lock()
        _live_detectors.add(self)
        self.cascade = cascade
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size

    def __call__(self, gray: npt.NDArray[np.uint8]) -> list[tuple[int, int, int, int, float]]:
        """Detect faces in a grayscale image.

        Args:
            gray: A ``uint8`` ``H x W`` array.

        Returns:
            The faces as ``(x, y, w, h, confidence)``, in no particular order.
        """
        pixels = np.ascontiguousarray(gray)
        # OpenCV algorithm objects must not be used by two threads at once (detectMultiScale
        # releases the GIL); one lock per detector, as the module default is shared.
        with self._lock:
            found, _levels, weights = self._classifier.detectMultiScale3(
                pixels,
                scaleFactor=self.scale_factor,
                minNeighbors=self.min_neighbors,
                minSize=(self.min_size, self.min_size),
                outputRejectLevels=True,
            )
        scores = np.asarray(weights, dtype=np.float64).reshape(-1)
        return [
            (int(x), int(y), int(w), int(h), float(score))
            for (x, y, w, h), score in zip(found, scores, strict=True)
        ]

    def _after_fork_in_child(self) -> None:
        # A thread of the parent that was detecting at fork time holds the lock forever in
        # the child, and left the classifier mid-call: a new lock, and a new classifier.
        held = self._lock.locked()
        self._lock = threading.Lock()
        if held:
            self._classifier = require("cv2", "Face detection").CascadeClassifier(self._path)

    def __repr__(self) -> str:
        return (
            f"HaarCascadeDetector(cascade={self.cascade!r}, scale_factor={self.scale_factor}, "
            f"min_neighbors={self.min_neighbors}, min_size={self.min_size})"
        )


class DlibHogDetector:
    """dlib's HOG frontal face detector (``dlib.get_frontal_face_detector()``).

    Its model is built into dlib, so it works offline right after
    ``pip install "emotionnet[dlib]"`` (the ``dlib-bin`` wheel: no compiler needed). On
    ``benchmarks/bench_detectors.py``'s scenes it finds as many faces as the Haar cascade
    (68.5% against 67.8%) with far fewer false positives (0.012 per scene against 0.154),
    in similar time.

    Each box comes with a confidence: the detector's SVM score, at least ``threshold``.
    The default, 0.08, drops the weakest boxes dlib's own operating point (0) keeps, such
    as the name badge it boxes at 0.04 on ``examples/images/astronaut.jpg`` (and at up to
    0.07 on that photo scaled 0.8-3x): on the benchmark's scenes it keeps 94.5% of the faces
    found at 0 (293 of 310) and removes half of the false positives (2 of 4). Real faces
    score a median 0.89; ``min_confidence=0.25`` keeps 88% of them.

    dlib's rectangle covers eyebrows to chin, tighter than the FER2013 crop the models were
    trained on (0.83 of its side, centred 7% lower). By default the boxes are reframed like
    the Haar cascade's (1.13 times larger, moved up 0.09 of the side; measured on 212 faces of
    ``benchmarks/bench_detectors.py``'s scenes), so a box means the same whichever detector
    found it and :data:`DEFAULT_MARGIN` crops reproduce FER2013's framing.

    Args:
        upsample: How many times the image is doubled in size before detection (>= 0). The
            detector's window is 80 px: with ``0`` it finds faces from about 80 px, with
            ``1`` (default) from about 40 px, four times slower.
        threshold: Boxes scoring at least this are returned (dlib's ``adjust_threshold``);
            lower finds more faces and more false positives: ``0`` is dlib's own operating
            point, negative finds still more.
        reframe: Give boxes in the Haar cascade's framing (default); ``False`` gives dlib's
            own rectangles.

    Raises:
        MissingDependencyError: If dlib (the ``dlib`` extra) is not installed.
        InvalidArgumentError: If a setting is out of range.

    Calls from several threads take turns on the dlib detector, which dlib does not allow to
    be used by two threads at once.

    Example:
        >>> import numpy as np
        >>> detector = DlibHogDetector()
        >>> detector(np.zeros((100, 100), dtype=np.uint8))
        []
    """

    def __init__(self, *, upsample: int = 1, threshold: float = 0.08, reframe: bool = True) -> None:
        check_int(
            "upsample",
            upsample,
            minimum=0,
            hint="1 finds faces from about 40 px, 0 from about 80 px",
        )
        if not _is_real(threshold) or not math.isfinite(threshold):
            raise InvalidArgumentError(f"threshold must be a finite number, got {threshold!r}.")
        dlib = require(
            "dlib",
            'The "dlib" face detector',
            alternative='a prebuilt wheel, no compiler needed; or use detector="haar"',
        )
        self._detector = dlib.get_frontal_face_detector()
        self._lock = threading.Lock()
        _live_detectors.add(self)
        self.upsample = upsample
        self.threshold = float(threshold)
        self.reframe = bool(reframe)

    def __call__(self, gray: npt.NDArray[np.uint8]) -> list[tuple[int, int, int, int, float]]:
        """Detect faces in a grayscale image.

        Args:
            gray: A ``uint8`` ``H x W`` array.

        Returns:
            The faces as ``(x, y, w, h, confidence)``, in no particular order (a box may
            reach past the image's edges; :func:`detect_faces` clips it).
        """
        pixels = np.ascontiguousarray(gray, dtype=np.uint8)
        with self._lock:
            rectangles, scores, _ = self._detector.run(pixels, self.upsample, self.threshold)
        found = []
        for rectangle, score in zip(rectangles, scores, strict=True):
            x, y = int(rectangle.left()), int(rectangle.top())
            w, h = int(rectangle.width()), int(rectangle.height())
            if self.reframe:
                side = max(w, h)
                cx, cy = x + w / 2, y + h / 2 - _DLIB_SHIFT * side
                w = h = round(side * _DLIB_SCALE)
                x, y = round(cx - w / 2), round(cy - h / 2)
            found.append((x, y, w, h, float(score)))
        return found

    def _after_fork_in_child(self) -> None:
        # See HaarCascadeDetector._after_fork_in_child.
        held = self._lock.locked()
        self._lock = threading.Lock()
        if held:
            self._detector = require("dlib", 'The "dlib" face detector').get_frontal_face_detector()

    def __repr__(self) -> str:
        return (
            f"DlibHogDetector(upsample={self.upsample}, threshold={self.threshold}, "
            f"reframe={self.reframe})"
        )


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


_shared_detectors: dict[str, FaceDetector] = {}
_shared_lock = threading.Lock()
# The built-in detectors alive in this process, for _after_fork_in_child.
_live_detectors: weakref.WeakSet[HaarCascadeDetector | DlibHogDetector] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """Give a forked child fresh locks (and fresh native detectors where one was in use).

    A lock held by another thread at fork time stays held forever in the child, where that
    thread does not exist: without this, the child's first detection would hang.
    """
    global _shared_lock
    _shared_lock = threading.Lock()
    for detector in list(_live_detectors):
        detector._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _resolve_name(name: str) -> str:
    if name not in DETECTORS:
        raise InvalidArgumentError(
            f"Unknown face detector {name!r}; pass one of {', '.join(map(repr, DETECTORS))}, "
            "or a callable returning (x, y, w, h[, confidence]) boxes."
        )
    if name == "auto":
        return "dlib" if is_installed("dlib") else "haar"
    return name


def get_detector(detector: str | FaceDetector | None = None) -> FaceDetector:
    """The face detector a name stands for, or the callable given.

    Named detectors are created once, with their default settings, and shared (they are
    safe to call from several threads).

    Args:
        detector: A name of :data:`DETECTORS`, ``None`` for :data:`DEFAULT_DETECTOR`, or a
            detector callable (returned as it is).

    Returns:
        The detector.

    Raises:
        InvalidArgumentError: If the name is not one of :data:`DETECTORS`.
        UnsupportedInputError: If ``detector`` is neither a name nor a callable.
        MissingDependencyError: If the named detector's library is not installed
            (``"haar"``: the ``face`` extra; ``"dlib"``: the ``dlib`` extra).

    Example:
        >>> get_detector("haar")
        HaarCascadeDetector(cascade='haarcascade_frontalface_default.xml', scale_factor=1.1, min_neighbors=5, min_size=24)
        >>> get_detector("cnn")
        Traceback (most recent call last):
        ...
        emotionnet.errors.InvalidArgumentError: Unknown face detector 'cnn'; ...
    """  # noqa: E501
    if detector is None:
        detector = DEFAULT_DETECTOR
    if isinstance(detector, str):
        name = _resolve_name(detector)
        with _shared_lock:  # one shared detector, even when first used by two threads
            found = _shared_detectors.get(name)
            if found is None:
                found = HaarCascadeDetector() if name == "haar" else DlibHogDetector()
                _shared_detectors[name] = found
            return found
    if not callable(detector):
        raise UnsupportedInputError(
            f"A face detector must be a name ({', '.join(map(repr, DETECTORS))}) or a "
            f"callable, got {type(detector).__name__}."
        )
    return detector


def _get_default_detector() -> FaceDetector:
    return get_detector(None)


def _check_filters(
    min_face_size: int | None,
    min_confidence: float | None,
    max_faces: int | None,
    *,
    confidence_name: str = "min_confidence",
) -> None:
    """Raise InvalidArgumentError for a face filter out of range."""
    if min_face_size is not None:
        check_int("min_face_size", min_face_size, minimum=0, hint="a size in pixels")
    if min_confidence is not None:
        check_number(
            confidence_name,
            min_confidence,
            hint="on the detector's scale; pass None to keep every face",
        )
    if max_faces is not None:
        check_int("max_faces", max_faces, minimum=1, hint="pass None for no limit")


def _parse(
    raw: Sequence[Any], detector: FaceDetector, scale: tuple[float, float], width: int, height: int
) -> FaceDetection | None:
    try:
        items = list(raw)
        confidence = None
        if len(items) == 5:
            last = items.pop()
            confidence = None if last is None else float(last)
        values = [float(v) for v in items]
    except (TypeError, ValueError):
        values, confidence = [], None
    if (
        len(values) != 4
        or not all(np.isfinite(values))
        or (confidence is not None and not math.isfinite(confidence))
    ):
        raise InvalidArgumentError(
            f"The face detector {detector!r} returned {raw!r}; a detector must return "
            "(x, y, w, h) or (x, y, w, h, confidence) boxes of finite numbers."
        )
    sx, sy = scale
    x, y, w, h = (round(v * f) for v, f in zip(values, (sx, sy, sx, sy), strict=True))
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return FaceDetection((x0, y0, x1 - x0, y1 - y0), confidence)


def _detect_gray(gray: Image.Image, detector: FaceDetector) -> list[FaceDetection]:
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
    parsed = [_parse(raw, detector, scale, gray.width, gray.height) for raw in found]
    kept = [face for face in parsed if face is not None]
    # Largest first; ties broken top-to-bottom, left-to-right so the order is deterministic.
    return sorted(kept, key=lambda f: (-f.box[2] * f.box[3], f.box[1], f.box[0]))


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


def _find(
    gray: Image.Image,
    original: tuple[int, int],
    detector: FaceDetector,
    *,
    min_face_size: int | None,
    min_confidence: float | None,
    max_faces: int | None,
) -> list[tuple[Box, FaceDetection]]:
    """Detect and filter faces: (box in ``gray``'s pixels, detection in the file's pixels).

    Filters apply to what is reported: ``min_face_size`` to the box in the file's pixels,
    ``min_confidence`` to boxes that have a confidence; ``max_faces`` keeps the largest.
    """
    found = _detect_gray(gray, detector)
    mapped = _to_original([face.box for face in found], gray.size, original)
    kept: list[tuple[Box, FaceDetection]] = []
    for face, box in zip(found, mapped, strict=True):
        if min_face_size is not None and min(box[2], box[3]) < min_face_size:
            continue
        if (
            min_confidence is not None
            and face.confidence is not None
            and face.confidence < min_confidence
        ):
            continue
        kept.append((face.box, FaceDetection(box, face.confidence)))
    return kept if max_faces is None else kept[:max_faces]


@overload
def detect_faces(
    image: ImageInput,
    *,
    detector: str | FaceDetector | None = ...,
    min_face_size: int | None = ...,
    min_confidence: float | None = ...,
    max_faces: int | None = ...,
    with_confidence: Literal[False] = ...,
) -> list[Box]: ...


@overload
def detect_faces(
    image: ImageInput,
    *,
    detector: str | FaceDetector | None = ...,
    min_face_size: int | None = ...,
    min_confidence: float | None = ...,
    max_faces: int | None = ...,
    with_confidence: Literal[True],
) -> list[FaceDetection]: ...


@overload
def detect_faces(
    image: ImageInput,
    *,
    detector: str | FaceDetector | None = ...,
    min_face_size: int | None = ...,
    min_confidence: float | None = ...,
    max_faces: int | None = ...,
    with_confidence: bool,
) -> list[Box] | list[FaceDetection]: ...


def detect_faces(
    image: ImageInput,
    *,
    detector: str | FaceDetector | None = None,
    min_face_size: int | None = None,
    min_confidence: float | None = None,
    max_faces: int | None = None,
    with_confidence: bool = False,
) -> list[Box] | list[FaceDetection]:
    """Find the faces in a photo.

    Args:
        image: A photo in any form :func:`~emotionnet.images.load_image` accepts.
        detector: A name of :data:`DETECTORS` (``"haar"``, ``"dlib"``, ``"auto"``), ``None``
            for :data:`DEFAULT_DETECTOR`, or a callable taking a grayscale ``uint8``
            ``H x W`` array and returning ``(x, y, w, h)`` or ``(x, y, w, h, confidence)``
            boxes.
        min_face_size: Drop faces whose box is narrower or shorter than this many pixels
            (of the photo); ``None`` keeps every size the detector finds.
        min_confidence: Drop faces whose confidence is below this, on the detector's scale
            (:class:`HaarCascadeDetector`, :class:`DlibHogDetector`); boxes the detector
            gives no confidence for are kept. ``None`` keeps every face the detector returns
            (dlib's returns those scoring at least its ``threshold``, 0.08 by default).
        max_faces: Keep at most this many faces, the largest; ``None`` keeps them all.
        with_confidence: Return :class:`FaceDetection` ``(box, confidence)`` pairs instead of
            boxes.

    Returns:
        The boxes (or detections) clipped to the image, largest first, in the pixels of the
        image (of the file, when :func:`~emotionnet.images.load_image` reduced a very large
        one); an empty list when there is no face.

    Raises:
        MissingDependencyError: If the named (or default) detector's library is missing:
            OpenCV for ``"haar"`` (``face`` extra), dlib for ``"dlib"`` (``dlib`` extra).
        InvalidArgumentError: If a filter is out of range (a negative size, a NaN
            confidence, ``max_faces`` < 1), the detector name is unknown, or the detector
            returns something that is not a box.

    Example:
        >>> import numpy as np
        >>> detect_faces(np.zeros((50, 80), dtype=np.uint8), detector=lambda g: [(70, 40, 30, 30)])
        [(70, 40, 10, 10)]
        >>> boxes = lambda g: [(0, 0, 20, 20, 0.9), (30, 5, 40, 40, 0.2), (5, 30, 8, 8, 3.0)]
        >>> detect_faces(np.zeros((50, 80), np.uint8), detector=boxes, min_face_size=10)
        [(30, 5, 40, 40), (0, 0, 20, 20)]
        >>> detect_faces(np.zeros((50, 80), np.uint8), detector=boxes, max_faces=1,
        ...              min_confidence=0.5, with_confidence=True)
        [FaceDetection(box=(0, 0, 20, 20), confidence=0.9)]
    """
    _check_filters(min_face_size, min_confidence, max_faces)
    chosen = get_detector(detector)
    photo = load_image(image)
    gray = to_grayscale(photo)
    found = _find(
        gray,
        original_size(photo),
        chosen,
        min_face_size=min_face_size,
        min_confidence=min_confidence,
        max_faces=max_faces,
    )
    if with_confidence:
        return [face for _, face in found]
    return [face.box for _, face in found]


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
