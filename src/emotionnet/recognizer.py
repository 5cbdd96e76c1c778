"""From any image to emotions in one call: :class:`EmotionRecognizer`.

.. code-block:: python

    from emotionnet import EmotionRecognizer

    recognizer = EmotionRecognizer.from_pretrained()    # the bundled default model, offline
    recognizer.predict("face.jpg")[0]                    # -> Prediction(label='happy', ...)
    recognizer.predict(["a.jpg", "b.png"])               # -> [Prediction, Prediction]
    recognizer.predict_faces("photo.jpg")[0]             # -> [FaceEmotion(box, prediction), ...]

Every input goes through :func:`emotionnet.images.load_image` and
:func:`emotionnet.preprocessing.to_face_array` (the dataset's grayscale/resize rule). A model
loaded with :meth:`EmotionRecognizer.from_pretrained` on the CPU runs its folder's shipped ONNX
graph on onnxruntime (:class:`~emotionnet.runtime.OnnxModel`, no torch; the int8 graph where
the folder has one, see ``precision``); ``backend="torch"`` or a GPU runs the PyTorch model
through :func:`emotionnet.inference.predict_logits`, the function
:func:`~emotionnet.metrics.evaluate` uses. With the float graph both give the same
probabilities to 1e-5, test-time augmentation included; the model's calibration temperature
for the view set is applied on both (:mod:`emotionnet.calibration`).

Example:
    >>> import torch
    >>> from emotionnet.models import ModelConfig, build_model
    >>> config = ModelConfig(stem="imagenet")
    >>> recognizer = EmotionRecognizer(build_model(config), config, device="cpu")
    >>> (prediction,) = recognizer.predict(torch.zeros(48, 48, dtype=torch.uint8))
    >>> prediction.label in config.labels, round(sum(prediction.probabilities.values()), 4)
    (True, 1.0)
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt

from ._checks import check_choice, check_int, resolve_device
from ._crop_check import FaceCropCheck
from ._optional import is_installed, require
from .calibration import apply_temperature
from .errors import (
    InvalidArgumentError,
    MissingDependencyError,
    ModelLoadError,
    UnsupportedInputError,
    WeightsNotFoundError,
)
from .faces import (
    DEFAULT_MARGIN,
    Box,
    FaceDetector,
    _check_filters,
    _find,
    crop_face,
    get_detector,
)
from .images import ImageInput, load_image, original_size, unbatch
from .models.config import ModelConfig
from .models.hub import ModelFiles, read_config, resolve_model_files, weights_sha256
from .preprocessing import to_face_array, to_grayscale
from .runtime import INT8_ONNX_NAME, PRECISIONS, OnnxModel, check_threads, softmax
from .tta import resolve_tta

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .metrics import EvaluationReport
    from .models import EmotionNet

__all__ = [
    "BACKENDS",
    "DEFAULT_TTA",
    "EmotionRecognizer",
    "FaceEmotion",
    "Prediction",
]

DEFAULT_TTA: Final[str] = "flip_crop"
"""The test-time augmentation a recognizer uses unless told otherwise.

``"flip_crop"`` (the face, its centre crop, and both mirrored: 4 views in one forward pass):
on the bundled model 71.55% on PublicTest against 69.66% for a single view and 71.36% for
``"ten_crop"`` (ten views), at 14.4 ms per face against 4.9 ms for a single
view (onnxruntime, one CPU core; ``benchmarks/bench_predict.py --tta``). Pass ``tta="none"``
for the fastest predictions.
"""

BACKENDS: Final[tuple[str, ...]] = ("auto", "torch", "onnx")
"""Inference backends: ``"onnx"`` (onnxruntime on the model's ONNX graph: the folder's
shipped ``model.onnx``, or an in-memory export of a PyTorch model), ``"torch"`` (eager
PyTorch, the ``torch`` extra), or ``"auto"``: onnxruntime on the CPU, else PyTorch.

Why onnxruntime on the CPU: on 2 cores it runs the default model 2-3x faster per face than
eager PyTorch, and it does not collapse when other processes compete for the cores (eager
PyTorch with 2 intra-op threads on a busy 2-core machine took 0.7 s per face, onnxruntime
17 ms; see ``benchmarks/bench_predict.py``)."""

logger = logging.getLogger(__name__)

_ImageList: TypeAlias = list[Any] | tuple[Any, ...]  # of ImageInput; list is invariant


@dataclass(frozen=True, repr=False)
class Prediction:
    """The emotion predicted for one face.

    Attributes:
        label: The most probable emotion.
        index: Its class index (position in the model's labels, FER2013's order by default).
        score: Its probability.
        probabilities: Every label's probability, in the model's label order.

    Example:
        >>> p = Prediction("happy", 3, 0.75, {"happy": 0.75, "sad": 0.2, "fear": 0.05})
        >>> p.top_k(2)
        [('happy', 0.75), ('sad', 0.2)]
        >>> p
        Prediction(label='happy', score=0.7500, index=3)
    """

    label: str
    index: int
    score: float
    probabilities: dict[str, float]

    def top_k(self, k: int = 3) -> list[tuple[str, float]]:
        """Return the ``k`` most probable labels with their probabilities, most probable first.

        Args:
            k: How many labels, from 1 to the number of classes.

        Returns:
            ``(label, probability)`` pairs; ties keep the label order.

        Raises:
            InvalidArgumentError: If ``k`` is not in ``1..len(probabilities)``.

        Example:
            >>> Prediction("sad", 0, 0.6, {"sad": 0.6, "happy": 0.4}).top_k(1)
            [('sad', 0.6)]
        """
        count = len(self.probabilities)
        check_int("k", k, minimum=1, maximum=count)
        ranked = sorted(self.probabilities.items(), key=lambda item: -item[1])
        return ranked[:k]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict of the fields.

        Example:
            >>> Prediction("sad", 0, 1.0, {"sad": 1.0}).to_dict()["label"]
            'sad'
        """
        return {
            "label": self.label,
            "index": self.index,
            "score": self.score,
            "probabilities": dict(self.probabilities),
        }

    def __repr__(self) -> str:
        return f"Prediction(label={self.label!r}, score={self.score:.4f}, index={self.index})"


@dataclass(frozen=True)
class FaceEmotion:
    """A face found in a photo and the emotion predicted for it.

    Attributes:
        box: ``(x, y, w, h)`` of the face in the photo, in pixels.
        prediction: The emotion of the face.
        confidence: The face detector's confidence that the box is a face, on the detector's
            own scale (see :class:`~emotionnet.faces.HaarCascadeDetector` and
            :class:`~emotionnet.faces.DlibHogDetector`); ``None`` when the detector gives
            none. Not the emotion's probability, which is ``prediction.score``.

    Example:
        >>> face = FaceEmotion((10, 20, 64, 64), Prediction("happy", 3, 0.9, {"happy": 0.9}))
        >>> face.to_dict()["box"], face.confidence
        ([10, 20, 64, 64], None)
    """

    box: Box
    prediction: Prediction
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict: ``box``, ``confidence`` and the prediction's fields.

        Example:
            >>> FaceEmotion((0, 0, 5, 5), Prediction("sad", 4, 1.0, {"sad": 1.0}), 2.5).to_dict()
            {'box': [0, 0, 5, 5], 'confidence': 2.5, 'label': 'sad', 'index': 4, 'score': 1.0, 'probabilities': {'sad': 1.0}}
        """  # noqa: E501
        return {"box": list(self.box), "confidence": self.confidence, **self.prediction.to_dict()}


def _is_cpu(device: object) -> bool:
    """Whether ``device`` is ``None`` or names the CPU, without importing torch."""
    return device is None or str(device) == "cpu"


def _is_module(model: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _is_onnx_file(name_or_path: object) -> bool:
    """Whether ``from_pretrained`` was given an ``.onnx`` file (existing or not) to load."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        return False
    path = Path(os.fspath(name_or_path)).expanduser()
    return path.suffix.lower() == ".onnx" and not path.is_dir()


def _check_backend(backend: str) -> str:
    return check_choice("backend", backend, BACKENDS)


def _check_face_filters(
    min_face_size: int | None, min_face_confidence: float | None, max_faces: int | None
) -> None:
    _check_filters(
        min_face_size, min_face_confidence, max_faces, confidence_name="min_face_confidence"
    )


def _onnx_exportable(*, required: bool) -> bool:
    """Whether a PyTorch model can be exported to ONNX here (the ``onnx`` package)."""
    try:
        require("onnx", "Exporting the model to ONNX")
        require("onnxruntime", "The onnx backend")
    except MissingDependencyError:
        if required:
            raise
        return False
    return True


def _load_module(config: ModelConfig, files: ModelFiles) -> nn.Module:
    """The folder's PyTorch model: ``EmotionNet.from_pretrained`` (strict; needs torch)."""
    require("torch", "Loading PyTorch weights")
    from .models import EmotionNet

    return EmotionNet.from_pretrained(files.folder, **config.to_dict())


def _folder_onnx(
    files: ModelFiles, config: ModelConfig, num_threads: int | None, precision: str = "float32"
) -> OnnxModel | None:
    """The folder's ``model.onnx`` when it may be used: made from these very weights.

    ``None`` when the folder has no graph, or its graph was exported from other weights (the
    SHA-256 recorded in the graph differs from ``model.safetensors``'s, or none is recorded):
    the caller then exports the weights (which needs torch). With ``precision="int8"`` the
    folder's ``model.int8.onnx`` is required and must match the weights too.
    """
    graph = files.onnx
    if precision == "int8":
        graph = files.config.parent / INT8_ONNX_NAME
        if not graph.is_file():
            raise WeightsNotFoundError(
                f"{files.source} has no {INT8_ONNX_NAME}, so precision='int8' cannot be used; "
                "make one with emotionnet.models.quantize.quantize_folder(folder, "
                "training_faces), or use precision='float32'."
            )
    if graph is None:
        return None
    model = OnnxModel(graph, config=config, num_threads=num_threads)
    if (
        precision == "int8"
        and files.weights is not None
        and model.weights_sha256 != (weights_sha256(files.weights))
    ):
        raise ModelLoadError(
            f"{files.source}: {INT8_ONNX_NAME} was not made from this model.safetensors (its "
            "recorded SHA-256 differs); quantize the folder again (quantize_folder) or use "
            "precision='float32'."
        )
    if files.weights is None:
        return model  # a deployment folder: the graph is the model
    if model.weights_sha256 is not None and model.weights_sha256 == weights_sha256(files.weights):
        return model
    logger.warning(
        "%s: model.onnx was not exported from this model.safetensors (its recorded SHA-256 "
        "differs); ignoring it and exporting the weights again. Save the folder again "
        "(save_pretrained) to refresh model.onnx.",
        files.source,
    )
    return None


class EmotionRecognizer:
    """Predict emotions from face images and photos with a trained model.

    Load one with :meth:`from_pretrained` (bundled default model, a saved folder, or the
    Hugging Face Hub) or :meth:`from_state_dict` (a ``.pt``/``.pth`` state dict), or wrap a
    model you have.

    Args:
        model: A module mapping the normalised ``float`` batch ``N x 1 x H x W`` to logits
            ``N x len(config.labels)``, such as :func:`~emotionnet.models.build_model` returns
            (needs torch), or an :class:`~emotionnet.runtime.OnnxModel` (no torch).
        config: The model's config (input size, mean/std, labels); defaults to the one stored
            in an ONNX model, else :class:`~emotionnet.models.ModelConfig` defaults.
        device: Where a PyTorch model runs: ``"cpu"``, ``"cuda"``, ``"mps"``...; ``None``
            picks CUDA when available, else the CPU. An ONNX model runs on the CPU.
        backend: ``"torch"`` (eager PyTorch); ``"onnx"`` (a PyTorch model is exported to ONNX
            at the first prediction and run by onnxruntime; later changes to ``model`` do not
            reach it); ``"auto"`` (``"onnx"`` on the CPU when the ``onnx`` package can
            export, else ``"torch"``); ``None``: ``"onnx"`` for an ONNX model, ``"torch"``
            for a module. :meth:`from_pretrained` defaults to ``"auto"`` and uses the
            folder's shipped ``model.onnx`` (see :data:`BACKENDS`).
        face_detector: Detector used by :meth:`predict_faces`: ``"haar"``
            (:class:`~emotionnet.faces.HaarCascadeDetector`, ``face`` extra), ``"dlib"``
            (:class:`~emotionnet.faces.DlibHogDetector`, ``dlib`` extra), ``"auto"`` or
            ``None`` (:data:`~emotionnet.faces.DEFAULT_DETECTOR`: dlib when installed, else
            Haar), or a callable taking a grayscale ``uint8`` ``H x W`` array and returning
            ``(x, y, w, h)`` or ``(x, y, w, h, confidence)`` boxes.
        min_face_size: Faces narrower or shorter than this many photo pixels are ignored;
            ``None``: no limit beyond the detector's own.
        min_face_confidence: Faces the detector is less confident about are ignored (on the
            detector's scale, see :attr:`FaceEmotion.confidence`); ``None``: no limit beyond
            the detector's own (dlib's ``threshold``, 0.08).
        max_faces: At most this many faces per photo, the largest; ``None``: no limit.
        face_margin: Margin around each detected face, as a fraction of the box side (see
            :data:`~emotionnet.faces.DEFAULT_MARGIN`).
        metadata: Facts that travel with the model (evaluation summaries, ...), kept by
            :meth:`save_pretrained`.
        tta: The test-time augmentation :meth:`predict`, :meth:`predict_faces` and
            :meth:`evaluate` use when not told otherwise (:data:`DEFAULT_TTA`; a mode of
            :data:`emotionnet.tta.TTA_MODES`, ``False`` or ``True``).
        num_threads: Threads of one forward pass: onnxruntime's intra-op pool, or
            :func:`torch.set_num_threads` (process-wide) for the torch backend; ``None``:
            ``OMP_NUM_THREADS``, else one per physical core.

    Attributes:
        config: The model config.
        device: Where the model runs, as a string (``"cpu"``, ``"cuda:0"``).
        num_threads: Threads of one forward pass (``None``: the runtime's default).
        face_detector: See the argument; may be replaced at any time.
        face_margin: See the argument.
        min_face_size: See the argument; may be changed at any time.
        min_face_confidence: See the argument; may be changed at any time.
        max_faces: See the argument; may be changed at any time.
        metadata: See the argument.
        tta: The default test-time augmentation mode's name; may be changed at any time.

    Raises:
        InvalidArgumentError: If ``backend``, ``device``, ``tta``, the face detector's name
            or a face filter is invalid, or ``config.in_chans`` is not 1 (faces are fed as
            one grayscale channel).
        UnsupportedInputError: If ``model`` is not a ``torch.nn.Module``.
        MissingDependencyError: If ``backend="onnx"`` and onnx/onnxruntime are missing, or
            the face detector named is not installed.

    Example:
        >>> import numpy as np
        >>> from emotionnet.models import ModelConfig, build_model
        >>> config = ModelConfig(stem="imagenet")
        >>> recognizer = EmotionRecognizer(build_model(config), config, device="cpu")
        >>> predictions = recognizer.predict([np.zeros((64, 64, 3), np.uint8)] * 3)
        >>> len(predictions), type(predictions[0]).__name__
        (3, 'Prediction')
    """

    def __init__(
        self,
        model: nn.Module | OnnxModel,
        config: ModelConfig | None = None,
        *,
        device: torch.device | str | None = None,
        backend: str | None = None,
        face_detector: str | FaceDetector | None = None,
        face_margin: float = DEFAULT_MARGIN,
        min_face_size: int | None = None,
        min_face_confidence: float | None = None,
        max_faces: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        tta: bool | str = DEFAULT_TTA,
        num_threads: int | None = None,
    ) -> None:
        onnx_model = model if isinstance(model, OnnxModel) else None
        if onnx_model is None and not _is_module(model):
            raise UnsupportedInputError(
                f"EmotionRecognizer expects a torch.nn.Module or an emotionnet OnnxModel, got "
                f"{type(model).__name__}; use EmotionRecognizer.from_pretrained(...) to load a "
                "saved model."
            )
        if onnx_model is None:
            from .models.onnx import OnnxClassifier

            if isinstance(model, OnnxClassifier):
                onnx_model = model.onnx_model
        if config is None:
            stored = onnx_model.config if onnx_model is not None else None
            config = stored if stored is not None else ModelConfig()
        if not isinstance(config, ModelConfig):
            raise UnsupportedInputError(
                f"config must be a ModelConfig, got {type(config).__name__}; build one with "
                "ModelConfig.from_dict(...) or ModelConfig.load(path)."
            )
        if config.in_chans != 1:
            raise InvalidArgumentError(
                f"The recognizer feeds grayscale faces (1 channel), but config.in_chans is "
                f"{config.in_chans}; use a model built with ModelConfig(in_chans=1) and its "
                "config."
            )
        if not face_margin >= 0:
            raise InvalidArgumentError(f"face_margin must be >= 0, got {face_margin!r}.")
        _check_face_filters(min_face_size, min_face_confidence, max_faces)
        if isinstance(face_detector, str) or not (face_detector is None or callable(face_detector)):
            get_detector(face_detector)  # an unknown name or a missing library: say so now
        if backend is None:
            backend = "onnx" if onnx_model is not None else "torch"
        _check_backend(backend)
        self.num_threads = check_threads(num_threads)
        self.tta = resolve_tta(tta)
        self.config = config
        self.face_detector = face_detector
        self.face_margin = face_margin
        self.min_face_size = min_face_size
        self.min_face_confidence = min_face_confidence
        self.max_faces = max_faces
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.source: str | None = None
        self._files: ModelFiles | None = None  # where the PyTorch weights can be loaded from
        self._auto = backend == "auto"
        self._export_lock = threading.Lock()
        self._onnx: OnnxModel | None = onnx_model
        self._module: nn.Module | None = None
        if onnx_model is not None:
            if backend == "torch":
                raise InvalidArgumentError(
                    "This model is an ONNX graph, which only onnxruntime runs; pass "
                    "backend='onnx' or 'auto', or load the PyTorch weights for backend='torch'."
                )
            if not _is_cpu(device) and not str(device).startswith("cuda"):
                raise InvalidArgumentError(
                    f"An ONNX model runs on the CPU (or CUDA through onnxruntime), not on "
                    f"{device!r}; pass device='cpu' or None."
                )
            self.device = "cpu" if device is None else str(device)
            self._backend = "onnx"
            return
        self.device = resolve_device(device)
        self._module = model.to(self.device).eval()  # type: ignore[union-attr]
        if self.num_threads is not None:
            require("torch", "Running the model with PyTorch").set_num_threads(self.num_threads)
        if backend == "auto":
            on_cpu = self.device == "cpu"
            backend = "onnx" if on_cpu and _onnx_exportable(required=False) else "torch"
        elif backend == "onnx":
            _onnx_exportable(required=True)
        self._backend = backend

    @property
    def backend(self) -> str:
        """``"torch"`` or ``"onnx"``: what runs the forward pass (``"auto"`` resolved)."""
        return self._backend

    @property
    def precision(self) -> str:
        """``"int8"`` when a quantized graph runs (``model.int8.onnx``), else ``"float32"``."""
        return self._onnx.precision if self._onnx is not None else "float32"

    @property
    def model(self) -> nn.Module:
        """The PyTorch model, in eval mode, on :attr:`device`.

        A recognizer loaded from a folder's ``model.onnx`` loads its PyTorch weights here, on
        first use (this needs the ``torch`` extra); one loaded from a bare ``.onnx`` file has
        none and raises :class:`~emotionnet.errors.InvalidArgumentError`.
        """
        if self._module is None:
            self._require_torch_weights("use as a PyTorch model")
            assert self._files is not None and self._files.weights is not None
            self._module = _load_module(self.config, self._files)
        return self._module

    @property
    def _runner(self) -> nn.Module:
        """A module running the forward pass, for :func:`~emotionnet.metrics.evaluate`."""
        onnx_model = self._onnx_model()
        if onnx_model is not None:
            from .models.onnx import OnnxClassifier

            return OnnxClassifier(onnx_model)
        return self.model

    def _onnx_model(self) -> OnnxModel | None:
        """The onnxruntime model of the ``onnx`` backend, exported on first use; else None."""
        if self._backend != "onnx":
            return None
        with self._export_lock:
            if self._onnx is None:
                self._onnx = self._export()
        return self._onnx

    def _export(self) -> OnnxModel | None:
        from .models.onnx import onnx_bytes

        providers = ["CPUExecutionProvider"]
        if self.device.startswith("cuda"):
            providers.insert(0, "CUDAExecutionProvider")
        try:
            data = onnx_bytes(self.model, config=self.config)
            return OnnxModel(
                data, config=self.config, num_threads=self.num_threads, providers=providers
            )
        except Exception as error:  # export failures have no common base class
            if not self._auto:
                raise
            logger.warning(
                "Could not run the model on onnxruntime (%s: %s); using eager PyTorch.",
                type(error).__name__,
                error,
            )
            self._backend = "torch"
            return None

    def _require_torch_weights(self, action: str) -> None:
        """Refuse what needs the PyTorch weights when the model is only an ONNX graph."""
        if self._module is not None:
            return
        if self._files is not None and self._files.weights is not None:
            require("torch", f"To {action} the model")
            return
        source = f" ({self.source})" if self.source else ""
        raise InvalidArgumentError(
            f"This recognizer runs an ONNX graph{source} and has no PyTorch weights to "
            f"{action}. Load the model folder the graph was exported from "
            f"(EmotionRecognizer.from_pretrained(folder)) and {action} that instead; the "
            "graph itself is already a deployable file."
        )

    @property
    def labels(self) -> tuple[str, ...]:
        """The class names, in the model's output order."""
        return self.config.labels

    def __repr__(self) -> str:
        source = f", source={self.source!r}" if self.source else ""
        return (
            f"EmotionRecognizer(stem={self.config.stem!r}, labels={len(self.labels)}, "
            f"device={self.device!r}, backend={self.backend!r}, precision={self.precision!r}"
            f"{source})"
        )

    # ---------------------------------------------------------------------------------------
    # Loading and saving
    # ---------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str] | None = None,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        device: torch.device | str | None = None,
        backend: str = "auto",
        tta: bool | str = DEFAULT_TTA,
        timeout: float | None = None,
        num_threads: int | None = None,
        precision: str = "auto",
    ) -> EmotionRecognizer:
        """Load a model: the bundled default, a folder, a Hub repository or an ``.onnx`` file.

        Loading is strict: a missing, unexpected or mis-shaped tensor is an error, and so are
        weights that could only give garbage (NaN or infinite values, integer or bool
        tensors where the model has floats, a negative batch-norm variance) and a config
        outside the documented ranges (see :class:`~emotionnet.models.ModelConfig`). Weights
        saved in half precision are cast to ``float32``. Hub downloads are bounded in time
        (``timeout``). The PyTorch weights, when needed, load through
        :meth:`EmotionNet.from_pretrained <emotionnet.models.EmotionNet.from_pretrained>`.

        Args:
            name_or_path: ``None`` for the default model shipped with emotionnet (no network
                needed); a folder written by :meth:`save_pretrained`; a Hugging Face Hub
                repo id ``"org/name"``, downloaded once and then read from the cache; or an
                ``.onnx`` file written by :func:`~emotionnet.export_onnx` (or ``emotionnet
                export``), whose metadata holds the model config. An ONNX file runs on
                onnxruntime only (the ``onnx`` extra): :meth:`predict` and :meth:`evaluate`
                work, :meth:`save_pretrained` and exporting again need the PyTorch weights
                and raise :class:`~emotionnet.errors.InvalidArgumentError`.
            revision: Hub branch, tag or commit hash to pin.
            cache_dir: Hugging Face cache folder (default ``HF_HUB_CACHE``).
            local_files_only: Never use the network, only the cache. ``HF_HUB_OFFLINE=1``
                implies it.
            token: Hub token for private or gated repositories.
            device: Where to run; ``None`` picks CUDA when available, else the CPU.
            backend: ``"auto"`` (onnxruntime on the CPU when the ``onnx`` extra is installed,
                else eager PyTorch), ``"torch"`` or ``"onnx"`` (see :data:`BACKENDS`). An
                ``.onnx`` file always runs on ``"onnx"`` (``"auto"`` is fine, ``"torch"`` is
                refused).
            tta: The default test-time augmentation of :meth:`predict` and :meth:`evaluate`
                (:data:`DEFAULT_TTA`).
            timeout: Most seconds spent on the Hub in all (Hub only): a positive number, or
                ``None`` for the ``EMOTIONNET_HUB_TIMEOUT`` environment variable (default
                30). When it runs out, a cached copy is used if there is one, else
                :class:`~emotionnet.errors.WeightsNotFoundError` is raised.
            num_threads: Threads of one forward pass (onnxruntime's intra-op pool; with the
                torch backend, :func:`torch.set_num_threads`, which is process-wide).
                ``None``: ``OMP_NUM_THREADS`` when set, else one per physical core. With
                several worker processes on one machine, give each ``cores / workers``.
            precision: ``"float32"`` runs the folder's ``model.onnx`` (the same
                probabilities as PyTorch, to 1e-5); ``"int8"`` runs its ``model.int8.onnx``,
                a statically quantized copy (the bundled model ships one: about four times
                faster on CPUs with int8 dot products; PublicTest accuracy +0.00 to +0.14
                points across view sets); ``"auto"`` (default) is int8 where the folder
                ships one made from its weights, else float32 (see
                :data:`emotionnet.runtime.PRECISIONS`). int8 runs on onnxruntime on the CPU.

        Returns:
            The recognizer.

        Raises:
            WeightsNotFoundError: If the model is not found, not cached while offline, or
                not downloaded within ``timeout`` (the message says how to fix it).
            ModelLoadError: If the files are not a valid model, do not match its config or
                hold unusable values (the message names the field or tensor).
            InvalidArgumentError: If an argument, ``HF_ENDPOINT`` or
                ``EMOTIONNET_HUB_TIMEOUT`` is invalid (checked before any network call).

        Example:
            >>> EmotionRecognizer.from_pretrained("org/a..b", timeout=10)
            Traceback (most recent call last):
            ...
            emotionnet.errors.InvalidArgumentError: 'org/a..b' is not a valid Hub repo id ...
        """
        if _is_onnx_file(name_or_path):
            assert name_or_path is not None
            return cls._from_onnx_file(
                name_or_path, device=device, backend=backend, tta=tta, num_threads=num_threads
            )
        _check_backend(backend)
        num_threads = check_threads(num_threads)
        check_choice("precision", precision, PRECISIONS)
        if precision == "int8" and (backend == "torch" or not _is_cpu(device)):
            raise InvalidArgumentError(
                "precision='int8' runs the folder's model.int8.onnx on onnxruntime on the CPU; "
                "leave backend and device at their defaults, or use precision='float32'."
            )
        files = resolve_model_files(
            name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            timeout=timeout,
        )
        config, metadata = read_config(files.config)
        options: dict[str, Any] = {"metadata": metadata, "tta": tta, "num_threads": num_threads}
        auto_int8 = (
            precision == "auto"
            and backend != "torch"
            and _is_cpu(device)
            and (files.config.parent / INT8_ONNX_NAME).is_file()
        )
        if precision == "auto":
            precision = "int8" if auto_int8 else "float32"
        # The inference install's path: the folder's model.onnx on onnxruntime, no torch.
        if backend != "torch" and _is_cpu(device) and is_installed("onnxruntime"):
            try:
                onnx_model = _folder_onnx(files, config, num_threads, precision)
            except ModelLoadError as error:
                if not auto_int8:
                    raise
                logger.warning("%s Using the float model.onnx instead.", error)
                onnx_model = _folder_onnx(files, config, num_threads, "float32")
            if onnx_model is not None:
                recognizer = cls(onnx_model, config, device="cpu", backend="onnx", **options)
                recognizer.source = files.source
                recognizer._files = files
                return recognizer
        if precision == "int8":
            require("onnxruntime", "precision='int8'")
        if files.weights is None:
            raise ModelLoadError(
                f"{files.source} holds only model.onnx, which needs onnxruntime on the CPU; "
                "pass device='cpu' (or None) and backend='auto' or 'onnx'."
            )
        why = (
            "Loading a model whose folder has no up-to-date model.onnx"
            if _is_cpu(device) and backend != "torch"
            else "The torch backend (backend='torch' or a GPU device)"
        )
        require("torch", why)
        model = _load_module(config, files)
        recognizer = cls(model, config, device=device, backend=backend, **options)
        recognizer.source = files.source
        recognizer._files = files
        return recognizer

    @classmethod
    def _from_onnx_file(
        cls,
        path: str | os.PathLike[str],
        *,
        device: torch.device | str | None,
        backend: str,
        tta: bool | str,
        num_threads: int | None,
    ) -> EmotionRecognizer:
        """An exported ``.onnx`` file, run by onnxruntime with the config in its metadata."""
        text = os.fspath(path)
        if _check_backend(backend) == "torch":
            raise InvalidArgumentError(
                f"{text!r} is an ONNX graph, which only onnxruntime runs; the 'torch' backend "
                "needs PyTorch weights, which an .onnx file does not hold. Use the 'onnx' or "
                "'auto' backend, or load the model folder the file was exported from."
            )
        providers = ["CPUExecutionProvider"]
        if not _is_cpu(device) and resolve_device(device).startswith("cuda"):
            providers.insert(0, "CUDAExecutionProvider")
        onnx_model = OnnxModel(
            Path(text).expanduser(), providers=providers, num_threads=num_threads
        )
        if onnx_model.config is None:
            raise ModelLoadError(
                f"{text!r} has no emotionnet model config in its metadata (the entry "
                "'emotionnet.config' that export_onnx writes), so its input size, normalisation "
                "and labels are unknown. Export it with emotionnet.export_onnx(model, path, "
                "config=...) or `emotionnet export`, or wrap it with its config yourself: "
                "EmotionRecognizer(OnnxModel(path, config=ModelConfig(...)))."
            )
        recognizer = cls(
            onnx_model,
            onnx_model.config,
            device=device,
            backend="onnx",
            tta=tta,
            num_threads=num_threads,
        )
        recognizer.source = text
        return recognizer

    @classmethod
    def from_state_dict(
        cls,
        state_dict: str | os.PathLike[str] | Mapping[str, torch.Tensor],
        *,
        config: ModelConfig,
        device: torch.device | str | None = None,
        backend: str = "auto",
        tta: bool | str = DEFAULT_TTA,
    ) -> EmotionRecognizer:
        """Load a legacy ``.pt``/``.pth`` state dict (or a ``.safetensors`` file) with its config.

        Files are read with ``torch.load(weights_only=True)``: tensors and plain containers
        only, nothing else is ever unpickled. A checkpoint holding the weights under
        ``"state_dict"``, ``"model_state_dict"`` or ``"model"`` works, and the ``module.``
        (DataParallel/DDP) and ``_orig_mod.`` (``torch.compile``) key prefixes are removed.

        Args:
            state_dict: A file path, or a mapping of tensor names to tensors.
            config: The config the weights were trained with (stem, classes, ...). It is
                required: a ``"small"`` and a ``"middle"`` stem have the same tensor shapes,
                so the file alone cannot tell them apart.
            device: Where to run.
            backend: ``"auto"``, ``"torch"`` or ``"onnx"``, as for :meth:`from_pretrained`.
            tta: The default test-time augmentation, as for :meth:`from_pretrained`.

        Returns:
            The recognizer.

        Raises:
            WeightsNotFoundError: If the file does not exist.
            ModelLoadError: If the file is not a tensor-only state dict or does not match
                the config (the message lists the tensors).

        Example:
            >>> from emotionnet.models import ModelConfig, build_model
            >>> config = ModelConfig(stem="small")
            >>> state = {f"module.{k}": v for k, v in build_model(config).state_dict().items()}
            >>> EmotionRecognizer.from_state_dict(state, config=config, device="cpu").config.stem
            'small'
        """
        if not isinstance(config, ModelConfig):
            raise UnsupportedInputError(
                f"config must be a ModelConfig, got {type(config).__name__}."
            )
        require("torch", "Loading a PyTorch state dict")
        from .models import build_model, load_weights

        model = build_model(config)
        load_weights(model, state_dict)
        recognizer = cls(model, config, device=device, backend=backend, tta=tta)
        recognizer.source = (
            os.fspath(state_dict)
            if isinstance(state_dict, (str, os.PathLike))
            else "the given state dict"
        )
        return recognizer

    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        *,
        evaluation: EvaluationReport | Mapping[str, Any] | None = None,
        dtype: torch.dtype | str = "float32",
        name: str | None = None,
    ) -> Path:
        """Save the model folder: ``model.safetensors``, ``model.onnx``, ``config.json``, card.

        The one saver of model folders, :meth:`EmotionNet.save_pretrained
        <emotionnet.models.EmotionNet.save_pretrained>` (huggingface_hub's mixin), with this
        recognizer's config, :attr:`metadata` and ``evaluation`` in ``config.json`` and the
        ``README.md`` card. :meth:`from_pretrained` loads the folder back (torch-free, from
        ``model.onnx``), and it can be uploaded to the Hub as is (:meth:`push_to_hub`).

        Args:
            save_directory: The folder (created if needed; existing files are replaced).
            evaluation: Results shown in the model card and stored in ``config.json``: an
                :class:`~emotionnet.metrics.EvaluationReport`, a dict of metric names to
                numbers, or a dict of names (``"public_test"``, ``"public_test + TTA"``) to
                either. ``None`` keeps the summaries already in :attr:`metadata`.
            dtype: ``torch.float32`` (exact round trip) or ``torch.float16`` /
                ``torch.bfloat16`` (half the size), also as a string.
            name: Title of the model card; ``None`` uses the folder's name.

        Returns:
            The folder.

        Raises:
            InvalidArgumentError: If the model has no PyTorch weights (an ONNX-only
                recognizer), or ``dtype``/``evaluation`` is invalid.
            ModelLoadError: If the model is not the network :attr:`config` describes (its
                weights do not fit :func:`~emotionnet.models.build_model`'s).

        Example:
            >>> import tempfile
            >>> from emotionnet.models import ModelConfig, build_model
            >>> recognizer = EmotionRecognizer(build_model(ModelConfig()), device="cpu")
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     saved = recognizer.save_pretrained(folder, evaluation={"accuracy": 0.7})
            ...     sorted(p.name for p in saved.iterdir())
            ['README.md', 'config.json', 'model.onnx', 'model.safetensors']
        """
        self._require_torch_weights("save")
        folder = Path(save_directory)
        self._network().save_pretrained(
            folder, dtype=dtype, **self._save_arguments(evaluation, name)
        )
        return folder

    def push_to_hub(
        self,
        repo_id: str,
        *,
        token: str | None = None,
        private: bool | None = None,
        revision: str | None = None,
        commit_message: str = "Upload emotionnet model",
        create_pr: bool = False,
        evaluation: EvaluationReport | Mapping[str, Any] | None = None,
        dtype: torch.dtype | str = "float32",
    ) -> str:
        """Upload the model to the Hugging Face Hub, in the :meth:`save_pretrained` layout.

        The repository is created if needed (huggingface_hub's
        :meth:`~huggingface_hub.ModelHubMixin.push_to_hub`, through
        :meth:`EmotionNet.push_to_hub <emotionnet.models.EmotionNet.push_to_hub>`).

        Args:
            repo_id: ``"org/name"``.
            token: Hub token with write access (default: the logged-in one).
            private: Create the repository as private (only when it does not exist yet).
            revision: Branch to push to.
            commit_message: Message of the upload commit.
            create_pr: Open a pull request instead of pushing directly.
            evaluation: As for :meth:`save_pretrained`.
            dtype: As for :meth:`save_pretrained`.

        Returns:
            The URL of the commit (or pull request).
        """
        self._require_torch_weights("upload")  # before the repository is created
        return self._network().push_to_hub(
            repo_id,
            dtype=dtype,
            token=token,
            private=private,
            branch=revision,
            commit_message=commit_message,
            create_pr=create_pr,
            **self._save_arguments(evaluation, None),
        )

    def _network(self) -> EmotionNet:
        """The model as the :class:`~emotionnet.EmotionNet` its config describes (to save)."""
        from .models import EmotionNet, build_model, load_weights

        model = self.model
        if isinstance(model, EmotionNet) and model.config == self.config:
            return model
        # Another config (labels, temperatures) or another module: the weights must fit it.
        network = build_model(self.config)
        load_weights(network, model.state_dict(), source=f"the {type(model).__name__} to save")
        return network

    def _save_arguments(self, evaluation: object, name: str | None) -> dict[str, Any]:
        from .models.card import _save_arguments

        return _save_arguments(
            self.config, evaluation=evaluation, metadata=self.metadata, name=name
        )

    # ---------------------------------------------------------------------------------------
    # Prediction
    # ---------------------------------------------------------------------------------------

    def _probabilities(
        self, faces: npt.NDArray[np.uint8], *, batch_size: int, tta: bool | str
    ) -> npt.NDArray[np.floating[Any]]:
        """The calibrated probabilities of a ``uint8`` face batch: onnxruntime, or PyTorch.

        The logits (with TTA, the log of the view-averaged probabilities) are divided by the
        config's temperature for the view set (:attr:`ModelConfig.temperatures
        <emotionnet.models.ModelConfig.temperatures>`; 1.0 when it has none), which never
        changes the most probable label.
        """
        mode = resolve_tta(tta)
        onnx_model = self._onnx_model()
        if onnx_model is not None:
            logits = onnx_model.predict_logits(
                faces, tta=mode, batch_size=batch_size, mean=self.config.mean, std=self.config.std
            )
        else:
            from .inference import predict_logits

            logits = predict_logits(
                self.model,
                faces,
                batch_size=batch_size,
                tta=mode,
                mean=self.config.mean,
                std=self.config.std,
            ).numpy()
        temperature = self.config.temperature_for(mode)
        if temperature == 1.0:
            return softmax(logits)
        return apply_temperature(logits, temperature)

    def _classify(
        self, faces: npt.NDArray[np.uint8], *, batch_size: int, tta: bool | str
    ) -> list[Prediction]:
        if faces.shape[0] == 0:
            return []
        proba = self._probabilities(faces, batch_size=batch_size, tta=tta)
        labels = self.config.labels
        if proba.shape[1] != len(labels):
            raise InvalidArgumentError(
                f"The model outputs {proba.shape[1]} classes but its config names "
                f"{len(labels)} labels; pass the config the model was trained with."
            )
        finite = np.isfinite(proba).all(axis=1)
        if not bool(finite.all()):
            bad = np.flatnonzero(~finite).tolist()
            shown = ", ".join(str(i) for i in bad[:8]) + (" ..." if len(bad) > 8 else "")
            raise ModelLoadError(
                f"The model gave NaN or infinite probabilities for {len(bad)} of "
                f"{proba.shape[0]} faces (positions {shown} of this batch), so it cannot be "
                "trusted. Its weights or its config's mean/std are broken (NaN, infinite or "
                "overflowing in this dtype); load a healthy model, e.g. with from_pretrained, "
                "which refuses such weights."
            )
        rows = proba.astype(np.float64)
        indices = rows.argmax(axis=1)
        return [
            Prediction(
                label=labels[int(i)],
                index=int(i),
                score=float(row[i]),
                probabilities=dict(zip(labels, row.tolist(), strict=True)),
            )
            for row, i in zip(rows, indices, strict=True)
        ]

    def _images(self, images: ImageInput | _ImageList, batch_size: int) -> list[ImageInput]:
        """The single images of a call, after checking ``batch_size``."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgumentError(
                f"batch_size must be a positive integer, got {batch_size!r}."
            )
        return unbatch(images, size=self.config.input_size)[0]

    def predict(
        self,
        images: ImageInput | _ImageList,
        *,
        batch_size: int = 64,
        tta: bool | str | None = None,
    ) -> list[Prediction]:
        """Predict the emotion of face images, one :class:`Prediction` per image, in order.

        Always a list, as ``ultralytics``' ``model.predict`` returns: one image is a batch of
        one (``recognizer.predict("face.jpg")[0]``). To find the faces in photos first, use
        :meth:`predict_faces`.

        Each image is taken to be one face, converted to grayscale and resized to the model
        input as a whole (no crop), exactly as the FER2013 dataset is. A photo passed here is
        scored whole, background and all, so one rule warns about it: when OpenCV is
        installed, the first image of the call whose shorter side is at least twice the model
        input (96 px) is searched with OpenCV's Haar cascade (on a copy at most 160 px long),
        and a face found there that is less than a third of the image's shorter side gives a
        :class:`~emotionnet.errors.NotAFaceCropWarning` (the prediction is returned all the
        same). FER2013-sized crops and ``uint8`` face batches are never searched.

        Args:
            images: An image or a batch of images: paths, bytes, PIL images (any mode),
                numpy arrays (``H x W``, ``H x W x 1/3/4``; ``uint8``, ``uint16``, ``bool``
                or ``float`` in ``[0, 1]``), tensors (``H x W``, ``C x H x W``); a batch is a
                ``list``/``tuple`` of those, a numpy ``N x H x W x C`` or a tensor
                ``N x C x H x W`` (see :mod:`emotionnet.images`). A 3-D tensor is one image;
                ``3 x S x S`` and ``4 x S x S`` (``S`` the input size or 48) are refused as
                ambiguous: pass faces as ``images.unsqueeze(1)`` or a list, one colour image
                as ``image.unsqueeze(0)``.
            batch_size: Faces per forward pass; images are also decoded this many at a time.
            tta: Test-time augmentation, as in :func:`emotionnet.metrics.evaluate`:
                ``False``/``"none"``, ``True``/``"flip"``, ``"flip_shift"``, ``"flip_crop"``
                or ``"ten_crop"``; ``None`` uses :attr:`tta` (:data:`DEFAULT_TTA` unless
                set).

        Returns:
            One :class:`Prediction` per image, in the order given.

        Raises:
            ImageNotFoundError: If a path does not exist.
            CorruptImageError: If a file or bytes are not a decodable image.
            InvalidImageError: If an image is empty, too large, has NaN/inf or out-of-range
                values, or a shape that is not an image or is ambiguous (see ``images``).
            UnsupportedInputError: If an input has an unsupported type or a PIL mode that
                cannot be converted to grayscale.
            InvalidArgumentError: If ``batch_size`` or ``tta`` is invalid.
            ModelLoadError: If the model gives NaN or infinite probabilities (broken
                weights): an error, never a prediction.

        Warns:
            NotAFaceCropWarning: If an image looks like a photo with a smaller face in it
                (the rule above).

        Example:
            >>> import torch
            >>> from emotionnet.models import ModelConfig, build_model
            >>> recognizer = EmotionRecognizer(build_model(ModelConfig()), device="cpu")
            >>> batch = torch.zeros(4, 1, 48, 48, dtype=torch.uint8)
            >>> [p.index in range(7) for p in recognizer.predict(batch, tta=True)]
            [True, True, True, True]
            >>> (prediction,) = recognizer.predict(batch[0])  # one image: a list of one
            >>> prediction.label in recognizer.labels
            True
        """
        items = self._images(images, batch_size)
        tta = self.tta if tta is None else tta
        predictions: list[Prediction] = []
        # A photo passed as a face is scored whole: say so (NotAFaceCropWarning's rule).
        check = FaceCropCheck(self.config.input_size)
        for start in range(0, len(items), batch_size):
            chunk = check.face_batch(items[start : start + batch_size])
            if check.warning is not None:
                warnings.warn(check.warning, stacklevel=2)
                check.warning = None
            predictions.extend(self._classify(chunk, batch_size=batch_size, tta=tta))
        return predictions

    def predict_faces(
        self,
        images: ImageInput | _ImageList,
        *,
        batch_size: int = 64,
        tta: bool | str | None = None,
        min_face_size: int | None = None,
        min_face_confidence: float | None = None,
        max_faces: int | None = None,
    ) -> list[list[FaceEmotion]]:
        """Find the faces in photos and predict the emotion of each: one list per image.

        Always a list of lists, in the order of the images: one image is a batch of one
        (``recognizer.predict_faces("photo.jpg")[0]`` are its faces). The faces are detected
        (:attr:`face_detector`), filtered (``min_face_size``, ``min_face_confidence``,
        ``max_faces``), cropped square with :attr:`face_margin`, and returned largest first;
        a photo without faces gives ``[]``. Boxes are in the photo's pixels.

        Args:
            images: An image or a batch of images, as for :meth:`predict`.
            batch_size: Faces per forward pass.
            tta: Test-time augmentation, as for :meth:`predict`.
            min_face_size: Ignore faces narrower or shorter than this many photo pixels;
                ``None`` uses :attr:`min_face_size`.
            min_face_confidence: Ignore faces the detector is less confident about
                (:attr:`FaceEmotion.confidence`); ``None`` uses :attr:`min_face_confidence`.
            max_faces: Keep at most this many faces per image, the largest; ``None`` uses
                :attr:`max_faces`.

        Returns:
            One list of :class:`FaceEmotion` per image, largest face first.

        Raises:
            ImageNotFoundError: If a path does not exist.
            CorruptImageError: If a file or bytes are not a decodable image.
            InvalidImageError: If an image is empty, too large, has NaN/inf or out-of-range
                values, or a shape that is not an image or is ambiguous.
            UnsupportedInputError: If an input has an unsupported type or a PIL mode that
                cannot be converted to grayscale.
            InvalidArgumentError: If ``batch_size``, ``tta`` or a face filter is invalid
                (a negative size, a NaN confidence, ``max_faces`` < 1), or
                :attr:`face_detector` is an unknown name.
            MissingDependencyError: If the face detector's library is not installed
                (OpenCV: ``face`` extra; dlib: ``dlib`` extra).
            ModelLoadError: If the model gives NaN or infinite probabilities (broken
                weights): an error, never a prediction.

        Example:
            >>> import torch
            >>> from emotionnet.models import ModelConfig, build_model
            >>> recognizer = EmotionRecognizer(build_model(ModelConfig()), device="cpu")
            >>> black = torch.zeros(1, 48, 48, dtype=torch.uint8)
            >>> recognizer.predict_faces(black)  # no face in a black square
            [[]]
            >>> recognizer.face_detector = lambda gray: [(0, 0, 20, 20, 0.3), (8, 8, 40, 40, 2.0)]
            >>> (found,) = recognizer.predict_faces(black)
            >>> [(f.box, f.confidence) for f in found]
            [((8, 8, 40, 40), 2.0), ((0, 0, 20, 20), 0.3)]
            >>> [[f.box for f in faces] for faces in recognizer.predict_faces(
            ...     [black, black], min_face_confidence=1)]
            [[(8, 8, 40, 40)], [(8, 8, 40, 40)]]
        """
        min_face_size = self.min_face_size if min_face_size is None else min_face_size
        if min_face_confidence is None:
            min_face_confidence = self.min_face_confidence
        max_faces = self.max_faces if max_faces is None else max_faces
        _check_face_filters(min_face_size, min_face_confidence, max_faces)
        items = self._images(images, batch_size)
        detector = get_detector(self.face_detector)
        size = self.config.input_size
        found_per_image: list[list[tuple[Box, float | None]]] = []
        crops: list[np.ndarray[Any, np.dtype[np.uint8]]] = []
        for item in items:
            # Crops come from the grayscale photo: conversion is per pixel, so this equals
            # converting the colour crop, without converting the photo twice.
            photo = load_image(item)
            gray = to_grayscale(photo)
            # Boxes are reported in the file's pixels (a very large file is reduced when
            # decoded); the crops come from the decoded image.
            found = _find(
                gray,
                original_size(photo),
                detector,
                min_face_size=min_face_size,
                min_confidence=min_face_confidence,
                max_faces=max_faces,
            )
            found_per_image.append([(face.box, face.confidence) for _, face in found])
            crops.extend(
                to_face_array(crop_face(gray, box, margin=self.face_margin), size)
                for box, _ in found
            )
        stacked = np.stack(crops) if crops else np.empty((0, size, size), dtype=np.uint8)
        tta = self.tta if tta is None else tta
        predictions = iter(self._classify(stacked, batch_size=batch_size, tta=tta))
        return [
            [FaceEmotion(box, next(predictions), confidence) for box, confidence in found]
            for found in found_per_image
        ]

    def evaluate(
        self,
        data: object,
        *,
        batch_size: int = 256,
        tta: bool | str | None = None,
        progress: bool = False,
    ) -> EvaluationReport:
        """Evaluate the model on a labelled data set with its own normalisation and labels.

        The same as :func:`emotionnet.metrics.evaluate` with this model's ``mean``, ``std``,
        ``labels`` and calibration temperature for the view set (and backend), so the
        report describes the probabilities :meth:`predict` gives.

        Args:
            data: A :class:`~emotionnet.FER2013` split, an ``(images, targets)`` pair, or a
                data set yielding ``(image, label)``.
            batch_size: Images per forward pass.
            tta: Test-time augmentation mode; ``None`` uses :attr:`tta`, as :meth:`predict`
                does, so the report describes the predictions the recognizer makes.
            progress: Show a progress bar.

        Returns:
            The :class:`~emotionnet.metrics.EvaluationReport`.

        Example:
            >>> import torch
            >>> from emotionnet.models import ModelConfig, build_model
            >>> recognizer = EmotionRecognizer(build_model(ModelConfig()), device="cpu")
            >>> images = torch.zeros(7, 48, 48, dtype=torch.uint8)
            >>> recognizer.evaluate((images, torch.arange(7))).num_samples
            7
        """
        from .metrics import evaluate

        mode = resolve_tta(self.tta if tta is None else tta)
        return evaluate(
            self._runner,
            data,
            batch_size=batch_size,
            tta=mode,
            temperature=self.config.temperatures.get(mode),
            mean=self.config.mean,
            std=self.config.std,
            labels=self.config.labels,
            progress=progress,
        )
