"""Fine-tune the bundled model on your own labelled folder, then predict with the result.

DATA_DIR holds one folder of face images per label; the folder names are the labels, any
set of them (``positive/ neutral/ negative/``, the seven FER2013 emotions plus ``contempt/``,
...). The model starts from the bundled one (or ``--init MODEL``) with a new head for these
labels, trains the head, then all layers, and keeps its best epoch on a validation split.

    python examples/finetune_folder.py my_faces --output runs/my_model
    python examples/finetune_folder.py my_faces --output runs/my_model --val my_val_faces
    python examples/finetune_folder.py my_faces --output runs/my_model --faces  # photos
    emotionnet predict --model runs/my_model face.jpg                          # afterwards

The same as ``emotionnet finetune DATA_DIR --output OUT_DIR``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from emotionnet import EmotionRecognizer, finetune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="one sub-folder of face images per label")
    parser.add_argument("--output", type=Path, required=True, help="the model folder to write")
    parser.add_argument("--init", default="default", help="model to start from (the bundled one)")
    parser.add_argument("--epochs", type=int, help="epochs (default: chosen from the data size)")
    parser.add_argument("--val", type=Path, help="a separate validation folder")
    parser.add_argument("--val-split", type=float, default=0.2, help="held-out share (0.2)")
    parser.add_argument("--faces", action="store_true", help="crop the largest face first")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier model")
    args = parser.parse_args()
    # One line per epoch: losses, validation accuracy, learning rate, speed.
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    result = finetune(
        args.data,
        args.output,
        init=args.init,
        epochs=args.epochs,
        val=args.val,
        val_split=args.val_split,
        faces=args.faces,
        overwrite=args.overwrite,
        progress=False,
    )
    print(f"labels: {', '.join(result.labels)}")
    print(
        f"{result.train_size} training / {result.val_size} validation images, "
        f"{len(result.history)} epochs in {result.seconds:.0f} s, epoch {result.best_epoch} kept"
    )
    print(result.report.to_markdown())

    # The folder is a model like any other: every command and the app predict its labels.
    recognizer = EmotionRecognizer.from_pretrained(result.folder)
    for label in result.labels:
        image = next(p for p in sorted((args.data / label).iterdir()) if p.is_file())
        prediction = recognizer.predict(image)[0]
        print(f"{label}/{image.name}: {prediction.label} ({prediction.score:.0%})")


if __name__ == "__main__":
    main()
