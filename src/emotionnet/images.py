"""Every image type the recognizer accepts, turned into a PIL image or a face batch.

:func:`load_image` is the single door for user images: a path, raw bytes, a PIL image, a
numpy array or a torch tensor comes out as a validated PIL image (not resized). The face
batch the model sees is then made by :func:`emotionnet.preprocessing.to_face_array`, the one
grayscale/resize rule shared with the dataset, so a FER2013 image gives the same pixels
through :class:`~emotionnet.EmotionRecognizer` as through :class:`~emotionnet.FER2013`.

Accepted inputs:

* ``str`` / :class:`os.PathLike`: an image file (BMP, GIF, JPEG, PNG, PPM/PGM, TIFF, WebP,
  AVIF; the first frame of animations; the EXIF orientation is applied).
* ``bytes`` / ``bytearray`` / ``memoryview``: the encoded content of such a file.
* :class:`PIL.Image.Image` in any mode (``L``, ``RGB``, ``RGBA``, ``P``, ``I;16``, ``F``, ...).
* :class:`numpy.ndarray` ``H x W`` or ``H x W x C`` with ``C`` in 1, 3 (RGB), 4 (RGBA).
* :class:`torch.Tensor` ``H x W`` or ``C x H x W`` (channels first, as torchvision).

A batch is a ``list``/``tuple`` of those, a 4-D numpy array ``N x H x W x C`` or a 4-D
tensor ``N x C x H x W``. A 3-D tensor is one image, never a batch: ``1 x H x W`` is one
grayscale image. ``3 x S x S`` and ``4 x S x S``, with ``S`` the model input size or 48 (the
FER2013 side), are refused by :func:`unbatch` as ambiguous: they read as much as three or four
grayscale faces (a slice of ``FER2013.images``) as one RGB(A) image. Pass faces as
``images.unsqueeze(1)`` or a list, and one colour image as ``image.unsqueeze(0)``, a PIL
image or a channels-last array.

Pixel values: ``uint8`` as is; ``uint16`` on the 16-bit scale (divided by 257); other
integer types must hold 0..255; ``bool`` is black/white; floats must be finite and in
``[0, 1]``.

Example:
    >>> import numpy as np
    >>> from emotionnet.images import load_image, to_face_batch
    >>> load_image(np.zeros((60, 40, 3), dtype=np.uint8)).size
    (40, 60)
    >>> to_face_batch([np.ones((96, 96), dtype=np.float32)]).shape
    torch.Size([1, 48, 48])
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import (
    CorruptImageError,
    ImageNotFoundError,
    InvalidImageError,
    UnsupportedInputError,
)
from .preprocessing import IMAGE_SIZE, to_face_array

__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_IMAGE_PIXELS",
    "ImageInput",
    "load_image",
    "to_face_batch",
    "unbatch",
]

ImageInput: TypeAlias = (
    str
    | os.PathLike[str]
    | bytes
    | bytearray
    | memoryview
    | Image.Image
    | npt.NDArray[Any]
    | torch.Tensor
)
"""One image in any accepted form (see the module docstring)."""

ACCEPTED_FORMATS: Final[tuple[str, ...]] = (
    "AVIF",
    "BMP",
    "GIF",
    "JPEG",
    "PNG",
    "PPM",
    "TIFF",
    "WEBP",
)
"""File formats decoded from paths and bytes. Others (EPS, PSD, ...) are refused: their
decoders are a larger attack surface and no face photo needs them."""

MAX_IMAGE_PIXELS: int = 89_478_485
"""Largest accepted image, in pixels (Pillow's decompression-bomb threshold, ~ 9459 x 9459).

Checked from the file header before any pixel is decoded. Raise it (``emotionnet.images.
MAX_IMAGE_PIXELS = ...``) to accept larger photos.
"""

_ACCEPTED_TYPES: Final[str] = (
    "a path (str or os.PathLike), encoded image bytes, a PIL image, a numpy array "
    "(H x W or H x W x 1/3/4) or a torch tensor (H x W or C x H x W)"
)


def _check_pixels(width: int, height: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise InvalidImageError(
            f"{what} is empty ({width}x{height} pixels); pass a non-empty image."
        )
    if width * height > MAX_IMAGE_PIXELS:
        raise InvalidImageError(
            f"{what} is {width}x{height} = {width * height} pixels, more than the limit of "
            f"{MAX_IMAGE_PIXELS} (a decompression bomb guard). Downscale it first, or raise "
            "emotionnet.images.MAX_IMAGE_PIXELS if you trust the file."
        )


def _decode(source: IO[bytes], what: str) -> Image.Image:
    try:
        # Pillow's own bomb check warns at its limit and raises at twice it; ours replaces the
        # warning and the size is checked from the header before the pixels are decoded.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source, formats=list(ACCEPTED_FORMATS)) as opened:
                _check_pixels(opened.width, opened.height, what)
                opened.load()
                image: Image.Image = ImageOps.exif_transpose(opened)
                if image is opened:
                    image = opened.copy()
    except Image.DecompressionBombError as error:
        raise InvalidImageError(
            f"{what} is too large to decode safely ({error}); downscale it first."
        ) from None
    except (InvalidImageError, ImageNotFoundError):
        raise
    except UnidentifiedImageError:
        raise CorruptImageError(
            f"{what} is not an image in a supported format; expected one of "
            f"{', '.join(ACCEPTED_FORMATS)}."
        ) from None
    except MemoryError:
        raise
    except Exception as error:  # any decoder failure means a corrupt or truncated file
        raise CorruptImageError(
            f"{what} could not be decoded ({type(error).__name__}: {error}); "
            "check that the file is a complete, valid image."
        ) from error
    return image


def _load_path(path: str | os.PathLike[str]) -> Image.Image:
    try:
        resolved = Path(path).expanduser()
    except RuntimeError:  # "~name" for a user that does not exist, or no home directory
        raise ImageNotFoundError(
            f"Cannot expand the home directory in {str(path)!r}; check the path."
        ) from None
    try:
        is_dir = resolved.is_dir()
        handle = None if is_dir else resolved.open("rb")
    except FileNotFoundError:
        raise ImageNotFoundError(f"No image file at {str(path)!r}; check the path.") from None
    except (OSError, ValueError) as error:  # too long a name, no permission, a NUL byte, ...
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise ImageNotFoundError(f"Cannot open the image file {str(path)!r}: {reason}.") from None
    if handle is None:
        raise ImageNotFoundError(f"{str(path)!r} is a directory; pass an image file.")
    with handle:
        return _decode(handle, f"The file {str(path)!r}")


def _to_uint8(array: npt.NDArray[Any], what: str) -> npt.NDArray[np.uint8]:
    kind = array.dtype.kind
    if kind == "b":
        black_white: npt.NDArray[np.uint8] = array.astype(np.uint8) * np.uint8(255)
        return black_white
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        # Same 16-bit rule as preprocessing.to_grayscale for "I;16" images.
        return np.rint(array.astype(np.float64) / 257.0).astype(np.uint8)
    if kind in "iu":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise InvalidImageError(
                f"{what} has {array.dtype} pixels in {low}..{high}; integer images other than "
                "uint16 must hold 0..255. Convert to uint8, uint16 or float in [0, 1]."
            )
        return array.astype(np.uint8)
    if kind == "f":
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise InvalidImageError(
                f"{what} contains NaN or infinite values; pass finite pixel values in [0, 1]."
            )
        fmin, fmax = float(values.min()), float(values.max())
        if fmin < 0.0 or fmax > 1.0:
            raise InvalidImageError(
                f"{what} has float pixels in [{fmin:g}, {fmax:g}]; float images must lie in "
                "[0, 1] (divide 0..255 values by 255)."
            )
        return np.rint(values * 255.0).astype(np.uint8)
    raise UnsupportedInputError(
        f"{what} has dtype {array.dtype}, which is not a pixel type; pass uint8, uint16, "
        "another integer type holding 0..255, bool or float in [0, 1]."
    )


def _array_to_pil(array: npt.NDArray[Any], what: str, layout: str) -> Image.Image:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        mode = "L"
    elif array.ndim == 3 and array.shape[-1] in (3, 4):
        mode = "RGB" if array.shape[-1] == 3 else "RGBA"
    else:
        raise InvalidImageError(
            f"{what} has shape {tuple(array.shape)}; expected {layout} with 1, 3 (RGB) or "
            "4 (RGBA) channels. A batch is a list of images, or a 4-D array/tensor."
        )
    _check_pixels(int(array.shape[1]), int(array.shape[0]), what)
    return Image.fromarray(np.ascontiguousarray(_to_uint8(array, what)), mode=mode)


def _tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    what = f"The tensor of shape {tuple(tensor.shape)}"
    if tensor.is_complex():
        raise UnsupportedInputError(f"{what} is complex ({tensor.dtype}); pass real pixel values.")
    if tensor.ndim == 3:
        if tensor.shape[0] not in (1, 3, 4):
            raise InvalidImageError(
                f"{what} is not an image: a tensor image is H x W or C x H x W with C in "
                "1, 3 or 4. For a batch of grayscale images pass images.unsqueeze(1) "
                "(N x 1 x H x W) or a list."
            )
        tensor = tensor.permute(1, 2, 0)
    elif tensor.ndim != 2:
        raise InvalidImageError(
            f"{what} is not an image: expected H x W or C x H x W (channels first); a batch "
            "is N x C x H x W or a list."
        )
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point() and tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()  # bfloat16 and friends have no numpy equivalent
    return _array_to_pil(tensor.numpy(), what, "H x W or C x H x W")


def load_image(image: ImageInput) -> Image.Image:
    """Turn one image of any accepted type into a validated PIL image.

    The image keeps its size; colour modes are kept (``L``, ``RGB`` or ``RGBA`` for arrays
    and tensors). Grayscale conversion and resizing happen later, in
    :func:`~emotionnet.preprocessing.to_face_array`.

    Args:
        image: A path, encoded bytes, a PIL image, a numpy array or a torch tensor (see the
            module docstring for shapes and pixel types).

    Returns:
        A PIL image with at least one pixel and at most :data:`MAX_IMAGE_PIXELS`.

    Raises:
        ImageNotFoundError: If a path does not exist or is not a file.
        CorruptImageError: If a file or bytes are not a decodable image in a supported format.
        InvalidImageError: If the image is empty, too large, has NaN/inf or out-of-range
            values, or a shape that is not an image (wrong channel count, wrong rank).
        UnsupportedInputError: If the type (or the array dtype) is not accepted.

    Example:
        >>> import torch
        >>> load_image(torch.zeros(3, 20, 30)).mode
        'RGB'
        >>> load_image(b"not an image")
        Traceback (most recent call last):
        ...
        emotionnet.errors.CorruptImageError: The given bytes is not an image in a supported format; expected one of AVIF, BMP, GIF, JPEG, PNG, PPM, TIFF, WEBP.
    """  # noqa: E501
    if isinstance(image, Image.Image):
        _check_pixels(image.width, image.height, f"The PIL image ({image.mode})")
        return image
    if isinstance(image, (str, os.PathLike)):
        return _load_path(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if not data:
            raise CorruptImageError("The given bytes are empty; pass the content of an image file.")
        return _decode(io.BytesIO(data), "The given bytes")
    if isinstance(image, np.ndarray):
        return _array_to_pil(
            image, f"The array of shape {tuple(image.shape)}", "H x W or H x W x C (channels last)"
        )
    if isinstance(image, torch.Tensor):
        return _tensor_to_pil(image)
    raise UnsupportedInputError(
        f"Cannot read an image from {type(image).__module__}.{type(image).__qualname__}; "
        f"pass {_ACCEPTED_TYPES}, or a list of those."
    )


def _refuse_ambiguous_tensor(tensor: torch.Tensor, size: int) -> None:
    """Refuse a 3-D tensor that reads both as N grayscale faces and as one colour image."""
    channels, height, width = (int(side) for side in tensor.shape)
    if channels in (3, 4) and height == width and height in {IMAGE_SIZE, size}:
        colour = "RGB" if channels == 3 else "RGBA"
        raise InvalidImageError(
            f"The tensor of shape {tuple(tensor.shape)} is ambiguous: it reads as {channels} "
            f"grayscale {height}x{width} faces (N x H x W, like FER2013.images) and as one "
            f"{colour} image (C x H x W). For {channels} faces pass images.unsqueeze(1) "
            "(N x 1 x H x W) or a list; for one colour image pass image.unsqueeze(0) "
            "(1 x C x H x W), a PIL image or a channels-last H x W x C array."
        )


def unbatch(
    images: ImageInput | Sequence[ImageInput], *, size: int = IMAGE_SIZE
) -> tuple[list[ImageInput], bool]:
    """Split an input into single images, telling whether it was a batch.

    A ``list`` or ``tuple`` is a batch of images, and so is a 4-D numpy array
    (``N x H x W x C``) or a 4-D tensor (``N x C x H x W``); anything else is one image.
    Nothing is decoded here.

    A 3-D tensor is one image (``C x H x W``), but ``3 x S x S`` and ``4 x S x S`` with ``S``
    equal to ``size`` or to 48 are refused: such a tensor is as likely three or four
    grayscale faces (``FER2013.images[:3]``) as one colour image, and guessing wrong would
    give one made-up prediction instead of three or four.

    Args:
        images: One image or a batch of images.
        size: Side of the model input; with 48, the side that makes a 3-D tensor ambiguous.

    Returns:
        The single images and ``True`` if ``images`` was a batch.

    Raises:
        InvalidImageError: If ``images`` is an ambiguous 3-D tensor (see above).

    Example:
        >>> import torch
        >>> items, is_batch = unbatch(torch.zeros(5, 1, 48, 48, dtype=torch.uint8))
        >>> len(items), is_batch
        (5, True)
        >>> unbatch("face.jpg")
        (['face.jpg'], False)
        >>> unbatch(torch.zeros(3, 48, 48))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        emotionnet.errors.InvalidImageError: The tensor of shape (3, 48, 48) is ambiguous: ...
    """
    if isinstance(images, torch.Tensor) and images.ndim == 3:
        _refuse_ambiguous_tensor(images, size)
    if isinstance(images, (list, tuple)):
        return list(images), True
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        return list(images), True
    return [images], False  # type: ignore[list-item]


def to_face_batch(images: Sequence[ImageInput], *, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Load images and apply the shared grayscale/resize rule to each.

    Args:
        images: Images of any accepted type, each one face (already cropped).
        size: Side of the square model input.

    Returns:
        A ``uint8`` tensor ``N x size x size``, the same pixels the dataset path gives.

    Raises:
        ImageNotFoundError: See :func:`load_image`.
        CorruptImageError: See :func:`load_image`.
        InvalidImageError: See :func:`load_image`.
        UnsupportedInputError: See :func:`load_image`.

    Example:
        >>> from PIL import Image
        >>> to_face_batch([Image.new("RGB", (64, 64), "white")], size=48)[0, 0, 0]
        tensor(255, dtype=torch.uint8)
    """
    if not images:
        return torch.empty((0, size, size), dtype=torch.uint8)
    arrays = [_unchanged_by_the_rule(image, size) for image in images]
    faces = [
        array if array is not None else to_face_array(load_image(image), size)
        for image, array in zip(images, arrays, strict=True)
    ]
    return torch.from_numpy(np.stack(faces))


def _unchanged_by_the_rule(image: object, size: int) -> npt.NDArray[np.uint8] | None:
    """The pixels of a ``uint8`` grayscale ``size x size`` array or tensor, else ``None``.

    :func:`~emotionnet.preprocessing.to_face_array` returns such an image unchanged (no
    conversion, no resize), so a batch of ready faces skips the round trip through PIL.
    """
    if (
        isinstance(image, torch.Tensor)
        and image.dtype == torch.uint8
        and tuple(image.shape) in ((size, size), (1, size, size))
    ):
        return np.asarray(image.detach().cpu().reshape(size, size).numpy())
    if (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.shape in ((size, size), (size, size, 1))
    ):
        return image.reshape(size, size)
    return None
