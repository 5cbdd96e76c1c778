"""Scale-out cost: BatchScorer in one process against Ray Data actor pools of 1 and 2 workers.

Side by side in one run, on the same images (FER2013 test faces, or synthetic ones):

* images per CPU-second of scoring (the CPU time the scoring calls took, in the process or
  summed over the Ray workers) and per wall-second (the whole run, start-up included);
* worker start-up: importing emotionnet and loading the model in a fresh worker (target,
  issue 26: <= 3 s with the torch-free path), and Ray's own start;
* whether every row (label, score, each probability) is identical to the one process's.

Ray advertises this machine's address and probes an outside one, so the benchmark runs only in
a network namespace that has nothing but loopback: started elsewhere, it starts itself again
under ``unshare -n`` (root) and stops with a message if it cannot.

    python benchmarks/bench_scale_out.py --data ../shared/data/fer2013       # 512 faces
    python benchmarks/bench_scale_out.py --images 256 --tta none --workers 1 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

LOOPBACK_ONLY = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = os.environ.get("EMOTIONNET_FER2013", "../shared/data/fer2013")
    parser.add_argument("--data", type=Path, default=Path(default_data), help="FER2013 folder")
    parser.add_argument("--images", type=int, default=512, help="images to score (default 512)")
    parser.add_argument("--tta", default="flip_crop", help="test-time augmentation")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="pool sizes")
    parser.add_argument("--model", default=None, help="model folder or Hub id (default: bundled)")
    return parser.parse_args(argv)


def loopback_only() -> bool:
    """Whether this process's network namespace has only loopback (/sys may show another's)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def reexec_in_namespace() -> None:
    """Start this script again in a loopback-only network namespace, or stop."""
    if not shutil.which("unshare") or (hasattr(os, "geteuid") and os.geteuid() != 0):
        sys.exit(
            "Ray must run in a network namespace with only loopback here, and unshare -n "
            "needs root: run this script as root, or inside such a namespace."
        )
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are limited
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": temp}
    command = [*LOOPBACK_ONLY, sys.executable, "-u", *sys.argv]
    try:
        code = subprocess.run(command, env=env, check=False).returncode
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    sys.exit(code)


def image_paths(data: Path, count: int, folder: Path) -> tuple[list[str], str]:
    found = sorted((data / "test").glob("*/*.jpg")) if (data / "test").is_dir() else []
    if len(found) >= count:
        step = len(found) // count
        return [str(path) for path in found[::step][:count]], f"FER2013 test ({data})"
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        path = folder / f"face{index:05d}.png"
        Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths, "synthetic 48x48 noise"


class TimedScorer:
    """A Ray worker: times its own start-up (import + model load) and its scoring CPU."""

    def __init__(self, **options: Any) -> None:
        started = time.perf_counter()
        from emotionnet import BatchScorer  # timed: a fresh worker imports emotionnet here

        self.scorer = BatchScorer(**options)
        self.scorer.load()
        self.startup: float | None = time.perf_counter() - started

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cpu = time.process_time()
        rows = self.scorer(batch)
        count = len(rows["path"])
        spent = np.zeros(count)
        spent[:1] = time.process_time() - cpu  # the batch's CPU on its first row: sums right
        startup = np.full(count, np.nan)
        if self.startup is not None and count:
            startup[0], self.startup = self.startup, None
        return {**rows, "bench_cpu": spent, "bench_startup": startup}


def fresh_process_startup(model: str | None) -> float:
    """Seconds for a fresh Python to import emotionnet and load the model (no engine)."""
    code = (
        "import time; t = time.perf_counter()\n"
        "from emotionnet import BatchScorer\n"
        f"BatchScorer({model!r}).load()\n"
        "print(time.perf_counter() - t)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not loopback_only():
        reexec_in_namespace()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from emotionnet import BatchScorer

    folder = Path(tempfile.mkdtemp(prefix="bench_scale_out"))
    paths, source = image_paths(args.data, args.images, folder)
    options = {
        "model": args.model,
        "tta": args.tta,
        "num_threads": 1,
        "batch_size": args.batch_size,
    }
    load_average = os.getloadavg()
    print(f"{len(paths)} images ({source}), tta={args.tta}, {os.cpu_count()} CPUs, ", end="")
    print("load average {:.1f} {:.1f} {:.1f} at the start".format(*load_average))

    # One process: the same scorer, called on the same batches, in this process.
    startup = fresh_process_startup(args.model)
    scorer = BatchScorer(**options)
    scorer.load()
    wall = time.perf_counter()
    cpu = time.process_time()
    parts = [
        scorer({"path": np.array(paths[start : start + args.batch_size])})
        for start in range(0, len(paths), args.batch_size)
    ]
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall + startup
    reference = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    table = [("one process", 1, startup, cpu, wall, True)]

    import ray

    engine = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    engine = time.perf_counter() - engine
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    ray.data.DataContext.get_current().enable_progress_bars = False
    for workers in args.workers:
        wall = time.perf_counter()
        rows = (
            ray.data.from_items([{"path": path} for path in paths])
            .map_batches(
                TimedScorer,
                fn_constructor_kwargs=options,
                batch_size=args.batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=1,
            )
            .to_pandas()
        )
        wall = time.perf_counter() - wall
        starts = rows["bench_startup"].dropna()
        same = rows["path"].tolist() == paths and all(
            np.array_equal(rows[name].to_numpy(), values)
            for name, values in reference.items()
            if name.startswith("prob_") or name in ("label", "score", "error")
        )
        table.append(
            (
                f"Ray, {workers} worker(s)",
                workers,
                float(starts.max()),
                float(rows["bench_cpu"].sum()),
                wall,
                same,
            )
        )
    ray.shutdown()
    shutil.rmtree(folder, ignore_errors=True)

    print(f"Ray start (ray.init, 2 CPUs): {engine:.1f} s\n")
    print(
        "| run | workers | worker start-up (s) | scoring CPU (s) | images / CPU-s | wall (s) "
        "| images / wall-s | rows identical |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, workers, start, spent, seconds, same in table:
        print(
            f"| {name} | {workers} | {start:.2f} | {spent:.2f} | {len(paths) / spent:.0f} "
            f"| {seconds:.1f} | {len(paths) / seconds:.0f} | {'yes' if same else 'NO'} |"
        )
    print("\nload average {:.1f} {:.1f} {:.1f} at the end".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
