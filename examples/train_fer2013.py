"""Train the release model: the recipe in configs/fer2013_resnet18.toml, end to end.

    python examples/train_fer2013.py --data path/to/fer2013              # the full recipe
    python examples/train_fer2013.py --data path/to/fer2013 --quick      # a 1-minute try
    torchrun --nproc-per-node 4 examples/train_fer2013.py --data ...     # several GPUs

--quick runs the whole pipeline (train, select, save, evaluate) in about a minute on a 2-core
CPU: one epoch of 4,000 random training images, validated on 500, with a quarter of the
recipe's compute per image (the "imagenet" stem), AdamW and flips as the only augmentation,
on one CPU thread (steady even when other work keeps the second core busy). It writes
runs/fer2013_quick unless --output says otherwise, and any option given with it wins. Its
model reaches roughly 35% on PublicTest where the recipe reaches 70%: a try, not a model.
(The recipe's own settings need many epochs: for one epoch, its SGD at lr 0.1 never leaves
the class prior, and the model answers "happy" for every face. The Trainer warns when a
model predicts one class for 90% of the validation set.)

It follows the standard FER2013 protocol: train on ``train``, keep the epoch with the best
``public_test`` accuracy, and leave ``private_test`` for the final report. The output folder
is a model folder that ``EmotionRecognizer.from_pretrained(folder)`` loads:

    model.safetensors          the selected weights
    config.json                the model config (stem, labels, normalisation)
    README.md                  a model card with the numbers below
    evaluation_<split>[_<tta>].json   EvaluationReport of the released weights
    recipe.toml, train_config.json     exactly what produced them
    history.json, history.csv  per-epoch losses, accuracy, learning rate, speed
    checkpoints/               last.ckpt for --resume

config.json also records the command and the hardware of the run; that folder is what
scripts/package_default_model.py bundles as the default model.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

from emotionnet import FER2013
from emotionnet.recipe import Recipe, train_recipe
from emotionnet.training import read_config_file

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "fer2013_resnet18.toml"
DEFAULT_OUTPUT = Path("runs/fer2013_resnet18")

# --quick: what replaces the recipe's values (the command line's options still win).
QUICK_OUTPUT = Path("runs/fer2013_quick")
QUICK_SAMPLES = {"max_train_samples": 4000, "max_val_samples": 500}
QUICK_MODEL = {"stem": "imagenet"}  # 7x7 stride-2 stem and max-pool: a quarter of the FLOPs
QUICK_TRAIN = {
    "max_epochs": 1,
    "batch_size": 64,  # 63 optimizer steps out of 4,000 images
    "optimizer": "adamw",  # learns in tens of steps; the recipe's SGD needs thousands
    "lr": 1e-3,
    "weight_decay": 0.05,
    "warmup_epochs": 0.1,
    "mixup_alpha": 0.0,
    "num_threads": 1,
}
QUICK_AUGMENT = {"rotation": 0.0, "translate": 0.0, "scale": [1.0, 1.0], "erasing": 0.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="recipe file")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("EMOTIONNET_FER2013", "data/fer2013")),
        help="FER2013 in any supported layout (default: $EMOTIONNET_FER2013 or data/fer2013)",
    )
    parser.add_argument(
        "--output", type=Path, help=f"model folder to write (default: {DEFAULT_OUTPUT})"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a one-minute try of the whole pipeline on the CPU, not a good model (see above)",
    )
    # Overrides of the recipe, for quick tries and smoke tests.
    parser.add_argument("--stem", help="override model.stem (imagenet, small, middle)")
    parser.add_argument("--epochs", type=int, help="override train.max_epochs")
    parser.add_argument("--batch-size", type=int, help="override train.batch_size")
    parser.add_argument("--lr", type=float, help="override train.lr")
    parser.add_argument("--warmup-epochs", type=float, help="override train.warmup_epochs")
    parser.add_argument("--device", help="override train.device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--amp", help="override train.amp (auto, bf16, fp16, off)")
    parser.add_argument("--num-workers", type=int, help="override train.num_workers")
    parser.add_argument(
        "--cuda-graph",
        action="store_true",
        help="set train.cuda_graph: replay each training step as CUDA graphs (GPU only)",
    )
    parser.add_argument("--seed", type=int, help="override train.seed")
    parser.add_argument("--max-train-samples", type=int, help="train on a random subset")
    parser.add_argument("--max-val-samples", type=int, help="validate on a random subset")
    parser.add_argument(
        "--init",
        type=Path,
        help="start from these weights (a model folder or state dict, e.g. an earlier run's "
        "folder for a warm restart) instead of the seed's random ones",
    )
    parser.add_argument(
        "--save-every",
        type=int,
        help="write the resume checkpoint every N epochs (train.save_every; default 1)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def subset(dataset: FER2013, count: int | None, seed: int) -> FER2013 | tuple[torch.Tensor, ...]:
    """A random subset as an (images, targets) pair, which every emotionnet function accepts."""
    if count is None or count >= len(dataset):
        return dataset
    keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count]
    return dataset.images[keep], dataset.targets[keep]


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, to name the weights a warm restart started from."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_hardware(device: torch.device) -> str:
    """What the run trained on, for the model card."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # The trainer logs one line per epoch (losses, val accuracy/macro-F1, LR, images/s) at
    # INFO: the run's log wherever stderr goes, progress bars or not.
    logging.basicConfig(format="%(message)s")
    logging.getLogger("emotionnet").setLevel(logging.INFO)
    tables = read_config_file(args.config)

    # The recipe's settings, then --quick's, then the command line's overrides on top.
    model_table = dict(tables.get("model", {}))
    train_table = dict(tables.get("train", {}))
    if args.quick:
        model_table.update(QUICK_MODEL)
        train_table.update(QUICK_TRAIN)
        train_table["augment"] = {**train_table.get("augment", {}), **QUICK_AUGMENT}
        for name, value in QUICK_SAMPLES.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        torch.set_num_threads(QUICK_TRAIN["num_threads"])  # the evaluation after training too
    if args.output is None:
        args.output = QUICK_OUTPUT if args.quick else DEFAULT_OUTPUT
    if args.stem is not None:
        model_table["stem"] = args.stem
    recipe = Recipe.from_mapping(
        {**tables, "model": model_table, "train": train_table}, path=Path(args.config)
    )
    if args.init is not None:
        recipe = dataclasses.replace(recipe, init=args.init)
    recipe = recipe.with_train(
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_epochs=args.warmup_epochs,
        device=args.device,
        amp=args.amp,
        num_workers=args.num_workers,
        cuda_graph=True if args.cuda_graph else None,
        seed=args.seed,
        checkpoint_dir=str(args.output / "checkpoints"),
        save_every=args.save_every,
        progress=not args.no_progress,
    )

    train_set = FER2013(args.data, split=recipe.train_split)
    val_set = FER2013(args.data, split=recipe.val_split)
    print(
        f"data: {len(train_set)} train / {len(val_set)} {recipe.val_split} images from {args.data}"
    )
    train_data = subset(train_set, args.max_train_samples, recipe.train.seed)
    val_data = subset(val_set, args.max_val_samples, recipe.train.seed)

    # The one release workflow (emotionnet.recipe, as `emotionnet train`): train, keep the
    # best epoch, save it in the release dtype, evaluate exactly that, write the folder.
    command = shlex.join(["python", sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    wanted = recipe.train.device
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if wanted == "auto" else wanted)
    training = {"command": command, "hardware": describe_hardware(device)}
    if recipe.init_weights is not None:  # a warm restart: say from what
        training["init"] = f"{recipe.init_weights} (sha256 {sha256_of(recipe.init_weights)})"
    history, reports = train_recipe(
        recipe, train_data, val_data, args.output, resume=args.resume,
        metadata={"training": training},
    )  # fmt: skip
    if not reports:  # under torchrun, rank 0 evaluates and saves
        return
    print(f"best epoch: {history.best(recipe.train.monitor)}")
    for name, report in reports.items():
        print(f"\n## {name}\n\n{report.to_markdown()}")
    print(f"model folder: {args.output} (load it with EmotionRecognizer.from_pretrained)")


if __name__ == "__main__":
    main()
