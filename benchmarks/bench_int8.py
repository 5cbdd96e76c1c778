"""Does a statically quantized (int8) bundled model pay? Accuracy on PublicTest and speed.

Quantizes the bundled ``model.onnx`` with onnxruntime's static quantization (QDQ, per-channel
int8 weights, uint8 activations), calibrated on training faces (never on PublicTest), then
measures, side by side with the float model: PublicTest accuracy for every view set, and
the latency of one face and the throughput of a batch. The int8 model is adopted only if it
loses at most 0.2 points with the default view set (the slim-inference issue); the result is
recorded on the docs' Performance page.

    python benchmarks/bench_int8.py --data ../shared/data/fer2013 --calibration 1000
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from emotionnet import FER2013, OnnxModel
from emotionnet.models.hub import bundled_model_dir, read_config
from emotionnet.preprocessing import normalize


class _Faces(CalibrationDataReader):  # type: ignore[misc]
    def __init__(self, faces: np.ndarray, mean: float, std: float, batch: int = 32) -> None:
        self._batches = iter(
            [normalize(faces[i : i + batch], mean, std) for i in range(0, len(faces), batch)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"input": batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fer2013"))
    parser.add_argument("--calibration", type=int, default=1000, help="training faces")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--views", nargs="+", default=["none", "flip", "flip_crop", "ten_crop"])
    args = parser.parse_args()

    folder = bundled_model_dir()
    config, _ = read_config(folder / "config.json")
    mean, std = float(config.mean[0]), float(config.std[0])
    train = FER2013(args.data, "train").images.numpy()
    rng = np.random.default_rng(0)
    calibration = train[rng.choice(len(train), args.calibration, replace=False)]
    public = FER2013(args.data, "public_test")
    faces, targets = public.images.numpy(), public.targets.numpy()

    with tempfile.TemporaryDirectory() as work:
        prepared = Path(work) / "prepared.onnx"
        quantized = Path(work) / "model.int8.onnx"
        quant_pre_process(str(folder / "model.onnx"), str(prepared))
        start = time.perf_counter()
        quantize_static(
            str(prepared),
            str(quantized),
            _Faces(calibration, mean, std),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )
        print(
            f"quantized in {time.perf_counter() - start:.1f} s, "
            f"{os.path.getsize(quantized) / 1e6:.1f} MB"
        )
        models = {
            "float32": OnnxModel(folder / "model.onnx", config=config, num_threads=args.threads),
            "int8": OnnxModel(quantized, config=config, num_threads=args.threads),
        }
        print(f"{'view set':10} {'float32':>9} {'int8':>9} {'change':>8}  (PublicTest accuracy)")
        for view in args.views:
            accuracy = {
                name: float((model.predict_proba(faces, tta=view).argmax(1) == targets).mean())
                for name, model in models.items()
            }
            change = 100 * (accuracy["int8"] - accuracy["float32"])
            print(f"{view:10} {accuracy['float32']:9.2%} {accuracy['int8']:9.2%} {change:+7.2f}")
        face = faces[:1]
        batch = faces[:512]
        for model in models.values():
            model.predict_proba(face)
        timings: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(100):
            for name, model in models.items():
                start = time.perf_counter()
                model.predict_proba(face)
                timings[name].append(time.perf_counter() - start)
        for name, model in models.items():
            start = time.perf_counter()
            model.predict_proba(batch)
            rate = len(batch) / (time.perf_counter() - start)
            print(
                f"{name:8} one face {1000 * statistics.median(timings[name]):6.2f} ms, "
                f"batch {rate:7.0f} faces/s"
            )
        print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
