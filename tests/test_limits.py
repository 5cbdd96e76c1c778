"""Hostile inputs end in a clear emotionnet error, never a hang, a guess or runaway memory.

Special files (FIFOs) are refused without blocking; the pixel scale follows the type, never
the values; very large files are reduced while decoding, and boxes found in them are in the
file's pixels; exotic tensors and array subclasses get emotionnet errors.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import emotionnet.faces
import emotionnet.images
from emotionnet._io import NotARegularFileError, open_regular_file
from emotionnet.errors import (
    ImageNotFoundError,
    InvalidArgumentError,
    InvalidImageError,
    UnsupportedInputError,
)
from emotionnet.faces import detect_faces
from emotionnet.images import load_image, original_size, to_face_batch
from emotionnet.preprocessing import pixels_to_uint8, to_face_array

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")


def _in_thread(function: object, *args: object) -> BaseException | None:
    """Run ``function(*args)`` in a daemon thread; fail the test if it blocks."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            function(*args)  # type: ignore[operator]
            outcome.append(None)
        except BaseException as error:  # handed back to the test
            outcome.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the call blocked on a special file"
    return outcome[0]


# --------------------------------------------------------------------------------------------
# Special files


@needs_fifo
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "face.png"
    os.mkfifo(fifo)
    error = _in_thread(load_image, str(fifo))
    assert isinstance(error, ImageNotFoundError)
    assert "named pipe" in str(error) and str(fifo) in str(error)


@needs_fifo
def test_link_to_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "face.jpg"
    link.symlink_to(fifo)
    error = _in_thread(load_image, str(link))
    assert isinstance(error, ImageNotFoundError) and "named pipe" in str(error)


def test_character_device_is_refused() -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    with pytest.raises(ImageNotFoundError, match="character device"):
        load_image("/dev/zero")


def test_symlink_loop_is_an_image_not_found_error(tmp_path: Path) -> None:
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    with pytest.raises(ImageNotFoundError, match=r"loop\.png"):
        load_image(loop)


def test_open_regular_file_reads_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc")
    with open_regular_file(path) as handle:
        assert handle.read() == b"abc"
    with pytest.raises(NotARegularFileError, match="a directory"):
        open_regular_file(tmp_path)


# --------------------------------------------------------------------------------------------
# One value-scale rule per type


def test_float_pil_image_is_not_rescaled_by_one_stray_pixel() -> None:
    # Before: a maximum above 1 switched F images to the 0..255 scale, turning a face black.
    values = np.full((48, 48), 0.8, dtype=np.float32)
    values[0, 0] = 1.001
    with pytest.raises(InvalidImageError, match=r"\[0, 1\]"):
        to_face_array(Image.fromarray(values, mode="F"))


@pytest.mark.parametrize("value", [0.0, 0.25, 0.5, 1.0])
def test_float_pil_image_and_float_array_agree(value: float) -> None:
    values = np.full((48, 48), value, dtype=np.float32)
    from_pil = to_face_array(Image.fromarray(values, mode="F"))
    np.testing.assert_array_equal(from_pil, to_face_batch([values])[0])
    assert from_pil[0, 0] == round(value * 255)


def test_int32_pil_image_follows_the_integer_rule() -> None:
    values = np.full((48, 48), 200, dtype=np.int32)
    assert to_face_array(Image.fromarray(values, mode="I"))[0, 0] == 200
    values[5, 5] = 256
    for image in (Image.fromarray(values, mode="I"), values):
        with pytest.raises(InvalidImageError, match=r"0\.\.255"):
            to_face_batch([image])


@given(st.integers(0, 65535))
def test_sixteen_bit_rule_is_round_of_v_over_257(value: int) -> None:
    array = np.array([value], dtype=np.uint16)
    assert int(pixels_to_uint8(array, "x")[0]) == round(value / 257)
    big_endian = array.astype(">u2")
    assert int(pixels_to_uint8(big_endian, "x")[0]) == round(value / 257)


@given(st.floats(0.0, 1.0, allow_nan=False, width=32))
def test_float_rule_is_round_of_v_times_255(value: float) -> None:
    expected = int(np.rint(np.float32(value) * np.float32(255)))
    got = pixels_to_uint8(np.array([value], dtype=np.float32), "x")[0]
    assert int(got) == expected


@pytest.mark.parametrize("bad", [np.nan, np.inf, -0.01, 1.5])
def test_out_of_range_floats_are_refused_for_every_input_type(bad: float) -> None:
    values = np.full((48, 48), 0.5, dtype=np.float32)
    values[3, 3] = bad
    for image in (values, torch.from_numpy(values), Image.fromarray(values, mode="F")):
        with pytest.raises(InvalidImageError):
            to_face_batch([image])


# --------------------------------------------------------------------------------------------
# Wrong types get emotionnet errors


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_np_matrix_is_an_image() -> None:
    matrix = np.matrix(np.full((48, 48), 7, dtype=np.uint8))
    assert to_face_batch([matrix])[0, 0, 0] == 7
    assert to_face_batch([np.matrix(np.full((60, 50), 0.5))])[0, 0, 0] == 128


def test_meta_tensor_is_unsupported() -> None:
    with pytest.raises(UnsupportedInputError, match="meta"):
        load_image(torch.empty(48, 48, device="meta"))


def test_sparse_tensor_is_unsupported() -> None:
    with pytest.raises(UnsupportedInputError, match="dense"):
        load_image(torch.zeros(48, 48).to_sparse())


@pytest.mark.filterwarnings("ignore:.*quantize")
def test_quantized_tensor_is_unsupported() -> None:
    quantized = torch.quantize_per_tensor(torch.zeros(48, 48), 0.1, 0, torch.quint8)
    with pytest.raises(UnsupportedInputError, match="quantized"):
        load_image(quantized)


@pytest.mark.parametrize("returned", [None, 5, "boxes"])
def test_detector_returning_no_boxes_is_an_emotionnet_error(returned: object) -> None:
    with pytest.raises(InvalidArgumentError, match="detector"):
        detect_faces(np.zeros((64, 64), dtype=np.uint8), detector=lambda gray: returned)


# --------------------------------------------------------------------------------------------
# Bounded memory: very large files are reduced while decoding


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_large_files_are_reduced_and_remember_their_size(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(emotionnet.images, "MAX_WORKING_SIDE", 64)
    photo = Image.new("L", (300, 120), 100)
    image = load_image(_encoded(photo, fmt))
    assert max(image.size) <= 64
    assert original_size(image) == (300, 120)
    assert int(np.asarray(image).mean().round()) == 100


def test_reduction_keeps_the_exif_orientation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emotionnet.images, "MAX_WORKING_SIDE", 64)
    photo = Image.new("L", (300, 120), 100)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 270: the upright image is portrait
    image = load_image(_encoded(photo, "JPEG", exif=exif.tobytes()))
    assert image.width < image.height
    assert original_size(image) == (120, 300)


def test_boxes_in_a_reduced_file_are_in_the_files_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emotionnet.images, "MAX_WORKING_SIDE", 100)
    photo = Image.new("L", (400, 200), 0)
    photo.paste(255, (200, 100, 280, 180))  # a bright square: the "face"

    def brightest_square(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        ys, xs = np.nonzero(gray > 128)
        return [(int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)]

    (box,) = detect_faces(_encoded(photo, "PNG"), detector=brightest_square)
    assert box == pytest.approx((200, 100, 80, 80), abs=4)


def test_detector_works_on_a_reduced_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emotionnet.faces, "MAX_DETECTION_SIDE", 50)
    seen: list[tuple[int, ...]] = []

    def detector(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        seen.append(gray.shape)
        return [(10, 5, 20, 20)]

    photo = np.zeros((100, 200), dtype=np.uint8)
    assert detect_faces(photo, detector=detector) == [(40, 20, 80, 80)]
    assert seen == [(25, 50)]


# --------------------------------------------------------------------------------------------
# Data sets: the same image door as predict


def _fer_folders(root: Path) -> Path:
    for index, label in enumerate(["happy", "sad", "happy"]):
        folder = root / "train" / label
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("L", (48, 48), 40 * index).save(folder / f"Training_{index}.png")
    return root


_EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 48 48\nshowpage\n"


def test_eps_disguised_as_png_never_reaches_ghostscript(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emotionnet.data import FER2013
    from emotionnet.errors import CorruptImageError

    root = _fer_folders(tmp_path / "data")
    (root / "train" / "sad" / "Training_9.png").write_bytes(_EPS)
    # A stand-in Ghostscript that leaves a mark if anything launches it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mark = tmp_path / "gs-ran"
    fake_gs = bin_dir / "gs"
    fake_gs.write_text(f"#!/bin/sh\ntouch {mark}\nexit 1\n")
    fake_gs.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    with pytest.raises(CorruptImageError, match=r"Training_9\.png.*not an image in a supported"):
        FER2013(root, "train", cache=False)
    skipped = FER2013(root, "train", cache=False, on_error="skip")
    assert len(skipped) == 3 and len(skipped.skipped) == 1
    with pytest.raises(CorruptImageError):
        load_image(root / "train" / "sad" / "Training_9.png")
    assert not mark.exists(), "Ghostscript was launched"


def test_symlink_loop_in_a_data_set_is_a_bad_item(tmp_path: Path) -> None:
    from emotionnet.data import FER2013
    from emotionnet.errors import CorruptImageError

    root = _fer_folders(tmp_path / "data")
    loop = root / "train" / "sad" / "Training_7.png"
    loop.symlink_to(loop)
    with pytest.raises(CorruptImageError, match=r"Training_7\.png"):
        FER2013(root, "train", cache=False)
    data = FER2013(root, "train", cache=False, on_error="skip")
    assert len(data) == 3 and "Training_7.png" in data.skipped[0]


@needs_fifo
def test_fifo_in_a_data_set_does_not_block(tmp_path: Path) -> None:
    from emotionnet.data import FER2013

    root = _fer_folders(tmp_path / "data")
    os.mkfifo(root / "train" / "sad" / "Training_8.png")
    outcome: list[object] = []
    error = _in_thread(lambda: outcome.append(FER2013(root, "train", cache=False)))
    assert error is None
    assert len(outcome[0]) == 3  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Reports and exports


@needs_fifo
def test_report_from_a_fifo_does_not_block(tmp_path: Path) -> None:
    from emotionnet.metrics import EvaluationReport

    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    error = _in_thread(EvaluationReport.load_json, fifo)
    assert isinstance(error, OSError) and "named pipe" in str(error)


@pytest.mark.parametrize("content", [b"\xff\xfe{}", b"[" * 200_000 + b"]" * 200_000])
def test_report_that_is_not_utf8_or_nested_too_deep(content: bytes, tmp_path: Path) -> None:
    from emotionnet.errors import MalformedDataError
    from emotionnet.metrics import EvaluationReport

    path = tmp_path / "report.json"
    path.write_bytes(content)
    with pytest.raises(MalformedDataError, match=r"report\.json"):
        EvaluationReport.load_json(path)


@pytest.mark.parametrize("opset", [99999, 8, -1, True, 17.0])
def test_export_opset_outside_the_exporters_range(opset: object) -> None:
    from emotionnet.models.onnx import onnx_bytes

    with pytest.raises(InvalidArgumentError, match=r"opset must be an integer in 9\.\."):
        onnx_bytes(torch.nn.Linear(2, 2), opset=opset)  # type: ignore[arg-type]


def test_cli_export_opset_is_one_error_line(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from emotionnet.cli import main

    argv = ["export", "--onnx", str(tmp_path / "m.onnx"), "--opset", "99999"]
    assert main([*argv, "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: opset must be") and err.count("\n") == 1
    assert not (tmp_path / "m.onnx").exists()


@needs_fifo
def test_state_dict_from_a_fifo_does_not_block(tmp_path: Path) -> None:
    from emotionnet.errors import ModelLoadError
    from emotionnet.models import read_state_dict

    fifo = tmp_path / "weights.pt"
    os.mkfifo(fifo)
    error = _in_thread(read_state_dict, fifo)
    assert isinstance(error, ModelLoadError) and "named pipe" in str(error)


def test_one_state_dict_reader_for_models_and_the_recognizer(tmp_path: Path) -> None:
    from emotionnet import EmotionRecognizer, ModelConfig, build_model

    config = ModelConfig(stem="small")
    state = build_model(config).state_dict()
    path = tmp_path / "legacy.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = build_model(ModelConfig(stem="small"), weights=path)
    recognizer = EmotionRecognizer.from_state_dict(path, config=config, device="cpu")
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value)
        assert torch.equal(recognizer.model.state_dict()[key], value)
