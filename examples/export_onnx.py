"""Export a model to ONNX and run it with plain onnxruntime, without PyTorch or emotionnet.

    python examples/export_onnx.py                          # the bundled model -> emotionnet.onnx
    python examples/export_onnx.py --model runs/fer2013_resnet18 --output model.onnx

The graph takes the normalised ``float32`` batch ``N x 1 x 48 x 48`` (any N) and returns the
seven logits; the model config (input size, mean/std, labels) travels inside the file as JSON
metadata, so any runtime that can read ONNX knows how to feed it. This script shows that by
running the exported file with onnxruntime and numpy alone, and checks that its probabilities
match PyTorch's. Needs the ``torch`` extra to export: ``pip install "emotionnet[torch]"``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from emotionnet import EmotionRecognizer, export_onnx

EXAMPLE_FACE = Path(__file__).resolve().parent / "images" / "astronaut_face.jpg"


def onnx_probabilities(session: ort.InferenceSession, image: Path) -> dict[str, float]:
    """Everything a non-Python deployment would do, with only Pillow, numpy and onnxruntime."""
    config = json.loads(session.get_modelmeta().custom_metadata_map["emotionnet.config"])
    size = config["input_size"]
    # The training preprocessing: grayscale (ITU-R 601 luma), resized as a whole, bilinear.
    face = Image.open(image).convert("L").resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(face, dtype=np.float32) / 255.0
    batch = ((pixels - config["mean"][0]) / config["std"][0])[None, None]  # 1 x 1 x H x W
    (logits,) = session.run(None, {session.get_inputs()[0].name: batch})
    exp = np.exp(logits[0] - logits[0].max())
    return dict(zip(config["labels"], (exp / exp.sum()).tolist(), strict=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Hub id or local folder (default: bundled)")
    parser.add_argument("--output", type=Path, default=Path("emotionnet.onnx"))
    parser.add_argument("--image", type=Path, default=EXAMPLE_FACE, help="face to check with")
    args = parser.parse_args(argv)

    recognizer = EmotionRecognizer.from_pretrained(args.model, device="cpu", backend="torch")
    # A dynamic batch axis, and the config in the graph's metadata.
    path = export_onnx(recognizer.model, args.output, config=recognizer.config)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    by_onnx = onnx_probabilities(session, args.image)
    # The graph is one forward pass: compare it with a single-view prediction (no TTA).
    by_torch = recognizer.predict(args.image, tta="none")[0].probabilities
    worst = max(abs(by_onnx[name] - by_torch[name]) for name in by_torch)
    print(f"{args.image.name}: onnxruntime says {max(by_onnx, key=by_onnx.get)}")
    for name, probability in by_onnx.items():
        print(f"  {name:<9} {probability:6.1%}")
    # Pillow's resize and emotionnet's agree to rounding: the numbers should match closely.
    print(f"largest difference from PyTorch: {worst:.2e}")

    # Inside Python, emotionnet can run the same graph for you:
    #     EmotionRecognizer.from_pretrained(backend="onnx").predict("face.jpg")


if __name__ == "__main__":
    main()
