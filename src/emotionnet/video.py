"""Emotions over a video: per-frame faces with timestamps, tracked and smoothed, and a summary.

:func:`analyze_video` reads a video file (or an open ``cv2.VideoCapture``: a camera, a
stream) with OpenCV (the ``face`` extra), takes every ``every``-th frame (or as many frames
per second as ``fps`` asks), finds the faces in each and predicts their emotions. Faces are
followed from frame to frame by the overlap (IoU) of their boxes, so each keeps a track
number; with ``smoothing`` the probabilities of a track are an exponential moving average
over its frames (one frame's prediction flickers with a blink or a half-turned head).
:func:`summarize_video` turns the frames into the share of each emotion over time.

Limits: only files whose first bytes are those of a video container (MP4/MOV, AVI,
Matroska/WebM, MPEG-TS/PS, FLV, Ogg, ASF/WMV, GIF, raw H.264/H.265) are opened, so a playlist
or concat list (``.m3u8``, ``ffconcat``) cannot make FFmpeg read other files; frames larger
than :data:`~emotionnet.images.MAX_IMAGE_PIXELS` are refused from the header; frames whose
longer side exceeds :data:`~emotionnet.images.MAX_WORKING_SIDE` are reduced as image files are
(boxes stay in the frame's pixels); at most :data:`VIDEO_MAX_FACES` faces per frame are
analysed unless ``max_faces`` says otherwise. The annotated video is written to a temporary
file, read back (every frame must be there: OpenCV drops write errors, such as a full disk)
and only then renamed to its name.

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

import contextlib
import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from ._atomic import marked_in_flight, remove_stale_temporaries, temporary_path
from ._checks import check_int, check_number
from ._io import NotARegularFileError, open_regular_file
from ._optional import require
from .errors import ImageNotFoundError, InvalidArgumentError, MalformedDataError
from .faces import Box, _check_filters
from .images import _DECODED_FROM, _check_pixels, _reduced_size, _reduction

if TYPE_CHECKING:
    from .recognizer import EmotionRecognizer, Prediction

__all__ = [
    "VIDEO_MAX_FACES",
    "FaceTrack",
    "FrameResult",
    "VideoSummary",
    "analyze_video",
    "annotate_frame",
    "box_iou",
    "summarize_video",
]

_log = logging.getLogger(__name__)

_DEFAULT_FPS: Final[float] = 25.0
_MAX_FPS: Final[float] = 1000.0  # above this a container's frame rate is taken as broken
VIDEO_MAX_FACES: int = 32
"""Faces analysed per frame, the largest, when neither ``max_faces`` nor the recognizer's
:attr:`~emotionnet.EmotionRecognizer.max_faces` is set. It bounds the time of a frame (each
face is cropped and predicted, and matched to the tracks of the last frames)."""
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
        # One vectorised IoU matrix (faces x tracks), then each face, largest first, takes the
        # track it overlaps most among those not yet taken (as box_iou would pick them).
        overlaps = _iou_matrix([box for box, _, _ in faces], [t.box for t in self.tracks])
        taken = np.zeros(len(self.tracks), dtype=bool)
        current: list[_Track] = []
        for row, (box, probabilities, confidence) in enumerate(faces):
            column = -1
            if len(self.tracks):
                candidates = np.where(taken, -1.0, overlaps[row])
                column = int(candidates.argmax())
            if column >= 0 and not taken[column] and overlaps[row, column] >= self.min_iou:
                taken[column] = True
                best = self.tracks[column]
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
        unmatched = [t for t, used in zip(self.tracks, taken.tolist(), strict=True) if not used]
        for track in unmatched:  # a missed detection keeps the history for a few frames
            track.missed += 1
        self.tracks = current + [t for t in unmatched if t.missed <= self.max_missed]
        return current


def _iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """:func:`box_iou` of every box of ``a`` with every box of ``b``, as an array."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    first = np.asarray(a, dtype=np.float64)[:, None, :]
    second = np.asarray(b, dtype=np.float64)[None, :, :]
    w = np.clip(
        np.minimum(first[..., 0] + first[..., 2], second[..., 0] + second[..., 2])
        - np.maximum(first[..., 0], second[..., 0]),
        0,
        None,
    )
    h = np.clip(
        np.minimum(first[..., 1] + first[..., 3], second[..., 1] + second[..., 3])
        - np.maximum(first[..., 1], second[..., 1]),
        0,
        None,
    )
    inter = w * h
    union = first[..., 2] * first[..., 3] + second[..., 2] * second[..., 3] - inter
    out: np.ndarray[Any, np.dtype[np.float64]] = np.zeros(inter.shape)
    np.divide(inter, union, out=out, where=inter > 0)
    return out


def _container(head: bytes) -> str | None:
    """The video container that a file starting with ``head`` is, or ``None``."""
    if head[4:8] == b"ftyp" or head[4:8] in (b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "MP4/QuickTime"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska/WebM"
    if head[:4] == b"OggS":
        return "Ogg"
    if head[:3] == b"FLV":
        return "FLV"
    if head[:8] == b"\x30\x26\xb2\x75\x8e\x66\xcf\x11":
        return "ASF/WMV"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "MPEG program stream"
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return "MPEG transport stream"
    if len(head) > 388 and head[4] == head[196] == head[388] == 0x47:
        return "MPEG transport stream (M2TS)"
    if head[:4] == b"\x00\x00\x00\x01" or head[:3] == b"\x00\x00\x01":
        return "H.264/H.265 elementary stream"
    return None


def _check_container(path: Path, shown: str) -> None:
    """Refuse a file that is not a video container (a playlist, a concat list, a text file).

    FFmpeg picks its demuxer by probing the content: an HLS playlist (``#EXTM3U``) or an
    ``ffconcat`` list would make it open the other files (or URLs) named inside. Only the
    containers above are passed to OpenCV.
    """
    try:
        with open_regular_file(path) as handle:
            head = handle.read(512)
    except NotARegularFileError as error:
        raise MalformedDataError(
            f"{shown} is {error.strerror}, not a video file; pass a regular video file."
        ) from None
    except OSError as error:
        raise MalformedDataError(
            f"Could not read {shown} ({error.strerror or error}); check its permissions."
        ) from None
    if _container(head) is None:
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        kind = (
            "a playlist or concat list"
            if text.startswith((b"#EXT", b"ffconcat", b"file ", b"#"))
            else "not in a video container format emotionnet reads"
        )
        raise MalformedDataError(
            f"{shown} is {kind}; pass a video file (MP4/MOV, AVI, MKV/WebM, MPEG-TS, FLV, "
            "Ogg, WMV, GIF). Playlists are refused: they make the decoder open other files."
        )


def _open(source: str | os.PathLike[str] | Any) -> tuple[Any, bool]:
    cv2 = require("cv2", "Reading a video")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageNotFoundError(f"No video file at {str(source)!r}; check the path.")
        _check_container(path, repr(str(source)))
        # An absolute path: a name such as "concat:a|b" is never taken for an FFmpeg protocol.
        capture = cv2.VideoCapture(os.path.abspath(path), cv2.CAP_FFMPEG)
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
        fps = check_number("fps", fps, low=0, low_open=True)
        ratio = video_fps / fps
        if not ratio < 2**31:  # 1e-310 frames a second: one frame in more than 2**31
            raise InvalidArgumentError(
                f"fps {fps!r} is far below the video's {video_fps:g} frames a second (one "
                "analysed frame in more than 2**31); pass a rate such as 1 or 0.1, or every."
            )
        return max(1, round(ratio))
    return 1 if every is None else check_int("every", every, minimum=1)


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
            video file (``.avi``: Motion JPEG, otherwise ``mp4v``), at the analysed rate (at
            least 1 frame a second). It is written to a temporary file next to it, read back
            and renamed when the frames end (also when the caller stops early); an error
            removes the temporary file and leaves an existing file as it was.
        min_face_size: Ignore faces narrower or shorter than this many pixels; ``None``
            uses the recognizer's :attr:`~emotionnet.EmotionRecognizer.min_face_size`.
        min_face_confidence: Ignore faces the detector is less confident about; ``None``
            uses the recognizer's setting.
        max_faces: Analyse at most this many faces per frame, the largest; ``None`` uses
            the recognizer's setting, or :data:`VIDEO_MAX_FACES` (32) if it has none. The
            detector is the recognizer's :attr:`~emotionnet.EmotionRecognizer.face_detector`.

    Yields:
        One :class:`FrameResult` per analysed frame, in order.

    Raises:
        MissingDependencyError: If OpenCV (the ``face`` extra) is not installed.
        ImageNotFoundError: If the file does not exist.
        MalformedDataError: If it is not in a video container (a playlist, a text file), or
            OpenCV cannot decode it.
        InvalidImageError: If its frames have more than
            :data:`~emotionnet.images.MAX_IMAGE_PIXELS` pixels.
        InvalidArgumentError: If an option is out of range (face filters included).
        OSError: If the annotated video could not be written completely (a full disk):
            the message names the file, and no partial file is left.

    A container frame rate that is missing, not finite or above 1000 (cameras, broken
    files) is replaced by 25 with a logged warning; timestamps follow it.

    Example:
        >>> next(analyze_video("missing.mp4"))
        Traceback (most recent call last):
        ...
        emotionnet.errors.ImageNotFoundError: No video file at 'missing.mp4'; check the path.
    """
    check_number("smoothing", smoothing, low=0, high=1, high_open=True)
    if max_frames is not None:
        check_int("max_frames", max_frames, minimum=1)
    _check_filters(
        min_face_size, min_face_confidence, max_faces, confidence_name="min_face_confidence"
    )
    cv2 = require("cv2", "Reading a video")
    capture, owned = _open(source)
    try:
        if owned:
            width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
            height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
            if width > 0 and height > 0:  # before a frame is decoded
                _check_pixels(width, height, f"The frames of {os.fspath(source)!r}")
        video_fps = _frame_rate(capture.get(cv2.CAP_PROP_FPS))
        step = _step(every, fps, video_fps)
        if recognizer is None:
            from .recognizer import EmotionRecognizer

            recognizer = EmotionRecognizer.from_pretrained()
        if max_faces is None and getattr(recognizer, "max_faces", None) is None:
            max_faces = VIDEO_MAX_FACES
        labels = tuple(recognizer.labels)
        tracker = _Tracker(float(smoothing), min_iou)
        writer = None if annotate is None else _AnnotatedVideo(cv2, annotate, video_fps / step)
        analysed = 0
        index = 0
        frame = None
        try:
            while max_frames is None or analysed < max_frames:
                if index % step:
                    if not capture.grab():  # skipped frames are not decoded
                        break
                    index += 1
                    continue
                # Our own capture decodes into the last frame's buffer: one large frame in
                # memory, not two (a caller's capture may not take the argument).
                ok, frame = capture.read(frame) if owned and frame is not None else capture.read()
                if not ok or frame is None:
                    break
                (found,) = recognizer.predict_faces(
                    _working_image(cv2, frame),
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
                if writer is not None:
                    writer.write(annotate_frame(frame, result))
                analysed += 1
                index += 1
                yield result
        except GeneratorExit:  # the caller stopped early: the frames so far are the video
            if writer is not None:
                writer.finish()
            raise
        except BaseException:
            if writer is not None:
                writer.discard()
            raise
        if writer is not None:
            writer.finish()
    finally:
        if owned:
            capture.release()


def _frame_rate(value: object) -> float:
    """The container's frame rate, or 25 (with a warning) when it is missing or absurd."""
    try:
        rate = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        rate = math.nan
    if math.isfinite(rate) and 0 < rate <= _MAX_FPS:
        return rate
    if rate != 0:  # cameras and some streams say 0: that is no news
        _log.warning(
            "The video gives %r frames a second, which is not a frame rate; timestamps assume %g.",
            rate,
            _DEFAULT_FPS,
        )
    return _DEFAULT_FPS


def _working_image(cv2: Any, frame: np.ndarray[Any, Any]) -> Any:
    """A decoded BGR frame as the PIL image an image file would give.

    Reduced by the working-size rule of :mod:`emotionnet.images` (the same factor, box
    averaging), with its original size recorded so that face boxes come back in the frame's
    pixels.
    """
    from PIL import Image

    height, width = frame.shape[:2]
    factor = _reduction((width, height))
    if factor > 1:  # INTER_AREA over an integer factor is box averaging, as Image.reduce
        size = _reduced_size((width, height), factor)
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    rgb = np.ascontiguousarray(frame[..., 2::-1]) if frame.ndim == 3 else frame
    image = Image.fromarray(rgb)
    if factor > 1:
        image.info[_DECODED_FROM] = (width, height)
    return image


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


class _AnnotatedVideo:
    """The annotated video: a temporary file, checked by reading it back, then renamed.

    OpenCV's VideoWriter drops write errors (a full disk gives a short or unreadable file and
    no exception), so the frame count is read back from the finished file before it takes
    the user's name.
    """

    def __init__(self, cv2: Any, path: str | os.PathLike[str], rate: float) -> None:
        self.cv2 = cv2
        self.target = Path(os.path.realpath(path))  # through a link, to its target
        self.shown = repr(os.fspath(path))
        if self.target.exists() and not self.target.is_file():
            # Renaming over a device (/dev/null) or a folder would replace it: refuse.
            raise InvalidArgumentError(
                f"Cannot write the annotated video to {self.shown}: it exists and is not a "
                "regular file. Name a new or existing .mp4 or .avi file."
            )
        if rate < 1:
            _log.warning(
                "The annotated video %s gets 1 frame a second, not %.3g: video writers need at "
                "least 1 (it plays faster than the video).",
                self.shown,
                rate,
            )
            rate = 1.0
        self.rate = rate
        self.temporary = temporary_path(self.target, suffix=self.target.suffix)
        self.writer: Any = None
        self.frames = 0
        self.stack = contextlib.ExitStack()

    def write(self, frame: np.ndarray[Any, Any]) -> None:
        if self.writer is None:
            self._open(frame)
        self.writer.write(frame)
        self.frames += 1

    def _open(self, frame: np.ndarray[Any, Any]) -> None:
        cv2 = self.cv2
        fourcc = "MJPG" if self.target.suffix.lower() == ".avi" else "mp4v"
        height, width = frame.shape[:2]
        if self.target.parent.is_dir():
            remove_stale_temporaries(self.target)
            self.stack.enter_context(marked_in_flight(self.temporary))
            writer = cv2.VideoWriter(
                str(self.temporary), cv2.VideoWriter_fourcc(*fourcc), self.rate, (width, height)
            )
        else:
            writer = None
        if writer is None or not writer.isOpened():
            self.discard()
            raise InvalidArgumentError(
                f"OpenCV cannot write a video to {self.shown}; check the folder exists and is "
                "writable, and use a .mp4 or .avi file name."
            )
        self.writer = writer

    def _count(self) -> int:
        cv2 = self.cv2
        capture = cv2.VideoCapture(str(self.temporary), cv2.CAP_FFMPEG)
        try:
            if not capture.isOpened():
                return 0
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            if count >= self.frames:
                return count
            count = 0  # the header may be an estimate: count the frames themselves
            while count < self.frames and capture.grab():
                count += 1
            return count
        finally:
            capture.release()

    def finish(self) -> None:
        """Close the file, check every frame is in it, and give it the user's name."""
        if self.writer is None:
            return
        try:
            self.writer.release()
            self.writer = None
            size = self.temporary.stat().st_size if self.temporary.exists() else 0
            count = self._count() if size else 0
            if count < self.frames:
                raise OSError(
                    f"The annotated video {self.shown} could not be written completely "
                    f"({count} of {self.frames} frames readable, {size} bytes; a full disk or "
                    "a file size limit?). The partial file was removed; free some space or "
                    "choose another folder and run again."
                )
            os.replace(self.temporary, self.target)
        except BaseException:
            self.discard()
            raise
        self.stack.close()

    def discard(self) -> None:
        """Remove the temporary file (an error or an interrupt); the target is untouched."""
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.release()
            self.writer = None
        with contextlib.suppress(OSError):
            self.temporary.unlink(missing_ok=True)
        self.stack.close()


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
    cv2 = require("cv2", "Drawing on a video frame")
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
