"""Evaluate a model on a FER2013 split: the report, its JSON and a confusion-matrix PNG.

    python examples/evaluate_fer2013.py --data path/to/fer2013                # bundled model
    python examples/evaluate_fer2013.py --data DIR --model runs/fer2013_resnet18 --tta flip
    python examples/evaluate_fer2013.py --data DIR --split private_test       # the test set

Select models on ``public_test``; evaluate ``private_test`` once, for the model you report.
The confusion-matrix picture needs the ``plot`` extra (``pip install "emotionnet[plot]"``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from emotionnet import FER2013, EmotionRecognizer, plot_confusion_matrix
from emotionnet.tta import TTA_MODES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("EMOTIONNET_FER2013", "data/fer2013")),
        help="FER2013 in any supported layout (default: $EMOTIONNET_FER2013 or data/fer2013)",
    )
    parser.add_argument("--split", default="public_test", help="public_test, private_test, ...")
    parser.add_argument("--model", default=None, help="Hub id or local folder (default: bundled)")
    parser.add_argument("--tta", default="none", choices=TTA_MODES, help="test-time augmentation")
    parser.add_argument("--output", type=Path, default=Path("evaluation"), help="output folder")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: automatic)")
    parser.add_argument("--max-samples", type=int, help="evaluate a random subset (quick look)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    recognizer = EmotionRecognizer.from_pretrained(args.model, device=args.device)
    dataset = FER2013(args.data, split=args.split)
    data: FER2013 | tuple[torch.Tensor, torch.Tensor] = dataset
    if args.max_samples is not None and args.max_samples < len(dataset):
        # A fixed random subset: a quick look, not a number to report.
        keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))
        data = dataset.images[keep[: args.max_samples]], dataset.targets[keep[: args.max_samples]]

    # The recognizer evaluates with its own normalisation and labels, like it predicts.
    report = recognizer.evaluate(data, batch_size=args.batch_size, tta=args.tta, progress=True)
    print(report.to_markdown())

    args.output.mkdir(parents=True, exist_ok=True)
    stem = args.split if args.tta == "none" else f"{args.split}_{args.tta}"
    report.save_json(args.output / f"evaluation_{stem}.json")
    picture = args.output / f"confusion_matrix_{stem}.png"
    plot_confusion_matrix(report, picture, normalize=True)
    print(f"report: {args.output / f'evaluation_{stem}.json'}\nconfusion matrix: {picture}")


if __name__ == "__main__":
    main()
