"""ONNX export of the classifier, and an onnxruntime-backed classifier module.

:func:`export_onnx` writes the network as an ONNX graph with a dynamic batch axis. Like the
PyTorch model, the graph takes the *normalised* ``float32`` batch ``N x 1 x 48 x 48`` (see
:func:`emotionnet.preprocessing.normalize`) and returns logits ``N x 7``; the model config
(input size, mean/std, label names) is stored in the graph's metadata under
``emotionnet.config`` so another runtime knows how to feed it.

:class:`OnnxClassifier` runs such a graph with onnxruntime behind the ``torch.nn.Module``
interface, so everything that takes a model (:func:`emotionnet.metrics.evaluate`,
:class:`~emotionnet.EmotionRecognizer`) takes it too. The usual ways to get one are
``EmotionRecognizer.from_pretrained(backend="onnx")`` and, for a file :func:`export_onnx`
wrote, ``EmotionRecognizer.from_pretrained("model.onnx")``.

Export needs the ``torch`` extra (torch and the ``onnx`` package); running a graph needs only
onnxruntime, which the base install has (:class:`emotionnet.runtime.OnnxModel` runs one
without torch). The export uses PyTorch's
TorchScript-based exporter (``dynamo=False``), which needs neither ``onnxscript`` nor
``torch.export`` and exports a ResNet18 in about a second.

Example:
    >>> import tempfile, torch
    >>> from emotionnet.models import ModelConfig, build_model
    >>> model = build_model(ModelConfig(stem="imagenet")).eval()
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = export_onnx(model, f"{folder}/model.onnx")
    ...     onnx_model = OnnxClassifier(path)
    ...     x = torch.randn(3, 1, 48, 48)
    ...     bool(torch.allclose(onnx_model(x), model(x), atol=1e-4))
    True
"""

from __future__ import annotations

import copy
import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import torch
from torch import nn

from .._atomic import atomic_write_bytes
from .._checks import check_int
from .._optional import require
from ..errors import (
    InvalidArgumentError,
    UnsupportedInputError,
)
from ..preprocessing import IMAGE_SIZE
from ..runtime import CONFIG_METADATA_KEY, WEIGHTS_SHA256_METADATA_KEY, OnnxModel
from .config import ModelConfig

__all__ = [
    "DEFAULT_OPSET",
    "OnnxClassifier",
    "export_onnx",
    "onnx_bytes",
]

DEFAULT_OPSET: Final[int] = 17
"""ONNX opset of exported graphs; onnxruntime >= 1.14 runs it."""

METADATA_KEY: Final[str] = CONFIG_METADATA_KEY
_INPUT_NAME: Final[str] = "input"
_OUTPUT_NAME: Final[str] = "logits"


def _model_and_config(
    model: nn.Module, config: ModelConfig | None
) -> tuple[nn.Module, ModelConfig | None]:
    """The PyTorch model to export and its config (an ``EmotionNet``'s own by default)."""
    if isinstance(model, OnnxClassifier):
        raise InvalidArgumentError(
            "This model already runs on onnxruntime; export the PyTorch model instead "
            "(EmotionRecognizer.from_pretrained(..., backend='torch'))."
        )
    if not isinstance(model, nn.Module):
        raise UnsupportedInputError(
            f"export_onnx expects a torch.nn.Module and its ModelConfig, got "
            f"{type(model).__name__}; for an EmotionRecognizer pass recognizer.model, "
            "config=recognizer.config."
        )
    if config is None:
        own = getattr(model, "config", None)
        config = own if isinstance(own, ModelConfig) else None
    return model, config


def _input_channels(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return 1


def _highest_opset() -> int:
    """The highest opset torch.onnx's TorchScript exporter (dynamo=False) writes."""
    # A PyTorch that moved its private constants gets the default, which is known to work.
    constants = getattr(torch.onnx, "_constants", None)
    return int(getattr(constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", DEFAULT_OPSET))


def onnx_bytes(
    model: nn.Module,
    *,
    config: ModelConfig | None = None,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    weights_sha256: str | None = None,
) -> bytes:
    """Export the classifier to an in-memory ONNX model.

    Args:
        model: A PyTorch model taking normalised ``N x C x H x W`` input (for an
            :class:`~emotionnet.EmotionRecognizer`: ``recognizer.model``).
        config: The model's config, for the input shape and the metadata (for a recognizer:
            ``recognizer.config``); defaults to ``model.config`` for an
            :class:`~emotionnet.EmotionNet`. For a bare model without one, the graph carries
            no config and takes ``C x 48 x 48`` input (``C`` from the first convolution).
        opset: ONNX opset version.
        dynamic_batch: Make the batch axis dynamic (``"batch"``); ``False`` fixes it to 1.
        weights_sha256: The SHA-256 of the ``model.safetensors`` the model was loaded from,
            stored in the metadata (``emotionnet.weights_sha256``) so that a model folder
            can tell whether its ``model.onnx`` still matches its weights.

    Returns:
        The serialized ONNX model.

    Raises:
        MissingDependencyError: If the ``onnx`` package is not installed.
        UnsupportedInputError: If ``model`` is not a ``torch.nn.Module`` (a recognizer, say).
        InvalidArgumentError: If ``opset`` is not one the exporter writes (9 to 20 with
            PyTorch 2.x), or the model is already an ONNX graph (no PyTorch weights).

    Example:
        >>> from emotionnet.models import ModelConfig, build_model
        >>> len(onnx_bytes(build_model(ModelConfig(stem="imagenet")))) > 40_000_000
        True
    """
    model, config = _model_and_config(model, config)
    highest = _highest_opset()
    check_int(
        "opset",
        opset,
        minimum=9,
        maximum=highest,
        hint=f"{highest} is the highest this PyTorch's exporter writes, the default "
        f"{DEFAULT_OPSET} runs everywhere",
    )
    onnx = require("onnx", "ONNX export")
    # Export a float32 CPU copy in eval mode: the caller's model keeps its device and mode.
    exported = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    if config is not None:
        dummy = torch.zeros(1, config.in_chans, config.input_size, config.input_size)
    else:
        dummy = torch.zeros(1, _input_channels(model), IMAGE_SIZE, IMAGE_SIZE)
    buffer = io.BytesIO()
    dynamic_axes = (
        {_INPUT_NAME: {0: "batch"}, _OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    )
    with warnings.catch_warnings():
        # dynamo=False is deliberate (no onnxscript dependency); its deprecation notice is noise.
        warnings.filterwarnings("ignore", message=".*TorchScript-based ONNX export.*")
        torch.onnx.export(
            exported,
            (dummy,),
            buffer,  # type: ignore[arg-type]  # file-like objects are accepted
            dynamo=False,
            opset_version=opset,
            input_names=[_INPUT_NAME],
            output_names=[_OUTPUT_NAME],
            dynamic_axes=dynamic_axes,
        )
    graph = onnx.load_from_string(buffer.getvalue())
    entries = {}
    if config is not None:
        entries[CONFIG_METADATA_KEY] = json.dumps(config.to_dict())
    if weights_sha256 is not None:
        entries[WEIGHTS_SHA256_METADATA_KEY] = weights_sha256
    for key, value in entries.items():
        entry = graph.metadata_props.add()
        entry.key = key
        entry.value = value
    graph.producer_name = "emotionnet"
    data: bytes = graph.SerializeToString()
    return data


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    config: ModelConfig | None = None,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    weights_sha256: str | None = None,
) -> Path:
    """Export the classifier to an ONNX file with a dynamic batch axis.

    The graph has one input ``"input"`` (normalised ``float32`` ``batch x 1 x 48 x 48``) and
    one output ``"logits"`` (``batch x 7``); the model config is stored as JSON in the
    metadata entry ``emotionnet.config``. Apply a softmax to the logits for probabilities.

    Args:
        model: A PyTorch model (for an :class:`~emotionnet.EmotionRecognizer`:
            ``recognizer.model``, with ``config=recognizer.config``).
        path: Where to write the ``.onnx`` file (parent folders are created).
        config: The model's config (see :func:`onnx_bytes`); ``model.config`` by default.
        opset: ONNX opset version.
        dynamic_batch: Make the batch axis dynamic.
        weights_sha256: See :func:`onnx_bytes`.

    Returns:
        The path written.

    Raises:
        MissingDependencyError: If the ``onnx`` package is not installed.
        UnsupportedInputError: If ``model`` is not a ``torch.nn.Module``.
        InvalidArgumentError: See :func:`onnx_bytes`.

    Example:
        >>> import tempfile
        >>> from emotionnet.models import ModelConfig, build_model
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     export_onnx(build_model(ModelConfig(stem="imagenet")), f"{folder}/m.onnx").name
        'm.onnx'
    """
    data = onnx_bytes(
        model,
        config=config,
        opset=opset,
        dynamic_batch=dynamic_batch,
        weights_sha256=weights_sha256,
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(target, data)


class OnnxClassifier(nn.Module):
    """An ONNX classifier run by onnxruntime, usable wherever a PyTorch model is.

    The ``torch.nn.Module`` face of :class:`emotionnet.runtime.OnnxModel` (which the
    inference install uses without torch): ``forward`` takes the normalised ``float`` batch
    and returns ``float32`` logits on the input's device (the computation itself runs where
    the onnxruntime providers run, by default the CPU). It has no parameters and cannot be
    trained.

    Args:
        source: Path of an ``.onnx`` file, the serialized model as ``bytes``, or an
            :class:`~emotionnet.runtime.OnnxModel`.
        providers: onnxruntime execution providers, in order of preference; ``None`` uses
            ``["CPUExecutionProvider"]``.
        threads: Threads for one inference (onnxruntime's ``intra_op_num_threads``);
            ``None``: ``OMP_NUM_THREADS``, else one per physical core.

    Raises:
        MissingDependencyError: If onnxruntime is not installed.
        WeightsNotFoundError: If the file does not exist.
        ModelLoadError: If the graph is refused (see :mod:`emotionnet._onnx_check`),
            onnxruntime cannot load it, or its ``emotionnet.config`` metadata is not a valid
            model config.

    Attributes:
        config: The :class:`~emotionnet.models.ModelConfig` stored in the graph by
            :func:`export_onnx`, or ``None`` for graphs from elsewhere.
        onnx_model: The :class:`~emotionnet.runtime.OnnxModel` that runs it.

    Example:
        >>> import torch
        >>> from emotionnet.models import ModelConfig, build_model
        >>> config = ModelConfig(stem="imagenet")
        >>> classifier = OnnxClassifier(onnx_bytes(build_model(config), config=config))
        >>> classifier(torch.zeros(4, 1, 48, 48)).shape, classifier.config.stem
        (torch.Size([4, 7]), 'imagenet')
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | bytes | OnnxModel,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(source, OnnxModel):
            self.onnx_model = source
        else:
            self.onnx_model = OnnxModel(source, providers=providers, num_threads=threads)
        self.config: ModelConfig | None = self.onnx_model.config

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses."""
        return self.onnx_model.providers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the graph on a normalised batch.

        Args:
            x: ``float`` tensor ``N x C x H x W`` on any device.

        Returns:
            ``float32`` logits ``N x num_classes`` on ``x``'s device.
        """
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.onnx_model(array)).to(x.device)

    def extra_repr(self) -> str:  # noqa: D102 - nn.Module's repr hook
        return f"providers={self.providers}"
