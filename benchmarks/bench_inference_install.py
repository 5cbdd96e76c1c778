"""The inference install against the torch path: install size, cold start, latency, throughput.

Side by side in one run (timings interleaved, so machine load hits both alike):

* ``cold CLI``: wall time of ``emotionnet predict FACE`` in a new process (median of
  ``--repeat``), the default (onnxruntime on the shipped ``model.onnx``, torch never imported)
  against ``--backend torch``;
* ``first prediction``: a new Python process that imports emotionnet, loads the bundled model
  and predicts one face, timed inside the process from before the import (the interpreter's own
  start-up, about 20 ms, not included) and as the whole process's wall time;
* ``warm face``: p50 of ``predict`` on one 48x48 face, ``tta="none"`` and the default
  ``"flip_crop"``;
* ``batch``: faces per second of ``predict`` on 512 faces, both view sets;
* ``install``: with ``--install-size``, a fresh virtual environment gets ``pip install .``
  (the inference install) and its size is measured (``du``); the torch path's size is that of
  ``pip install ".[torch]"``, measured the same way with ``--install-size torch``.

The ``fer`` package's classifier is timed too when it is installed (it needs TensorFlow,
which this benchmark does not install).

    python benchmarks/bench_inference_install.py                  # 2 threads
    python benchmarks/bench_inference_install.py --install-size   # + a fresh venv (minutes)

Targets (the slim-inference issue): base install <= 400 MB; cold CLI <= 1.0 s on 2 quiet
cores; first prediction <= 0.8 s; warm face <= 5 ms (none), <= 12 ms (flip_crop); batched
throughput at least the torch path's.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FACE = ROOT / "examples" / "images" / "astronaut_face.jpg"

_FIRST = """
import time
start = time.perf_counter()
from emotionnet import EmotionRecognizer
recognizer = EmotionRecognizer.from_pretrained(backend={backend!r}, precision={precision!r})
recognizer.predict({face!r})
print(time.perf_counter() - start)
"""

# The columns: the default (int8 where the model ships it), the float graph, eager PyTorch.
_PATHS = {
    "int8": ("onnx", "int8"),
    "float32": ("onnx", "float32"),
    "torch": ("torch", "auto"),
}


def _environment(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads)}


def _wall(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{command} failed: {done.stderr[-2000:]}")
    return elapsed, done.stdout


def _interleaved(runs: dict[str, Callable[[], float]], repeat: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            results[name].append(run())
    return results


def cold_start(repeat: int, threads: int) -> dict[str, dict[str, float]]:
    env = _environment(threads)
    python = sys.executable

    def cli(path: str) -> float:
        backend, precision = _PATHS[path]
        command = [python, "-m", "emotionnet", "predict", str(FACE)]
        return _wall([*command, "--backend", backend, "--precision", precision], env)[0]

    first_inside: dict[str, list[float]] = {path: [] for path in _PATHS}

    def first(path: str) -> float:
        backend, precision = _PATHS[path]
        code = _FIRST.format(backend=backend, precision=precision, face=str(FACE))
        elapsed, out = _wall([python, "-c", code], env)
        first_inside[path].append(float(out.strip().splitlines()[-1]))
        return elapsed

    for path in _PATHS:  # warm the page cache once: cold means a new process
        cli(path)
    runs: dict[str, Callable[[], float]] = {}
    for path in _PATHS:
        runs[f"cli {path}"] = lambda p=path: cli(p)  # type: ignore[misc]
        runs[f"first {path}"] = lambda p=path: first(p)  # type: ignore[misc]
    walls = _interleaved(runs, repeat)
    return {
        "cold CLI (s)": {p: statistics.median(walls[f"cli {p}"]) for p in _PATHS},
        "first prediction, in-process (s)": {
            name: statistics.median(values) for name, values in first_inside.items()
        },
        "first prediction, process wall (s)": {
            p: statistics.median(walls[f"first {p}"]) for p in _PATHS
        },
    }


def warm(repeat: int, threads: int) -> dict[str, dict[str, float]]:
    import torch

    from emotionnet import EmotionRecognizer

    torch.set_num_threads(threads)
    recognizers = {
        path: EmotionRecognizer.from_pretrained(
            backend=backend, precision=precision, num_threads=threads
        )
        for path, (backend, precision) in _PATHS.items()
    }
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    batch = list(rng.integers(0, 256, (512, 48, 48), dtype=np.uint8))
    results: dict[str, dict[str, float]] = {}
    for tta in ("none", "flip_crop"):
        timings = {name: [] for name in recognizers}  # type: dict[str, list[float]]
        for _ in range(3):
            for recognizer in recognizers.values():
                recognizer.predict(face, tta=tta)
        # Blocks of 20 calls, interleaved: load hits every path alike, and one runtime's
        # spinning threads do not sit in the other's single calls.
        for _ in range(max(1, repeat // 20)):
            for name, recognizer in recognizers.items():
                for _ in range(20):
                    start = time.perf_counter()
                    recognizer.predict(face, tta=tta)
                    timings[name].append(time.perf_counter() - start)
        results[f"warm face, {tta} (ms)"] = {
            name: 1000 * statistics.median(values) for name, values in timings.items()
        }
        rates = {}
        for name, recognizer in recognizers.items():
            start = time.perf_counter()
            recognizer.predict(batch, tta=tta, batch_size=256)
            rates[name] = len(batch) / (time.perf_counter() - start)
        results[f"batch of 512, {tta} (faces/s)"] = rates
    return results


def fer_package(repeat: int) -> dict[str, float] | None:
    if importlib.util.find_spec("fer") is None:
        return None
    from fer import FER  # type: ignore[import-not-found]

    detector = FER()
    image = np.asarray(__import__("PIL.Image").Image.open(FACE).convert("RGB"))[:, :, ::-1]
    face_box = [(0, 0, image.shape[1], image.shape[0])]
    detector.detect_emotions(image, face_rectangles=face_box)
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        detector.detect_emotions(image, face_rectangles=face_box)
        timings.append(time.perf_counter() - start)
    return {"warm face (ms)": 1000 * statistics.median(timings)}


def install_size(extra: str | None) -> float:
    """MB of a fresh virtual environment holding ``pip install .`` (with ``extra``)."""
    folder = Path(tempfile.mkdtemp(prefix="emotionnet-size-"))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        target = f"{ROOT}[{extra}]" if extra else str(ROOT)
        subprocess.run(
            [str(folder / "bin" / "pip"), "install", "-q", target],
            check=True,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
        # The venv's own pip and setuptools are not part of what emotionnet installs.
        site = next((folder / "lib").glob("python*/site-packages"))
        for own in site.glob("pip*"):
            shutil.rmtree(own, ignore_errors=True)
        out = subprocess.run(["du", "-sm", str(folder)], capture_output=True, text=True)
        return float(out.stdout.split()[0])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5, help="cold-start runs per variant")
    parser.add_argument("--warm-repeat", type=int, default=200)
    parser.add_argument(
        "--install-size",
        nargs="*",
        metavar="EXTRA",
        default=None,
        help="measure fresh installs: no value for the base install; 'torch' for .[torch]",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}, {args.threads} threads"
    )
    results: dict[str, dict[str, float]] = {}
    results.update(cold_start(args.repeat, args.threads))
    results.update(warm(args.warm_repeat, args.threads))
    fer = fer_package(args.warm_repeat)
    if args.install_size is not None:
        extras = args.install_size or [""]
        results["install (MB)"] = {
            (extra or "int8"): install_size(extra or None) for extra in extras
        }
    print(f"{'measure':38} {'int8 (default)':>15} {'float32':>10} {'torch path':>11}")
    for measure, values in results.items():
        cells = [
            f"{values[p]:{w}.3f}" if p in values else f"{'-':>{w}}"
            for p, w in (("int8", 15), ("float32", 10), ("torch", 11))
        ]
        print(f"{measure:38} {' '.join(cells)}")
    print(f"fer package: {fer if fer is not None else 'not installed (needs TensorFlow)'}")
    print(f"# load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "fer": fer}, indent=2))


if __name__ == "__main__":
    main()
