"""Many image files at once: folders expanded, results streamed, one bad file never stops a run.

:func:`iter_image_paths` turns what a user names (files and folders) into image paths:
named files are kept as given (a bad one is reported, not dropped), folders are expanded to
the image files inside them (optionally recursively), and anything else found in a folder is
counted and skipped. :func:`predict_paths` predicts them chunk by chunk and yields one
:class:`PathResult` per path, in order: the prediction (or the faces) or the error, so a
million files never sit in memory and one unreadable file costs only its own result.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from emotionnet import EmotionRecognizer
    >>> folder = Path(tempfile.mkdtemp())
    >>> Image.new("L", (48, 48), 128).save(folder / "a.png")
    >>> _ = (folder / "notes.txt").write_text("not an image")
    >>> skipped = []
    >>> paths = list(iter_image_paths([folder, folder / "missing.jpg"], skipped=skipped))
    >>> [Path(p).name for p in paths], [Path(p).name for p in skipped]
    (['a.png', 'missing.jpg'], ['notes.txt'])
    >>> recognizer = EmotionRecognizer.from_pretrained()
    >>> [r.ok for r in predict_paths(recognizer, paths)]
    [True, False]
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from PIL import Image

from .errors import EmotionNetError
from .images import ACCEPTED_FORMATS, load_image

if TYPE_CHECKING:
    from .recognizer import EmotionRecognizer, FaceEmotion, Prediction

__all__ = ["IMAGE_SUFFIXES", "PathResult", "iter_image_paths", "predict_paths"]

IMAGE_SUFFIXES: Final[frozenset[str]] = frozenset(
    suffix
    for suffix, format_name in Image.registered_extensions().items()
    if format_name in ACCEPTED_FORMATS
)
"""File-name suffixes (lower case) taken as images inside folders: those of
:data:`~emotionnet.images.ACCEPTED_FORMATS` (``.jpg``, ``.png``, ``.webp``, ...)."""


@dataclass(frozen=True)
class PathResult:
    """What came of one image path: a prediction, the faces found, or an error.

    Attributes:
        path: The path as given (or as found in a folder).
        prediction: The emotion of the image taken as one face (``faces=False``).
        faces: The faces found and their emotions, largest first (``faces=True``).
        error: Why the path has no result (a missing file, an undecodable image, ...).

    Example:
        >>> PathResult("a.jpg", error=FileNotFoundError("no such file")).to_dict()
        {'image': 'a.jpg', 'error': 'no such file', 'error_type': 'FileNotFoundError'}
    """

    path: str
    prediction: Prediction | None = None
    faces: list[FaceEmotion] | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """Whether the path has a result (no error)."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: ``image`` and the prediction's fields, ``faces`` or the error."""
        if self.error is not None:
            message = " ".join(str(self.error).split()) or type(self.error).__name__
            return {"image": self.path, "error": message, "error_type": type(self.error).__name__}
        if self.faces is not None:
            return {"image": self.path, "faces": [face.to_dict() for face in self.faces]}
        assert self.prediction is not None
        return {"image": self.path, **self.prediction.to_dict()}


def iter_image_paths(
    inputs: Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = False,
    skipped: list[str] | None = None,
) -> Iterator[str]:
    """Expand files and folders to image paths, lazily.

    A named path that is not a folder is yielded as given, whatever it is: if it is not a
    readable image, predicting it gives an error for that path. A folder is replaced by the
    files in it whose suffix is in :data:`IMAGE_SUFFIXES` (any case), in sorted order;
    hidden files are left out and the other files are appended to ``skipped``. Sub-folders
    are entered only with ``recursive=True``.

    Args:
        inputs: Files and folders.
        recursive: Also expand the folders inside folders.
        skipped: A list to which the paths of the non-image files found in folders are
            appended (so the caller can count them).

    Yields:
        Paths as strings.

    Example:
        >>> list(iter_image_paths(["face.jpg"]))
        ['face.jpg']
    """
    for item in inputs:
        text = os.fspath(item)
        if not os.path.isdir(text):
            yield text
            continue
        yield from _walk(Path(text), recursive=recursive, skipped=skipped)


def _walk(folder: Path, *, recursive: bool, skipped: list[str] | None) -> Iterator[str]:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        if skipped is not None:
            skipped.append(str(folder))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:  # a link loop
            is_dir = False
        if is_dir:
            if recursive:
                yield from _walk(Path(entry.path), recursive=True, skipped=skipped)
        elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
            yield entry.path
        elif skipped is not None:
            skipped.append(entry.path)


def _chunks(paths: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for path in paths:
        chunk.append(path)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def predict_paths(
    recognizer: EmotionRecognizer,
    paths: Iterable[str | os.PathLike[str]],
    *,
    faces: bool = False,
    batch_size: int = 64,
    tta: bool | str | None = None,
) -> Iterator[PathResult]:
    """Predict image files one chunk at a time; a file that fails becomes its error.

    Args:
        recognizer: The recognizer to predict with.
        paths: Image files (for folders, pass them through :func:`iter_image_paths`). Read
            lazily: a generator of a million paths is fine.
        faces: Detect faces in each image first (as :meth:`EmotionRecognizer.predict_faces`).
        batch_size: Images decoded and predicted together.
        tta: Test-time augmentation; ``None`` uses the recognizer's.

    Yields:
        One :class:`PathResult` per path, in the order of ``paths``. Errors emotionnet
        raises for one image (:class:`~emotionnet.errors.EmotionNetError`) and what the OS
        refuses (:class:`OSError`) are caught per path; anything else propagates.

    Warns:
        NotAFaceCropWarning: If, with ``faces=False``, the first image large enough to be
            checked looks like a photo with a smaller face in it (once per call; the rule is
            that of :meth:`EmotionRecognizer.predict`).

    Example:
        >>> from emotionnet import EmotionRecognizer
        >>> recognizer = EmotionRecognizer.from_pretrained()
        >>> (result,) = predict_paths(recognizer, ["missing.jpg"])
        >>> result.ok, type(result.error).__name__
        (False, 'ImageNotFoundError')
    """
    from ._crop_check import FaceCropCheck

    size = recognizer.config.input_size
    chunk_size = max(1, int(batch_size))
    check = FaceCropCheck(size)  # one image of the run is checked: a note, not a flood
    for names in _chunks((os.fspath(path) for path in paths), chunk_size):
        if faces:
            for name in names:
                try:
                    (found,) = recognizer.predict_faces(name, tta=tta)
                except (EmotionNetError, OSError) as error:
                    yield PathResult(name, error=error)
                else:
                    yield PathResult(name, faces=found)
            continue
        arrays: list[Any] = []
        errors: dict[int, BaseException] = {}
        for index, name in enumerate(names):
            try:
                arrays.append(check.face_array(load_image(name), source=name))
            except (EmotionNetError, OSError) as error:
                errors[index] = error
        if check.warning is not None:
            warnings.warn(check.warning, stacklevel=2)
            check.warning = None
        try:
            predictions: list[Any] = recognizer.predict(arrays, batch_size=chunk_size, tta=tta)
        except EmotionNetError as error:  # a model that cannot answer: every image fails
            predictions = [error] * len(arrays)
        answers = iter(predictions)
        for index, name in enumerate(names):
            if index in errors:
                yield PathResult(name, error=errors[index])
                continue
            answer = next(answers)
            if isinstance(answer, BaseException):
                yield PathResult(name, error=answer)
            else:
                yield PathResult(name, prediction=answer)
