"""The inference install: predicting needs neither torch nor torchvision.

CI runs this file twice: with the dev install (everything) and in a second virtual
environment holding only ``pip install ".[face]"`` and pytest, where torch is not installed at
all. Each scenario runs in a fresh interpreter that fails if torch was ever imported, so the
check holds in both environments. Run it alone with
``pytest tests/slim --confcutdir=tests/slim`` (the suite's conftest imports torch).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "examples" / "images"
FACE = IMAGES / "astronaut_face.jpg"
PHOTO = IMAGES / "astronaut.jpg"
HAS_CV2 = importlib.util.find_spec("cv2") is not None

# Appended to every scenario: the proof that torch stayed out.
_NO_TORCH = textwrap.dedent(
    """
    import sys as _sys
    _loaded = sorted(m for m in _sys.modules if m.split(".")[0] in ("torch", "torchvision"))
    assert not _loaded, f"torch was imported: {_loaded[:5]}"
    """
)


def _run(code: str, *, env: dict[str, str] | None = None, cwd: Path = ROOT) -> str:
    """Run ``code`` in a fresh interpreter; return its stdout; fail on error or torch."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + _NO_TORCH],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_predict_from_files_arrays_and_bytes_with_every_view_set() -> None:
    out = _run(
        f"""
        import json
        import numpy as np
        from PIL import Image
        import emotionnet
        from emotionnet import EmotionRecognizer

        recognizer = EmotionRecognizer.from_pretrained(num_threads=1)
        assert recognizer.backend == "onnx", recognizer
        image = Image.open({str(FACE)!r})
        inputs = [
            {str(FACE)!r},
            open({str(FACE)!r}, "rb").read(),
            image,
            np.asarray(image.convert("RGB")),
            np.zeros((48, 48), np.uint8),
        ]
        results = {{}}
        for tta in ("none", "flip", "flip_crop", "ten_crop"):
            predictions = recognizer.predict(inputs, tta=tta)
            results[tta] = [p.label for p in predictions]
            for p in predictions:
                assert abs(sum(p.probabilities.values()) - 1) < 1e-4
        print(json.dumps(results))
        """
    )
    results = json.loads(out)
    assert set(results) == {"none", "flip", "flip_crop", "ten_crop"}
    for labels in results.values():
        # The same face as a path, bytes, a PIL image and an array: one prediction.
        assert len(set(labels[:4])) == 1 and labels[0] == "happy"


@pytest.mark.skipif(not HAS_CV2, reason="faces need OpenCV (the face extra)")
def test_faces_in_a_photo() -> None:
    out = _run(
        f"""
        import json
        from emotionnet import EmotionRecognizer

        recognizer = EmotionRecognizer.from_pretrained(num_threads=1)
        recognizer.face_detector = "haar"
        (faces,) = recognizer.predict_faces({str(PHOTO)!r})
        print(json.dumps([face.to_dict() for face in faces]))
        """
    )
    faces = json.loads(out)
    assert faces and faces[0]["label"] == "happy" and len(faces[0]["box"]) == 4


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_the_cli_predicts_without_torch(precision: str) -> None:
    out = _run(
        f"""
        import sys
        from emotionnet.cli import main

        status = main(["predict", "--json", "--threads", "1", "--precision", {precision!r},
                       {str(FACE)!r}])
        assert status == 0, status
        """
    )
    assert json.loads(out)[0]["label"] == "happy"


@pytest.mark.skipif(not HAS_CV2, reason="video needs OpenCV (the face extra)")
def test_the_cli_analyses_a_video_without_torch(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    frame = cv2.resize(cv2.imread(str(PHOTO)), (256, 256))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (256, 256))
    for _ in range(3):
        writer.write(np.ascontiguousarray(frame))
    writer.release()
    out = _run(
        f"""
        from emotionnet.cli import main

        status = main(["video", {str(video)!r}, "--format", "jsonl", "--quiet",
                       "--threads", "1", "--detector", "haar"])
        assert status == 0, status
        """
    )
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(lines) == 3


def _hub_cache(tmp_path: Path) -> Path:
    """A Hugging Face cache holding the bundled model as ``org/emotions`` (no network)."""
    from emotionnet.models.hub import bundled_model_dir

    cache = tmp_path / "hub"
    repo = cache / "models--org--emotions"
    revision = "0" * 40
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "model.onnx"):
        shutil.copy(bundled_model_dir() / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return cache


def test_the_hub_loader_offline_without_torch(tmp_path: Path) -> None:
    cache = _hub_cache(tmp_path)
    out = _run(
        f"""
        from emotionnet import EmotionRecognizer

        recognizer = EmotionRecognizer.from_pretrained(
            "org/emotions", cache_dir={str(cache)!r}, num_threads=1
        )
        print(recognizer.backend, recognizer.predict({str(FACE)!r})[0].label)
        """,
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert out.split() == ["onnx", "happy"]


def test_what_needs_torch_names_the_extra(tmp_path: Path) -> None:
    # torch made unimportable, as in the inference install.
    out = _run(
        f"""
        import sys
        sys.modules["torch"] = None
        from emotionnet.cli import main
        from emotionnet import EmotionRecognizer
        from emotionnet.errors import MissingDependencyError

        status = main(["export", "--onnx", {str(tmp_path / "m.onnx")!r}])
        assert status == 2, status
        try:
            EmotionRecognizer.from_pretrained(backend="torch")
        except MissingDependencyError as error:
            print(error)
        del sys.modules["torch"]
        """
    )
    assert 'pip install "emotionnet[torch]"' in out
    assert not (tmp_path / "m.onnx").exists()


def test_import_emotionnet_imports_no_torch() -> None:
    _run(
        """
        import emotionnet
        from emotionnet import EmotionRecognizer, OnnxModel, EMOTIONS
        assert EMOTIONS[3] == "happy"
        """
    )
