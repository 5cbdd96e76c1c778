"""Training throughput of build_model's ResNet18, bare step against the Trainer, side by side.

A *bare step* is what the Trainer does per batch, written out by hand: augment the uint8
batch (emotionnet.augmentation.augment_batch), normalise it, forward (optionally under bf16
autocast, optionally channels_last), cross-entropy with label smoothing, backward and an SGD
(Nesterov) update. It is timed for every combination of precision (fp32, bf16 where the
device supports it) and memory format (NCHW, channels_last), per stem and per thread count.

The *Trainer* row runs ``emotionnet.Trainer`` with its **default** TrainConfig (only the
device, batch size and progress bar set) on random data for two epochs of ``--steps``
batches each and reports the second epoch's images/s, with its ratio to the bare bf16 +
channels_last step measured just before it (the Trainer's own overhead: batch building,
mixing, scheduling, bookkeeping). Random 48x48 images; the numbers measure speed only.

    python benchmarks/bench_train_step.py                          # CPU, batch 128, middle stem
    python benchmarks/bench_train_step.py --threads 1 2 --stems imagenet small middle
    python benchmarks/bench_train_step.py --device cuda --batch-size 256 --steps 50

On a shared machine only compare rows of one run: a process busy on another core slows a
2-thread run several times (see the training guide on threads and contention). Results print
as a Markdown table; --json writes them to a file.
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
from emotionnet.models import STEMS, ModelConfig, build_model
from emotionnet.preprocessing import normalize
from emotionnet.training import TrainConfig, Trainer, bf16_supported


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_bare(
    stem: str,
    *,
    device: torch.device,
    amp: bool,
    channels_last: bool,
    batch_size: int,
    steps: int,
    warmup: int,
) -> dict[str, Any]:
    torch.manual_seed(0)
    model = build_model(ModelConfig(stem=stem)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    images = torch.randint(0, 256, (batch_size, 1, 48, 48), dtype=torch.uint8, device=device)
    targets = torch.randint(0, 7, (batch_size,), device=device)
    config = AugmentConfig()
    generator = torch.Generator().manual_seed(0)
    autocast: AbstractContextManager[Any] = (
        torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()
    )

    def step() -> None:
        batch = normalize(augment_batch(images, config, generator=generator))
        if channels_last:
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
    if device.type == "cuda":
        # Per-step timing would add a synchronisation per step; time the run as a whole.
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        seconds = (time.perf_counter() - start) / steps
    else:
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
    return {
        "what": "bare step",
        "stem": stem,
        "precision": "bf16" if amp else "fp32",
        "memory_format": "channels_last" if channels_last else "NCHW",
        "ms_per_step": seconds * 1000,
        "images_per_sec": batch_size / seconds,
    }


def bench_trainer(
    stem: str, *, device: torch.device, batch_size: int, steps: int
) -> dict[str, Any]:
    torch.manual_seed(0)
    count = batch_size * steps
    train = (torch.randint(0, 256, (count, 48, 48), dtype=torch.uint8), torch.arange(count) % 7)
    val = (train[0][:batch_size], train[1][:batch_size])
    config = TrainConfig(max_epochs=2, batch_size=batch_size, device=str(device), progress=False)
    trainer = Trainer(build_model(ModelConfig(stem=stem)), train, val, config)
    history = trainer.fit()
    images_per_sec = float(history[-1]["images_per_sec"])  # the second, warm epoch
    precision = "bf16" if trainer.amp_dtype == torch.bfloat16 else str(trainer.amp_dtype or "fp32")
    return {
        "what": "Trainer, default config",
        "stem": stem,
        "precision": precision,
        "memory_format": "channels_last" if trainer.channels_last else "NCHW",
        "ms_per_step": batch_size / images_per_sec * 1000,
        "images_per_sec": images_per_sec,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per bare row")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=None, help="torch CPU thread counts to try"
    )
    parser.add_argument("--stems", nargs="+", default=["middle"], choices=STEMS)
    parser.add_argument("--no-trainer", action="store_true", help="skip the Trainer rows")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available on this machine; use --device cpu")
    precisions = [False, True] if bf16_supported(device) else [False]
    results = []
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for stem in args.stems:
            bare: dict[tuple[bool, bool], float] = {}
            for amp in precisions:
                for channels_last in (False, True):
                    row = bench_bare(
                        stem,
                        device=device,
                        amp=amp,
                        channels_last=channels_last,
                        batch_size=args.batch_size,
                        steps=args.steps,
                        warmup=args.warmup,
                    )
                    bare[amp, channels_last] = row["images_per_sec"]
                    results.append({**row, "threads": threads, "vs_best_bare": None})
            if args.no_trainer:
                continue
            row = bench_trainer(stem, device=device, batch_size=args.batch_size, steps=args.steps)
            reference = bare[precisions[-1], True]
            results.append(
                {**row, "threads": threads, "vs_best_bare": row["images_per_sec"] / reference}
            )
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"native bf16: {bf16_supported(device)}"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# training step, batch {args.batch_size}, {machine}, load average {load:.1f}")
    print(f"# torch {torch.__version__}, {args.steps} timed steps per row")
    print()
    print(
        "| what | stem | threads | precision | memory format | ms / step | images/s | "
        "Trainer / bare bf16+CL |"
    )
    print("|---|---|---:|---|---|---:|---:|---:|")
    for row in results:
        ratio = "" if row["vs_best_bare"] is None else f"{row['vs_best_bare']:.2f}"
        print(
            f"| {row['what']} | {row['stem']} | {row['threads']} | {row['precision']} | "
            f"{row['memory_format']} | {row['ms_per_step']:.0f} | "
            f"{row['images_per_sec']:.1f} | {ratio} |"
        )
    if args.json is not None:
        payload = {"machine": machine, "load_average": load, "results": results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
