"""Emotions over a video: per-frame faces with timestamps, tracked and smoothed, and a summary.

:func:`analyze_video` reads a video file (or an open ``cv2.VideoCapture``: a camera, a
stream) with OpenCV (the ``face`` extra), takes every ``every``-th frame (or as many frames
per second as ``fps`` asks), finds the faces in each and predicts their emotions. Faces are
followed from frame to frame by the overlap (IoU) of their boxes, so each keeps a track
number; with ``smoothing`` the probabilities of a track are an exponential moving average
over its frames (one frame's prediction flickers with a blink or a half-turned head).
:func:`summarize_video` turns the frames into the share of each emotion over time.

Example:
    >>> import tempfile, cv2, numpy as np
    >>> from emotionnet import EmotionRecognizer
    >>> path = f"{tempfile.mkdtemp()}/clip.avi"
    >>> writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    >>> for _ in range(6):
    ...     writer.write(np.zeros((48, 64, 3), dtype=np.uint8))
    >>> writer.release()
    >>> recognizer = EmotionRecognizer.from_pretrained(tta="none")
    >>> frames = list(analyze_video(path, recognizer, every=2))
    >>> [(f.index, f.timestamp) for f in frames]
    [(0, 0.0), (2, 0.2), (4, 0.4)]
    >>> summarize_video(frames).frames
    3
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from .errors import ImageNotFoundError, InvalidArgumentError, MalformedDataError
from .faces import Box, _check_filters, _import_cv2

if TYPE_CHECKING:
    from .recognizer import EmotionRecognizer, Prediction

__all__ = [
    "FaceTrack",
    "FrameResult",
    "VideoSummary",
    "analyze_video",
    "annotate_frame",
    "box_iou",
    "summarize_video",
]

_DEFAULT_FPS: Final[float] = 25.0
_COLOUR: Final[tuple[int, int, int]] = (64, 64, 255)  # BGR


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes.

    Example:
        >>> box_iou((0, 0, 10, 10), (5, 0, 10, 10))
        0.3333333333333333
    """
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    return inter / float(aw * ah + bw * bh - inter) if inter else 0.0


@dataclass(frozen=True)
class FaceTrack:
    """One face in one frame.

    Attributes:
        track: The face's number, kept while it is followed from frame to frame.
        box: ``(x, y, w, h)`` in the frame's pixels.
        prediction: The emotion: this frame's, or the track's moving average with smoothing.
        confidence: The face detector's confidence for this frame's box (see
            :attr:`emotionnet.FaceEmotion.confidence`); ``None`` when it gives none.
    """

    track: int
    box: Box
    prediction: Prediction
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: ``track``, ``box``, ``confidence`` and the prediction's fields."""
        return {
            "track": self.track,
            "box": list(self.box),
            "confidence": self.confidence,
            **self.prediction.to_dict(),
        }


@dataclass(frozen=True)
class FrameResult:
    """The faces of one analysed frame.

    Attributes:
        index: The frame's number in the video, from 0.
        timestamp: Its time in seconds (``index / fps``).
        faces: The faces found, largest first.
    """

    index: int
    timestamp: float
    faces: list[FaceTrack]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of the fields."""
        return {
            "frame": self.index,
            "time": round(self.timestamp, 6),
            "faces": [face.to_dict() for face in self.faces],
        }


@dataclass(frozen=True)
class VideoSummary:
    """What a video showed over time.

    Attributes:
        frames: Frames analysed.
        frames_with_faces: Of those, frames where at least one face was found.
        duration: Seconds from the first to the last analysed frame.
        tracks: Different faces followed.
        emotion_share: For each emotion, the share of all face detections whose (smoothed)
            top emotion it was (the values sum to 1); empty when no face was found.
    """

    frames: int
    frames_with_faces: int
    duration: float
    tracks: int
    emotion_share: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of the fields."""
        return {
            "frames": self.frames,
            "frames_with_faces": self.frames_with_faces,
            "duration": round(self.duration, 6),
            "tracks": self.tracks,
            "emotion_share": dict(self.emotion_share),
        }


@dataclass
class _Track:
    number: int
    box: Box
    probabilities: np.ndarray[Any, np.dtype[np.float64]]
    missed: int = 0
    confidence: float | None = None


class _Tracker:
    """Greedy IoU matching of a frame's faces to the tracks, with moving averages."""

    def __init__(self, smoothing: float, min_iou: float, max_missed: int = 5) -> None:
        self.keep = smoothing  # weight of the track's history
        self.min_iou = min_iou
        self.max_missed = max_missed
        self.tracks: list[_Track] = []
        self.count = 0

    def update(
        self,
        faces: Sequence[tuple[Box, np.ndarray[Any, np.dtype[np.float64]], float | None]],
    ) -> list[_Track]:
        unmatched = list(self.tracks)
        current: list[_Track] = []
        for box, probabilities, confidence in faces:
            best = max(unmatched, key=lambda t: box_iou(t.box, box), default=None)
            if best is not None and box_iou(best.box, box) >= self.min_iou:
                unmatched.remove(best)
                best.box = box
                best.confidence = confidence
                best.probabilities = (
                    self.keep * best.probabilities + (1 - self.keep) * probabilities
                )
                best.missed = 0
                current.append(best)
            else:
                current.append(_Track(self.count, box, probabilities, confidence=confidence))
                self.count += 1
        for track in unmatched:  # a missed detection keeps the history for a few frames
            track.missed += 1
        self.tracks = current + [t for t in unmatched if t.missed <= self.max_missed]
        return current


def _open(source: str | os.PathLike[str] | Any) -> tuple[Any, bool]:
    cv2 = _import_cv2()
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageNotFoundError(f"No video file at {str(source)!r}; check the path.")
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise MalformedDataError(
                f"OpenCV cannot read {str(source)!r} as a video; pass a video file OpenCV's "
                "FFmpeg build decodes (.mp4, .avi, .mkv, .mov, ...)."
            )
        return capture, True
    if not hasattr(source, "read") or not hasattr(source, "isOpened"):
        raise InvalidArgumentError(
            f"Cannot read a video from {type(source).__name__}; pass a file path or an open "
            "cv2.VideoCapture."
        )
    if not source.isOpened():
        raise InvalidArgumentError("The cv2.VideoCapture given is not open.")
    return source, False


def _step(every: int | None, fps: float | None, video_fps: float) -> int:
    if every is not None and fps is not None:
        raise InvalidArgumentError("Pass either every or fps, not both.")
    if fps is not None:
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise InvalidArgumentError(f"fps must be a positive number, got {fps!r}.")
        return max(1, round(video_fps / fps))
    step = 1 if every is None else every
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise InvalidArgumentError(f"every must be a positive integer, got {every!r}.")
    return step


def analyze_video(
    source: str | os.PathLike[str] | Any,
    recognizer: EmotionRecognizer | None = None,
    *,
    every: int | None = None,
    fps: float | None = None,
    smoothing: float = 0.0,
    min_iou: float = 0.3,
    max_frames: int | None = None,
    tta: bool | str | None = None,
    annotate: str | os.PathLike[str] | None = None,
    min_face_size: int | None = None,
    min_face_confidence: float | None = None,
    max_faces: int | None = None,
) -> Iterator[FrameResult]:
    """Find the faces in a video's frames and predict their emotions, frame by frame.

    Args:
        source: A video file, or an open ``cv2.VideoCapture`` (a camera, a stream; it is
            left open).
        recognizer: The recognizer; ``None`` loads the bundled model.
        every: Analyse every N-th frame (default: every frame). The frames in between are
            skipped without being decoded.
        fps: Instead of ``every``: about this many analysed frames per second of video.
        smoothing: Weight of a face's history in its probabilities, ``0 <= s < 1``: each
            analysed frame gives ``s * history + (1 - s) * this frame``. ``0`` (default)
            reports each frame's own prediction.
        min_iou: Overlap that makes a face in this frame the same as one in the last.
        max_frames: Stop after this many analysed frames.
        tta: Test-time augmentation; ``None`` uses the recognizer's.
        annotate: Also write the analysed frames, each face boxed and labelled, to this
            video file (``.avi``: Motion JPEG, otherwise ``mp4v``), at the analysed rate.
        min_face_size: Ignore faces narrower or shorter than this many pixels; ``None``
            uses the recognizer's :attr:`~emotionnet.EmotionRecognizer.min_face_size`.
        min_face_confidence: Ignore faces the detector is less confident about; ``None``
            uses the recognizer's setting.
        max_faces: Analyse at most this many faces per frame, the largest; ``None`` uses
            the recognizer's setting. The detector is the recognizer's
            :attr:`~emotionnet.EmotionRecognizer.face_detector`.

    Yields:
        One :class:`FrameResult` per analysed frame, in order.

    Raises:
        MissingDependencyError: If OpenCV (the ``face`` extra) is not installed.
        ImageNotFoundError: If the file does not exist.
        MalformedDataError: If OpenCV cannot decode it.
        InvalidArgumentError: If an option is out of range (face filters included).

    Example:
        >>> next(analyze_video("missing.mp4"))
        Traceback (most recent call last):
        ...
        emotionnet.errors.ImageNotFoundError: No video file at 'missing.mp4'; check the path.
    """
    if not (isinstance(smoothing, (int, float)) and 0 <= smoothing < 1):
        raise InvalidArgumentError(f"smoothing must be in [0, 1), got {smoothing!r}.")
    if max_frames is not None and (isinstance(max_frames, bool) or max_frames < 1):
        raise InvalidArgumentError(f"max_frames must be a positive integer, got {max_frames!r}.")
    _check_filters(
        min_face_size, min_face_confidence, max_faces, confidence_name="min_face_confidence"
    )
    cv2 = _import_cv2()
    capture, owned = _open(source)
    try:
        video_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (math.isfinite(video_fps) and video_fps > 0):
            video_fps = _DEFAULT_FPS  # cameras and some streams do not say
        step = _step(every, fps, video_fps)
        if recognizer is None:
            from .recognizer import EmotionRecognizer

            recognizer = EmotionRecognizer.from_pretrained()
        labels = tuple(recognizer.labels)
        tracker = _Tracker(float(smoothing), min_iou)
        writer = None
        analysed = 0
        index = 0
        try:
            while max_frames is None or analysed < max_frames:
                if index % step:
                    if not capture.grab():  # skipped frames are not decoded
                        break
                    index += 1
                    continue
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                rgb = np.ascontiguousarray(frame[..., ::-1]) if frame.ndim == 3 else frame
                found = recognizer.predict(
                    rgb,
                    faces=True,
                    tta=tta,
                    min_face_size=min_face_size,
                    min_face_confidence=min_face_confidence,
                    max_faces=max_faces,
                )
                faces = [
                    (
                        face.box,
                        np.array([face.prediction.probabilities[n] for n in labels]),
                        face.confidence,
                    )
                    for face in found
                ]
                tracks = tracker.update(faces)
                result = FrameResult(index, index / video_fps, [_face(t, labels) for t in tracks])
                if annotate is not None:
                    if writer is None:
                        writer = _writer(cv2, annotate, frame, video_fps / step)
                    writer.write(annotate_frame(frame, result))
                analysed += 1
                index += 1
                yield result
        finally:
            if writer is not None:
                writer.release()
    finally:
        if owned:
            capture.release()


def _face(track: _Track, labels: Sequence[str]) -> FaceTrack:
    from .recognizer import Prediction

    best = int(track.probabilities.argmax())
    prediction = Prediction(
        label=labels[best],
        index=best,
        score=float(track.probabilities[best]),
        probabilities=dict(zip(labels, track.probabilities.tolist(), strict=True)),
    )
    return FaceTrack(track.number, track.box, prediction, track.confidence)


def _writer(cv2: Any, path: str | os.PathLike[str], frame: Any, rate: float) -> Any:
    target = Path(path)
    fourcc = "MJPG" if target.suffix.lower() == ".avi" else "mp4v"
    height, width = frame.shape[:2]
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*fourcc), rate, (width, height))
    if not writer.isOpened():
        raise InvalidArgumentError(
            f"OpenCV cannot write a video to {str(path)!r}; check the folder exists and use "
            "a .mp4 or .avi file name."
        )
    return writer


def annotate_frame(frame: np.ndarray[Any, Any], result: FrameResult) -> np.ndarray[Any, Any]:
    """Draw each face's box and label on a copy of a BGR frame (as OpenCV reads it).

    The text and lines scale with the frame, so labels stay readable on large videos.

    Args:
        frame: The ``H x W x 3`` BGR ``uint8`` frame the result was computed from.
        result: Its :class:`FrameResult`.

    Returns:
        The annotated copy.

    Raises:
        MissingDependencyError: If OpenCV (the ``face`` extra) is not installed.

    Example:
        >>> import numpy as np
        >>> from emotionnet.recognizer import Prediction
        >>> face = FaceTrack(0, (10, 10, 30, 30), Prediction("happy", 3, 0.9, {"happy": 0.9}))
        >>> canvas = annotate_frame(np.zeros((60, 80, 3), np.uint8), FrameResult(0, 0.0, [face]))
        >>> canvas.shape, int(canvas.max()) > 0
        ((60, 80, 3), True)
    """
    cv2 = _import_cv2()
    canvas: np.ndarray[Any, Any] = frame.copy()
    scale = max(0.5, min(canvas.shape[:2]) / 500)
    thickness = max(1, round(2 * scale))
    for face in result.faces:
        x, y, w, h = face.box
        text = f"{face.prediction.label} {face.prediction.score:.0%}"
        cv2.rectangle(canvas, (x, y), (x + w, y + h), _COLOUR, thickness)
        cv2.putText(
            canvas,
            text,
            (x, max(int(14 * scale), y - 6)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.6 * scale,
            _COLOUR,
            thickness,
        )
    return canvas


def summarize_video(frames: Iterable[FrameResult]) -> VideoSummary:
    """The share of each emotion over a video's analysed frames.

    Args:
        frames: What :func:`analyze_video` yielded (any iterable of :class:`FrameResult`).

    Returns:
        The :class:`VideoSummary`.

    Example:
        >>> summarize_video([]).frames
        0
    """
    count = with_faces = 0
    first = last = 0.0
    tracks: set[int] = set()
    votes: dict[str, int] = {}
    labels: tuple[str, ...] = ()
    for frame in frames:
        if count == 0:
            first = frame.timestamp
        last = frame.timestamp
        count += 1
        with_faces += bool(frame.faces)
        for face in frame.faces:
            tracks.add(face.track)
            labels = labels or tuple(face.prediction.probabilities)
            votes[face.prediction.label] = votes.get(face.prediction.label, 0) + 1
    total = sum(votes.values())
    share = {label: (votes.get(label, 0) / total if total else 0.0) for label in labels}
    return VideoSummary(count, with_faces, last - first, len(tracks), share)
