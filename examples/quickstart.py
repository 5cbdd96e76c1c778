"""Quickstart: the emotion of a face in three lines, with the model bundled in the package.

    python examples/quickstart.py                 # the example face
    python examples/quickstart.py my_face.jpg     # your own picture of one face

No download and no network: ``EmotionRecognizer.from_pretrained()`` without a name loads the
release model shipped inside emotionnet. The picture should show one face, roughly cropped;
for photos with several faces see ``analyze_photo.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emotionnet import EmotionRecognizer

EXAMPLE_FACE = Path(__file__).resolve().parent / "images" / "astronaut_face.jpg"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", type=Path, default=EXAMPLE_FACE)
    parser.add_argument("--model", default=None, help="Hub id or local folder (default: bundled)")
    args = parser.parse_args(argv)

    recognizer = EmotionRecognizer.from_pretrained(args.model)
    prediction = recognizer.predict(args.image)[0]  # any size, colour or grayscale

    print(f"{args.image.name}: {prediction.label} ({prediction.score:.1%})")
    # All seven probabilities, in the canonical FER2013 order; they sum to 1.
    for emotion, probability in prediction.probabilities.items():
        bar = "#" * round(probability * 40)
        print(f"  {emotion:<9} {probability:6.1%}  {bar}")


if __name__ == "__main__":
    main()
