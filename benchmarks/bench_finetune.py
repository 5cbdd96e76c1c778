"""Fine-tuning speed and accuracy: ``emotionnet.finetune`` on a 3-label FER2013 subset.

Builds ``<tmp>/<label>/`` folders of ``--images`` FER2013 faces split evenly over
``--labels`` (by default happy / sad / neutral) and runs :func:`emotionnet.finetune` with its
defaults (the bundled model as init, a stratified 20% validation split, the schedule and thread
count it chooses), then reports the wall time (data loading included), the training speed and
the validation accuracy, next to the accuracy of the bundled model with the same new head
before any training (the rows of its seven-emotion head kept, see ``replace_head``).

The faces come from FER2013's PublicTest images by default (``--source public_test``), which
the bundled model never trained on (it selected its epoch on them, nothing more);
``--source train`` takes training images, on which the bundled model is already near-perfect.
``--busy`` runs the measurement a second time with a competing process spinning on one core,
as other work on a shared machine does (the thread count is chosen per run).

    python benchmarks/bench_finetune.py --data ../shared/data/fer2013            # 1,000 faces
    python benchmarks/bench_finetune.py --images 150 --epochs 3                  # a quick check
    python benchmarks/bench_finetune.py --busy --json runs/bench_finetune.json

Target (issue 25): 1,000 faces in at most 3 minutes on 2 CPU cores. Results print as a
Markdown table; --json writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from emotionnet import EmotionRecognizer, LabelledFolder, evaluate, finetune
from emotionnet.models import replace_head
from emotionnet.training import bf16_supported


def build_folder(
    data: Path, source: str, labels: list[str], images: int, seed: int, dst: Path
) -> None:
    """Copy ``images`` FER2013 faces, split evenly over ``labels``, into ``dst/<label>/``."""
    rng = random.Random(seed)
    per_label = images // len(labels)
    for label in labels:
        if source == "train":
            files = sorted((data / "train" / label).iterdir())
        else:
            prefix = "PublicTest_" if source == "public_test" else "PrivateTest_"
            files = sorted(
                p for p in (data / "test" / label).iterdir() if p.name.startswith(prefix)
            )
        if len(files) < per_label:
            raise SystemExit(f"only {len(files)} {source} images of {label}; lower --images")
        (dst / label).mkdir(parents=True)
        for file in rng.sample(files, per_label):
            shutil.copy(file, dst / label / file.name)


def zero_shot(folder: Path, out: Path) -> float:
    """Validation accuracy of the bundled model with the new head, before training."""
    summary = json.loads((out / "finetune.json").read_text())
    data = LabelledFolder(folder)
    index = {file: i for i, file in enumerate(data.files)}
    rows = torch.tensor([index[file] for file in summary["val_files"]])
    model = replace_head(EmotionRecognizer.from_pretrained(backend="torch").model, data.labels)
    report = evaluate(model.eval(), (data.images[rows], data.targets[rows]))
    return report.accuracy


def run(args: argparse.Namespace, folder: Path, busy: bool) -> dict[str, Any]:
    out = folder.parent / f"model{'_busy' if busy else ''}"
    spinner = None
    if busy:
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(1.0)
    try:
        result = finetune(
            folder,
            out,
            epochs=args.epochs,
            seed=args.seed,
            num_threads=args.threads,
            progress=False,
        )
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    summary = json.loads((out / "finetune.json").read_text())
    speeds = [row["images_per_sec"] for row in result.history if row["phase"] == "all"]
    return {
        "busy": busy,
        "images": result.train_size + result.val_size,
        "threads": summary["threads"],
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "seconds": round(result.seconds, 1),
        "all_layers_images_per_sec": round(sorted(speeds)[len(speeds) // 2], 1) if speeds else None,
        "val_accuracy": round(result.report.accuracy, 4),
        "val_macro_f1": round(result.report.macro_f1, 4),
        "zero_shot_accuracy": round(zero_shot(folder, out), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("EMOTIONNET_FER2013", "../shared/data/fer2013")),
        help="FER2013 image folders (train/ and test/)",
    )
    parser.add_argument("--labels", default="happy,sad,neutral", help="comma-separated emotions")
    parser.add_argument("--images", type=int, default=1000, help="faces in all (1000)")
    parser.add_argument(
        "--source", choices=("public_test", "private_test", "train"), default="public_test"
    )
    parser.add_argument("--epochs", type=int, help="epochs (default: finetune's choice)")
    parser.add_argument("--threads", type=int, help="threads (default: finetune's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--busy", action="store_true", help="also run beside a busy process")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "faces")
        build_folder(args.data, args.source, args.labels.split(","), args.images, args.seed, folder)
        rows.append(run(args, folder, busy=False))
        if args.busy:
            rows.append(run(args, folder, busy=True))
    machine = {
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "bf16": bf16_supported("cpu"),
        "torch": torch.__version__,
        "labels": args.labels,
        "source": args.source,
    }
    keys = list(rows[0])
    print(f"\n{machine}\n")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[key]) for key in keys) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
