"""Faces are found in composed photos, cropped square with a margin, largest first."""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch
from PIL import Image

import emotionnet.faces
from emotionnet import EmotionRecognizer, FaceEmotion, Prediction
from emotionnet.errors import InvalidArgumentError, MissingDependencyError
from emotionnet.faces import HaarCascadeDetector, crop_face, detect_faces
from emotionnet.models import ModelConfig, build_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "images"
Box = tuple[int, int, int, int]


def centre_inside(box: Box, region: Box) -> bool:
    x, y, w, h = box
    rx, ry, rw, rh = region
    cx, cy = x + w / 2, y + h / 2
    return rx <= cx <= rx + rw and ry <= cy <= ry + rh


def compose(
    faces: list[Image.Image], sizes: list[int], spots: list[tuple[int, int]]
) -> tuple[Image.Image, list[Box]]:
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(90, 140, (420, 720, 3), dtype=np.uint8), "RGB")
    placed = []
    for face, size, (x, y) in zip(faces, sizes, spots, strict=True):
        photo.paste(face.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), (x, y))
        placed.append((x, y, size, size))
    return photo, placed


@pytest.fixture(scope="module")
def recognizer() -> EmotionRecognizer:
    torch.manual_seed(0)
    config = ModelConfig(stem="imagenet")
    return EmotionRecognizer(build_model(config), config, device="cpu")


def test_haar_finds_every_face_in_a_composed_photo() -> None:
    face = Image.open(EXAMPLES / "astronaut_face.jpg")
    photo, placed = compose([face] * 3, [200, 140, 100], [(30, 40), (300, 60), (520, 220)])
    boxes = detect_faces(photo)
    assert len(boxes) == 3
    # Largest first, and each box on the face pasted there.
    assert [b[2] * b[3] for b in boxes] == sorted((b[2] * b[3] for b in boxes), reverse=True)
    for box, region in zip(boxes, placed, strict=True):
        assert centre_inside(box, region)


@pytest.mark.integration
def test_haar_finds_upscaled_fer2013_faces(fer2013_root: Path) -> None:
    # FER2013 faces that the cascade finds on their own (at the size and place they get in
    # the photo), one per class, then composed into one photo.
    sizes = [180, 150, 130, 110]
    spots = [(20, 20), (260, 40), (470, 30), (250, 260)]
    chosen: list[Image.Image] = []
    for emotion, size, spot in zip(
        ("angry", "happy", "surprise", "neutral"), sizes, spots, strict=True
    ):
        for path in sorted((fer2013_root / "test" / emotion).glob("PublicTest_*"))[:30]:
            face = Image.open(path)
            alone, _ = compose([face], [size], [spot])
            if len(detect_faces(alone)) == 1:
                chosen.append(face)
                break
    assert len(chosen) == 4
    photo, placed = compose(chosen, sizes, spots)
    boxes = detect_faces(photo)
    assert len(boxes) == 4
    for region in placed:
        assert any(centre_inside(box, region) for box in boxes)


def test_photo_without_faces_gives_no_boxes() -> None:
    assert detect_faces(np.full((200, 300), 128, dtype=np.uint8)) == []


def test_custom_detector_sees_grayscale_and_boxes_are_sorted_and_clipped() -> None:
    seen = []

    def detector(gray: np.ndarray) -> list[tuple[float, ...]]:
        seen.append((gray.dtype, gray.shape))
        return [(5, 5, 10, 10), (-10, -10, 40, 40), (90, 90, 50, 50), (200, 200, 5, 5)]

    boxes = detect_faces(np.zeros((100, 120, 3), dtype=np.uint8), detector=detector)
    assert seen == [(np.dtype(np.uint8), (100, 120))]
    # (-10,-10,40,40) clipped to 30x30; (90,90,50,50) to 30x10; the box outside is dropped.
    assert boxes == [(0, 0, 30, 30), (90, 90, 30, 10), (5, 5, 10, 10)]


@pytest.mark.parametrize("bad", [[(1, 2, 3)], [("a", 1, 2, 3)], [(0, 0, float("nan"), 4)], [7]])
def test_bad_detector_output_is_reported(bad: list[object]) -> None:
    with pytest.raises(InvalidArgumentError, match="detector"):
        detect_faces(np.zeros((20, 20), np.uint8), detector=lambda gray: cast(Any, bad))


def test_crop_is_square_with_margin_and_stays_inside() -> None:
    photo = Image.new("L", (200, 100))
    assert crop_face(photo, (50, 30, 40, 40), margin=0.25).size == (60, 60)
    # At the edge the square is shifted inside, not cut.
    left, top = 0, 0
    crop = crop_face(photo, (left, top, 40, 40), margin=0.25)
    assert crop.size == (60, 60)
    # Larger than the photo: clipped to it.
    assert crop_face(photo, (0, 0, 100, 100), margin=0.5).size == (200, 100)


def test_crop_keeps_the_face_centred() -> None:
    photo = Image.new("L", (100, 100), 0)
    photo.paste(255, (40, 40, 60, 60))
    crop = np.asarray(crop_face(photo, (40, 40, 20, 20), margin=0.5))
    assert crop.shape == (40, 40)
    assert crop[10:30, 10:30].min() == 255 and crop[:10].max() == 0


def test_negative_margin_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="margin"):
        crop_face(Image.new("L", (10, 10)), (0, 0, 5, 5), margin=-0.1)


def test_missing_opencv_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)
    monkeypatch.setattr(emotionnet.faces, "_default_detector", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "emotionnet\[face\]"'):
        detect_faces(np.zeros((20, 20), np.uint8))
    with pytest.raises(MissingDependencyError):
        HaarCascadeDetector()


class _OverlapRecorder:
    """Wraps a cascade classifier, recording how many threads are inside it at once."""

    def __init__(self, classifier: Any) -> None:
        self._classifier = classifier
        self._guard = threading.Lock()
        self.inside = 0
        self.most_inside = 0

    def detectMultiScale(self, *args: Any, **kwargs: Any) -> Any:
        with self._guard:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        try:
            time.sleep(0.01)  # widen the window in which a second thread could come in
            return self._classifier.detectMultiScale(*args, **kwargs)
        finally:
            with self._guard:
                self.inside -= 1


def test_one_detector_shared_by_threads_gives_the_serial_boxes() -> None:
    # A web app caches one recognizer (and the module's default detector) and serves each
    # session on its own thread; OpenCV does not allow one classifier in two threads at once.
    face = Image.open(EXAMPLES / "astronaut_face.jpg")
    photos = [
        compose([face] * 2, [200, 120], [(30 + 40 * i, 40), (400, 60 + 30 * i)])[0]
        for i in range(4)
    ]
    detector = HaarCascadeDetector()
    serial = [detect_faces(photo, detector=detector) for photo in photos]
    assert all(len(boxes) == 2 for boxes in serial)
    recorder = _OverlapRecorder(detector._classifier)
    detector._classifier = recorder
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda p: detect_faces(p, detector=detector), photos * 3))
    assert concurrent == serial * 3
    assert recorder.most_inside == 1


def test_default_detector_is_created_once_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emotionnet.faces, "_default_detector", None)
    with ThreadPoolExecutor(max_workers=4) as pool:
        detectors = list(pool.map(lambda _: emotionnet.faces._get_default_detector(), range(8)))
    assert all(d is detectors[0] for d in detectors)


def test_haar_settings_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="scale_factor"):
        HaarCascadeDetector(scale_factor=1.0)
    with pytest.raises(InvalidArgumentError, match="cascade"):
        HaarCascadeDetector(cascade="no_such_cascade.xml")


# --- through the recognizer ------------------------------------------------------------------


def test_predict_faces_on_a_photo(recognizer: EmotionRecognizer) -> None:
    found = recognizer.predict(EXAMPLES / "astronaut.jpg", faces=True)
    assert len(found) == 1
    (face,) = found
    assert isinstance(face, FaceEmotion) and isinstance(face.prediction, Prediction)
    x, y, w, h = face.box
    assert 90 < x + w / 2 < 180 and 30 < y + h / 2 < 120  # on the astronaut's face


def test_predict_faces_equals_predicting_the_crop(recognizer: EmotionRecognizer) -> None:
    photo = Image.open(EXAMPLES / "astronaut.jpg")
    (face,) = recognizer.predict(photo, faces=True)
    crop = crop_face(photo, face.box, margin=recognizer.face_margin)
    assert recognizer.predict(crop).probabilities == pytest.approx(
        face.prediction.probabilities, abs=1e-6
    )


def test_predict_faces_with_a_custom_detector_per_image(recognizer: EmotionRecognizer) -> None:
    recognizer_with = EmotionRecognizer(
        recognizer.model,
        recognizer.config,
        device="cpu",
        face_detector=lambda gray: [(0, 0, 10, 10), (0, 0, 30, 30)] if gray.mean() > 0 else [],
    )
    images = [np.full((60, 60), 200, np.uint8), np.zeros((60, 60), np.uint8)]
    results = recognizer_with.predict(images, faces=True, batch_size=1)
    assert [len(faces) for faces in results] == [2, 0]
    assert [face.box for face in results[0]] == [(0, 0, 30, 30), (0, 0, 10, 10)]
    assert recognizer_with.predict(images[1], faces=True) == []
