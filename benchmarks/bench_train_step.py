"""Training-step throughput of resnet18_emotion for each stem, side by side.

One step is what the Trainer does per batch: augment the uint8 batch
(emotionnet.augmentation.augment_batch), normalise it, forward, cross-entropy with label
smoothing, backward and an SGD (Nesterov) update. Random 48x48 images; the numbers measure
speed only.

    python benchmarks/bench_train_step.py                      # CPU, batch 64, every stem
    python benchmarks/bench_train_step.py --threads 1 2 --steps 5  # both thread counts
    python benchmarks/bench_train_step.py --device cuda --batch-size 256 --steps 50

On CUDA the step runs with bf16 autocast and channels_last, the data on the GPU (as the
Trainer does there). Results print as a Markdown table; --json writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from emotionnet.augmentation import AugmentConfig, augment_batch
from emotionnet.models import STEMS, resnet18_emotion
from emotionnet.preprocessing import normalize


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_stem(
    stem: str, *, device: torch.device, batch_size: int, steps: int, warmup: int
) -> dict[str, Any]:
    torch.manual_seed(0)
    cuda = device.type == "cuda"
    model = resnet18_emotion(stem=stem).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    images = torch.randint(0, 256, (batch_size, 1, 48, 48), dtype=torch.uint8, device=device)
    targets = torch.randint(0, 7, (batch_size,), device=device)
    config = AugmentConfig()
    generator = torch.Generator().manual_seed(0)
    autocast: AbstractContextManager[Any] = (
        torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    )

    def step() -> None:
        batch = normalize(augment_batch(images, config, generator=generator))
        if cuda:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = model(batch)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        optimizer.step()

    model.train()
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    if cuda:
        # Per-step timing would add a synchronisation per step; time the run as a whole.
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        times = [(time.perf_counter() - start) / steps]
    else:
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)

    aug_start = time.perf_counter()
    for _ in range(max(steps, 5)):
        normalize(augment_batch(images, config, generator=generator))
    sync(device)
    aug_seconds = (time.perf_counter() - aug_start) / max(steps, 5)
    return {
        "stem": stem,
        "device": str(device),
        "batch_size": batch_size,
        "ms_per_step": seconds * 1000,
        "images_per_sec": batch_size / seconds,
        "augment_images_per_sec": batch_size / aug_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per stem")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per stem")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=None, help="torch CPU thread counts to try"
    )
    parser.add_argument("--stems", nargs="+", default=list(STEMS), choices=STEMS)
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available on this machine; use --device cpu")
    results = []
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for stem in args.stems:
            row = bench_stem(
                stem,
                device=device,
                batch_size=args.batch_size,
                steps=args.steps,
                warmup=args.warmup,
            )
            results.append({**row, "threads": threads})
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# training step, batch {args.batch_size}, {machine}, load average {load:.1f}")
    print(f"# torch {torch.__version__}, {args.steps} timed steps after {args.warmup} warm-up")
    print()
    print("| stem | threads | ms / step | train images/s | augment images/s |")
    print("|---|---:|---:|---:|---:|")
    for row in results:
        print(
            f"| {row['stem']} | {row['threads']} | {row['ms_per_step']:.0f} | "
            f"{row['images_per_sec']:.1f} | {row['augment_images_per_sec']:.0f} |"
        )
    if args.json is not None:
        payload = {"machine": machine, "load_average": load, "results": results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
