"""Train the release model: the recipe in configs/fer2013_resnet18.toml, end to end.

    python examples/train_fer2013.py --data path/to/fer2013              # the full recipe
    python examples/train_fer2013.py --data path/to/fer2013 \\
        --epochs 1 --max-train-samples 2000 --device cpu                 # a 1-minute try
    torchrun --nproc-per-node 4 examples/train_fer2013.py --data ...     # several GPUs

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
import logging
import os
import platform
import shlex
import shutil
import sys
from pathlib import Path

import torch

from emotionnet import FER2013, EmotionRecognizer, ModelConfig, TrainConfig, Trainer, build_model
from emotionnet.training import read_config_file

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "fer2013_resnet18.toml"


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
    parser.add_argument("--output", type=Path, default=Path("runs/fer2013_resnet18"))
    # Overrides of the recipe, for quick tries and smoke tests.
    parser.add_argument("--epochs", type=int, help="override train.max_epochs")
    parser.add_argument("--batch-size", type=int, help="override train.batch_size")
    parser.add_argument("--lr", type=float, help="override train.lr")
    parser.add_argument("--device", help="override train.device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--num-workers", type=int, help="override train.num_workers")
    parser.add_argument("--seed", type=int, help="override train.seed")
    parser.add_argument("--max-train-samples", type=int, help="train on a random subset")
    parser.add_argument("--max-val-samples", type=int, help="validate on a random subset")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def subset(dataset: FER2013, count: int | None, seed: int) -> FER2013 | tuple[torch.Tensor, ...]:
    """A random subset as an (images, targets) pair, which every emotionnet function accepts."""
    if count is None or count >= len(dataset):
        return dataset
    keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count]
    return dataset.images[keep], dataset.targets[keep]


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
    recipe = read_config_file(args.config)
    splits = recipe.get("data", {})
    release = recipe.get("release", {})

    # The recipe's settings, then the command line's overrides on top.
    model_config = ModelConfig.from_dict(recipe.get("model", {}))
    overrides = {
        "max_epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "device": args.device,
        "num_workers": args.num_workers,
        "seed": args.seed,
    }
    train_config = TrainConfig.from_dict(recipe.get("train", {}))
    train_config = dataclasses.replace(
        train_config,
        **{name: value for name, value in overrides.items() if value is not None},
        checkpoint_dir=str(args.output / "checkpoints"),
        progress=not args.no_progress,
    )

    val_split = splits.get("val_split", "public_test")
    train_set = FER2013(args.data, split=splits.get("train_split", "train"))
    val_set = FER2013(args.data, split=val_split)
    print(f"data: {len(train_set)} train / {len(val_set)} {val_split} images from {args.data}")
    train_data = subset(train_set, args.max_train_samples, train_config.seed)
    val_data = subset(val_set, args.max_val_samples, train_config.seed)

    # The recipe's seed fixes the initial weights too, so a run is reproducible from its
    # recipe alone (the Trainer seeds everything after the model exists).
    torch.manual_seed(train_config.seed)
    model = build_model(model_config)
    trainer = Trainer(model, train_data, val_data, train_config, model_config=model_config)
    history = trainer.fit(resume=args.resume)
    if not trainer.is_main_process:  # under torchrun, rank 0 evaluates and saves
        return
    best = history.best(train_config.monitor)
    print(f"best epoch: {best}")

    # Save the selected weights as released (half precision), then evaluate exactly those.
    trainer.load_best()
    dtype = release.get("dtype", "float16")
    command = shlex.join(["python", sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    training = {"command": command, "hardware": describe_hardware(trainer.device)}
    trained = EmotionRecognizer(
        model, model_config, device=trainer.device, metadata={"training": training}
    )
    trained.save_pretrained(args.output, dtype=dtype)
    # backend="torch", as `emotionnet train` does: the reference numbers come from PyTorch.
    released = EmotionRecognizer.from_pretrained(
        args.output, device=trainer.device, backend="torch"
    )
    reports = {}
    for tta in release.get("tta", ["none"]):
        report = released.evaluate(val_data, tta=tta)
        name = val_split if tta == "none" else f"{val_split} + TTA ({tta})"
        reports[name] = report
        suffix = "" if tta == "none" else f"_{tta}"
        report.save_json(args.output / f"evaluation_{val_split}{suffix}.json")
        print(f"\n## {name}\n\n{report.to_markdown()}")
    # Rewrite the folder with the numbers in its model card and config.json.
    released.save_pretrained(args.output, evaluation=reports, dtype=dtype)
    shutil.copyfile(args.config, args.output / "recipe.toml")
    train_config.save(args.output / "train_config.json")
    history.to_json(args.output / "history.json")
    history.to_csv(args.output / "history.csv")
    print(f"model folder: {args.output} (load it with EmotionRecognizer.from_pretrained)")


if __name__ == "__main__":
    main()
