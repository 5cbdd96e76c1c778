"""EmotionRecognizer: predictions of every input form, parity with the data set, legacy weights."""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from torch import nn

from emotionnet import EMOTIONS, FER2013, EmotionRecognizer, Prediction
from emotionnet.errors import (
    CorruptImageError,
    ImageNotFoundError,
    InvalidArgumentError,
    InvalidImageError,
    ModelLoadError,
    UnsupportedInputError,
    WeightsNotFoundError,
)
from emotionnet.inference import predict_proba
from emotionnet.models import ModelConfig, build_model
from emotionnet.preprocessing import to_face_array

DOCUMENTED = (ImageNotFoundError, CorruptImageError, InvalidImageError, UnsupportedInputError)
CONFIG = ModelConfig(stem="imagenet")


@pytest.fixture(scope="module")
def recognizer() -> EmotionRecognizer:
    torch.manual_seed(0)
    return EmotionRecognizer(build_model(CONFIG), CONFIG, device="cpu")


@pytest.fixture(scope="module", params=["torch", "onnx"])
def tiny(request: pytest.FixtureRequest) -> EmotionRecognizer:
    """A linear classifier: fast enough for property tests over many inputs.

    Every test that uses it runs on both paths: eager PyTorch, and the torch-free one (the
    model exported to ONNX and run by onnxruntime with the numpy views), so bad input keeps
    its errors and good input its predictions on both.
    """
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7))
    return EmotionRecognizer(model, ModelConfig(), device="cpu", backend=request.param)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (10, 48, 48), dtype=np.uint8)


def proba(predictions: list[Prediction]) -> np.ndarray:
    return np.array([list(p.probabilities.values()) for p in predictions])


# --- Prediction ------------------------------------------------------------------------------


def test_prediction_fields(recognizer: EmotionRecognizer, faces: np.ndarray) -> None:
    (p,) = recognizer.predict(faces[0])
    assert isinstance(p, Prediction)
    assert list(p.probabilities) == list(EMOTIONS)  # canonical order
    assert p.label == EMOTIONS[p.index] and p.score == max(p.probabilities.values())
    assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert p.top_k(1) == [(p.label, p.score)]
    top = p.top_k(7)
    assert [v for _, v in top] == sorted(p.probabilities.values(), reverse=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.label = "sad"  # type: ignore[misc]
    for k in (0, 8, 1.5, True):
        with pytest.raises(InvalidArgumentError, match="k must be"):
            p.top_k(k)  # type: ignore[arg-type]
    assert p.to_dict()["probabilities"] == p.probabilities
    assert repr(p).startswith(f"Prediction(label={p.label!r}, score=")


# --- shapes in, shapes out --------------------------------------------------------------------


def test_one_in_a_list_of_one_out_many_in_list_out(
    tiny: EmotionRecognizer, faces: np.ndarray
) -> None:
    recognizer = tiny
    for one in (faces[0], torch.from_numpy(faces[0])[None]):
        (prediction,) = recognizer.predict(one)  # always a list, one per image
        assert isinstance(prediction, Prediction)
    for batch in (
        list(faces),
        tuple(faces),
        torch.from_numpy(faces)[:, None],  # N x 1 x H x W
        faces[..., None],  # N x H x W x 1
    ):
        predictions = recognizer.predict(batch)
        assert isinstance(predictions, list) and len(predictions) == len(faces)
    assert recognizer.predict([]) == []


def test_batches_of_any_size_agree(tiny: EmotionRecognizer, faces: np.ndarray) -> None:
    recognizer = tiny
    whole = proba(recognizer.predict(list(faces), batch_size=64))
    for batch_size in (1, 3):
        np.testing.assert_allclose(
            proba(recognizer.predict(list(faces), batch_size=batch_size)), whole, atol=1e-5
        )


def test_predict_is_the_evaluation_pipeline(tiny: EmotionRecognizer) -> None:
    # Colour photos of any size: to_face_array, then inference.predict_proba, nothing else.
    rng = np.random.default_rng(1)
    photos = [rng.integers(0, 256, (70 + i, 60, 3), dtype=np.uint8) for i in range(4)]
    arrays = np.stack([to_face_array(Image.fromarray(p)) for p in photos])
    for tta in (False, "flip", "ten_crop"):
        expected = predict_proba(
            tiny.model, arrays, tta=tta, mean=CONFIG.mean, std=CONFIG.std
        ).numpy()
        got = proba(tiny.predict(photos, tta=tta))
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_the_default_test_time_augmentation_is_the_recognizers(
    tiny: EmotionRecognizer, faces: np.ndarray
) -> None:
    from emotionnet.recognizer import DEFAULT_TTA

    assert tiny.tta == DEFAULT_TTA == "flip_crop"
    batch = list(faces[:3])
    np.testing.assert_array_equal(
        proba(tiny.predict(batch)), proba(tiny.predict(batch, tta=DEFAULT_TTA))
    )
    labels = torch.arange(3)
    assert tiny.evaluate((torch.from_numpy(faces[:3]), labels)).tta == DEFAULT_TTA
    fast = EmotionRecognizer(tiny.model, CONFIG, device="cpu", tta="none", backend=tiny.backend)
    np.testing.assert_array_equal(proba(fast.predict(batch)), proba(tiny.predict(batch, tta=False)))
    assert fast.evaluate((torch.from_numpy(faces[:3]), labels)).tta == "none"
    with pytest.raises(InvalidArgumentError, match="flip_crop"):
        EmotionRecognizer(tiny.model, CONFIG, device="cpu", tta="sideways")


def test_save_pretrained_names_the_model_card(
    recognizer: EmotionRecognizer, tmp_path: Path
) -> None:
    recognizer.save_pretrained(tmp_path / "folder", name="emotionnet-demo")
    card = (tmp_path / "folder" / "README.md").read_text(encoding="utf-8")
    assert "\n# emotionnet-demo\n" in card
    recognizer.save_pretrained(tmp_path / "untitled")
    assert "\n# untitled\n" in (tmp_path / "untitled" / "README.md").read_text(encoding="utf-8")


def test_save_pretrained_refuses_a_module_its_config_does_not_describe(
    tiny: EmotionRecognizer, tmp_path: Path
) -> None:
    # The folder's config.json must rebuild the model: a Linear is not a ResNet18.
    with pytest.raises(ModelLoadError, match=r"Sequential to save do not fit.*conv1\.weight"):
        tiny.save_pretrained(tmp_path / "folder")
    assert not (tmp_path / "folder").exists()


def test_inputs_of_every_type_agree(
    tiny: EmotionRecognizer, faces: np.ndarray, tmp_path: Path
) -> None:
    face = faces[0]
    png = io.BytesIO()
    Image.fromarray(face).save(png, format="PNG")
    (tmp_path / "face.png").write_bytes(png.getvalue())
    forms: list[Any] = [
        face,
        face[..., None],
        np.repeat(face[..., None], 3, axis=2),
        face.astype(np.float32) / 255,
        torch.from_numpy(face),
        torch.from_numpy(face)[None].repeat(3, 1, 1)[None],  # 1 x 3 x H x W: one RGB image
        Image.fromarray(face),
        Image.fromarray(face).convert("RGBA"),
        png.getvalue(),
        tmp_path / "face.png",
        str(tmp_path / "face.png"),
    ]
    expected = tiny.predict(face)[0].probabilities
    for form in forms:
        (prediction,) = tiny.predict(form)
        assert prediction.probabilities == pytest.approx(expected, abs=1e-6)


def test_fer2013_parity_csv(recognizer: EmotionRecognizer, tmp_path: Path) -> None:
    pixels = np.random.default_rng(2).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    rows = [f"{i},{' '.join(map(str, p.ravel()))},PublicTest" for i, p in enumerate(pixels)]
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    dataset = FER2013(tmp_path, "public_test", cache=False)
    for i, p in enumerate(pixels):
        path = tmp_path / f"{i}.png"
        Image.fromarray(p).save(path)
        via_predict = recognizer.predict(path)[0].probabilities
        np.testing.assert_array_equal(to_face_array(Image.open(path)), dataset.images[i].numpy())
        via_dataset = predict_proba(
            recognizer.model,
            dataset.images[i : i + 1],
            tta=recognizer.tta,
            mean=CONFIG.mean,
            std=CONFIG.std,
        )[0].tolist()
        assert list(via_predict.values()) == pytest.approx(via_dataset, abs=1e-6)


@pytest.mark.integration
def test_fer2013_parity_real_files(
    recognizer: EmotionRecognizer, fer2013_root: Path, tmp_path: Path
) -> None:
    # A few real FER2013 files in the folder layout: the data set and predict() see the same
    # uint8 pixels and give the same probabilities.
    files = []
    for emotion in EMOTIONS:
        for split, prefix in (("train", "Training_"), ("test", "PublicTest_")):
            source = sorted((fer2013_root / split / emotion).glob(f"{prefix}*"))[0]
            target = tmp_path / split / emotion / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            if split == "test":
                files.append(target)
    dataset = FER2013(tmp_path, "public_test", cache=False, num_workers=0)
    assert len(dataset) == len(files)
    by_name = {p.name: p for p in files}
    ordered = [by_name[name] for name in sorted(by_name, key=lambda n: str(by_name[n]))]
    predictions = recognizer.predict(ordered)
    expected = predict_proba(
        recognizer.model, dataset.images, tta=recognizer.tta, mean=CONFIG.mean, std=CONFIG.std
    )
    for i, path in enumerate(ordered):
        with Image.open(path) as image:
            np.testing.assert_array_equal(to_face_array(image), dataset.images[i].numpy())
        assert list(predictions[i].probabilities.values()) == pytest.approx(
            expected[i].tolist(), abs=1e-6
        )


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("no-such-face.jpg", ImageNotFoundError),
        (b"not an image", CorruptImageError),
        (np.zeros((0, 48), np.uint8), InvalidImageError),
        (np.full((48, 48), np.nan), InvalidImageError),
        (np.zeros((48, 48, 2), np.uint8), InvalidImageError),
        (torch.zeros(10, 48, 48), InvalidImageError),
        (torch.zeros(3, 48, 48), InvalidImageError),
        (Image.new("LAB", (8, 8)), UnsupportedInputError),
        (object(), UnsupportedInputError),
        ([np.zeros((48, 48), np.uint8), 3.5], UnsupportedInputError),
    ],
)
def test_bad_input_is_a_documented_error(tiny: EmotionRecognizer, value: Any, error: type) -> None:
    with pytest.raises(error):
        tiny.predict(value)


@pytest.mark.parametrize("n", [3, 4])
@pytest.mark.parametrize("uint8", [True, False])
def test_faces_stacked_in_a_3d_tensor_are_refused_not_read_as_one_colour_image(
    tiny: EmotionRecognizer, faces: np.ndarray, n: int, uint8: bool
) -> None:
    stacked = torch.from_numpy(faces[:n])  # FER2013.images[:n] has this shape
    if not uint8:
        stacked = stacked.float() / 255
    with pytest.raises(InvalidImageError, match=r"ambiguous.*unsqueeze\(1\)"):
        tiny.predict(stacked)
    # The fixes the message names give one prediction per face, or one per colour image.
    expected = proba(tiny.predict(list(stacked)))
    np.testing.assert_array_equal(proba(tiny.predict(stacked.unsqueeze(1))), expected)
    assert len(tiny.predict(stacked.unsqueeze(0))) == 1


def test_colour_config_is_refused(tiny: EmotionRecognizer) -> None:
    # Faces are fed as one grayscale channel: an in_chans=3 model would fail at predict time
    # with a torch shape error.
    config = ModelConfig(in_chans=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    with pytest.raises(InvalidArgumentError, match=r"in_chans is 3.*in_chans=1"):
        EmotionRecognizer(build_model(config), config, device="cpu")


def test_bad_options(tiny: EmotionRecognizer) -> None:
    face = np.zeros((48, 48), np.uint8)
    for batch_size in (0, -1, 2.5, True):
        with pytest.raises(InvalidArgumentError, match="batch_size"):
            tiny.predict(face, batch_size=batch_size)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="tta"):
        tiny.predict(face, tta="rotate")
    with pytest.raises(InvalidArgumentError, match="backend"):
        EmotionRecognizer(tiny.model, backend="tensorrt")
    with pytest.raises(InvalidArgumentError, match="device"):
        EmotionRecognizer(tiny.model, device="tpu")
    with pytest.raises(UnsupportedInputError, match=r"torch\.nn\.Module"):
        EmotionRecognizer("model.pt")  # type: ignore[arg-type]


_images = st.one_of(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=64),
    ),
    hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64]),
        shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
        elements=st.one_of(
            st.floats(-1, 2, width=32), st.sampled_from([float("nan"), float("inf")])
        ),
    ),
    st.builds(
        lambda mode, w, h: Image.new(mode, (w, h)),
        st.sampled_from(
            ["1", "L", "LA", "La", "P", "RGB", "RGBA", "CMYK", "I", "I;16", "F", "YCbCr", "LAB"]
        ),
        st.integers(1, 80),
        st.integers(1, 80),
    ),
    # N grayscale 48x48 faces stacked like FER2013.images, uint8 or float.
    st.builds(
        lambda n, uint8: (
            torch.randint(0, 256, (n, 48, 48), dtype=torch.uint8)
            if uint8
            else torch.rand(n, 48, 48)
        ),
        st.integers(1, 5),
        st.booleans(),
    ),
    st.lists(hnp.arrays(np.uint8, (48, 48)), max_size=3),
    st.builds(torch.rand, st.lists(st.integers(0, 50), min_size=1, max_size=4).map(tuple)),
    st.binary(max_size=64),
    st.text(max_size=10),
    st.integers(),
    st.none(),
)


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(_images)
def test_any_input_is_a_prediction_or_a_documented_error(
    tiny: EmotionRecognizer, image: Any
) -> None:
    try:
        predictions = tiny.predict(image)
    except DOCUMENTED:
        return
    assert isinstance(predictions, list)
    # One prediction per image, never one made up for several: a list is one per item, a
    # 4-D batch one per row, and N x 48 x 48 holds N faces (only N == 1 may be predicted).
    fer_style = isinstance(image, torch.Tensor) and tuple(image.shape[1:]) == (48, 48)
    if isinstance(image, list):
        expected = len(image)
    elif fer_style or (isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim == 4):
        expected = image.shape[0]
    else:
        expected = 1
    assert len(predictions) == expected
    for p in predictions:
        assert isinstance(p, Prediction) and p.label in EMOTIONS
        assert np.isfinite(p.score) and 0 <= p.score <= 1


# --- legacy state dicts ----------------------------------------------------------------------


def test_from_state_dict_files(
    tmp_path: Path, recognizer: EmotionRecognizer, faces: np.ndarray
) -> None:
    state = recognizer.model.state_dict()
    expected = proba(recognizer.predict(list(faces[:3])))
    variants = {
        "plain.pth": state,
        "ddp.pt": {f"module.{k}": v for k, v in state.items()},
        "checkpoint.pth": {"epoch": 3, "state_dict": state, "best_acc": torch.tensor(0.7)},
        "compiled.pt": {f"_orig_mod.{k}": v for k, v in state.items()},
    }
    for name, content in variants.items():
        torch.save(content, tmp_path / name)
        loaded = EmotionRecognizer.from_state_dict(
            tmp_path / name, config=CONFIG, device="cpu", backend="torch"
        )
        np.testing.assert_array_equal(proba(loaded.predict(list(faces[:3]))), expected)


class Payload:
    """A pickled object that weights_only loading must refuse to build."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("unpickled!",))


def test_from_state_dict_never_unpickles_objects(tmp_path: Path, capsys: Any) -> None:
    torch.save({"conv1.weight": torch.zeros(1), "evil": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ModelLoadError, match="Only tensors"):
        EmotionRecognizer.from_state_dict(tmp_path / "evil.pth", config=CONFIG)
    assert "unpickled!" not in capsys.readouterr().out


def test_from_state_dict_errors(tmp_path: Path, recognizer: EmotionRecognizer) -> None:
    with pytest.raises(WeightsNotFoundError):
        EmotionRecognizer.from_state_dict(tmp_path / "missing.pth", config=CONFIG)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ModelLoadError):
        EmotionRecognizer.from_state_dict(tmp_path / "junk.pth", config=CONFIG)
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ModelLoadError, match="not a state dict"):
        EmotionRecognizer.from_state_dict(tmp_path / "list.pth", config=CONFIG)
    state = recognizer.model.state_dict()
    with pytest.raises(ModelLoadError, match=r"mis-shaped: conv1\.weight"):
        EmotionRecognizer.from_state_dict(state, config=ModelConfig(stem="middle"))
    with pytest.raises(ModelLoadError, match=r"missing: fc\.bias"):
        EmotionRecognizer.from_state_dict(
            {k: v for k, v in state.items() if k != "fc.bias"}, config=CONFIG
        )


# --- the rest --------------------------------------------------------------------------------


def test_evaluate_uses_the_model_normalisation(
    recognizer: EmotionRecognizer, faces: np.ndarray
) -> None:
    targets = torch.arange(len(faces)) % 7
    report = recognizer.evaluate((torch.from_numpy(faces), targets))
    predicted = [p.index for p in recognizer.predict(list(faces))]
    assert report.accuracy == pytest.approx(np.mean(np.array(predicted) == targets.numpy()))


def test_repr_and_labels(recognizer: EmotionRecognizer) -> None:
    assert recognizer.labels == EMOTIONS
    assert repr(recognizer) == (
        "EmotionRecognizer(stem='imagenet', labels=7, device='cpu', backend='torch', "
        "precision='float32')"
    )


def test_custom_labels(faces: np.ndarray) -> None:
    config = ModelConfig(stem="imagenet", num_classes=3, labels=("neg", "neu", "pos"))
    (p,) = EmotionRecognizer(build_model(config), config, device="cpu").predict(faces[0])
    assert list(p.probabilities) == ["neg", "neu", "pos"]


# --- non-finite probabilities ----------------------------------------------------------------


def _broken(value: float) -> EmotionRecognizer:
    model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7))
    with torch.no_grad():
        if value == value:  # finite or inf: logits overflow to inf, softmax gives NaN
            model[1].weight.fill_(value)
        else:
            model[1].bias[2] = value
    return EmotionRecognizer(model, ModelConfig(), device="cpu")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 3e38])
@pytest.mark.parametrize("tta", ["none", "flip_crop"])
def test_non_finite_probabilities_are_an_error_never_a_result(
    faces: np.ndarray, value: float, tta: str
) -> None:
    recognizer = _broken(value)
    with pytest.raises(ModelLoadError, match=r"NaN or infinite probabilities for \d+ of 10"):
        recognizer.predict(list(faces), tta=tta)
    with pytest.raises(ModelLoadError, match="NaN or infinite probabilities for 1 of 1 faces"):
        recognizer.predict(faces[0], tta=tta)


def test_non_finite_probabilities_of_detected_faces_are_an_error(faces: np.ndarray) -> None:
    recognizer = _broken(float("nan"))
    recognizer.face_detector = lambda gray: [(0, 0, 24, 24), (10, 10, 30, 30)]
    with pytest.raises(ModelLoadError, match="for 2 of 2 faces"):
        recognizer.predict_faces(faces[0], tta="none")


# --- a photo passed as a face -------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "images"
PHOTO, FACE = EXAMPLES / "astronaut.jpg", EXAMPLES / "astronaut_face.jpg"


def _crop_warnings(recognizer: EmotionRecognizer, images: Any) -> list[Any]:
    import warnings

    from emotionnet.errors import NotAFaceCropWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recognizer.predict(images)
    return [w.message for w in caught if issubclass(w.category, NotAFaceCropWarning)]


def test_a_photo_predicted_as_one_face_is_warned_about(tiny: EmotionRecognizer) -> None:
    pytest.importorskip("cv2")
    (warning,) = _crop_warnings(tiny, str(PHOTO))
    assert warning.source == str(PHOTO) and warning.image_size == (320, 320)
    x, y, w, _ = warning.box  # the astronaut's face, about 65 px, in the upper middle
    assert 50 <= w <= 80 and 80 <= x <= 140 and 20 <= y <= 60
    assert "looks like a photo, not a face crop" in str(warning)
    assert "Use predict_faces" in str(warning)
    # A prediction comes back all the same, and the same one as without the check.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert tiny.predict(PHOTO) == tiny.predict(Image.open(PHOTO))
    # Photos as PIL images, arrays and in a batch: one warning per call, without a path.
    (warning,) = _crop_warnings(tiny, [np.asarray(Image.open(PHOTO))] * 3)
    assert warning.source is None and str(warning).startswith("The image looks like a photo")


def test_face_crops_are_not_warned_about(tiny: EmotionRecognizer) -> None:
    pytest.importorskip("cv2")
    assert _crop_warnings(tiny, FACE) == []  # a 140 px crop: the face fills it
    # Only the first image of a call large enough to hold a smaller face is searched.
    assert _crop_warnings(tiny, [FACE, PHOTO]) == []


def test_small_faces_and_batches_are_never_searched(
    tiny: EmotionRecognizer, monkeypatch: pytest.MonkeyPatch, faces: np.ndarray
) -> None:
    import emotionnet._crop_check as crop_check

    def searched() -> None:
        raise AssertionError("a FER2013-sized face was searched for faces")

    monkeypatch.setattr(crop_check, "_haar", searched)
    photo_small = Image.open(PHOTO).resize((95, 95))  # under 2x the 48 px input
    tiny.predict([*faces, photo_small, Image.fromarray(faces[0]).resize((64, 64))])
    tiny.predict(torch.from_numpy(faces).unsqueeze(1))


def test_without_opencv_nothing_is_searched(
    tiny: EmotionRecognizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import emotionnet._crop_check as crop_check

    monkeypatch.setattr(crop_check, "_detector", [])  # not tried yet in this process
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 fails
    assert _crop_warnings(tiny, PHOTO) == []
    assert crop_check._detector == [None]
