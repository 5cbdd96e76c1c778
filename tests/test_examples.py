"""Every example runs: each script is started as a user would start it, on tiny data.

The scripts run in a subprocess (``sys.executable``) with one CPU thread, a randomly
initialised small model saved with ``save_pretrained`` (fast to load, independent of the
release weights) and a tiny FER2013 ``fer2013.csv`` generated here. One test runs the
quickstart with the bundled model, as the README does.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from emotionnet import EMOTIONS, EmotionNetError, EmotionRecognizer, EvaluationReport
from emotionnet.models import ModelConfig, build_model

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FACE = EXAMPLES / "images" / "astronaut_face.jpg"
PHOTO = EXAMPLES / "images" / "astronaut.jpg"
TIMEOUT = 300  # seconds; generous for a loaded 2-core CI machine, never reached normally


def run_example(script: str, *args: object, cwd: Path) -> str:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "HF_HUB_OFFLINE": "1",
        "EMOTIONNET_CACHE_DIR": str(cwd / "cache"),
        "PYTHONWARNINGS": "ignore",
    }
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random ImageNet-stem model folder: the cheapest network the recognizer loads."""
    folder = tmp_path_factory.mktemp("tiny_model")
    config = ModelConfig(stem="imagenet")
    EmotionRecognizer(build_model(config), config, device="cpu").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_fer2013(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fer2013.csv with a few random faces per emotion in each usage."""
    root = tmp_path_factory.mktemp("fer2013")
    rng = np.random.default_rng(0)
    with (root / "fer2013.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["emotion", "pixels", "Usage"])
        for usage, per_class in (("Training", 6), ("PublicTest", 2), ("PrivateTest", 2)):
            for label in range(len(EMOTIONS)):
                for _ in range(per_class):
                    pixels = rng.integers(0, 256, 48 * 48)
                    writer.writerow([label, " ".join(map(str, pixels)), usage])
    return root


def test_quickstart_with_the_bundled_model(tmp_path: Path) -> None:
    from emotionnet.errors import WeightsNotFoundError
    from emotionnet.models.hub import bundled_model_dir

    try:
        bundled_model_dir()
    except WeightsNotFoundError as error:
        if os.environ.get("EMOTIONNET_REQUIRE_DATA") == "1":
            pytest.fail(f"CI needs the bundled model: {error}")
        pytest.skip(f"the bundled model is not committed yet: {error}")
    out = run_example("quickstart.py", cwd=tmp_path)
    first, *rows = out.strip().splitlines()
    assert re.fullmatch(rf"astronaut_face\.jpg: ({'|'.join(EMOTIONS)}) \(\d+\.\d%\)", first)
    assert [row.split()[0] for row in rows] == list(EMOTIONS)


def test_quickstart_prints_the_seven_probabilities(tmp_path: Path, tiny_model: Path) -> None:
    out = run_example("quickstart.py", FACE, "--model", tiny_model, cwd=tmp_path)
    rows = out.strip().splitlines()[1:]
    probabilities = [float(row.split()[1].rstrip("%")) for row in rows]
    assert [row.split()[0] for row in rows] == list(EMOTIONS)
    assert sum(probabilities) == pytest.approx(100, abs=0.5)


def test_analyze_photo_writes_the_annotated_photo(tmp_path: Path, tiny_model: Path) -> None:
    output = tmp_path / "annotated.png"
    out = run_example(
        "analyze_photo.py", PHOTO, "--output", output, "--model", tiny_model, cwd=tmp_path
    )
    # 1 face whichever detector is the default (dlib's threshold drops its 0.04 name badge).
    assert re.search(r"astronaut\.jpg: 1 face\(s\)", out)
    assert re.search(r"face 1 at \(\d+, \d+, \d+, \d+\): \w+ \d+%", out)
    annotated = np.asarray(Image.open(output).convert("RGB"))
    original = np.asarray(Image.open(PHOTO).convert("RGB"))
    assert annotated.shape == original.shape
    assert (annotated != original).any(), "no box was drawn"


def test_webcam_reads_a_video_file_and_smooths(tmp_path: Path, tiny_model: Path) -> None:
    import cv2

    video = tmp_path / "clip.avi"
    frame = cv2.imread(str(PHOTO))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, frame.shape[1::-1])
    for shift in range(6):  # the face moves a little, as in a real video
        writer.write(np.roll(frame, 2 * shift, axis=1))
    writer.release()
    output = tmp_path / "annotated.avi"
    out = run_example(
        "webcam.py", "--video", video, "--max-frames", 4, "--output", output,
        "--model", tiny_model, cwd=tmp_path,
    )  # fmt: skip
    frames = [line for line in out.splitlines() if line.startswith("frame ")]
    assert len(frames) == 4
    face = rf"({'|'.join(EMOTIONS)}) \d+%"
    # At least the astronaut's face in every frame (Haar may add a false positive).
    assert all(re.fullmatch(rf"frame \d: {face}(, {face})*", f) for f in frames), out
    assert "4 frame(s) processed" in out
    assert cv2.VideoCapture(str(output)).read()[0], "no annotated video written"


@pytest.mark.slow
def test_train_fer2013_writes_a_loadable_model_folder(tmp_path: Path, tiny_fer2013: Path) -> None:
    output = tmp_path / "run"
    out = run_example(
        "train_fer2013.py", "--data", tiny_fer2013, "--output", output, "--epochs", 1,
        "--batch-size", 16, "--max-train-samples", 32, "--device", "cpu", "--no-progress",
        cwd=tmp_path,
    )  # fmt: skip
    assert "best epoch" in out
    names = {path.name for path in output.iterdir()}
    assert {"model.safetensors", "config.json", "README.md", "recipe.toml"} <= names
    assert {"evaluation_public_test.json", "evaluation_public_test_flip.json"} <= names
    report = EvaluationReport.load_json(output / "evaluation_public_test.json")
    assert report.num_samples == 2 * len(EMOTIONS)
    recognizer = EmotionRecognizer.from_pretrained(output, device="cpu")
    assert recognizer.config.stem == "middle"  # the recipe's model, not a default
    assert recognizer.predict(FACE)[0].label in EMOTIONS


@pytest.mark.slow
def test_train_fer2013_quick_is_the_documented_one_minute_try(
    tmp_path: Path, tiny_fer2013: Path
) -> None:
    # The docs' command is `--data DIR --quick`; tiny data here, and options still win.
    out = run_example(
        "train_fer2013.py", "--data", tiny_fer2013, "--quick", "--max-train-samples", 32,
        "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert "best epoch" in out
    output = tmp_path / "runs" / "fer2013_quick"  # its own folder, not the recipe's
    train = json.loads((output / "train_config.json").read_text())
    assert (train["max_epochs"], train["optimizer"], train["lr"]) == (1, "adamw", 1e-3)
    assert train["warmup_epochs"] < train["max_epochs"]  # the recipe's 3 would never finish
    assert train["mixup_alpha"] == 0 and train["num_threads"] == 1
    assert train["augment"]["rotation"] == 0 and train["augment"]["hflip"] == 0.5
    assert EmotionRecognizer.from_pretrained(output, device="cpu").config.stem == "imagenet"
    docstring = load_example("train_fer2013").__doc__
    assert "train_fer2013.py --data path/to/fer2013 --quick" in docstring


def test_evaluate_fer2013_writes_report_and_picture(
    tmp_path: Path, tiny_fer2013: Path, tiny_model: Path
) -> None:
    out = run_example(
        "evaluate_fer2013.py", "--data", tiny_fer2013, "--split", "private_test",
        "--model", tiny_model, "--tta", "flip", "--output", tmp_path / "eval", cwd=tmp_path,
    )  # fmt: skip
    assert "| accuracy |" in out
    report = json.loads((tmp_path / "eval" / "evaluation_private_test_flip.json").read_text())
    assert report["num_samples"] == 2 * len(EMOTIONS) and report["tta"] == "flip"
    with Image.open(tmp_path / "eval" / "confusion_matrix_private_test_flip.png") as picture:
        assert picture.format == "PNG" and min(picture.size) > 100


@pytest.mark.slow
def test_export_onnx_matches_pytorch(tmp_path: Path, tiny_model: Path) -> None:
    pytest.importorskip("onnxruntime")
    output = tmp_path / "model.onnx"
    out = run_example("export_onnx.py", "--model", tiny_model, "--output", output, cwd=tmp_path)
    assert output.is_file()
    difference = float(re.search(r"largest difference from PyTorch: (\S+)", out).group(1))
    assert difference < 1e-4


# --- the Streamlit app -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _app_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no allow-list of the app's models, and _app's is undone."""
    monkeypatch.setenv("EMOTIONNET_APP_MODELS", "")


def _app(tiny_model: Path, *others: str):
    from streamlit.testing.v1 import AppTest

    # The operator's allow-list, as `streamlit run` in an environment with it set.
    os.environ["EMOTIONNET_APP_MODELS"] = ",".join([str(tiny_model), *others])
    app = AppTest.from_file(str(EXAMPLES / "streamlit_app.py"), default_timeout=120)
    app.run()
    app.sidebar.selectbox(key="model").set_value(str(tiny_model))
    # The Haar cascade finds exactly the astronaut's face whether or not dlib is installed.
    app.sidebar.selectbox(key="detector").set_value("haar")
    return app


def test_streamlit_app_shows_the_faces_of_an_uploaded_photo(tiny_model: Path) -> None:
    pytest.importorskip("streamlit")
    app = _app(tiny_model)
    assert app.title[0].value == "Facial emotion recognition"
    assert "Upload a photo" in app.info[0].value
    app.file_uploader[0].upload("astronaut.jpg", PHOTO.read_bytes(), "image/jpeg")
    app.run()
    assert not app.exception, app.exception
    assert app.success[0].value == "Found 1 face."
    assert re.fullmatch(rf"Face 1: ({'|'.join(EMOTIONS)}) \(\d+%\)", app.subheader[0].value)
    assert len(app.get("image")) == 1  # the annotated photo
    assert len(app.get("vega_lite_chart")) == 1  # one probability chart per face


def test_streamlit_app_offers_every_test_time_augmentation(tiny_model: Path) -> None:
    from emotionnet.recognizer import DEFAULT_TTA
    from emotionnet.tta import TTA_MODES

    app = _app(tiny_model)
    choice = app.sidebar.selectbox(key="tta")
    assert tuple(choice.options) == TTA_MODES and choice.value == DEFAULT_TTA
    choice.set_value("ten_crop")
    app.file_uploader[0].upload("astronaut.jpg", PHOTO.read_bytes(), "image/jpeg")
    app.run()
    assert not app.exception, app.exception
    assert app.success[0].value == "Found 1 face."


def test_streamlit_app_falls_back_to_the_whole_picture(tiny_model: Path) -> None:
    pytest.importorskip("streamlit")
    app = _app(tiny_model)
    blank = Image.new("RGB", (120, 90), "gray")
    data = _png_bytes(blank)
    app.file_uploader[0].upload("blank.png", data, "image/png")
    app.run()
    assert not app.exception, app.exception
    assert "No face found" in app.warning[0].value
    assert app.subheader[0].value.startswith("Face 1: ")


def test_streamlit_app_explains_bad_uploads_and_models(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("streamlit")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the unknown model fails at once, no network
    app = _app(tiny_model, "no/such-model")
    app.file_uploader[0].upload("notes.png", b"not an image", "image/png")
    app.run()
    assert not app.exception, app.exception
    assert app.error[0].value.startswith("Could not read notes.png as an image")
    app.file_uploader[0].set_value(("face.jpg", FACE.read_bytes(), "image/jpeg"))
    app.sidebar.selectbox(key="model").set_value("no/such-model")
    app.run()
    assert not app.exception, app.exception
    assert app.error[0].value.startswith("Could not load the model 'no/such-model'")


def test_streamlit_app_refuses_oversize_and_unanalysable_pictures(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("streamlit")
    import emotionnet.images

    app = _app(tiny_model)
    # The app decodes with emotionnet's load_image, so its decompression-bomb guard applies.
    monkeypatch.setattr(emotionnet.images, "MAX_IMAGE_PIXELS", 100 * 100)
    app.file_uploader[0].upload("big.png", _png_bytes(Image.new("RGB", (120, 90))), "image/png")
    app.run()
    assert not app.exception, app.exception
    assert app.error[0].value.startswith("Could not read big.png as an image")
    assert "MAX_IMAGE_PIXELS" in app.error[0].value
    monkeypatch.undo()
    # A picture that decodes but cannot be analysed is explained, not a traceback page.
    lab = io.BytesIO()
    Image.new("LAB", (40, 30)).save(lab, format="TIFF")
    app.file_uploader[0].set_value(("lab.png", lab.getvalue(), "image/png"))
    app.run()
    assert not app.exception, app.exception
    assert app.error[0].value.startswith("Could not analyse lab.png")
    assert "mode 'LAB'" in app.error[0].value


def test_streamlit_app_analyze_without_streamlit_running(tiny_model: Path) -> None:
    pytest.importorskip("streamlit")
    app = load_example("streamlit_app")
    recognizer = EmotionRecognizer.from_pretrained(tiny_model, device="cpu")
    recognizer.face_detector = "haar"
    faces, whole = app.analyze(Image.open(PHOTO), recognizer)
    assert not whole and len(faces) == 1
    annotated = app.annotate(Image.open(PHOTO), faces)
    assert annotated.size == Image.open(PHOTO).size
    faces, whole = app.analyze(Image.new("L", (64, 64)), recognizer)
    assert whole and faces[0].box == (0, 0, 64, 64)


def test_streamlit_app_face_detection_knobs(tiny_model: Path) -> None:
    pytest.importorskip("streamlit")
    from emotionnet.faces import DEFAULT_DETECTOR, DETECTORS

    app = _app(tiny_model)
    assert tuple(app.sidebar.selectbox(key="detector").options) == DETECTORS
    from streamlit.testing.v1 import AppTest

    fresh = AppTest.from_file(str(EXAMPLES / "streamlit_app.py"), default_timeout=120).run()
    assert fresh.sidebar.selectbox(key="detector").value == DEFAULT_DETECTOR
    app.file_uploader[0].upload("astronaut.jpg", PHOTO.read_bytes(), "image/jpeg")
    app.sidebar.number_input(key="min_face_size").set_value(100)  # the face is about 61 px
    app.run()
    assert not app.exception, app.exception
    assert "No face found" in app.warning[0].value
    app.sidebar.number_input(key="min_face_size").set_value(0)
    app.sidebar.number_input(key="min_confidence").set_value(1000.0)  # above any Haar weight
    app.run()
    assert "No face found" in app.warning[0].value
    app.sidebar.number_input(key="min_confidence").set_value(None)
    app.sidebar.number_input(key="max_faces").set_value(1)
    app.run()
    assert not app.exception, app.exception
    assert app.success[0].value == "Found 1 face."


def test_streamlit_app_explains_a_missing_detector(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("streamlit")
    import sys

    import emotionnet.faces

    monkeypatch.setitem(sys.modules, "dlib", None)
    monkeypatch.setattr(emotionnet.faces, "_shared_detectors", {})
    app = _app(tiny_model)
    app.sidebar.selectbox(key="detector").set_value("dlib")
    app.file_uploader[0].upload("astronaut.jpg", PHOTO.read_bytes(), "image/jpeg")
    app.run()
    assert not app.exception, app.exception
    assert app.error[0].value.startswith("Could not use the face detector 'dlib'")
    assert "emotionnet[dlib]" in app.error[0].value


def test_streamlit_app_charts_probabilities_on_a_fixed_axis(tiny_model: Path) -> None:
    pytest.importorskip("streamlit")
    app = _app(tiny_model)
    app.file_uploader[0].upload("astronaut.jpg", PHOTO.read_bytes(), "image/jpeg")
    app.run()
    assert not app.exception, app.exception
    (chart,) = app.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    x, y = spec["encoding"]["x"], spec["encoding"]["y"]
    # 0-100% whatever the largest bar: a random model's ~15% bars must not fill the axis.
    assert x["field"] == "probability" and x["scale"]["domain"] == [0, 1]
    assert x["scale"].get("nice") is False
    assert y["field"] == "emotion" and y["sort"] == list(EMOTIONS)  # FER2013 order
    import pyarrow

    data = pyarrow.ipc.open_stream(chart.proto.data.data).read_pandas()
    assert list(data["emotion"]) == list(EMOTIONS)
    assert data["probability"].sum() == pytest.approx(1.0, abs=1e-6)


def test_streamlit_app_labels_read_the_same_on_screen_at_any_photo_size(tiny_model: Path) -> None:
    pytest.importorskip("streamlit")
    app = load_example("streamlit_app")
    (prediction,) = EmotionRecognizer.from_pretrained(tiny_model, device="cpu").predict(FACE)
    # Drawn in photo pixels, shown at most DISPLAY_WIDTH wide: the on-screen size is fixed.
    small, large = app.label_sizes((320, 320)), app.label_sizes((4032, 3024))
    assert small == (app.LABEL_FONT_PX, app.BOX_LINE_PX)
    scale = 4032 / app.DISPLAY_WIDTH
    assert large[0] == round(app.LABEL_FONT_PX * scale) and large[1] >= 2 * small[1]
    # The label is a band of the box colour with white text, above the face, on the photo.
    photo = Image.new("RGB", (320, 320), "gray")
    face = app.FaceResult((100, 100, 80, 80), prediction)
    pixels = np.asarray(app.annotate(photo, [face]))
    band = pixels[100 - small[0] : 100, 100:140]
    assert (band == app.BOX_COLOUR).all(axis=2).mean() > 0.5
    assert (band == app.LABEL_TEXT_COLOUR).all(axis=2).any()
    corner = app.annotate(photo, [app.FaceResult((0, 0, 50, 50), prediction)])
    assert corner.size == photo.size  # no room above: the label goes inside the box


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- the app is a public web page ------------------------------------------------------------


def test_streamlit_app_offers_only_the_models_allowed_at_start(
    tiny_model: Path, tmp_path: Path
) -> None:
    pytest.importorskip("streamlit")
    app = _app(tiny_model, "org/emotion")
    assert not app.sidebar.text_input  # no free-text model field
    choice = app.sidebar.selectbox(key="model")
    assert choice.options == [
        "the bundled default model",
        tiny_model.name,  # a local folder by its last part only
        "org/emotion",
    ]
    # What a visitor's browser might send instead is refused before any file is looked at.
    example = load_example("streamlit_app")
    allowed = example.allowed_models(example._parse_args(["--models", str(tiny_model)]), {})
    for name in ("~", "/etc", str(tmp_path), "../", "org/other"):
        with pytest.raises(EmotionNetError, match="not offered by this app"):
            example.load_allowed(name, allowed, "cpu", "haar")


def test_streamlit_app_allow_list_from_the_command_line_or_the_environment() -> None:
    pytest.importorskip("streamlit")
    example = load_example("streamlit_app")
    args = example._parse_args(["--models", " org/a, runs/b ,org/a,"])
    assert example.allowed_models(args, {"EMOTIONNET_APP_MODELS": "org/ignored"}) == [
        "",
        "org/a",
        "runs/b",
    ]
    args = example._parse_args(["--model", "org/first"])
    assert example.allowed_models(args, {"EMOTIONNET_APP_MODELS": "org/x,org/first"}) == [
        "org/first",
        "",
        "org/x",
    ]
    assert example.allowed_models(example._parse_args([]), {}) == [""]  # the bundled only


def test_streamlit_app_errors_show_no_server_paths(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("streamlit")
    broken = tmp_path / "secret-folder" / "broken"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{not json")
    (broken / "model.safetensors").write_bytes(b"")
    app = _app(tiny_model, str(broken))
    app.file_uploader[0].upload("face.jpg", FACE.read_bytes(), "image/jpeg")
    app.sidebar.selectbox(key="model").set_value(str(broken))
    app.run()
    assert not app.exception, app.exception
    shown = " ".join(str(element.value) for element in app.error)
    assert shown.startswith("Could not load the model 'broken' (ModelLoadError)")
    assert str(tmp_path) not in shown and "secret-folder" not in shown
    assert str(Path.home()) not in shown


def test_streamlit_app_public_texts_hide_paths_and_markup() -> None:
    pytest.importorskip("streamlit")
    example = load_example("streamlit_app")
    text = example.public_text(
        "No such folder: '~/x' (/home/someone/x); C:\\data\\m at https://hf.co org/name "
        "[link](http://evil) <img>"
    )
    assert "/home" not in text and "~/x" not in text and "C:" not in text
    assert "org/name" in text and "https://hf.co" in text  # ids and URLs stay
    assert "\\[link\\]" in text and "\\<img\\>" in text  # no live link or HTML
    assert example.uploaded_name("../../etc/[x](y).png") == "\\[x\\](y).png"
    assert len(example.public_text("y" * 10_000)) < 510


def test_streamlit_app_model_cache_is_bounded() -> None:
    pytest.importorskip("streamlit")
    example = load_example("streamlit_app")
    assert example.load_recognizer._info.max_entries == example.MAX_CACHED_MODELS <= 8


def test_streamlit_app_serves_this_computer_only_without_usage_statistics() -> None:
    tomllib = pytest.importorskip("tomllib")
    # `streamlit run examples/streamlit_app.py` from the repository's root reads this file.
    config = tomllib.loads((EXAMPLES.parent / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["browser"]["gatherUsageStats"] is False
    assert config["client"]["showErrorDetails"] == "none"
    docstring = (EXAMPLES / "streamlit_app.py").read_text()
    assert "--server.address 127.0.0.1" in docstring
    assert "--browser.gatherUsageStats false" in docstring
