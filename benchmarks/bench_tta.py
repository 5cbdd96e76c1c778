"""Accuracy of test-time augmentation view sets on PublicTest, with their cost in forward passes.

Every view (the image, its mirror, the ten 44 px crops of ``tta="ten_crop"``, made by the same
code as ``emotionnet.metrics``) is run once through a saved model; each view set's prediction
is the mean of its views' softmax probabilities, as ``emotionnet.metrics`` averages them. So
one run ranks cheap view sets against ``ten_crop`` on the same weights. The cost of a set is
its number of forward passes (``benchmarks/bench_predict.py --tta`` times the modes
``predict`` offers).

    python benchmarks/bench_tta.py --model src/emotionnet/weights/default
    python benchmarks/bench_tta.py --model runs/fer2013_resnet18 --data ../shared/data/fer2013

Selection is done on PublicTest only, as everything in this project: never tune on PrivateTest.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from emotionnet import FER2013, EmotionRecognizer
from emotionnet.inference import _tta_views
from emotionnet.preprocessing import normalize

CROPS = ("top-left", "top-right", "bottom-left", "bottom-right", "centre")
VIEW_SETS: dict[str, tuple[str, ...]] = {
    "none": ("image",),
    "flip": ("image", "mirror"),
    "centre crop": ("centre",),
    "centre crop + mirror": ("centre", "mirror centre"),
    "image, centre crop, both mirrored": ("image", "mirror", "centre", "mirror centre"),
    "five crops": CROPS,
    "ten_crop": (*CROPS, *(f"mirror {name}" for name in CROPS)),
    "ten_crop + image + mirror": ("image", "mirror", *CROPS, *(f"mirror {c}" for c in CROPS)),
}


def views(batch: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every single view of a normalised N x 1 x 48 x 48 batch, by name: the library's own."""
    flip = zip(("image", "mirror"), _tta_views(batch, "flip"), strict=True)
    ten = zip(VIEW_SETS["ten_crop"], _tta_views(batch, "ten_crop"), strict=True)
    return {**dict(flip), **dict(ten)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("src/emotionnet/weights/default"))
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("EMOTIONNET_FER2013", "../shared/data/fer2013")),
    )
    parser.add_argument("--split", default="public_test")
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()

    recognizer = EmotionRecognizer.from_pretrained(args.model, device="cpu", backend="torch")
    model, config = recognizer.model.eval(), recognizer.config
    data = FER2013(args.data, args.split)
    images, targets = data.images, data.targets
    probabilities: dict[str, list[torch.Tensor]] = {}
    with torch.inference_mode():
        for start in range(0, len(images), args.batch_size):
            batch = normalize(images[start : start + args.batch_size], config.mean, config.std)
            for name, view in views(batch).items():
                probabilities.setdefault(name, []).append(torch.softmax(model(view), dim=1))
    per_view = {name: torch.cat(chunks) for name, chunks in probabilities.items()}

    print(f"# {args.model}, FER2013 {args.split} ({len(images)} faces)\n")
    print("| view set | forward passes | accuracy |")
    print("|---|---:|---:|")
    for name, members in VIEW_SETS.items():
        mean = torch.stack([per_view[member] for member in members]).mean(0)
        accuracy = float((mean.argmax(1) == targets).float().mean())
        print(f"| {name} | {len(members)} | {accuracy:.2%} |")
    print("\n| single view | accuracy |")
    print("|---|---:|")
    for name, proba in per_view.items():
        print(f"| {name} | {float((proba.argmax(1) == targets).float().mean()):.2%} |")


if __name__ == "__main__":
    main()
