"""Cold and warm load time of a FER2013 split (default: the shared train split).

Cold: a fresh, empty cache folder, so every image is decoded (and the cache file written).
Warm: the same cache folder again, so the split is read from the cache file.

    python benchmarks/bench_data_load.py [ROOT] [--split train] [--repeat 3] [--num-workers N]

ROOT defaults to $EMOTIONNET_FER2013, else ../shared/data/fer2013 next to the project.
Targets on the 2-core development machine: cold <= 15 s, warm <= 1 s for the train split.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from emotionnet.data import FER2013, SPLITS

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_root() -> Path:
    env = os.environ.get("EMOTIONNET_FER2013")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data" / "fer2013"


def _timed(make: Callable[[], FER2013]) -> tuple[float, FER2013]:
    start = time.perf_counter()
    data = make()
    return time.perf_counter() - start, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=_default_root())
    parser.add_argument("--split", default="train", choices=SPLITS)
    parser.add_argument("--repeat", type=int, default=3, help="cold and warm runs each")
    parser.add_argument("--num-workers", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    print(f"FER2013 {args.split} from {args.root} ({os.cpu_count()} CPUs)")
    cold: list[float] = []
    warm: list[float] = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as cache_dir:
            seconds, data = _timed(
                lambda: FER2013(
                    args.root, args.split, cache_dir=cache_dir, num_workers=args.num_workers
                )
            )
            cold.append(seconds)
            seconds, again = _timed(lambda: FER2013(args.root, args.split, cache_dir=cache_dir))
            warm.append(seconds)
            if not torch.equal(data.images, again.images):
                raise SystemExit("the cached images differ from the decoded ones")
    print(f"images: {len(data)} x {tuple(data.images.shape[1:])}, source {data.source}")
    print(f"cold (fresh cache folder): best {min(cold):.2f} s, runs {[round(t, 2) for t in cold]}")
    print(f"warm (cached):             best {min(warm):.2f} s, runs {[round(t, 2) for t in warm]}")
    seconds, _ = _timed(lambda: FER2013(args.root, args.split, cache=False, num_workers=1))
    print(f"one process, no cache:     {seconds:.2f} s")


if __name__ == "__main__":
    main()
