"""int8: a statically quantized copy of a model folder's ONNX graph.

:func:`quantize_folder` writes ``model.int8.onnx`` next to a folder's ``model.onnx``:
onnxruntime's static quantization (QDQ format, per-channel int8 weights, uint8 activations),
calibrated on faces you give it (training faces, never the test set), with the same metadata
as the float graph (the config and the SHA-256 of ``model.safetensors``) and an
``emotionnet.precision`` entry. ``EmotionRecognizer.from_pretrained(..., precision="int8")``
(``--precision int8``) runs it.

On the bundled model it changes PublicTest accuracy by at most a tenth of a point on every view
set and predicts about three to four times faster on a CPU with int8 dot products (see the
Performance page, ``benchmarks/bench_int8.py``). Quantizing needs the ``onnx`` package (the
``torch`` extra); running the result needs only onnxruntime.

Example:
    >>> import numpy as np, tempfile, shutil
    >>> from emotionnet.models.hub import bundled_model_dir
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     for name in ("config.json", "model.onnx", "model.safetensors"):
    ...         _ = shutil.copy(bundled_model_dir() / name, folder)
    ...     faces = np.random.default_rng(0).integers(0, 256, (64, 48, 48), dtype=np.uint8)
    ...     quantize_folder(folder, faces).name  # doctest: +SKIP
    'model.int8.onnx'
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .._atomic import atomic_write_bytes
from .._optional import require
from ..errors import InvalidArgumentError, WeightsNotFoundError
from ..preprocessing import as_uint8_array, normalize
from ..runtime import INT8_ONNX_NAME, ONNX_NAME, PRECISION_METADATA_KEY
from .hub import CONFIG_NAME, read_config

__all__ = ["quantize_folder"]

_CALIBRATION_BATCH: Final[int] = 32


def quantize_folder(
    folder: str | os.PathLike[str], faces: npt.NDArray[np.uint8], *, per_channel: bool = True
) -> Path:
    """Write ``model.int8.onnx`` into a model folder, calibrated on ``faces``.

    Args:
        folder: A model folder holding ``config.json`` and ``model.onnx``.
        faces: ``uint8`` faces ``N x S x S`` (``S`` the model's input size) to calibrate the
            activation ranges on: a few hundred training faces, never test faces.
        per_channel: Quantize each convolution filter with its own scale (more accurate).

    Returns:
        The path of ``model.int8.onnx``.

    Raises:
        WeightsNotFoundError: If the folder has no ``model.onnx``.
        InvalidArgumentError: If ``faces`` is empty or not ``uint8`` faces of the input size.
        MissingDependencyError: If the ``onnx`` package is missing (the ``torch`` extra).
    """
    source = Path(folder)
    if not (source / ONNX_NAME).is_file():
        raise WeightsNotFoundError(
            f"{str(source)!r} has no {ONNX_NAME} to quantize; save the model folder with "
            "save_pretrained (which exports it) first."
        )
    config, _ = read_config(source / CONFIG_NAME)
    batch = as_uint8_array(faces, "The calibration faces", allow_empty=False)
    if batch.shape[1:] != (config.input_size, config.input_size):
        raise InvalidArgumentError(
            f"The calibration faces are {batch.shape[1]}x{batch.shape[2]} but the model takes "
            f"{config.input_size}x{config.input_size}; pass faces of the model's input size "
            "(emotionnet.to_face_array resizes them)."
        )
    onnx = require("onnx", "Quantizing a model")
    quantization = require("onnxruntime.quantization", "Quantizing a model")
    mean, std = config.mean, config.std

    class _Faces(quantization.CalibrationDataReader):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self._batches = iter(
                normalize(batch[start : start + _CALIBRATION_BATCH], mean, std)
                for start in range(0, len(batch), _CALIBRATION_BATCH)
            )

        def get_next(self) -> dict[str, Any] | None:
            chunk = next(self._batches, None)
            return None if chunk is None else {"input": chunk}

    with tempfile.TemporaryDirectory(prefix="emotionnet-int8-") as work:
        prepared, quantized = Path(work) / "prepared.onnx", Path(work) / INT8_ONNX_NAME
        quantization.shape_inference.quant_pre_process(str(source / ONNX_NAME), str(prepared))
        quantization.quantize_static(
            str(prepared),
            str(quantized),
            _Faces(),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=per_channel,
            weight_type=quantization.QuantType.QInt8,
            activation_type=quantization.QuantType.QUInt8,
        )
        graph = onnx.load(str(quantized))
    metadata = {
        entry.key: entry.value for entry in onnx.load(str(source / ONNX_NAME)).metadata_props
    }
    metadata[PRECISION_METADATA_KEY] = "int8"
    del graph.metadata_props[:]
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    graph.producer_name = "emotionnet"
    return atomic_write_bytes(source / INT8_ONNX_NAME, graph.SerializeToString())
