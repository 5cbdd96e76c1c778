"""Score a folder of images (or a list of paths) into Parquet with Ray Data and an actor pool.

    pip install "emotionnet[ray]"
    python examples/score_with_ray.py photos/ --output scores/                  # this machine
    python examples/score_with_ray.py --paths-from paths.txt --output scores/ --workers 8
    RAY_ADDRESS=auto python examples/score_with_ray.py /shared/photos --output /shared/scores

Each worker is a Ray actor holding one :class:`emotionnet.BatchScorer`: it loads the model
once (from ``model.onnx``, without torch) and scores the batches Ray hands it, with
``--threads`` onnxruntime threads on as many reserved CPUs. The Parquet files get one row per
image (per face with ``--faces``): the path, ``label``, ``score``, ``error`` (empty when the
image was read) and one ``prob_<label>`` column per emotion. Ray does not keep the input
order across workers; every row carries its path (``--keep-order`` keeps it, a little slower).
On a cluster, the paths and ``--model`` must be readable by every worker (shared storage), or
``--model`` a Hub id (set ``HF_HUB_OFFLINE=1`` once the workers have it cached).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import ray
from ray.data.expressions import col

from emotionnet import BatchScorer, iter_image_paths
from emotionnet.tta import TTA_MODES

# Reading the list of paths and writing the rows move a few bytes per image: they reserve no
# CPU, so that a pool of workers reserving every CPU (--workers x --threads = the CPUs) cannot
# starve them (Ray would wait for ever for a free CPU to read the first block).
IO_CPUS = 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="*", type=Path, help="image files and folders")
    parser.add_argument("--paths-from", type=Path, help="a text file with one image path a line")
    parser.add_argument("--recursive", action="store_true", help="also look in sub-folders")
    parser.add_argument("--output", type=Path, required=True, help="Parquet output folder")
    parser.add_argument("--model", default=None, help="model folder or Hub id (default: bundled)")
    parser.add_argument("--revision", default=None, help="Hub revision to pin")
    parser.add_argument("--tta", default=None, choices=TTA_MODES, help="default: flip_crop")
    parser.add_argument("--faces", action="store_true", help="detect faces, one row per face")
    parser.add_argument("--workers", type=int, default=2, help="actors in the pool (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="threads (and CPUs) per worker")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch")
    parser.add_argument("--keep-order", action="store_true", help="write rows in input order")
    parser.add_argument(
        "--num-cpus", type=int, default=None, help="CPUs of a local Ray (no RAY_ADDRESS)"
    )
    args = parser.parse_args(argv)
    if bool(args.inputs) == (args.paths_from is not None):
        parser.error("name image files or folders, or give --paths-from FILE (not both)")
    return args


def read_paths(args: argparse.Namespace) -> ray.data.Dataset:
    """The dataset of paths: a ``path`` column, one row per image, in input order."""
    if args.paths_from is not None:
        # Read by Ray, block by block: a list of a hundred million paths never sits in memory.
        lines = ray.data.read_text(str(args.paths_from.resolve()), num_cpus=IO_CPUS)
        named: ray.data.Dataset = lines.rename_columns({"text": "path"}, num_cpus=IO_CPUS)
        return named
    # Absolute paths: a worker's working folder need not be this one.
    paths = iter_image_paths(args.inputs, recursive=args.recursive)
    return ray.data.from_items([{"path": os.path.abspath(path)} for path in paths])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # No RAY_ADDRESS: a local Ray on this machine; else the cluster it names ("auto", ...).
    ray.init(num_cpus=args.num_cpus, include_dashboard=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = args.keep_order

    started = time.perf_counter()
    scores = read_paths(args).map_batches(
        BatchScorer,  # a class: each actor builds one and keeps its model for every batch
        fn_constructor_kwargs={
            "model": args.model,
            "revision": args.revision,
            "tta": args.tta,
            "faces": args.faces,
            "num_threads": args.threads,
            "batch_size": args.batch_size,
        },
        batch_size=args.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=args.workers),
        num_cpus=args.threads,  # a CPU reserved per onnxruntime thread: no oversubscription
    )
    scores.write_parquet(str(args.output), ray_remote_args={"num_cpus": IO_CPUS})
    seconds = time.perf_counter() - started

    written = ray.data.read_parquet(str(args.output))
    rows = written.count()
    failed = written.filter(expr=col("error") != "").count()
    print(f"{rows} rows ({failed} errors) in {seconds:.1f} s -> {args.output}")


if __name__ == "__main__":
    main()
