"""The torch-free forward pass: an ONNX classifier run by onnxruntime on numpy arrays.

:class:`OnnxModel` is what :class:`~emotionnet.EmotionRecognizer` runs on the CPU: it loads a
``model.onnx`` (shipped in every model folder, the bundled one included), checks it
(:mod:`emotionnet._onnx_check`: standard feed-forward operators only; input and output shapes
that match the config), and turns a ``uint8`` face batch into logits or probabilities with
test-time augmentation (:mod:`emotionnet.tta`) in numpy. Nothing here imports torch.

Threads: onnxruntime runs one forward pass on ``num_threads`` threads (its intra-op pool).
:func:`default_threads` is the choice when none is given: ``OMP_NUM_THREADS`` when set, else
onnxruntime's own default (one per physical core), which suits one process per machine; with
several worker processes per machine give each ``cores / workers``.

Example:
    >>> import numpy as np
    >>> model = OnnxModel.bundled(num_threads=1)
    >>> faces = np.zeros((2, 48, 48), dtype=np.uint8)
    >>> model.predict_proba(faces, tta="flip").shape
    (2, 7)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ._checks import check_int
from ._io import NotARegularFileError, open_regular_file
from ._onnx_check import check_onnx_graph
from ._optional import require
from .errors import (
    InvalidArgumentError,
    ModelLoadError,
    UnsupportedInputError,
    WeightsNotFoundError,
)
from .models.config import ModelConfig
from .preprocessing import FER2013_MEAN, FER2013_STD, as_uint8_array, normalize
from .tta import average_log_softmax, resolve_tta, tta_views

__all__ = [
    "CONFIG_METADATA_KEY",
    "INT8_ONNX_NAME",
    "MAX_ONNX_BYTES",
    "ONNX_NAME",
    "PRECISIONS",
    "PRECISION_METADATA_KEY",
    "WEIGHTS_SHA256_METADATA_KEY",
    "OnnxModel",
    "check_threads",
    "default_threads",
    "softmax",
]

ONNX_NAME: Final[str] = "model.onnx"
"""The name of the ONNX graph in a model folder."""

INT8_ONNX_NAME: Final[str] = "model.int8.onnx"
"""The name of the statically quantized (int8) graph in a model folder, when it has one
(:func:`emotionnet.models.quantize.quantize_folder` writes it)."""

PRECISIONS: Final[tuple[str, ...]] = ("auto", "float32", "int8")
"""The graphs a folder can run: ``model.onnx`` (``"float32"``: the same probabilities as
PyTorch, to 1e-5) or ``model.int8.onnx`` (``"int8"``: a statically quantized copy, about four
times faster on CPUs with int8 dot products; on the bundled model PublicTest accuracy
+0.00 to +0.14 points across view sets). ``"auto"`` (the default) is int8 where the folder
ships a ``model.int8.onnx`` made from its weights (the bundled model does), else float32."""

PRECISION_METADATA_KEY: Final[str] = "emotionnet.precision"
"""Metadata entry of a quantized graph: ``"int8"``."""

CONFIG_METADATA_KEY: Final[str] = "emotionnet.config"
"""Metadata entry of an exported graph holding its :class:`ModelConfig` as JSON."""

WEIGHTS_SHA256_METADATA_KEY: Final[str] = "emotionnet.weights_sha256"
"""Metadata entry holding the SHA-256 of the ``model.safetensors`` the graph was exported
from, so a folder whose weights changed after the export is recognised."""

MAX_ONNX_BYTES: int = 1 << 30
"""Largest ONNX file read (1 GiB; the bundled ResNet18 is 45 MB)."""

_Float = npt.NDArray[np.float32]


def default_threads() -> int | None:
    """The thread count used when none is given: ``OMP_NUM_THREADS``, else ``None``.

    ``None`` lets onnxruntime choose (one thread per physical core).

    Raises:
        InvalidArgumentError: If ``OMP_NUM_THREADS`` is set but not a positive integer.

    Example:
        >>> import os
        >>> os.environ["OMP_NUM_THREADS"] = "2"; default_threads()
        2
        >>> del os.environ["OMP_NUM_THREADS"]; default_threads() is None
        True
    """
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not text:
        return None
    try:
        value = int(text.split(",")[0])
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidArgumentError(
            f"OMP_NUM_THREADS={text!r} is not a positive number of threads; set it to e.g. 2, "
            "or unset it for one thread per physical core."
        )
    return value


def check_threads(num_threads: object) -> int | None:
    """Validate a ``num_threads`` argument; ``None`` gives :func:`default_threads`.

    Example:
        >>> check_threads(3)
        3
    """
    if num_threads is None:
        return default_threads()
    return check_int("num_threads", num_threads, minimum=1, hint="threads per forward pass, e.g. 2")


def _read(path: Path) -> bytes:
    what = repr(str(path))
    try:
        with open_regular_file(path) as handle:
            data = handle.read(MAX_ONNX_BYTES + 1)
    except FileNotFoundError:
        raise WeightsNotFoundError(
            f"No ONNX model at {what}; export one with emotionnet.export_onnx(...) or "
            "`emotionnet export --onnx FILE`."
        ) from None
    except NotARegularFileError as error:
        raise ModelLoadError(
            f"The ONNX model {what} is {error.strerror}, not a regular file; pass an .onnx file."
        ) from None
    except OSError as error:
        raise ModelLoadError(f"Cannot read the ONNX model {what}: {error}") from None
    if len(data) > MAX_ONNX_BYTES:
        raise ModelLoadError(
            f"The ONNX model {what} is larger than {MAX_ONNX_BYTES >> 20} MiB "
            "(emotionnet.runtime.MAX_ONNX_BYTES), far beyond a face classifier; refusing it."
        )
    return data


class OnnxModel:
    """An emotion classifier in ONNX form, run by onnxruntime on numpy arrays.

    The graph takes the normalised ``float32`` batch ``N x 1 x S x S`` (``S`` the config's
    input size) and returns logits ``N x len(labels)``. It is checked when loaded: only the
    operators of feed-forward classifiers, no sub-graphs or external files, and input and
    output shapes that agree with the config.

    Args:
        source: Path of an ``.onnx`` file, or its content as ``bytes``.
        config: The model config; ``None`` reads the one stored in the graph's metadata
            (``emotionnet.config``, written by :func:`~emotionnet.export_onnx`), if any.
        num_threads: Threads of one forward pass; ``None``: :func:`default_threads`.
        providers: onnxruntime execution providers in order of preference; ``None``:
            ``["CPUExecutionProvider"]``.

    Attributes:
        config: The :class:`~emotionnet.models.ModelConfig`, or ``None`` for a graph from
            elsewhere that stores none (then its input is not checked, and
            :meth:`predict_logits` normalises with FER2013's mean and std unless told).
        weights_sha256: The SHA-256 of the weights the graph was exported from, if recorded.
        precision: ``"int8"`` for a graph :func:`~emotionnet.models.quantize.quantize_folder`
            wrote, else ``"float32"``.
        source: Where the graph came from, for messages.

    Raises:
        MissingDependencyError: If onnxruntime is not installed.
        WeightsNotFoundError: If the file does not exist.
        ModelLoadError: If the graph is refused by the check, onnxruntime cannot load it,
            or its shapes disagree with the config.

    Example:
        >>> model = OnnxModel.bundled(num_threads=1)
        >>> model.config.labels[:2], model(np.zeros((3, 1, 48, 48), np.float32)).shape
        (('angry', 'disgust'), (3, 7))
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | bytes,
        *,
        config: ModelConfig | None = None,
        num_threads: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        if isinstance(source, (str, os.PathLike)):
            path = Path(source).expanduser()
            self.source = str(path)
            data = _read(path)
        elif isinstance(source, (bytes, bytearray, memoryview)):
            self.source = "the given bytes"
            data = bytes(source)
        else:
            raise UnsupportedInputError(
                f"OnnxModel expects a path or bytes, got {type(source).__name__}."
            )
        threads = check_threads(num_threads)
        what = repr(self.source) if self.source != "the given bytes" else "The ONNX bytes"
        check_onnx_graph(data, source=what)
        ort = require("onnxruntime", "Running a model")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # onnxruntime's warnings are about its own internals
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads
        chosen = list(providers) if providers is not None else ["CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(data, options, providers=chosen)
        except Exception as error:  # onnxruntime's exceptions share no base class
            raise ModelLoadError(
                f"onnxruntime could not load the ONNX model {what}: {error}"
            ) from None
        self.num_threads = threads
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        self.weights_sha256: str | None = meta.get(WEIGHTS_SHA256_METADATA_KEY)
        self.precision: str = "int8" if meta.get(PRECISION_METADATA_KEY) == "int8" else "float32"
        self.config: ModelConfig | None = (
            config if config is not None else self._stored_config(meta, what)
        )
        if self.config is not None:
            self._check_shapes(what, self.config)
        self._input_name: str = self._session.get_inputs()[0].name

    @classmethod
    def bundled(cls, *, num_threads: int | None = None) -> OnnxModel:
        """The bundled default model's graph, with the config of its folder.

        Example:
            >>> OnnxModel.bundled(num_threads=1).config.input_size
            48
        """
        from .models.hub import bundled_model_dir, read_config

        folder = bundled_model_dir()
        config, _ = read_config(folder / "config.json")
        return cls(folder / ONNX_NAME, config=config, num_threads=num_threads)

    @staticmethod
    def _stored_config(meta: dict[str, str], what: str) -> ModelConfig | None:
        if CONFIG_METADATA_KEY not in meta:
            return None
        try:
            return ModelConfig.from_dict(json.loads(meta[CONFIG_METADATA_KEY]))
        except (ValueError, TypeError) as error:  # not JSON, or not a valid config
            raise ModelLoadError(
                f"{what} has an unusable {CONFIG_METADATA_KEY!r} metadata entry ({error}); "
                "export it again with emotionnet.export_onnx."
            ) from None

    def _check_shapes(self, what: str, config: ModelConfig) -> None:
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        size, chans = config.input_size, config.in_chans
        expected_in = f"one float input shaped batch x {chans} x {size} x {size}"
        problem = None
        if len(inputs) != 1 or len(outputs) < 1:
            problem = f"{len(inputs)} inputs and {len(outputs)} outputs"
        else:
            shape = list(inputs[0].shape)
            fixed = [dim if isinstance(dim, int) else None for dim in shape]
            if inputs[0].type != "tensor(float)":
                problem = f"an input of type {inputs[0].type}"
            elif len(shape) != 4 or fixed[1:] != [chans, size, size]:
                problem = f"an input shaped {shape}"
            else:
                out = list(outputs[0].shape)
                classes = len(config.labels)
                if len(out) != 2 or (isinstance(out[1], int) and out[1] != classes):
                    problem = f"an output shaped {out} for {classes} labels"
        if problem is not None:
            raise ModelLoadError(
                f"{what} does not match its config: it has {problem}, but the config "
                f"({config.stem}, {len(config.labels)} labels) needs {expected_in} "
                f"and logits shaped batch x {len(config.labels)}. Export the model again "
                "with its config (emotionnet.export_onnx), or pass the config it was made with."
            )

    @property
    def providers(self) -> list[str]:
        """The execution providers the session uses."""
        return list(self._session.get_providers())

    def __call__(self, batch: _Float) -> _Float:
        """Run the graph on a normalised ``float32`` batch ``N x C x S x S``; return logits."""
        array = np.ascontiguousarray(batch, dtype=np.float32)
        (logits,) = self._session.run(None, {self._input_name: array})[:1]
        result = np.asarray(logits, dtype=np.float32)
        if result.ndim != 2 or result.shape[0] != array.shape[0]:
            raise ModelLoadError(
                f"The ONNX model {self.source!r} returned shape {result.shape} for a batch of "
                f"{array.shape[0]}; expected logits shaped ({array.shape[0]}, num_classes)."
            )
        return result

    def predict_logits(
        self,
        images: npt.NDArray[np.uint8],
        *,
        tta: bool | str = False,
        batch_size: int = 256,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
    ) -> _Float:
        """Logits of a ``uint8`` face batch, with test-time augmentation.

        The numpy twin of :func:`emotionnet.inference.predict_logits`: the same
        normalisation, views and averaging, to within 1e-5 in probability.

        Args:
            images: ``uint8`` ``N x S x S`` (or ``N x 1 x S x S``) faces.
            tta: A mode of :data:`emotionnet.tta.TTA_MODES`, ``False`` or ``True``.
            batch_size: Faces per forward pass (the views of a small chunk share one pass).
            mean: Normalisation mean; ``None``: the config's.
            std: Normalisation standard deviation; ``None``: the config's.

        Returns:
            ``float32`` ``N x C``: raw logits without TTA; with TTA the log of the
            view-averaged softmax probabilities.

        Raises:
            InvalidImageError: If the batch is not ``uint8`` faces or is empty.
            InvalidArgumentError: If ``tta`` or ``batch_size`` is invalid.

        Example:
            >>> model = OnnxModel.bundled(num_threads=1)
            >>> model.predict_logits(np.zeros((1, 48, 48), np.uint8), tta="ten_crop").shape
            (1, 7)
        """
        mode = resolve_tta(tta)
        check_int("batch_size", batch_size, minimum=1, hint="faces per forward pass, e.g. 256")
        faces = as_uint8_array(images, "The images", allow_empty=False)
        if mean is None:
            mean = self.config.mean if self.config is not None else FER2013_MEAN
        if std is None:
            std = self.config.std if self.config is not None else FER2013_STD
        chunks: list[_Float] = []
        for start in range(0, faces.shape[0], batch_size):
            batch = normalize(faces[start : start + batch_size], mean, std)
            if mode == "none":
                chunks.append(self(batch))
                continue
            views = tta_views(batch, mode)
            if batch.shape[0] * len(views) <= batch_size:
                joined = self(np.concatenate(views))
                outputs = np.split(joined, len(views))
            else:
                outputs = [self(view) for view in views]
            chunks.append(average_log_softmax(outputs))
        return np.concatenate(chunks)

    def predict_proba(
        self,
        images: npt.NDArray[np.uint8],
        *,
        tta: bool | str = False,
        batch_size: int = 256,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
    ) -> _Float:
        """Probabilities of a ``uint8`` face batch (rows sum to 1); see :meth:`predict_logits`.

        Example:
            >>> model = OnnxModel.bundled(num_threads=1)
            >>> proba = model.predict_proba(np.zeros((2, 48, 48), np.uint8), tta="flip_crop")
            >>> bool(np.allclose(proba.sum(axis=1), 1.0))
            True
        """
        logits = self.predict_logits(images, tta=tta, batch_size=batch_size, mean=mean, std=std)
        return softmax(logits)

    def __repr__(self) -> str:
        return f"OnnxModel(source={self.source!r}, providers={self.providers})"

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError(
            "An OnnxModel holds an onnxruntime session, which cannot be pickled; pickle the "
            "model's path and load it in the other process (emotionnet.BatchScorer does)."
        )


def softmax(logits: _Float) -> _Float:
    """Row softmax of ``N x C`` logits, computed stably.

    Example:
        >>> softmax(np.array([[0.0, 0.0]], np.float32)).tolist()
        [[0.5, 0.5]]
    """
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    result: _Float = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
    return result
