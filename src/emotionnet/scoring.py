"""Score image archives on a cluster engine: :class:`BatchScorer`, one batch at a time.

Distributed engines hand a function batches of rows: Ray Data's ``map_batches`` a dict of
numpy arrays, Spark's ``mapInPandas`` and Dask's ``map_partitions`` a pandas frame.
:class:`BatchScorer` is such a function. It imports no engine (and not torch): it is a small
picklable object holding its options, which loads the model (through the torch-free
onnxruntime path) the first time it scores a batch in a process, and keeps it for that
process. Its rows are those of :func:`~emotionnet.batch.predict_paths`, the same
probabilities, one row per image (or per face), an unreadable file as an error row.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> folder = Path(tempfile.mkdtemp())
    >>> Image.new("L", (48, 48), 128).save(folder / "grey.png")
    >>> scorer = BatchScorer(tta="none")
    >>> rows = scorer({"path": np.array([str(folder / "grey.png"), "missing.jpg"])})
    >>> rows["label"][0] in scorer.load().labels, rows["error"][0]
    (True, '')
    >>> rows["label"][1], rows["error"][1]
    ('', "No image file at 'missing.jpg'; check the path.")
"""

from __future__ import annotations

import math
import os
import sys
import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from ._checks import check_int
from .errors import EmotionNetError, InvalidArgumentError, UnsupportedInputError
from .images import load_image
from .runtime import check_threads
from .tta import resolve_tta

if TYPE_CHECKING:
    from .recognizer import EmotionRecognizer, FaceEmotion, Prediction

__all__ = ["FACE_COLUMNS", "INPUT_COLUMNS", "RESULT_COLUMNS", "BatchScorer"]

INPUT_COLUMNS: Final[tuple[str, ...]] = ("bytes", "path")
"""The columns a batch may hold its images in, in the order they are looked for: ``bytes``
(encoded image files, as ``ray.data.read_binary_files`` gives them) is used when present,
else ``path`` (file paths every worker can read)."""

RESULT_COLUMNS: Final[tuple[str, ...]] = ("label", "score", "error")
"""The columns every scored batch gains, before one ``prob_<label>`` column per model label:
the most probable emotion (``""`` when there is none), its probability (NaN when none) and
why the image has no result (``""`` when it was read)."""

FACE_COLUMNS: Final[tuple[str, ...]] = ("face", "x", "y", "w", "h", "confidence")
"""The columns a batch scored with ``faces=True`` gains first: the face's rank in its image
(0 for the largest; -1 on the row of an image without faces or that failed), its box in the
image's pixels (-1 when there is no face) and the detector's confidence (NaN when there is
no face or the detector gives none)."""

# One recognizer per model and options in a process: an engine that unpickles the scorer
# for every task (Spark, Dask) still loads the model once per worker process.
_LOADED: dict[tuple[Any, ...], EmotionRecognizer] = {}
_LOADING = threading.Lock()


def _error_message(error: BaseException) -> str:
    """The one-line message of an error, as :meth:`PathResult.to_dict` gives it."""
    return " ".join(str(error).split()) or type(error).__name__


class BatchScorer:
    """A picklable callable that scores a batch of images: Ray Data, Spark and Dask's unit.

    Call it on a batch, a dict of numpy arrays (Ray Data's ``batch_format="numpy"``) or a
    pandas ``DataFrame`` (Spark's ``mapInPandas``, Dask's ``map_partitions``), whose
    ``bytes`` or ``path`` column holds the images (see :data:`INPUT_COLUMNS`). It returns the
    same form: the input columns, then :data:`RESULT_COLUMNS` and one ``prob_<label>``
    column per model label (``prob_angry``, ..., ``prob_neutral`` for the bundled model),
    one row per image in the input order. An image that cannot be read (a missing file,
    undecodable bytes) gets its error in ``error``, an empty ``label`` and NaN scores; the
    batch goes on. The probabilities equal those of
    :meth:`EmotionRecognizer.predict <emotionnet.EmotionRecognizer.predict>` (with ``faces=True``,
    :meth:`~emotionnet.EmotionRecognizer.predict_faces`) and
    :func:`~emotionnet.batch.predict_paths` with the same options.

    With ``faces=True`` faces are detected first and each face is a row, largest first,
    with :data:`FACE_COLUMNS` before the results (the input columns repeated); an image
    without faces keeps one row with ``face = -1``, an empty ``label`` and NaN
    probabilities, so every input row is accounted for.

    Only the options are pickled: the model is loaded (:meth:`load`) on the first batch a
    process scores, once per process and options, so an engine may ship the scorer to its
    workers as often as it likes. Loading a model folder with a ``model.onnx`` (the bundled
    model, any folder :meth:`~emotionnet.EmotionRecognizer.save_pretrained` wrote) needs
    neither torch nor the engine.

    Args:
        model: The model: ``None`` for the bundled default, a folder every worker can read
            (shared storage), or a Hugging Face Hub id (each worker downloads it once into
            its cache; pin ``revision``), as for
            :meth:`EmotionRecognizer.from_pretrained
            <emotionnet.EmotionRecognizer.from_pretrained>`.
        revision: The Hub revision (branch, tag or commit) to load.
        tta: Test-time augmentation (see :data:`emotionnet.tta.TTA_MODES`); the default is
            :data:`~emotionnet.recognizer.DEFAULT_TTA`.
        faces: Detect faces first and score each (``face`` extra), one row per face.
        num_threads: Threads of one forward pass in each worker; ``None``: the runtime's
            default (one per physical core). The default, 1, suits a pool of worker
            processes: give each worker as many CPUs as it has threads (Ray:
            ``num_cpus=num_threads``) and the machine's cores are used without two pools of
            threads fighting for them; one thread also gives the most images per
            CPU-second, because a small face batch splits poorly across threads.
        batch_size: Faces per forward pass (a batch handed over by the engine is cut into
            chunks of this size).

    Raises:
        InvalidArgumentError: If ``tta``, ``num_threads`` or ``batch_size`` is invalid,
            or ``faces`` is not a ``bool``.

    Example:
        >>> import pickle
        >>> scorer = BatchScorer(tta="none", num_threads=1)
        >>> pickle.loads(pickle.dumps(scorer))
        BatchScorer(model=None, tta='none', faces=False, num_threads=1, batch_size=64)
        >>> rows = scorer({"path": np.array(["missing.jpg"])})
        >>> list(rows)[:5]
        ['path', 'label', 'score', 'error', 'prob_angry']
        >>> rows["label"][0], float(rows["score"][0])
        ('', nan)
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        revision: str | None = None,
        tta: bool | str | None = None,
        faces: bool = False,
        num_threads: int | None = 1,
        batch_size: int = 64,
    ) -> None:
        from .recognizer import DEFAULT_TTA

        if not isinstance(faces, bool):
            raise InvalidArgumentError(f"faces must be True or False, got {faces!r}.")
        self.model = None if model is None else os.fspath(model)
        self.revision = revision
        self.tta = resolve_tta(DEFAULT_TTA if tta is None else tta)
        self.faces = faces
        self.num_threads = None if num_threads is None else check_threads(num_threads)
        self.batch_size = check_int(
            "batch_size", batch_size, minimum=1, hint="faces per forward pass, e.g. 64"
        )
        self._recognizer: EmotionRecognizer | None = None
        self._crop_check: Any = None

    def __repr__(self) -> str:
        return (
            f"BatchScorer(model={self.model!r}, tta={self.tta!r}, faces={self.faces}, "
            f"num_threads={self.num_threads}, batch_size={self.batch_size})"
        )

    def __getstate__(self) -> dict[str, Any]:
        # The options only: an onnxruntime session cannot (and should not) travel.
        state = dict(self.__dict__)
        state["_recognizer"] = None
        state["_crop_check"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def load(self) -> EmotionRecognizer:
        """Load the model in this process, once, and return the recognizer.

        Called by the first batch; call it yourself to fail early (a wrong model path, no
        network for a Hub id) or to load before timing. A second scorer with the same
        model and options in the same process shares the recognizer.

        Returns:
            The recognizer the scorer predicts with.

        Raises:
            WeightsNotFoundError: If the model is not found (see
                :meth:`~emotionnet.EmotionRecognizer.from_pretrained`).
            ModelLoadError: If the model files are not a valid model.

        Example:
            >>> BatchScorer().load().backend
            'onnx'
        """
        if self._recognizer is None:
            key = (self.model, self.revision, self.tta, self.num_threads)
            with _LOADING:
                recognizer = _LOADED.get(key)
                if recognizer is None:
                    from .recognizer import EmotionRecognizer

                    recognizer = EmotionRecognizer.from_pretrained(
                        self.model,
                        revision=self.revision,
                        tta=self.tta,
                        num_threads=self.num_threads,
                    )
                    _LOADED[key] = recognizer
            self._recognizer = recognizer
        return self._recognizer

    def __call__(self, batch: Any) -> Any:
        """Score one batch.

        Args:
            batch: A mapping of column name to a 1-D array (or list) of the same length, or a
                pandas ``DataFrame``, with a ``bytes`` or ``path`` column.

        Returns:
            A dict of numpy arrays for a mapping, a ``DataFrame`` for a ``DataFrame``: the
            input columns and the result columns (see the class).

        Raises:
            UnsupportedInputError: If ``batch`` is neither a mapping nor a ``DataFrame``.
            InvalidArgumentError: If it has neither a ``bytes`` nor a ``path`` column, its
                columns differ in length, or it already has a result column.
            MissingDependencyError: If ``faces=True`` and no face detector is installed.
        """
        frame = _is_data_frame(batch)
        if frame:
            columns: dict[str, Any] = {str(name): batch[name].to_numpy() for name in batch}
        elif isinstance(batch, Mapping):
            columns = {str(name): _column(values) for name, values in batch.items()}
        else:
            raise UnsupportedInputError(
                f"A batch must be a dict of numpy arrays or a pandas DataFrame, got "
                f"{type(batch).__name__}; with Ray Data pass batch_format='numpy' or "
                "'pandas' to map_batches."
            )
        images = self._images(columns)
        labels = self.load().labels
        names = [*(FACE_COLUMNS if self.faces else ()), *RESULT_COLUMNS]
        clash = [
            name for name in [*names, *(f"prob_{label}" for label in labels)] if name in columns
        ]
        if clash:
            raise InvalidArgumentError(
                f"The batch already has the result column(s) {clash}; rename or drop them "
                "before scoring (e.g. a ground-truth 'label' as 'true_label')."
            )
        if self.faces:
            rows, results = self._score_faces(images)
        else:
            rows, results = self._score_images(images)
        if frame:
            out = batch.iloc[rows].reset_index(drop=True)
            for name, values in results.items():
                out[name] = values
            return out
        kept = {name: values[rows] for name, values in columns.items()}
        return {**kept, **results}

    def _images(self, columns: dict[str, Any]) -> Any:
        for name in INPUT_COLUMNS:
            if name in columns:
                images = columns[name]
                break
        else:
            raise InvalidArgumentError(
                f"A batch needs a 'bytes' or a 'path' column with the images, got the columns "
                f"{sorted(columns)}; rename the column that holds them."
            )
        lengths = {name: len(values) for name, values in columns.items()}
        if len(set(lengths.values())) > 1:
            raise InvalidArgumentError(
                f"The columns of a batch must have one length each, got {lengths}."
            )
        return images

    def _score_images(
        self, images: Sequence[Any]
    ) -> tuple[npt.NDArray[np.intp], dict[str, npt.NDArray[Any]]]:
        from ._crop_check import FaceCropCheck

        recognizer = self.load()
        if self._crop_check is None:  # one image per worker is checked: a note, not a flood
            self._crop_check = FaceCropCheck(recognizer.config.input_size)
        check = self._crop_check
        arrays: list[Any] = []
        errors: dict[int, BaseException] = {}
        for index, item in enumerate(images):
            try:
                source = os.fspath(item) if isinstance(item, (str, os.PathLike)) else None
                arrays.append(check.face_array(load_image(item), source=source))
            except (EmotionNetError, OSError) as error:
                errors[index] = error
        if check.warning is not None:
            warnings.warn(check.warning, stacklevel=3)
            check.warning = None
        predictions: list[Any] = []
        if arrays:
            try:
                predictions = recognizer.predict(arrays, batch_size=self.batch_size, tta=self.tta)
            except EmotionNetError as error:  # a model that cannot answer: every image fails
                predictions = [error] * len(arrays)
        answers = iter(predictions)
        table = _Table(recognizer.labels, faces=False)
        for index in range(len(images)):
            answer = errors[index] if index in errors else next(answers)
            if isinstance(answer, BaseException):
                table.add(index, None, error=_error_message(answer))
            else:
                table.add(index, answer)
        return table.finish()

    def _score_faces(
        self, images: Sequence[Any]
    ) -> tuple[npt.NDArray[np.intp], dict[str, npt.NDArray[Any]]]:
        recognizer = self.load()
        table = _Table(recognizer.labels, faces=True)
        for index, item in enumerate(images):
            try:
                (found,) = recognizer.predict_faces(item, tta=self.tta, batch_size=self.batch_size)
            except (EmotionNetError, OSError) as error:
                table.add(index, None, error=_error_message(error))
                continue
            if not found:
                table.add(index, None)
            for rank, face in enumerate(found):
                table.add(index, face.prediction, face=face, rank=rank)
        return table.finish()


def _column(values: Any) -> npt.NDArray[Any]:
    """One column as a 1-D numpy array; bytes as objects (``|S`` arrays drop trailing NULs)."""
    if isinstance(values, np.ndarray) and values.dtype.kind != "S":
        return values
    items = list(values)
    array = np.asarray(items) if items and not isinstance(items[0], bytes) else None
    if array is None or array.ndim != 1 or array.dtype.kind == "S":
        array = np.empty(len(items), dtype=object)
        array[:] = items
    return array


def _is_data_frame(batch: object) -> bool:
    pandas = sys.modules.get("pandas")  # a DataFrame exists only once pandas is imported
    return pandas is not None and isinstance(batch, pandas.DataFrame)


class _Table:
    """The result columns of a batch, filled one row at a time."""

    def __init__(self, labels: Sequence[str], *, faces: bool) -> None:
        self.labels = tuple(labels)
        self.faces = faces
        self.rows: list[int] = []
        self.label: list[str] = []
        self.score: list[float] = []
        self.error: list[str] = []
        self.proba: list[list[float]] = []
        self.boxes: list[tuple[int, int, int, int, int]] = []
        self.confidence: list[float] = []

    def add(
        self,
        row: int,
        prediction: Prediction | None,
        *,
        error: str = "",
        face: FaceEmotion | None = None,
        rank: int = -1,
    ) -> None:
        self.rows.append(row)
        self.error.append(error)
        if prediction is None:
            self.label.append("")
            self.score.append(math.nan)
            self.proba.append([math.nan] * len(self.labels))
        else:
            self.label.append(prediction.label)
            self.score.append(prediction.score)
            self.proba.append([prediction.probabilities[name] for name in self.labels])
        if self.faces:
            if face is None:
                self.boxes.append((-1, -1, -1, -1, -1))
                self.confidence.append(math.nan)
            else:
                x, y, w, h = face.box
                self.boxes.append((rank, x, y, w, h))
                conf = face.confidence
                self.confidence.append(math.nan if conf is None else float(conf))

    def finish(self) -> tuple[npt.NDArray[np.intp], dict[str, npt.NDArray[Any]]]:
        count = len(self.rows)
        out: dict[str, npt.NDArray[Any]] = {}
        if self.faces:
            boxes = np.array(self.boxes, dtype=np.int64).reshape(count, 5)
            for position, name in enumerate(FACE_COLUMNS[:5]):
                out[name] = boxes[:, position].copy()
            out["confidence"] = np.array(self.confidence, dtype=np.float64)
        out["label"] = np.array(self.label, dtype=object)
        out["score"] = np.array(self.score, dtype=np.float64)
        out["error"] = np.array(self.error, dtype=object)
        proba = np.array(self.proba, dtype=np.float64).reshape(count, len(self.labels))
        for position, name in enumerate(self.labels):
            out[f"prob_{name}"] = proba[:, position].copy()
        return np.array(self.rows, dtype=np.intp), out
