"""Many paths: folders expanded lazily, results streamed in order, errors per path."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotionnet import EmotionRecognizer
from emotionnet.batch import IMAGE_SUFFIXES, PathResult, iter_image_paths, predict_paths
from emotionnet.errors import CorruptImageError, ImageNotFoundError


@pytest.fixture(scope="module")
def recognizer(model_dir: Path) -> EmotionRecognizer:
    return EmotionRecognizer.from_pretrained(model_dir, device="cpu", backend="torch", tta="none")


def _faces(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        path = folder / f"face_{index:02d}.png"
        Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_suffixes_are_those_of_the_accepted_formats() -> None:
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".gif"} <= IMAGE_SUFFIXES
    assert ".eps" not in IMAGE_SUFFIXES and ".psd" not in IMAGE_SUFFIXES


def test_folders_are_expanded_and_named_files_kept(tmp_path: Path) -> None:
    _faces(tmp_path / "a", 2)
    _faces(tmp_path / "a" / "deeper", 1)
    (tmp_path / "a" / "notes.txt").write_text("x")
    skipped: list[str] = []
    flat = list(iter_image_paths([tmp_path / "a", "named.txt"], skipped=skipped))
    assert [Path(p).name for p in flat] == ["face_00.png", "face_01.png", "named.txt"]
    assert [Path(p).name for p in skipped] == ["notes.txt"]
    deep = list(iter_image_paths([tmp_path / "a"], recursive=True))
    assert [Path(p).relative_to(tmp_path).as_posix() for p in deep] == [
        "a/deeper/face_00.png",
        "a/face_00.png",
        "a/face_01.png",
    ]


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_results_in_order_with_errors_in_place(
    recognizer: EmotionRecognizer, tmp_path: Path, batch_size: int
) -> None:
    good = _faces(tmp_path, 5)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"garbage")
    paths = [good[0], "missing.png", good[1], broken, *good[2:]]
    results = list(predict_paths(recognizer, paths, batch_size=batch_size))
    assert [r.path for r in results] == [str(p) for p in paths]
    assert [r.ok for r in results] == [True, False, True, False, True, True, True]
    assert isinstance(results[1].error, ImageNotFoundError)
    assert isinstance(results[3].error, CorruptImageError)
    expected = recognizer.predict([str(p) for p in good])
    got = [r.prediction for r in results if r.ok]
    for a, b in zip(got, expected, strict=True):
        assert a is not None and a.label == b.label
        assert a.score == pytest.approx(b.score, abs=1e-6)


def test_paths_are_consumed_lazily(recognizer: EmotionRecognizer, tmp_path: Path) -> None:
    (face,) = _faces(tmp_path, 1)
    pulled = 0

    def endless() -> Iterator[str]:
        nonlocal pulled
        while True:
            pulled += 1
            yield str(face)

    first = list(itertools.islice(predict_paths(recognizer, endless(), batch_size=4), 5))
    assert len(first) == 5 and all(r.ok for r in first)
    assert pulled <= 8  # two chunks of four, never the whole (endless) input


def test_faces_mode_gives_faces_or_errors(recognizer: EmotionRecognizer, tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    Image.new("L", (120, 90), 128).save(blank)
    results = list(predict_paths(recognizer, [blank, "missing.png"], faces=True, batch_size=2))
    assert results[0].faces == [] and results[0].to_dict() == {"image": str(blank), "faces": []}
    assert results[1].to_dict()["error_type"] == "ImageNotFoundError"


def test_result_dict() -> None:
    assert PathResult("x", error=OSError("boom")).to_dict() == {
        "image": "x",
        "error": "boom",
        "error_type": "OSError",
    }
