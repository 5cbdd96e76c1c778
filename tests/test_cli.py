"""The emotionnet command: tables and JSON out, one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch

from emotionnet import EmotionRecognizer
from emotionnet.cli import main

ROOT = Path(__file__).resolve().parent.parent
FACE = str(ROOT / "examples" / "images" / "astronaut_face.jpg")
PHOTO = str(ROOT / "examples" / "images" / "astronaut.jpg")


@pytest.fixture(scope="module")
def fer_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny fer2013.csv: 21 training and 14 public-test faces, two of each class."""
    folder = tmp_path_factory.mktemp("fer2013")
    rng = np.random.default_rng(0)
    rows = []
    for usage, count in (("Training", 21), ("PublicTest", 14)):
        for i in range(count):
            pixels = " ".join(map(str, rng.integers(0, 256, 48 * 48)))
            rows.append(f"{i % 7},{pixels},{usage}")
    (folder / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    return folder


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_table(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["predict", FACE, PHOTO, "--model", str(model_dir)], capsys)
    assert code == 0, err
    header, *rows = out.strip().splitlines()
    assert header.split()[:3] == ["image", "emotion", "score"]
    assert len(rows) == 2 and rows[0].startswith(FACE)


def test_predict_json_equals_the_api(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["predict", FACE, "--json", "--model", str(model_dir), "--tta"], capsys)
    assert code == 0
    (record,) = json.loads(out)
    (expected,) = EmotionRecognizer.from_pretrained(model_dir, device="cpu").predict(FACE, tta=True)
    assert record["image"] == FACE and record["label"] == expected.label
    assert record["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)


def test_predict_faces(model_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("L", (120, 90), 128).save(blank)
    argv = ["predict", "--faces", "--json", PHOTO, str(blank), "--model", str(model_dir)]
    code, out, _ = run([*argv, "--detector", "haar"], capsys)
    assert code == 0
    photo, empty = json.loads(out)
    assert len(photo["faces"]) == 1 and len(photo["faces"][0]["box"]) == 4
    assert photo["faces"][0]["confidence"] > 2.0  # the Haar cascade's weight of a real face
    assert empty == {"image": str(blank), "faces": []}
    code, out, _ = run(["predict", "--faces", str(blank), "--model", str(model_dir)], capsys)
    assert "no face found" in out


def test_predict_with_the_default_model(
    bundled_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["predict", FACE, "--device", "cpu"], capsys)
    assert code == 0 and FACE in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", FACE, "--model", "no/such-model"], "HF_HUB_OFFLINE"),
        (["predict", FACE, "--device", "cuda:7"], "device"),
    ],
)
def test_errors_are_one_line(
    argv: list[str],
    message: str,
    model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    if "--model" not in argv:
        argv = [*argv, "--model", str(model_dir)]
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_a_photo_without_faces_gets_a_note_in_command_line_words(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("cv2")
    code, out, err = run(["predict", PHOTO, FACE, "--model", str(model_dir)], capsys)
    assert code == 0 and len(out.strip().splitlines()) == 3  # both predicted all the same
    (note,) = err.strip().splitlines()
    assert note.startswith(f"note: {PHOTO} looks like a photo, not a face crop")
    assert note.endswith("Add --faces to find and crop the faces first.")
    assert "faces=True" not in note
    for argv in ([FACE], [PHOTO, "--faces"]):
        code, _, err = run(["predict", *argv, "--model", str(model_dir)], capsys)
        assert code == 0 and "note:" not in err


@pytest.mark.parametrize("command", ["predict", "evaluate", "export", "train"])
def test_a_missing_device_is_explained_in_command_line_words(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = {
        "predict": ["predict", FACE],
        "evaluate": ["evaluate"],
        "export": ["export", "--onnx", "unused.onnx"],
        "train": ["train", "--config", "unused.toml"],
    }[command]
    code, out, err = run([*argv, "--device", "cuda"], capsys)
    assert code == 2 and out == ""
    assert err == (
        "error: --device cuda was given but CUDA is not available here; pass --device cpu, "
        "or leave --device out (CUDA when available, else the CPU).\n"
    )
    code, _, err = run([*argv, "--device", "gpu"], capsys)
    assert code == 2 and "--device gpu is not a device" in err and "None" not in err


@pytest.mark.parametrize("as_json", [False, True])
def test_bad_files_become_error_records_and_the_rest_is_reported(
    as_json: bool, model_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    fifo = tmp_path / "pipe.jpg"
    names = [FACE, "no-such-face.jpg", __file__, str(broken)]
    if hasattr(os, "mkfifo"):
        os.mkfifo(fifo)
        names.append(str(fifo))
    names.append(PHOTO)
    argv = ["predict", *names, "--model", str(model_dir), "--batch-size", "2"]
    code, out, err = run([*argv, "--json"] if as_json else argv, capsys)
    assert code == 1
    failures = len(names) - 2
    assert err.count("error: ") == failures and "No image file at 'no-such-face.jpg'" in err
    if not as_json:
        rows = out.strip().splitlines()[1:]
        assert [row.split()[0] for row in rows] == names
        assert sum(" error " in row for row in rows) == failures
        return
    records = json.loads(out)
    assert [record["image"] for record in records] == names
    good = [r for r in records if "error" not in r]
    assert [r["image"] for r in good] == [FACE, PHOTO]
    expected = EmotionRecognizer.from_pretrained(model_dir, device="cpu").predict([FACE, PHOTO])
    assert [r["label"] for r in good] == [p.label for p in expected]
    bad = {r["image"]: r for r in records if "error" in r}
    assert bad["no-such-face.jpg"]["error_type"] == "ImageNotFoundError"
    assert bad[str(broken)]["error_type"] == "CorruptImageError"
    if hasattr(os, "mkfifo"):
        assert "named pipe" in bad[str(fifo)]["error"]


def test_faces_batch_with_a_bad_file_still_reports_the_photo(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["predict", "--faces", "--json", "missing.jpg", PHOTO, "--model", str(model_dir)]
    code, out, err = run([*argv, "--detector", "haar"], capsys)
    assert code == 1 and err.startswith("error: No image file at 'missing.jpg'")
    missing, photo = json.loads(out)
    assert missing["error_type"] == "ImageNotFoundError" and len(photo["faces"]) == 1


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    from PIL import Image

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.open(FACE).save(folder / "b_face.png")
    Image.open(FACE).save(folder / "a_face.JPG")
    Image.open(FACE).save(folder / "sub" / "c_face.webp")
    (folder / "README.md").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"junk")
    return folder


def test_folder_gives_rows_for_images_only(
    image_folder: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import csv
    import io

    argv = ["predict", str(image_folder), "--model", str(model_dir), "--format", "csv"]
    code, out, err = run(argv, capsys)
    assert code == 0 and "skipped 1 non-image file" in err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [Path(row["image"]).name for row in rows] == ["a_face.JPG", "b_face.png"]
    recognizer = EmotionRecognizer.from_pretrained(model_dir, device="cpu")
    for row in rows:
        (expected,) = recognizer.predict(row["image"])
        assert row["emotion"] == expected.label and row["error"] == ""
        probabilities = [float(row[f"p_{label}"]) for label in expected.probabilities]
        assert probabilities == pytest.approx(list(expected.probabilities.values()), abs=1e-5)
    code, out, _ = run([*argv[:-2], "--recursive", "--format", "jsonl"], capsys)
    lines = [json.loads(line) for line in out.splitlines()]
    assert [Path(r["image"]).name for r in lines] == ["a_face.JPG", "b_face.png", "c_face.webp"]


def test_csv_per_face_with_boxes_and_output_file(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import csv

    target = tmp_path / "out.csv"
    argv = ["predict", "--faces", PHOTO, "missing.jpg", "--model", str(model_dir)]
    argv += ["--detector", "haar"]
    code, out, err = run([*argv, "--format", "csv", "--output", str(target)], capsys)
    assert code == 1 and out == "" and f"to {target}" in err
    photo, missing = list(csv.DictReader(target.open(encoding="utf-8")))
    assert photo["face"] == "0" and int(photo["w"]) > 0 and photo["emotion"]
    assert float(photo["confidence"]) > 2.0 and missing["confidence"] == ""
    assert sum(float(v) for k, v in photo.items() if k.startswith("p_")) == pytest.approx(1, 1e-4)
    assert missing["emotion"] == "" and "No image file" in missing["error"]
    assert None not in photo and None not in missing  # every row as long as the header


def test_a_folder_without_images_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("x")
    code, out, err = run(["predict", str(tmp_path)], capsys)
    assert code == 2 and out == "" and "No image files" in err


def test_json_is_always_valid_json() -> None:
    from emotionnet.cli import _dumps

    text = _dumps({"score": float("nan"), "values": [1.0, float("inf")], "ok": "x"})
    assert json.loads(text) == {"score": None, "values": [1.0, None], "ok": "x"}
    assert "NaN" not in text and "Infinity" not in text


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["predict"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["predict", FACE, "--tta", "sideways"])
    assert info.value.code == 2


def test_python_dash_m_without_a_traceback(model_dir: Path) -> None:
    command = [sys.executable, "-m", "emotionnet", "predict"]
    result = subprocess.run(
        [*command, "missing.jpg", "--model", str(model_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr == "error: No image file at 'missing.jpg'; check the path.\n"
    result = subprocess.run(
        [*command, FACE, "--model", "no/such-model"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_evaluate(
    model_dir: Path, fer_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "confusion.png"
    argv = ["evaluate", "--data", str(fer_csv), "--model", str(model_dir), "--plot", str(plot)]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "Evaluation on 14 samples" in out and "| accuracy |" in out
    assert plot.stat().st_size > 1000
    code, out, _ = run(
        ["evaluate", "--data", str(fer_csv), "--model", str(model_dir), "--json", "--tta"], capsys
    )
    report = json.loads(out)
    assert report["num_samples"] == 14 and report["tta"] == "flip"


def test_evaluate_missing_split(
    model_dir: Path, fer_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        ["evaluate", "--data", str(fer_csv), "--split", "private_test", "--model", str(model_dir)],
        capsys,
    )
    assert code == 2 and err.startswith("error: ")


def test_export(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    from emotionnet import OnnxClassifier

    target = tmp_path / "out" / "model.onnx"
    code, out, _ = run(["export", "--onnx", str(target), "--model", str(model_dir)], capsys)
    assert code == 0 and str(target) in out
    assert OnnxClassifier(target).config is not None


RECIPE = """
[data]
train_split = "train"
val_split = "public_test"

[model]
stem = "imagenet"

[train]
max_epochs = 1
batch_size = 21
lr = 0.01
device = "cpu"
num_workers = 0
warmup_epochs = 0

[release]
dtype = "float16"
tta = ["none", "flip"]
"""


@pytest.mark.slow
def test_train_then_resume(
    fer_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE)
    output = tmp_path / "run"
    argv = ["train", "--config", str(recipe), "--data", str(fer_csv), "--output", str(output)]
    code, out, err = run([*argv, "--no-progress"], capsys)
    assert code == 0, err
    assert "public_test + TTA (flip)" in out
    for name in ("model.safetensors", "config.json", "README.md", "recipe.toml"):
        assert (output / name).is_file()
    assert (output / "evaluation_public_test_flip.json").is_file()
    assert "| public_test + TTA (flip) | 14 |" in (output / "README.md").read_text()
    recognizer = EmotionRecognizer.from_pretrained(output, device="cpu")
    assert recognizer.config.stem == "imagenet"

    # The cosine schedule spans the 1-epoch run: a longer one is a new run, said in one line.
    code, out, err = run([*argv, "--resume", "--epochs", "2", "--no-progress"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "max_epochs=1" in err and "--epochs 1" in err
    code, out, err = run([*argv, "--resume", "--no-progress"], capsys)
    assert code == 0, err
    assert "trained 1 epochs" in out


@pytest.mark.slow
def test_a_recipe_trains_the_same_weights_twice(
    fer_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE)
    weights = []
    for name in ("first", "second"):
        torch.manual_seed(len(name))  # whatever the global RNG holds before
        output = tmp_path / name
        argv = ["train", "--config", str(recipe), "--data", str(fer_csv), "--output", str(output)]
        code, _, err = run([*argv, "--no-progress"], capsys)
        assert code == 0, err
        weights.append((output / "model.safetensors").read_bytes())
    assert weights[0] == weights[1]


@pytest.mark.slow
def test_train_logs_every_epoch_without_a_terminal(fer_csv: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE.replace("max_epochs = 1", "max_epochs = 2"))
    result = subprocess.run(
        [
            sys.executable, "-m", "emotionnet", "train", "--config", recipe, "--data", fer_csv,
            "--output", tmp_path / "run", "--no-progress",
        ],
        capture_output=True,  # stderr is a pipe, as in CI or under nohup
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    epochs = [line for line in result.stderr.splitlines() if "images/s" in line]
    assert len(epochs) == 2, result.stderr
    assert epochs[1].startswith("INFO: epoch 2/2")
    for name in ("train_loss", "val_loss", "val_accuracy", "val_macro_f1", "lr "):
        assert name in epochs[1]


def test_train_missing_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["train", "--config", str(tmp_path / "none.toml")], capsys)
    assert code == 2 and "No recipe file" in err


def test_cli_offers_every_test_time_augmentation_mode() -> None:
    from emotionnet.cli import _TTA_CHOICES
    from emotionnet.tta import TTA_MODES

    # The CLI keeps its own copy so that --help does not import torch; it must not drift.
    assert _TTA_CHOICES == TTA_MODES


# --- face detection options ------------------------------------------------------------------


class _RecordingDetector:
    """Stands in for a named detector: records what it sees, finds three scored faces."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, gray: np.ndarray) -> list[tuple[int, int, int, int, float]]:
        self.calls += 1
        return [(10, 10, 100, 100, 0.3), (150, 20, 60, 60, 2.0), (250, 30, 30, 30, 5.0)]


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> _RecordingDetector:
    import emotionnet.faces

    detector = _RecordingDetector()
    monkeypatch.setattr(emotionnet.faces, "_shared_detectors", {"haar": detector})
    return detector


def test_face_options_reach_the_detector_and_filter(
    model_dir: Path, recording: _RecordingDetector, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["predict", "--faces", "--json", PHOTO, "--model", str(model_dir), "--detector", "haar"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    (record,) = json.loads(out)
    assert [(f["box"], f["confidence"]) for f in record["faces"]] == [
        ([10, 10, 100, 100], 0.3),
        ([150, 20, 60, 60], 2.0),
        ([250, 30, 30, 30], 5.0),
    ]
    filters = ["--min-confidence", "1", "--min-face-size", "40", "--max-faces", "1"]
    code, out, err = run([*argv, *filters], capsys)
    assert code == 0, err
    (record,) = json.loads(out)
    assert [f["box"] for f in record["faces"]] == [[150, 20, 60, 60]]
    assert recording.calls == 2


def test_video_face_options_reach_the_detector(
    model_dir: Path,
    recording: _RecordingDetector,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cv2 = pytest.importorskip("cv2")
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (320, 240))
    for _ in range(3):
        writer.write(np.full((240, 320, 3), 90, np.uint8))
    writer.release()
    argv = ["video", str(clip), "--model", str(model_dir), "--tta", "none", "--quiet"]
    code, out, err = run(
        [*argv, "--detector", "haar", "--max-faces", "2", "--min-confidence", "1"], capsys
    )
    assert code == 0, err
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["frame"], r["x"], r["confidence"]) for r in rows] == [
        (str(frame), x, confidence)
        for frame in range(3)
        for x, confidence in (("150", "2.000000"), ("250", "5.000000"))
    ]
    assert recording.calls == 3


@pytest.mark.parametrize(
    "options",
    [
        ["--min-face-size", "-1"],
        ["--min-face-size", "1.5"],
        ["--min-confidence", "nan"],
        ["--min-confidence", "inf"],
        ["--max-faces", "0"],
        ["--detector", "cnn"],
    ],
)
@pytest.mark.parametrize("command", [["predict", "--faces", FACE], ["video", "clip.mp4"]])
def test_bad_face_options_are_usage_errors(
    command: list[str], options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, *options])
    assert exit_info.value.code == 2
    assert options[0] in capsys.readouterr().err


def test_face_options_without_faces_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["predict", FACE, "--max-faces", "1", "--detector", "haar"], capsys)
    assert code == 2 and out == ""
    assert "--detector, --max-faces only apply to detected faces; add --faces" in err


def test_a_missing_dlib_is_one_error_line(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import emotionnet.faces

    monkeypatch.setitem(sys.modules, "dlib", None)
    monkeypatch.setattr(emotionnet.faces, "_shared_detectors", {})
    argv = ["predict", "--faces", PHOTO, "--model", str(model_dir), "--detector", "dlib"]
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and 'pip install "emotionnet[dlib]"' in err


def test_detector_choices_are_the_libraries() -> None:
    from emotionnet.cli import _DETECTOR_CHOICES
    from emotionnet.faces import DETECTORS

    assert _DETECTOR_CHOICES == DETECTORS
