"""BatchScorer without an engine: the batches Ray Data, Spark and Dask hand over, scored.

Every test runs the bundled model on onnxruntime, and checks the rows against
``EmotionRecognizer.predict`` and ``predict_paths`` to the last bit.
"""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import emotionnet.scoring
from emotionnet import BatchScorer, EmotionRecognizer, predict_paths
from emotionnet.errors import InvalidArgumentError, UnsupportedInputError

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "examples" / "images" / "astronaut.jpg"
FACE = ROOT / "examples" / "images" / "astronaut_face.jpg"


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each test loads its own recognizer, so one that changes it cannot leak into another.
    monkeypatch.setattr(emotionnet.scoring, "_LOADED", {})


@pytest.fixture(scope="module")
def recognizer() -> EmotionRecognizer:
    return EmotionRecognizer.from_pretrained(num_threads=1)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Eight different faces-sized images: FER2013-like noise, the example face, a PNG, RGB."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for index in range(6):
        pixels = rng.integers(0, 256, (48, 48), dtype=np.uint8)
        path = folder / f"noise{index}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    rgb = folder / "colour.jpg"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(rgb)
    paths += [str(rgb), str(FACE)]
    return paths


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("broken")
    corrupt = folder / "corrupt.jpg"
    corrupt.write_bytes(b"not an image at all")
    return {"missing": str(folder / "missing.png"), "corrupt": str(corrupt)}


def _labels(recognizer: EmotionRecognizer) -> list[str]:
    return [f"prob_{label}" for label in recognizer.labels]


def _assert_rows_equal_predictions(
    rows: dict[str, Any], predictions: list[Any], recognizer: EmotionRecognizer
) -> None:
    for index, prediction in enumerate(predictions):
        assert rows["error"][index] == ""
        assert rows["label"][index] == prediction.label
        assert rows["score"][index] == prediction.score
        for label in recognizer.labels:
            assert rows[f"prob_{label}"][index] == prediction.probabilities[label]


@pytest.mark.parametrize("tta", ["none", "flip_crop"])
def test_rows_equal_predict_exactly_in_input_order(
    recognizer: EmotionRecognizer, images: list[str], tta: str
) -> None:
    order = images[::-1]  # not sorted: the output follows the input
    rows = BatchScorer(tta=tta, batch_size=3)({"path": np.array(order)})
    assert list(rows) == ["path", "label", "score", "error", *_labels(recognizer)]
    assert rows["path"].tolist() == order
    _assert_rows_equal_predictions(rows, recognizer.predict(order, tta=tta), recognizer)
    assert rows["score"].dtype == np.float64 and rows["prob_happy"].dtype == np.float64


def test_unreadable_files_get_their_error_and_the_batch_goes_on(
    recognizer: EmotionRecognizer, images: list[str], broken: dict[str, str]
) -> None:
    paths = [images[0], broken["missing"], images[1], broken["corrupt"], images[2]]
    rows = BatchScorer(tta="none")({"path": paths, "id": list(range(5))})
    assert rows["id"].tolist() == [0, 1, 2, 3, 4]
    expected = [result.to_dict() for result in predict_paths(recognizer, paths, tta="none")]
    for index, result in enumerate(expected):
        assert rows["error"][index] == result.get("error", "")
        if "error" in result:
            assert rows["label"][index] == ""
            assert math.isnan(rows["score"][index])
            assert all(math.isnan(rows[name][index]) for name in _labels(recognizer))
        else:
            assert rows["label"][index] == result["label"]
            assert rows["score"][index] == result["score"]
    assert "No image file at" in rows["error"][1]
    assert rows["error"][3] != ""


def test_a_bytes_column_scores_as_its_files_do(images: list[str], broken: dict[str, str]) -> None:
    paths = [*images[:4], broken["corrupt"]]
    data = np.empty(len(paths), dtype=object)
    data[:] = [Path(path).read_bytes() for path in paths]
    scorer = BatchScorer(tta="none")
    by_path = scorer({"path": np.array(paths)})
    # Both columns, as ray.data.read_binary_files(include_paths=True) gives them: bytes used.
    by_bytes = scorer({"bytes": data, "path": np.array(["elsewhere"] * len(paths))})
    for name in ("label", "score", "prob_sad"):
        np.testing.assert_array_equal(by_bytes[name][:4], by_path[name][:4])
    assert by_bytes["error"][:4].tolist() == [""] * 4
    assert by_bytes["error"][4] != ""
    assert by_bytes["bytes"][0] == data[0]  # input columns kept, bytes untouched


def test_a_list_of_bytes_keeps_trailing_nul_bytes(images: list[str]) -> None:
    # np.asarray(list of bytes) makes an |S array, which drops trailing NULs; the scorer must not.
    padded = Path(images[0]).read_bytes() + b"\x00\x00"
    rows = BatchScorer(tta="none")({"bytes": [padded]})
    assert rows["bytes"][0] == padded


def test_a_data_frame_comes_back_a_data_frame(
    recognizer: EmotionRecognizer, images: list[str], broken: dict[str, str]
) -> None:
    pandas = pytest.importorskip("pandas")
    paths = [images[3], broken["missing"], images[4]]
    frame = pandas.DataFrame({"path": paths, "site": ["a", "b", "c"]}, index=[10, 20, 30])
    out = BatchScorer(tta="none")(frame)
    assert isinstance(out, pandas.DataFrame)
    assert list(out.columns) == ["path", "site", "label", "score", "error", *_labels(recognizer)]
    assert out["site"].tolist() == ["a", "b", "c"]
    assert out.index.tolist() == [0, 1, 2]
    as_dict = BatchScorer(tta="none")({"path": np.array(paths), "site": np.array(["a", "b", "c"])})
    for name in ("label", "error"):
        assert out[name].tolist() == as_dict[name].tolist()
    np.testing.assert_array_equal(out["prob_fear"].to_numpy(), as_dict["prob_fear"])


def test_faces_give_one_row_per_face_with_its_box(
    recognizer: EmotionRecognizer, images: list[str], broken: dict[str, str]
) -> None:
    pytest.importorskip("cv2")
    scorer = BatchScorer(tta="none", faces=True)
    # Two faces in a photo, none in another: a detector that says so.
    scorer.load().face_detector = lambda gray: (
        [(4, 4, 30, 30, 0.5), (40, 40, 60, 60, 2.0)] if gray.shape[0] > 90 else []
    )
    big = str(Path(images[0]).with_name("big.png"))
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (128, 128), np.uint8)).save(big)
    rows = scorer({"path": np.array([big, images[1], broken["missing"]]), "n": np.arange(3)})
    assert list(rows)[:8] == ["path", "n", "face", "x", "y", "w", "h", "confidence"]
    assert rows["n"].tolist() == [0, 0, 1, 2]
    assert rows["face"].tolist() == [0, 1, -1, -1]
    boxes = np.stack([rows[name] for name in "xywh"], axis=1).tolist()
    assert boxes == [[40, 40, 60, 60], [4, 4, 30, 30], [-1] * 4, [-1] * 4]
    assert rows["confidence"][:2].tolist() == [2.0, 0.5]
    assert math.isnan(rows["confidence"][2])
    assert rows["label"][2] == "" and rows["error"][2] == ""  # no face: not an error
    assert math.isnan(rows["prob_happy"][2])
    assert rows["error"][3] != ""
    (found,) = scorer.load().predict_faces(big, tta="none")
    for index, face in enumerate(found):
        assert rows["label"][index] == face.prediction.label
        for label in recognizer.labels:
            assert rows[f"prob_{label}"][index] == face.prediction.probabilities[label]


def test_faces_in_a_real_photo_match_predict(recognizer: EmotionRecognizer) -> None:
    pytest.importorskip("cv2")
    rows = BatchScorer(tta="none", faces=True)({"path": np.array([str(PHOTO)])})
    (found,) = recognizer.predict_faces(PHOTO, tta="none")
    assert len(found) >= 1 and rows["face"].tolist() == list(range(len(found)))
    for index, face in enumerate(found):
        box = tuple(int(rows[name][index]) for name in "xywh")
        assert box == face.box
        assert rows["score"][index] == face.prediction.score


def test_pickling_carries_the_options_not_the_model(images: list[str]) -> None:
    scorer = BatchScorer(tta="flip", num_threads=1, batch_size=5)
    first = scorer({"path": np.array(images)})
    data = pickle.dumps(scorer)
    assert len(data) < 2_000  # options only: no onnxruntime session, no weights
    copy = pickle.loads(data)
    assert repr(copy) == repr(scorer) and copy._recognizer is None
    again = copy({"path": np.array(images)})
    for name, values in first.items():
        np.testing.assert_array_equal(again[name], values)


def test_the_model_loads_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = []
    original = EmotionRecognizer.from_pretrained

    def counting(*args: Any, **kwargs: Any) -> EmotionRecognizer:
        loads.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(EmotionRecognizer, "from_pretrained", counting)
    scorer = BatchScorer(tta="none")
    for _ in range(3):  # Spark and Dask unpickle the function for every task
        pickle.loads(pickle.dumps(scorer))({"path": np.array([str(FACE)])})
    BatchScorer(tta="flip").load()  # other options: another model
    assert len(loads) == 2


def test_an_empty_batch_gives_the_columns_and_no_rows() -> None:
    rows = BatchScorer(faces=True)({"path": np.array([], dtype=str)})
    assert rows["face"].shape == (0,) and rows["prob_neutral"].shape == (0,)
    assert rows["x"].dtype == np.int64


@pytest.mark.parametrize(
    ("batch", "error", "match"),
    [
        ({"file": ["a.jpg"]}, InvalidArgumentError, r"'bytes' or a 'path' column.*\['file'\]"),
        ({"path": ["a.jpg"], "label": ["sad"]}, InvalidArgumentError, r"\['label'\].*rename"),
        ({"path": ["a.jpg", "b.jpg"], "id": [1]}, InvalidArgumentError, "one length"),
        (["a.jpg"], UnsupportedInputError, "got list.*batch_format"),
    ],
)
def test_bad_batches_are_refused_with_the_fix(batch: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        BatchScorer()(batch)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"tta": "sideways"}, "sideways"),
        ({"num_threads": 0}, "num_threads must be a positive integer, got 0"),
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"faces": "yes"}, "faces must be True or False, got 'yes'"),
    ],
)
def test_bad_options_are_refused_at_once(options: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        BatchScorer(**options)


@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.integers(0, 9), max_size=12), size=st.integers(1, 5))
def test_any_mix_of_good_and_bad_paths_keeps_its_rows(
    images: list[str], broken: dict[str, str], picks: list[int], size: int
) -> None:
    pool = [*images, broken["missing"], broken["corrupt"]]
    paths = [pool[pick] for pick in picks]
    scorer = BatchScorer(tta="none", batch_size=size)
    rows = scorer({"path": np.array(paths, dtype=object), "i": np.arange(len(paths))})
    assert rows["i"].tolist() == list(range(len(paths)))
    assert [error != "" for error in rows["error"]] == [pick >= 8 for pick in picks]
    reference = BatchScorer(tta="none")({"path": np.array(images)})
    for index, pick in enumerate(picks):
        if pick < 8:
            assert rows["prob_angry"][index] == reference["prob_angry"][pick]


def test_scoring_imports_neither_torch_nor_an_engine(images: list[str]) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from emotionnet import BatchScorer
        rows = BatchScorer(tta="none")({{"path": np.array({images[:2]!r})}})
        assert rows["error"].tolist() == ["", ""], rows["error"]
        heavy = ("torch", "torchvision", "ray", "pyspark", "dask", "pandas")
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
