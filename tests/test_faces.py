"""Faces are found in composed photos, cropped square with a margin, largest first."""

from __future__ import annotations

import io
import sys
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

import emotionnet.faces
from emotionnet import EmotionRecognizer, FaceEmotion, Prediction
from emotionnet._optional import is_installed
from emotionnet.errors import InvalidArgumentError, MissingDependencyError, UnsupportedInputError
from emotionnet.faces import (
    DEFAULT_DETECTOR,
    DETECTORS,
    DlibHogDetector,
    FaceDetection,
    HaarCascadeDetector,
    crop_face,
    detect_faces,
    get_detector,
)
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
    boxes = detect_faces(photo, detector="haar")
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
            if len(detect_faces(alone, detector="haar")) == 1:
                chosen.append(face)
                break
    assert len(chosen) == 4
    photo, placed = compose(chosen, sizes, spots)
    boxes = detect_faces(photo, detector="haar")
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
    monkeypatch.setitem(sys.modules, "dlib", None)  # "auto" falls back to the Haar cascade
    monkeypatch.setattr(emotionnet.faces, "_shared_detectors", {})
    with pytest.raises(MissingDependencyError, match=r'pip install "emotionnet\[face\]"'):
        detect_faces(np.zeros((20, 20), np.uint8))
    with pytest.raises(MissingDependencyError, match=r'pip install "emotionnet\[face\]"'):
        detect_faces(np.zeros((20, 20), np.uint8), detector="haar")
    with pytest.raises(MissingDependencyError):
        HaarCascadeDetector()


class _OverlapRecorder:
    """Wraps a cascade classifier, recording how many threads are inside it at once."""

    def __init__(self, classifier: Any) -> None:
        self._classifier = classifier
        self._guard = threading.Lock()
        self.inside = 0
        self.most_inside = 0

    def detectMultiScale3(self, *args: Any, **kwargs: Any) -> Any:
        with self._guard:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        try:
            time.sleep(0.01)  # widen the window in which a second thread could come in
            return self._classifier.detectMultiScale3(*args, **kwargs)
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
    monkeypatch.setattr(emotionnet.faces, "_shared_detectors", {})
    with ThreadPoolExecutor(max_workers=4) as pool:
        detectors = list(pool.map(lambda _: emotionnet.faces._get_default_detector(), range(8)))
    assert all(d is detectors[0] for d in detectors)


def test_haar_settings_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="scale_factor"):
        HaarCascadeDetector(scale_factor=1.0)
    with pytest.raises(InvalidArgumentError, match="cascade"):
        HaarCascadeDetector(cascade="no_such_cascade.xml")


# --- through the recognizer ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("detector", "min_confidence"),
    [
        ("haar", None),
        # dlib also boxes the name badge, weakly (0.04): its default threshold drops it.
        pytest.param(
            "dlib",
            None,
            marks=pytest.mark.skipif(not is_installed("dlib"), reason="dlib is not installed"),
        ),
        (None, None),  # the default detector, whichever it is here: the README's quickstart
    ],
)
def test_predict_faces_on_a_photo(
    recognizer: EmotionRecognizer, detector: str | None, min_confidence: float | None
) -> None:
    named = EmotionRecognizer(
        recognizer.model, recognizer.config, device="cpu", face_detector=detector
    )
    (found,) = named.predict_faces(EXAMPLES / "astronaut.jpg", min_face_confidence=min_confidence)
    assert len(found) == 1
    (face,) = found
    assert isinstance(face, FaceEmotion) and isinstance(face.prediction, Prediction)
    x, y, w, h = face.box
    assert 90 < x + w / 2 < 180 and 30 < y + h / 2 < 120  # on the astronaut's face
    # Largest first, whatever the filters: the astronaut's face leads the unfiltered list too.
    assert named.predict_faces(EXAMPLES / "astronaut.jpg")[0][0].box == face.box


def test_predict_faces_equals_predicting_the_crop(recognizer: EmotionRecognizer) -> None:
    photo = Image.open(EXAMPLES / "astronaut.jpg")
    face = recognizer.predict_faces(photo)[0][0]
    crop = crop_face(photo, face.box, margin=recognizer.face_margin)
    assert recognizer.predict(crop)[0].probabilities == pytest.approx(
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
    results = recognizer_with.predict_faces(images, batch_size=1)
    assert [len(faces) for faces in results] == [2, 0]
    assert [face.box for face in results[0]] == [(0, 0, 30, 30), (0, 0, 10, 10)]
    assert recognizer_with.predict_faces(images[1]) == [[]]


# --- confidence, filters and detectors by name -------------------------------------------------


def _scored(gray: np.ndarray) -> list[tuple[float, ...]]:
    """A stand-in detector: boxes with a confidence, one without, in no particular order."""
    return [(0, 0, 20, 20, 0.9), (30, 5, 40, 40, 0.2), (5, 30, 8, 8, 3.0), (60, 0, 30, 30)]


def test_detector_confidences_come_with_the_boxes_largest_first() -> None:
    image = np.zeros((50, 100), np.uint8)
    found = detect_faces(image, detector=_scored, with_confidence=True)
    assert found == [
        FaceDetection((30, 5, 40, 40), 0.2),
        FaceDetection((60, 0, 30, 30), None),
        FaceDetection((0, 0, 20, 20), 0.9),
        FaceDetection((5, 30, 8, 8), 3.0),
    ]
    box, confidence = found[0]  # a named tuple
    assert (box, confidence) == ((30, 5, 40, 40), 0.2)
    # Without with_confidence: the boxes alone, as before.
    assert detect_faces(image, detector=_scored) == [f.box for f in found]
    # A None confidence in the fifth place is no confidence.
    none = detect_faces(image, detector=lambda g: [(1, 1, 9, 9, None)], with_confidence=True)
    assert none == [FaceDetection((1, 1, 9, 9), None)]


def test_min_confidence_min_face_size_and_max_faces_filter_in_order() -> None:
    image = np.zeros((50, 100), np.uint8)

    def boxes(**options: Any) -> list[Box]:
        return detect_faces(image, detector=_scored, **options)

    # Boxes without a confidence are kept: the detector vouches for them.
    assert boxes(min_confidence=0.5) == [(60, 0, 30, 30), (0, 0, 20, 20), (5, 30, 8, 8)]
    assert boxes(min_confidence=0.9) == [(60, 0, 30, 30), (0, 0, 20, 20), (5, 30, 8, 8)]
    assert boxes(min_face_size=20) == [(30, 5, 40, 40), (60, 0, 30, 30), (0, 0, 20, 20)]
    assert boxes(min_face_size=21) == [(30, 5, 40, 40), (60, 0, 30, 30)]
    assert boxes(max_faces=2) == [(30, 5, 40, 40), (60, 0, 30, 30)]
    # Filters first, then the largest max_faces of what is left.
    assert boxes(min_confidence=0.5, max_faces=2) == [(60, 0, 30, 30), (0, 0, 20, 20)]
    assert boxes(min_face_size=0, min_confidence=-5.0, max_faces=10) == boxes()
    # min_face_size is measured on the box clipped to the photo: (60, 0, 30, 30) in a
    # 75 px wide photo is 15 px wide.
    narrow = np.zeros((50, 75), np.uint8)
    assert detect_faces(narrow, detector=_scored, min_face_size=16) == [
        (30, 5, 40, 40),
        (0, 0, 20, 20),
    ]


def test_min_face_size_is_in_the_pixels_of_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    import emotionnet.images

    # A file decoded at half size: the detector sees 30 px, the file has 60 px.
    monkeypatch.setattr(emotionnet.images, "MAX_WORKING_SIDE", 100)
    encoded = io.BytesIO()
    Image.new("L", (200, 200)).save(encoded, format="PNG")
    found = detect_faces(
        encoded.getvalue(), detector=lambda g: [(10, 10, 30, 30, 1.0)], min_face_size=50
    )
    assert found == [(20, 20, 60, 60)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_face_size": -1}, "min_face_size"),
        ({"min_face_size": 2.5}, "min_face_size"),
        ({"min_face_size": True}, "min_face_size"),
        ({"min_confidence": float("nan")}, "min_confidence"),
        ({"min_confidence": float("inf")}, "min_confidence"),
        ({"min_confidence": "high"}, "min_confidence"),
        ({"max_faces": 0}, "max_faces"),
        ({"max_faces": -3}, "max_faces"),
        ({"detector": "cnn"}, "Unknown face detector 'cnn'"),
    ],
)
def test_bad_filters_and_detector_names_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        detect_faces(np.zeros((20, 20), np.uint8), **{"detector": _scored, **options})


def test_a_detector_that_is_not_callable_is_refused() -> None:
    with pytest.raises(UnsupportedInputError, match="callable"):
        detect_faces(np.zeros((20, 20), np.uint8), detector=cast(Any, 42))


@pytest.mark.parametrize("bad", [[(0, 0, 5, 5, float("nan"))], [(0, 0, 5, 5, "high")]])
def test_a_bad_confidence_from_the_detector_is_reported(bad: list[object]) -> None:
    with pytest.raises(InvalidArgumentError, match="confidence"):
        detect_faces(np.zeros((20, 20), np.uint8), detector=lambda gray: cast(Any, bad))


def test_haar_gives_each_box_a_confidence_real_faces_score_high() -> None:
    face = Image.open(EXAMPLES / "astronaut_face.jpg")
    photo, placed = compose([face] * 2, [200, 120], [(30, 40), (400, 60)])
    found = detect_faces(photo, detector="haar", with_confidence=True)
    assert len(found) == 2
    for (box, confidence), region in zip(found, placed, strict=True):
        assert centre_inside(box, region)
        # On bench_detectors.py's scenes real faces mostly score above 2.
        assert isinstance(confidence, float) and confidence > 2.0
    # A blurred, washed-out copy of the face is a worse face: the cascade is less sure of it,
    # or does not see it at all.
    weak = Image.blend(
        face.convert("L").filter(ImageFilter.GaussianBlur(3)), Image.new("L", face.size, 128), 0.5
    )
    faint, _ = compose([weak], [200], [(30, 40)])
    weak_found = detect_faces(
        faint, detector=HaarCascadeDetector(min_neighbors=0), with_confidence=True
    )
    best = max((c for _, c in weak_found if c is not None), default=float("-inf"))
    assert best < found[0].confidence
    # Nothing to see, nothing found.
    assert (
        detect_faces(np.full((200, 300), 128, np.uint8), detector="haar", with_confidence=True)
        == []
    )


def test_haar_confidences_filter_what_min_neighbors_kept() -> None:
    # Raw candidates (min_neighbors=0) include weak ones; min_confidence keeps the strong.
    face = Image.open(EXAMPLES / "astronaut_face.jpg")
    photo, _ = compose([face], [160], [(200, 100)])
    every = detect_faces(photo, detector=HaarCascadeDetector(min_neighbors=0), with_confidence=True)
    confidences = [c for _, c in every]
    assert len(every) > 1 and all(isinstance(c, float) for c in confidences)
    threshold = sorted(cast(list[float], confidences))[len(confidences) // 2]
    strong = detect_faces(
        photo, detector=HaarCascadeDetector(min_neighbors=0), min_confidence=threshold
    )
    assert 0 < len(strong) < len(every)


def test_named_detectors_are_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emotionnet.faces, "_shared_detectors", {})
    haar = get_detector("haar")
    assert isinstance(haar, HaarCascadeDetector) and get_detector("haar") is haar
    assert get_detector(_scored) is _scored
    assert set(DETECTORS) == {"auto", "haar", "dlib"} and DEFAULT_DETECTOR in DETECTORS


class _FakeRectangle:
    def __init__(self, left: int, top: int, right: int, bottom: int) -> None:
        self._box = (left, top, right, bottom)

    def left(self) -> int:
        return self._box[0]

    def top(self) -> int:
        return self._box[1]

    def width(self) -> int:
        return self._box[2] - self._box[0] + 1

    def height(self) -> int:
        return self._box[3] - self._box[1] + 1


class _FakeDlibDetector:
    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], Any, int, float]] = []

    def run(self, image: np.ndarray, upsample: int, threshold: float) -> tuple[Any, ...]:
        self.calls.append((image.shape, image.dtype, upsample, threshold))
        return (
            [_FakeRectangle(-10, 20, 89, 119), _FakeRectangle(150, 10, 179, 39)],
            [1.5, 0.1],
            [0, 0],
        )


@pytest.fixture
def fake_dlib(monkeypatch: pytest.MonkeyPatch) -> _FakeDlibDetector:
    """A stand-in dlib module whose detector records its calls and finds two faces."""
    detector = _FakeDlibDetector()
    module = types.ModuleType("dlib")
    module.get_frontal_face_detector = lambda: detector  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dlib", module)
    monkeypatch.setattr(emotionnet.faces, "_shared_detectors", {})
    return detector


def test_dlib_by_name_with_a_stand_in_module(fake_dlib: _FakeDlibDetector) -> None:
    image = np.zeros((120, 200, 3), np.uint8)
    raw = detect_faces(image, detector=DlibHogDetector(reframe=False), with_confidence=True)
    # dlib's rectangles are inclusive; the first reaches past the left edge and is clipped.
    assert raw == [FaceDetection((0, 20, 90, 100), 1.5), FaceDetection((150, 10, 30, 30), 0.1)]
    assert fake_dlib.calls[-1] == ((120, 200), np.dtype(np.uint8), 1, 0.08)
    # By name; "auto" picks dlib when it is installed. Boxes are reframed like Haar's.
    found = detect_faces(image, detector="dlib", with_confidence=True, min_confidence=1.0)
    assert isinstance(get_detector("dlib"), DlibHogDetector)
    assert get_detector("auto") is get_detector("dlib")
    # (-10, 20, 100, 100) grown 1.13 times about a centre moved up 9 px, then clipped.
    assert found == [FaceDetection((0, 4, 97, 113), 1.5)]
    DlibHogDetector(upsample=0, threshold=-0.5)(np.zeros((10, 10), np.uint8))
    assert fake_dlib.calls[-1][2:] == (0, -0.5)


def test_dlib_reframing_is_scale_and_shift() -> None:
    assert emotionnet.faces._DLIB_SCALE > 1 and 0 < emotionnet.faces._DLIB_SHIFT < 0.2


@pytest.mark.parametrize(
    "options", [{"upsample": -1}, {"upsample": 1.5}, {"threshold": float("nan")}]
)
def test_dlib_settings_are_checked(fake_dlib: _FakeDlibDetector, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        DlibHogDetector(**options)


def test_missing_dlib_names_the_extra_and_auto_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)
    monkeypatch.setattr(emotionnet.faces, "_shared_detectors", {})
    with pytest.raises(MissingDependencyError, match=r'pip install "emotionnet\[dlib\]"'):
        DlibHogDetector()
    with pytest.raises(MissingDependencyError, match=r"emotionnet\[dlib\]"):
        detect_faces(np.zeros((20, 20), np.uint8), detector="dlib")
    assert isinstance(get_detector("auto"), HaarCascadeDetector)


def test_real_dlib_finds_the_example_face() -> None:
    pytest.importorskip("dlib")
    # The README's photo: the astronaut's face alone (not her name badge).
    (found,) = detect_faces(EXAMPLES / "astronaut.jpg", detector="dlib", with_confidence=True)
    (x, y, w, h), confidence = found
    assert 90 < x + w / 2 < 180 and 30 < y + h / 2 < 120  # on the astronaut's face
    assert confidence is not None and confidence > 0.5
    # A blank picture: nothing.
    assert detect_faces(np.full((200, 300), 128, np.uint8), detector="dlib") == []


def test_real_dlib_drops_weak_boxes_unless_its_threshold_is_lowered() -> None:
    pytest.importorskip("dlib")
    photo = EXAMPLES / "astronaut.jpg"
    floor = DlibHogDetector().threshold
    kept = detect_faces(photo, detector=DlibHogDetector(), with_confidence=True)
    everything = detect_faces(photo, detector=DlibHogDetector(threshold=0), with_confidence=True)
    # dlib's own operating point (0) also boxes the name badge, below the default threshold.
    (badge,) = set(everything) - set(kept)
    assert badge.confidence is not None and 0 <= badge.confidence < floor
    assert set(kept) < set(everything)
    assert all(face.confidence is not None and face.confidence >= floor for face in kept)


# --- the filters through the recognizer ------------------------------------------------------


def _with_detector(recognizer: EmotionRecognizer, **options: Any) -> EmotionRecognizer:
    return EmotionRecognizer(
        recognizer.model, recognizer.config, device="cpu", face_detector=_scored, **options
    )


def test_face_emotion_carries_the_confidence(recognizer: EmotionRecognizer) -> None:
    (found,) = _with_detector(recognizer).predict_faces(np.zeros((50, 100), np.uint8))
    assert [(f.box, f.confidence) for f in found] == [
        ((30, 5, 40, 40), 0.2),
        ((60, 0, 30, 30), None),
        ((0, 0, 20, 20), 0.9),
        ((5, 30, 8, 8), 3.0),
    ]
    assert found[0].to_dict()["confidence"] == 0.2 and found[1].to_dict()["confidence"] is None
    # Positional construction without a confidence still works.
    assert FaceEmotion((0, 0, 1, 1), found[0].prediction).confidence is None


def test_recognizer_filters_from_attributes_and_per_call(recognizer: EmotionRecognizer) -> None:
    image = np.zeros((50, 100), np.uint8)
    filtered = _with_detector(recognizer, min_face_size=10, min_face_confidence=0.5, max_faces=1)
    assert [f.box for f in filtered.predict_faces(image)[0]] == [(60, 0, 30, 30)]
    # Per call, over the attributes.
    assert [f.box for f in filtered.predict_faces(image, max_faces=3)[0]] == [
        (60, 0, 30, 30),
        (0, 0, 20, 20),
    ]
    filtered.max_faces = None  # attributes may be changed at any time
    filtered.min_face_confidence = None
    assert len(filtered.predict_faces(image)[0]) == 3
    # A list of images: each filtered on its own.
    results = filtered.predict_faces([image, image], max_faces=2)
    assert [len(r) for r in results] == [2, 2]


def test_recognizer_refuses_bad_filters_and_detector_names(recognizer: EmotionRecognizer) -> None:
    model, config = recognizer.model, recognizer.config
    with pytest.raises(InvalidArgumentError, match="min_face_size"):
        EmotionRecognizer(model, config, device="cpu", min_face_size=-1)
    with pytest.raises(InvalidArgumentError, match="min_face_confidence"):
        EmotionRecognizer(model, config, device="cpu", min_face_confidence=float("nan"))
    with pytest.raises(InvalidArgumentError, match="max_faces"):
        EmotionRecognizer(model, config, device="cpu", max_faces=0)
    with pytest.raises(InvalidArgumentError, match="Unknown face detector 'mtcnn'"):
        EmotionRecognizer(model, config, device="cpu", face_detector="mtcnn")
    with pytest.raises(UnsupportedInputError, match="callable"):
        EmotionRecognizer(model, config, device="cpu", face_detector=cast(Any, 3))
    image = np.zeros((50, 100), np.uint8)
    usable = _with_detector(recognizer)
    with pytest.raises(InvalidArgumentError, match="min_face_confidence"):
        usable.predict_faces(image, min_face_confidence=float("nan"))
    with pytest.raises(TypeError, match="max_faces"):
        usable.predict(image, max_faces=1)  # type: ignore[call-arg]  # face filters: predict_faces
    with pytest.raises(TypeError, match="faces"):
        usable.predict(image, faces=True)  # type: ignore[call-arg]  # removed: use predict_faces
    usable.min_face_size = -5  # an attribute set to a bad value: refused when used
    with pytest.raises(InvalidArgumentError, match="min_face_size"):
        usable.predict_faces(image)
    usable.min_face_size = None
    usable.face_detector = "yolo"
    with pytest.raises(InvalidArgumentError, match="Unknown face detector"):
        usable.predict_faces(image)


def test_recognizer_takes_detectors_by_name(recognizer: EmotionRecognizer) -> None:
    named = EmotionRecognizer(
        recognizer.model, recognizer.config, device="cpu", face_detector="haar"
    )
    ((face,),) = named.predict_faces(EXAMPLES / "astronaut.jpg")
    assert face.confidence is not None and face.confidence > 2.0
    ((only,),) = named.predict_faces(EXAMPLES / "astronaut.jpg", min_face_size=40)
    assert only.box == face.box
    assert named.predict_faces(EXAMPLES / "astronaut.jpg", min_face_size=100) == [[]]


def test_recognizer_with_a_dlib_stand_in(
    recognizer: EmotionRecognizer, fake_dlib: _FakeDlibDetector
) -> None:
    named = EmotionRecognizer(
        recognizer.model, recognizer.config, device="cpu", face_detector="dlib"
    )
    (found,) = named.predict_faces(np.zeros((120, 200), np.uint8))
    assert [f.confidence for f in found] == [1.5, 0.1]
    (kept,) = named.predict_faces(np.zeros((120, 200), np.uint8), min_face_confidence=1)
    assert kept[0].confidence == 1.5


def test_recognizer_without_dlib_names_the_extra(
    recognizer: EmotionRecognizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)
    monkeypatch.setattr(emotionnet.faces, "_shared_detectors", {})
    with pytest.raises(MissingDependencyError, match=r"emotionnet\[dlib\]"):
        EmotionRecognizer(recognizer.model, recognizer.config, device="cpu", face_detector="dlib")


# --- fork while a detector is in use ---------------------------------------------------------


def _run_in_forked_child(work: Any, *, seconds: float = 60.0) -> int:
    """Fork, run ``work()`` in the child (exit 0 when it returns True), wait at most
    ``seconds``: a child that hangs is killed and reported as -1, so the test cannot hang."""
    import os
    import signal

    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            code = 0 if work() else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -1


def _hold_while_forking(locks: list[Any], work: Any) -> int:
    """Another thread holds ``locks`` (as a detection in progress does) while the process
    forks; the child runs ``work``."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        for lock in locks:
            lock.acquire()
        holding.set()
        release.wait(60)
        for lock in reversed(locks):
            lock.release()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert holding.wait(10)
    try:
        return _run_in_forked_child(work, seconds=30)
    finally:
        release.set()
        thread.join(10)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads, Python 3.12+
def test_a_fork_while_the_shared_detector_is_busy_does_not_hang_the_child() -> None:
    pytest.importorskip("cv2")
    photo = Image.open(EXAMPLES / "astronaut.jpg")
    expected = detect_faces(photo, detector="haar")
    assert expected  # the astronaut's face
    shared = get_detector("haar")
    locks = [shared._lock, emotionnet.faces._shared_lock]  # type: ignore[attr-defined]
    code = _hold_while_forking(locks, lambda: detect_faces(photo, detector="haar") == expected)
    assert code == 0, "the child hung on a lock held at fork time" if code == -1 else code
    # The parent's detector works on as before.
    assert detect_faces(photo, detector="haar") == expected


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_fork_during_a_real_detection_leaves_a_working_detector_in_the_child() -> None:
    pytest.importorskip("cv2")
    photo = Image.open(EXAMPLES / "astronaut.jpg")
    detector = HaarCascadeDetector()
    expected = detect_faces(photo, detector=detector)
    big = np.asarray(photo.convert("L").resize((2000, 2000)))
    busy = threading.Event()
    stop = threading.Event()

    def detect_in_a_loop() -> None:
        while not stop.is_set():
            busy.set()
            detector(big)

    thread = threading.Thread(target=detect_in_a_loop, daemon=True)
    thread.start()
    try:
        assert busy.wait(10)
        time.sleep(0.05)  # most likely inside detectMultiScale now
        code = _run_in_forked_child(lambda: detect_faces(photo, detector=detector) == expected)
    finally:
        stop.set()
        thread.join(60)
    assert code == 0, "the child hung on a lock held at fork time" if code == -1 else code


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_fork_while_a_dlib_detector_is_busy_does_not_hang_the_child() -> None:
    if not is_installed("dlib"):
        pytest.skip("dlib is not installed")
    detector = DlibHogDetector()
    blank = np.zeros((100, 100), dtype=np.uint8)
    code = _hold_while_forking([detector._lock], lambda: detector(blank) == [])
    assert code == 0, "the child hung on a lock held at fork time" if code == -1 else code


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads, Python 3.12+
def test_a_fork_while_the_face_crop_check_is_busy_does_not_hang_the_child() -> None:
    pytest.importorskip("cv2")
    from emotionnet import _crop_check

    photo = Image.open(EXAMPLES / "astronaut.jpg").convert("L")
    _crop_check._haar()  # made once in the parent
    code = _hold_while_forking(
        [_crop_check._lock],
        lambda: (
            _crop_check.not_a_face_crop(photo, photo.size, input_size=48, source=None) is not None
        ),
    )
    assert code == 0, "the child hung on a lock held at fork time" if code == -1 else code
