"""Every accepted image type gives the pixels of the one preprocessing rule; bad input fails."""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import emotionnet.images
from emotionnet.errors import (
    CorruptImageError,
    ImageNotFoundError,
    InvalidImageError,
    UnsupportedInputError,
)
from emotionnet.images import load_image, to_face_batch, unbatch
from emotionnet.preprocessing import to_face_array

DOCUMENTED = (ImageNotFoundError, CorruptImageError, InvalidImageError, UnsupportedInputError)


def face_of(image: Any) -> np.ndarray:
    return to_face_batch([image])[0]


@pytest.fixture
def rgb(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (60, 50, 3), dtype=np.uint8)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with (almost) no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


# --- every type, the same pixels ------------------------------------------------------------


def test_numpy_rgb_equals_pil_rgb(rgb: np.ndarray) -> None:
    expected = to_face_array(Image.fromarray(rgb, "RGB"))
    np.testing.assert_array_equal(face_of(rgb), expected)
    np.testing.assert_array_equal(face_of(Image.fromarray(rgb, "RGB")), expected)


def test_tensor_channels_first_equals_numpy_channels_last(rgb: np.ndarray) -> None:
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    np.testing.assert_array_equal(face_of(chw), face_of(rgb))
    np.testing.assert_array_equal(face_of(chw.float() / 255), face_of(rgb))


def test_grayscale_forms_agree(rng: np.random.Generator) -> None:
    gray = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    for form in (
        gray,
        gray[..., None],
        torch.from_numpy(gray),
        torch.from_numpy(gray)[None],
        gray.astype(np.int64),
        gray.astype(np.float64) / 255.0,
        Image.fromarray(gray, "L"),
    ):
        np.testing.assert_array_equal(face_of(form), gray)


def test_48x48_grayscale_passes_through_unchanged(rng: np.random.Generator) -> None:
    gray = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    np.testing.assert_array_equal(face_of(gray), gray)


def test_ready_faces_skip_pil_with_the_same_pixels(rng: np.random.Generator) -> None:
    gray = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    for ready in (gray, gray[..., None], torch.from_numpy(gray), torch.from_numpy(gray)[None]):
        slow = to_face_array(load_image(ready))
        np.testing.assert_array_equal(face_of(ready), slow)
    # At another size the rule resizes, as for any other image.
    np.testing.assert_array_equal(
        to_face_batch([gray], size=32)[0], to_face_array(Image.fromarray(gray), 32)
    )


def test_sixteen_bit_array_matches_i16_image(rng: np.random.Generator) -> None:
    deep = rng.integers(0, 65536, (30, 40), dtype=np.uint16)
    image = Image.fromarray(deep)
    assert image.mode.startswith("I;16")
    expected = to_face_array(image)
    np.testing.assert_array_equal(face_of(deep), expected)


def test_bool_array_is_black_and_white() -> None:
    mask = np.zeros((48, 48), dtype=bool)
    mask[:, 24:] = True
    face = face_of(mask)
    assert face[0, 0] == 0 and face[0, 47] == 255


def test_rgba_array_composites_on_white() -> None:
    transparent = np.zeros((48, 48, 4), dtype=np.uint8)
    assert face_of(transparent).min() == 255


@pytest.mark.parametrize(
    "mode", ["L", "RGB", "RGBA", "P", "I;16", "LA", "La", "CMYK", "1", "F", "HSV"]
)
def test_pil_modes(mode: str) -> None:
    image = Image.new(mode, (64, 32))
    assert face_of(image).shape == (48, 48)


def test_pil_mode_pillow_cannot_convert_is_unsupported() -> None:
    # Pillow's own ValueError ("conversion from LAB to RGB not supported") must not leak.
    with pytest.raises(UnsupportedInputError, match=r"mode 'LAB'.*accepted modes are 1, L, "):
        to_face_array(Image.new("LAB", (8, 8)))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"])
def test_files_and_bytes_agree(fmt: str, tmp_path: Path, rgb: np.ndarray) -> None:
    data = encode(Image.fromarray(rgb, "RGB"), fmt)
    path = tmp_path / f"face.{fmt.lower()}"
    path.write_bytes(data)
    from_bytes = face_of(data)
    np.testing.assert_array_equal(face_of(path), from_bytes)
    np.testing.assert_array_equal(face_of(str(path)), from_bytes)
    np.testing.assert_array_equal(face_of(bytearray(data)), from_bytes)
    np.testing.assert_array_equal(face_of(memoryview(data)), from_bytes)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("L", (40, 20), 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    loaded = load_image(encode(image, "JPEG", exif=exif))
    assert loaded.size == (20, 40)


def test_first_frame_of_an_animation() -> None:
    frames = [Image.new("L", (48, 48), value) for value in (200, 10)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert int(face_of(buffer.getvalue()).mean()) == 200


def test_unbatch() -> None:
    assert unbatch(["a", "b"]) == (["a", "b"], True)
    assert unbatch(("a",)) == (["a"], True)
    items, is_batch = unbatch(np.zeros((3, 48, 48, 1), dtype=np.uint8))
    assert len(items) == 3 and tuple(cast(np.ndarray, items[0]).shape) == (48, 48, 1) and is_batch
    items, is_batch = unbatch(torch.zeros(2, 1, 48, 48))
    assert len(items) == 2 and tuple(cast(torch.Tensor, items[0]).shape) == (1, 48, 48) and is_batch
    items, is_batch = unbatch(torch.zeros(3, 20, 30))  # one RGB image, channels first
    assert len(items) == 1 and not is_batch
    items, is_batch = unbatch(torch.zeros(1, 48, 48))  # one grayscale image
    assert len(items) == 1 and not is_batch


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("shape", [(3, 48, 48), (4, 48, 48), (3, 64, 64)])
def test_unbatch_refuses_faces_that_read_as_one_colour_image(
    shape: tuple[int, int, int], dtype: torch.dtype
) -> None:
    # FER2013.images[:3] is 3 x 48 x 48: reading it as one RGB image would give one made-up
    # prediction for three faces. 64 is the model input size here.
    with pytest.raises(InvalidImageError, match=r"ambiguous.*unsqueeze\(1\)"):
        unbatch(torch.zeros(shape, dtype=dtype), size=64)


def test_to_face_batch_of_nothing() -> None:
    assert to_face_batch([]).shape == (0, 48, 48)


# --- bad input ------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match=r"no-such\.jpg") as info:
        load_image(tmp_path / "no-such.jpg")
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("path", ["bad\x00name.png", "a" * 5000 + ".png"])
def test_impossible_paths(path: str) -> None:
    with pytest.raises(ImageNotFoundError, match="Cannot open"):
        load_image(path)


def test_home_of_an_unknown_user_is_not_found() -> None:
    with pytest.raises(ImageNotFoundError, match="home directory"):
        load_image("~no-such-user-emotionnet/face.png")


@given(st.text(st.characters(blacklist_characters="/~"), max_size=30))
def test_any_name_of_nothing_is_image_not_found(name: str) -> None:
    # In an empty folder no name is an image: every one (empty, ".", "..", NUL bytes, very
    # long, any Unicode) is an ImageNotFoundError that quotes it, never another error.
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, name)
        with pytest.raises(ImageNotFoundError) as error:
            load_image(path)
    assert repr(path) in str(error.value)


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match="is a directory"):
        load_image(tmp_path)


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, I am text", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20],
    ids=["empty", "text", "broken-png"],
)
def test_non_image_bytes_and_files(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "face.png"
    path.write_bytes(content)
    with pytest.raises(CorruptImageError):
        load_image(path)
    with pytest.raises(CorruptImageError):
        load_image(content)


def test_truncated_image_is_corrupt(rgb: np.ndarray) -> None:
    data = encode(Image.fromarray(rgb, "RGB"), "PNG")
    with pytest.raises(CorruptImageError, match="could not be decoded"):
        load_image(data[: len(data) // 2])


def test_unsupported_format_is_refused() -> None:
    data = encode(Image.new("RGB", (8, 8)), "PCX")
    with pytest.raises(CorruptImageError, match="supported format"):
        load_image(data)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # Far above Pillow's own limit: Pillow raises, we translate.
    with pytest.raises(InvalidImageError, match=r"too large|decompression"):
        load_image(png_header_only(100_000, 100_000))
    # Between our limit and twice Pillow's: only the header is read, then refused.
    with pytest.raises(InvalidImageError, match="MAX_IMAGE_PIXELS"):
        load_image(png_header_only(10_000, 10_000))


def test_pixel_limit_applies_to_arrays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emotionnet.images, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(InvalidImageError, match="limit of 100"):
        load_image(np.zeros((11, 10), dtype=np.uint8))
    assert load_image(np.zeros((10, 10), dtype=np.uint8)).size == (10, 10)


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((0, 10), np.uint8), "empty"),
        (np.zeros((10, 0, 3), np.uint8), "empty"),
        (np.zeros(0, np.uint8), "shape"),
        (np.zeros((5,), np.uint8), "shape"),
        (np.zeros((8, 8, 2), np.uint8), "channels"),
        (np.zeros((8, 8, 5), np.uint8), "channels"),
        (np.zeros((2, 8, 8, 3), np.uint8), "shape"),
        (np.full((8, 8), np.nan, np.float32), "NaN"),
        (np.full((8, 8), np.inf), "NaN or infinite"),
        (np.full((8, 8), 2.0), r"\[0, 1\]"),
        (np.full((8, 8), -0.5), r"\[0, 1\]"),
        (np.full((8, 8), 300, np.int32), "0..255"),
        (np.full((8, 8), -1, np.int8), "0..255"),
    ],
)
def test_invalid_arrays(array: np.ndarray, match: str) -> None:
    with pytest.raises(InvalidImageError, match=match):
        load_image(array)


@pytest.mark.parametrize(
    "tensor",
    [torch.zeros(10, 48, 48), torch.zeros(2, 48, 48), torch.zeros(48), torch.zeros(1, 1, 1, 8, 8)],
)
def test_tensor_shapes_that_are_not_images(tensor: torch.Tensor) -> None:
    with pytest.raises(InvalidImageError, match="not an image"):
        load_image(tensor)


@pytest.mark.parametrize(
    "value",
    [
        42,
        None,
        {"pixels": 1},
        [[0, 1], [2, 3]],
        np.zeros((4, 4), dtype=np.complex64),
        np.array([["a"]]),
        torch.zeros(4, 4, dtype=torch.complex64),
    ],
)
def test_unsupported_types(value: Any) -> None:
    with pytest.raises(UnsupportedInputError):
        load_image(value)


def test_half_and_bfloat16_tensors() -> None:
    for dtype in (torch.float16, torch.bfloat16):
        assert face_of(torch.ones(48, 48, dtype=dtype)).min() == 255


# --- properties ------------------------------------------------------------------------------


def _png_prefixed(tail: bytes) -> bytes:
    """A real 1x1 PNG cut short or followed by junk: bytes that get past format detection."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1), 7).save(buffer, format="PNG")
    head = buffer.getvalue()
    return head[: len(tail) % len(head) + 8] + tail


_dtypes = st.sampled_from(
    [np.uint8, np.uint16, np.int16, np.int64, np.float16, np.float32, np.float64, np.bool_]
)
_shapes = st.one_of(
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=70),
    st.tuples(st.integers(0, 70), st.integers(0, 70), st.sampled_from([0, 1, 2, 3, 4, 5])),
)


@given(hnp.arrays(dtype=_dtypes, shape=_shapes))
def test_any_array_is_a_face_or_a_documented_error(array: np.ndarray) -> None:
    try:
        face = face_of(array)
    except DOCUMENTED:
        return
    assert face.shape == (48, 48) and face.dtype == np.uint8


@given(st.one_of(st.binary(max_size=200), st.binary(max_size=60).map(_png_prefixed)))
def test_any_bytes_are_an_image_or_corrupt(data: bytes) -> None:
    # Bytes are never "not found" or an unsupported type; when they decode, the image is
    # within the limits and the face rule applies to it.
    try:
        image = load_image(data)
    except (CorruptImageError, InvalidImageError):
        return
    assert 0 < image.width * image.height <= emotionnet.images.MAX_IMAGE_PIXELS
    assert to_face_array(image).shape == (48, 48)


def test_a_truncated_image_opened_by_the_caller_is_a_corrupt_image_error() -> None:
    import io

    from emotionnet.errors import CorruptImageError

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, "PNG")
    truncated = Image.open(io.BytesIO(buffer.getvalue()[:-30]))  # decodes lazily, later
    with pytest.raises(CorruptImageError, match="truncated"):
        load_image(truncated)


def test_path_likes_returning_bytes_or_garbage() -> None:
    import os

    from emotionnet.errors import UnsupportedInputError

    face = Path(__file__).resolve().parent.parent / "examples" / "images" / "astronaut_face.jpg"

    class BytesPath(os.PathLike):  # type: ignore[type-arg]
        def __fspath__(self) -> bytes:
            return os.fsencode(face)

    class BrokenPath(os.PathLike):  # type: ignore[type-arg]
        def __fspath__(self) -> int:
            return 42

    assert load_image(BytesPath()).size == load_image(face).size
    with pytest.raises(UnsupportedInputError, match="__fspath__"):
        load_image(BrokenPath())  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore::UserWarning")  # nested tensors are a torch prototype
def test_a_nested_tensor_is_refused_with_the_fix() -> None:
    from emotionnet.errors import UnsupportedInputError

    nested = torch.nested.nested_tensor([torch.zeros(20, 20), torch.zeros(30, 30)])
    with pytest.raises(UnsupportedInputError, match="unbind"):
        unbatch(nested)
    with pytest.raises(UnsupportedInputError, match="unbind"):
        load_image(nested)
