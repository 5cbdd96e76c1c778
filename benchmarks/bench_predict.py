"""Prediction speed per stem: bare forward vs predict, eager PyTorch vs onnxruntime.

For every stem and backend, side by side in one run (measurements interleaved, so a change
in machine load hits both sides alike):

* one 48x48 face, without test-time augmentation (``tta="none"``): p50 latency of the bare
  model forward (normalised input ready) and of ``predict`` (uint8 array in, Prediction out),
  and predict's overhead in percent;
* 256 faces: throughput of the bare forward (one batch of 256) and of ``predict`` on the same
  faces (``batch_size=256``), and their ratio.

The backends are eager PyTorch (``torch``) and onnxruntime on the exported graph (``onnx``).
Random weights: speed does not depend on them (pass --model DIR to time a saved model).

    python benchmarks/bench_predict.py                       # 2 threads, every stem
    python benchmarks/bench_predict.py --threads 1 --stems middle --repeat 100
    python benchmarks/bench_predict.py --json results.json

With --tta, a second table times ``predict`` per test-time augmentation mode, side by side
(one face p50, and faces/s for the batch), with each mode's cost relative to a single view:

    python benchmarks/bench_predict.py --model src/emotionnet/weights/default \\
        --tta none flip ten_crop

Targets (issue 4): predict overhead <= 20% for one face, batched predict >= 90% of the bare
forward's throughput; the default model <= 20 ms per face and >= 60 faces/s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotionnet import EmotionRecognizer
from emotionnet.models import STEMS, ModelConfig, build_model
from emotionnet.models.onnx import OnnxClassifier, onnx_bytes
from emotionnet.preprocessing import normalize
from emotionnet.tta import TTA_MODES


def interleaved(
    first: Callable[[], object], second: Callable[[], object], repeat: int, warmup: int = 3
) -> tuple[list[float], list[float]]:
    for _ in range(warmup):
        first()
        second()
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        first()
        a.append(time.perf_counter() - start)
        start = time.perf_counter()
        second()
        b.append(time.perf_counter() - start)
    return a, b


def measure(
    recognizer: EmotionRecognizer, runner: torch.nn.Module, args: argparse.Namespace
) -> dict[str, float]:
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (args.batch, 48, 48), dtype=np.uint8)
    config = recognizer.config
    one = normalize(faces[:1], config.mean, config.std)
    batch = normalize(faces, config.mean, config.std)

    def bare_one() -> object:
        with torch.inference_mode():
            return runner(one)

    def bare_batch() -> object:
        with torch.inference_mode():
            return runner(batch)

    single = faces[0]
    stacked = torch.from_numpy(faces)[:, None]  # N x 1 x 48 x 48 uint8 batch
    bare1, pred1 = interleaved(
        bare_one, lambda: recognizer.predict(single, tta="none"), args.repeat
    )
    bareb, predb = interleaved(
        bare_batch,
        lambda: recognizer.predict(stacked, batch_size=args.batch, tta="none"),
        args.batch_repeat,
        warmup=1,
    )
    bare_ms = statistics.median(bare1) * 1e3
    pred_ms = statistics.median(pred1) * 1e3
    bare_fps = args.batch / statistics.median(bareb)
    pred_fps = args.batch / statistics.median(predb)
    return {
        "bare_p50_ms": bare_ms,
        "predict_p50_ms": pred_ms,
        "overhead_pct": 100.0 * (pred_ms - bare_ms) / bare_ms,
        "bare_faces_per_s": bare_fps,
        "predict_faces_per_s": pred_fps,
        "throughput_ratio": pred_fps / bare_fps,
    }


def measure_tta(
    recognizer: EmotionRecognizer, modes: list[str], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """p50 ms of predict on one face and faces/s on a batch, per TTA mode, interleaved."""
    faces = np.random.default_rng(0).integers(0, 256, (args.batch, 48, 48), dtype=np.uint8)
    stacked = torch.from_numpy(faces)[:, None]
    one: dict[str, list[float]] = {mode: [] for mode in modes}
    many: dict[str, list[float]] = {mode: [] for mode in modes}
    for mode in modes:  # warm-up
        recognizer.predict(faces[0], tta=mode)
    for run in range(args.repeat):
        for mode in modes:
            start = time.perf_counter()
            recognizer.predict(faces[0], tta=mode)
            one[mode].append(time.perf_counter() - start)
            if run < args.batch_repeat:
                start = time.perf_counter()
                recognizer.predict(stacked, batch_size=args.batch, tta=mode)
                many[mode].append(time.perf_counter() - start)
    base = statistics.median(one[modes[0]])
    return [
        {
            "tta": mode,
            "predict_p50_ms": statistics.median(one[mode]) * 1e3,
            "relative_cost": statistics.median(one[mode]) / base,
            "predict_faces_per_s": args.batch / statistics.median(many[mode]),
        }
        for mode in modes
    ]


class _Zeros(torch.nn.Module):
    """A model that costs nothing: timing predict with it gives predict's own cost."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 7)


def own_cost(args: argparse.Namespace) -> tuple[float, float]:
    """p50 ms of predict around a free model: one face, and a batch of ``args.batch``."""
    recognizer = EmotionRecognizer(_Zeros(), ModelConfig(), device="cpu")
    faces = np.random.default_rng(0).integers(0, 256, (args.batch, 48, 48), dtype=np.uint8)
    stacked = torch.from_numpy(faces)[:, None]
    one, _ = interleaved(lambda: recognizer.predict(faces[0], tta="none"), lambda: None, 200)
    many, _ = interleaved(
        lambda: recognizer.predict(stacked, batch_size=args.batch, tta="none"),
        lambda: None,
        20,
    )
    return statistics.median(one) * 1e3, statistics.median(many) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stems", nargs="+", default=list(STEMS), choices=STEMS)
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx"])
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads")
    parser.add_argument("--repeat", type=int, default=50, help="single-face runs")
    parser.add_argument("--batch", type=int, default=256, help="faces in the batched run")
    parser.add_argument("--batch-repeat", type=int, default=5, help="batched runs")
    parser.add_argument("--model", type=Path, help="time this saved model instead")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--tta", nargs="+", choices=TTA_MODES, help="also time predict per TTA mode (first = 1x)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(
        f"# predict benchmark: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {args.threads} threads, torch {torch.__version__}, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    one_ms, many_ms = own_cost(args)
    print(
        f"predict's own cost (a model returning zeros): {one_ms:.3f} ms for one face, "
        f"{many_ms:.2f} ms for {args.batch} faces\n"
    )
    print(
        "| stem | backend | bare 1 face p50 ms | predict p50 ms | overhead | "
        f"bare faces/s ({args.batch}) | predict faces/s | ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    results: list[dict[str, Any]] = []
    tta_rows: list[dict[str, Any]] = []
    targets = [args.model] if args.model else args.stems
    for target in targets:
        if isinstance(target, Path):
            eager = EmotionRecognizer.from_pretrained(target, device="cpu", backend="torch")
        else:
            torch.manual_seed(0)
            config = ModelConfig(stem=target)
            eager = EmotionRecognizer(build_model(config), config, device="cpu")
        stem = eager.config.stem
        for backend in args.backends:
            if backend == "torch":
                recognizer, runner = eager, eager.model
            else:
                runner = OnnxClassifier(
                    onnx_bytes(eager.model, config=eager.config), threads=args.threads
                )
                recognizer = EmotionRecognizer(runner, eager.config, device="cpu")
            row = {"stem": stem, "backend": backend, **measure(recognizer, runner, args)}
            results.append(row)
            print(
                f"| {stem} | {backend} | {row['bare_p50_ms']:.2f} | {row['predict_p50_ms']:.2f} "
                f"| {row['overhead_pct']:+.1f}% | {row['bare_faces_per_s']:.0f} "
                f"| {row['predict_faces_per_s']:.0f} | {row['throughput_ratio']:.2f} |",
                flush=True,
            )
            if args.tta:
                rows = measure_tta(recognizer, args.tta, args)
                tta_rows += [{"stem": stem, "backend": backend, **row} for row in rows]
    if tta_rows:
        print(
            f"\n| stem | backend | tta | predict 1 face p50 ms | cost vs {args.tta[0]} | "
            f"predict faces/s ({args.batch}) |"
        )
        print("|---|---|---|---:|---:|---:|")
        for row in tta_rows:
            print(
                f"| {row['stem']} | {row['backend']} | {row['tta']} | "
                f"{row['predict_p50_ms']:.2f} | {row['relative_cost']:.1f}x | "
                f"{row['predict_faces_per_s']:.0f} |"
            )
    if args.json:
        payload = {
            "own_cost_ms": {"one": one_ms, "batch": many_ms},
            "results": results,
            "tta": tta_rows,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
