"""The torch-free path predicts what the PyTorch path predicts, on every PublicTest face.

The inference install runs the bundled model's shipped ``model.onnx`` with the numpy views of
:mod:`emotionnet.tta`; evaluation and training run the PyTorch model with the torch views of
:mod:`emotionnet.inference`. Both must give the same probabilities (to 1e-5) and the same
labels on all 3,589 PublicTest faces, for every view set, and on faces found in photos.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emotionnet import FER2013, EmotionRecognizer, OnnxModel
from emotionnet.inference import predict_proba

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PHOTO = Path(__file__).resolve().parent.parent / "examples" / "images" / "astronaut.jpg"


@pytest.fixture(scope="module")
def public_faces(fer2013_root: Path) -> np.ndarray:
    return FER2013(fer2013_root, "public_test").images.numpy()


@pytest.fixture(scope="module")
def eager() -> EmotionRecognizer:
    return EmotionRecognizer.from_pretrained(backend="torch", device="cpu")


@pytest.mark.parametrize("tta", ["none", "flip", "flip_crop", "ten_crop"])
def test_every_public_test_face(
    public_faces: np.ndarray, eager: EmotionRecognizer, tta: str
) -> None:
    torch.set_num_threads(2)
    try:
        reference = predict_proba(
            eager.model,
            public_faces,
            tta=tta,
            batch_size=512,
            mean=eager.config.mean,
            std=eager.config.std,
        ).numpy()
    finally:
        torch.set_num_threads(1)
    ours = OnnxModel.bundled(num_threads=2).predict_proba(public_faces, tta=tta, batch_size=512)
    assert ours.shape == reference.shape == (3589, 7)
    assert float(np.abs(ours - reference).max()) <= 1e-5
    assert np.array_equal(ours.argmax(axis=1), reference.argmax(axis=1))


def _group_photo(faces: np.ndarray) -> Image.Image:
    """Four PublicTest faces, enlarged, on a grey canvas: a photo with several faces."""
    canvas = Image.new("L", (420, 420), 128)
    for number, face in enumerate(faces[:4]):
        tile = Image.fromarray(face).resize((160, 160), Image.Resampling.BICUBIC)
        canvas.paste(tile, (20 + 220 * (number % 2), 20 + 220 * (number // 2)))
    return canvas.convert("RGB")


@pytest.mark.parametrize("tta", ["none", "flip", "flip_crop", "ten_crop"])
def test_faces_in_photos(public_faces: np.ndarray, eager: EmotionRecognizer, tta: str) -> None:
    fast = EmotionRecognizer.from_pretrained(num_threads=1, precision="float32")
    assert fast.backend == "onnx" and eager.backend == "torch"
    photos = [PHOTO, _group_photo(public_faces[10:]), np.zeros((200, 200, 3), np.uint8)]
    found_fast = fast.predict_faces(photos, tta=tta)
    found_eager = eager.predict_faces(photos, tta=tta)
    assert [len(faces) for faces in found_fast] == [len(faces) for faces in found_eager]
    assert len(found_fast[0]) >= 1 and found_fast[2] == []
    flat_fast = [face for faces in found_fast for face in faces]
    flat_eager = [face for faces in found_eager for face in faces]
    for ours, theirs in zip(flat_fast, flat_eager, strict=True):
        assert ours.box == theirs.box and ours.prediction.label == theirs.prediction.label
        difference = max(
            abs(ours.prediction.probabilities[k] - theirs.prediction.probabilities[k])
            for k in fast.labels
        )
        assert difference <= 1e-5
