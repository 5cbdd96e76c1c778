"""Find every face on a photo, box it and label it with its emotion.

    python examples/analyze_photo.py                       # the example photo
    python examples/analyze_photo.py group.jpg -o out.png  # your own

Faces are found with OpenCV's Haar cascade (the ``face`` extra:
``pip install "emotionnet[face]"``), cropped the way FER2013 framed its faces, and classified
in one batch. The annotated copy of the photo is written to ``--output``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from emotionnet import EmotionRecognizer

EXAMPLE_PHOTO = Path(__file__).resolve().parent / "images" / "astronaut.jpg"

# One colour per emotion, in EMOTIONS order, so a glance at the picture groups the faces.
COLOURS = {
    "angry": (230, 25, 75),
    "disgust": (60, 180, 75),
    "fear": (145, 30, 180),
    "happy": (255, 200, 0),
    "sad": (0, 130, 200),
    "surprise": (245, 130, 48),
    "neutral": (190, 255, 0),  # lime: a grey would vanish on grey backgrounds
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", nargs="?", type=Path, default=EXAMPLE_PHOTO)
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("annotated.png"), help="annotated image to write"
    )
    parser.add_argument("--model", default=None, help="Hub id or local folder (default: bundled)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: automatic)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    recognizer = EmotionRecognizer.from_pretrained(args.model, device=args.device)

    # predict_faces reads the file through emotionnet's checks (formats, size limits, EXIF
    # rotation); its boxes are in the pixels of the upright photo, which is drawn on below.
    faces = recognizer.predict_faces(args.photo)[0]  # one photo; its faces, largest first
    photo = ImageOps.exif_transpose(Image.open(args.photo)).convert("RGB")
    print(f"{args.photo.name}: {len(faces)} face(s)")

    draw = ImageDraw.Draw(photo)
    line = max(2, round(max(photo.size) / 200))
    font_size = max(12, round(max(photo.size) / 30))
    for number, face in enumerate(faces, start=1):
        x, y, w, h = face.box
        prediction = face.prediction
        colour = COLOURS.get(prediction.label, (255, 255, 255))
        draw.rectangle((x, y, x + w - 1, y + h - 1), outline=colour, width=line)
        label = f"{prediction.label} {prediction.score:.0%}"
        # Write above the box when it fits, else just inside its top edge.
        text_y = y - font_size - line if y >= font_size + line else y + line
        draw.text((x, text_y), label, fill=colour, font_size=font_size)
        runner_up = ", ".join(f"{name} {p:.0%}" for name, p in prediction.top_k(3)[1:])
        print(f"  face {number} at {face.box}: {label} (then {runner_up})")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    photo.save(args.output)
    print(f"annotated photo written to {args.output}")


if __name__ == "__main__":
    main()
