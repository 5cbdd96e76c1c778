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

Pixel values follow one rule per type, never guessed from the values
(:func:`~emotionnet.preprocessing.pixels_to_uint8`): ``uint8`` and PIL ``L``/``RGB`` as is;
``uint16`` and PIL ``I;16`` on the 16-bit scale (divided by 257); other integer types and
PIL ``I`` must hold 0..255; ``bool`` is black/white; floats and PIL ``F`` must be finite and
in ``[0, 1]``. Values outside their type's range are an :class:`InvalidImageError`.

Example:
    >>> import numpy as np
    >>> from emotionnet.images import load_image, to_face_batch
    >>> load_image(np.zeros((60, 40, 3), dtype=np.uint8)).size
    (40, 60)
    >>> to_face_batch([np.ones((96, 96), dtype=np.float32)]).shape
    (1, 48, 48)
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from ._io import NotARegularFileError, open_regular_file
from .errors import (
    CorruptImageError,
    ImageNotFoundError,
    InvalidImageError,
    UnsupportedInputError,
)
from .preprocessing import IMAGE_SIZE, is_tensor, pixels_to_uint8, to_face_array

if TYPE_CHECKING:
    import torch

__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_IMAGE_PIXELS",
    "MAX_WORKING_SIDE",
    "ImageInput",
    "load_image",
    "original_size",
    "to_face_batch",
    "unbatch",
]

ImageInput: TypeAlias = (
    "str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image | npt.NDArray[Any]"
    " | torch.Tensor"
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

MAX_WORKING_SIDE: int = 4096
"""Longest side, in pixels, of an image decoded from a file or bytes.

Larger images are reduced by an integer factor while they are decoded (JPEG: the decoder's
own 1/2, 1/4 or 1/8 scaling, so the full-size pixels are never in memory) or right after
(other formats: box averaging). A face crop is 48x48 pixels, so nothing the models see is
lost; the memory and time of what follows (grayscale conversion, face detection) stay
bounded. Images passed as arrays, tensors or PIL images are not reduced.
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


_ORIENTATION: Final[int] = 0x0112
_EXIF_TRANSPOSE: Final[dict[int, Image.Transpose]] = {  # as ImageOps.exif_transpose
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


_SWAPS_SIDES: Final[frozenset[Image.Transpose]] = frozenset(
    {
        Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_270,
        Image.Transpose.TRANSPOSE,
        Image.Transpose.TRANSVERSE,
    }
)
_DECODED_FROM: Final[str] = "emotionnet.decoded_from"
"""``Image.info`` key of a reduced image: the size of the image in its file (upright)."""


def original_size(image: Image.Image) -> tuple[int, int]:
    """The size of an image in its file, also when decoding reduced it.

    :func:`load_image` reduces files larger than :data:`MAX_WORKING_SIDE`; face boxes are
    reported in the pixels of the file, so they are scaled from the reduced image by the
    ratio of the two sizes.

    Args:
        image: An image returned by :func:`load_image` (any PIL image works).

    Returns:
        ``(width, height)`` of the upright image in its file; ``image.size`` when it was
        not reduced.

    Example:
        >>> from PIL import Image
        >>> original_size(Image.new("L", (30, 20)))
        (30, 20)
    """
    size = image.info.get(_DECODED_FROM)
    if isinstance(size, tuple) and len(size) == 2:
        return (int(size[0]), int(size[1]))
    return image.size


def _reduction(size: tuple[int, int]) -> int:
    """The integer factor that brings the longer side to at most MAX_WORKING_SIDE."""
    return max(1, math.ceil(max(size) / MAX_WORKING_SIDE))


def _reduced_size(size: tuple[int, int], factor: int) -> tuple[int, int]:
    return (math.ceil(size[0] / factor), math.ceil(size[1] / factor))


def _reduce(image: Image.Image) -> Image.Image:
    """Shrink an image whose longer side exceeds MAX_WORKING_SIDE by box averaging."""
    factor = _reduction(image.size)
    if factor == 1:
        return image
    try:
        return image.reduce(factor)
    except ValueError:  # modes Image.reduce does not handle: 1, P, PA, I;16
        return image.resize(_reduced_size(image.size, factor), Image.Resampling.BOX)


def _decode(source: IO[bytes], what: str) -> Image.Image:
    try:
        # Pillow's own bomb check warns at its limit and raises at twice it; ours replaces the
        # warning and the size is checked from the header before the pixels are decoded.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source, formats=list(ACCEPTED_FORMATS)) as opened:
                _check_pixels(opened.width, opened.height, what)
                file_size = opened.size
                factor = _reduction(file_size)
                if factor > 1 and opened.format == "JPEG":
                    # DCT scaling while decoding (1/2, 1/4 or 1/8): the full-size pixels
                    # are never held in memory.
                    opened.draft(opened.mode, _reduced_size(file_size, factor))
                opened.load()
                image: Image.Image = _reduce(opened)
                if image is opened and opened.size == file_size:
                    image = ImageOps.exif_transpose(opened)
                    if image is opened:
                        image = opened.copy()
                else:  # the reduced copy has no EXIF data: apply the original's orientation
                    if image is opened:
                        image = opened.copy()
                    method = _EXIF_TRANSPOSE.get(opened.getexif().get(_ORIENTATION, 1))
                    width, height = file_size
                    if method is not None:
                        image = image.transpose(method)
                        if method in _SWAPS_SIDES:
                            width, height = height, width
                    image.info[_DECODED_FROM] = (width, height)
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
        # A path-like may return bytes (a POSIX file name as bytes): decode it as the OS does.
        path = os.fsdecode(os.fspath(path))
    except TypeError as error:  # __fspath__ returned neither str nor bytes
        raise UnsupportedInputError(
            f"Cannot read an image from the path-like {type(path).__qualname__}: {error}; its "
            "__fspath__ must return a str (or bytes) file name."
        ) from None
    try:
        resolved = Path(path).expanduser()
    except RuntimeError:  # "~name" for a user that does not exist, or no home directory
        raise ImageNotFoundError(
            f"Cannot expand the home directory in {str(path)!r}; check the path."
        ) from None
    try:
        handle = open_regular_file(resolved)
    except FileNotFoundError:
        raise ImageNotFoundError(f"No image file at {str(path)!r}; check the path.") from None
    except NotARegularFileError as error:
        raise ImageNotFoundError(
            f"{str(path)!r} is {error.strerror}, not an image file; pass a regular file."
        ) from None
    except (OSError, ValueError) as error:  # too long a name, no permission, a NUL byte, ...
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise ImageNotFoundError(f"Cannot open the image file {str(path)!r}: {reason}.") from None
    with handle:
        return _decode(handle, f"The file {str(path)!r}")


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
    return Image.fromarray(np.ascontiguousarray(pixels_to_uint8(array, what)), mode=mode)


def _refuse_nested(tensor: Any) -> None:
    if getattr(tensor, "is_nested", False):
        raise UnsupportedInputError(
            "A nested tensor is not an image or a batch of one size; pass its images one by "
            "one (list(nested.unbind())) or a dense N x C x H x W tensor."
        )


def _tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    import torch  # already imported: the caller made the tensor

    _refuse_nested(tensor)
    what = f"The tensor of shape {tuple(tensor.shape)}"
    if tensor.is_complex():
        raise UnsupportedInputError(f"{what} is complex ({tensor.dtype}); pass real pixel values.")
    if tensor.layout != torch.strided:
        raise UnsupportedInputError(
            f"{what} is a {tensor.layout} tensor; pass a dense one (tensor.to_dense())."
        )
    if tensor.is_quantized:
        raise UnsupportedInputError(
            f"{what} is quantized ({tensor.dtype}); pass tensor.dequantize() or uint8 pixels."
        )
    if tensor.is_meta:
        raise UnsupportedInputError(
            f"{what} is on the meta device and holds no pixel values; pass a tensor with data."
        )
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
        what = f"The PIL image ({image.mode})"
        _check_pixels(image.width, image.height, what)
        try:  # an image opened from a file decodes lazily: a truncated file fails here, named
            image.load()
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise CorruptImageError(
                f"{what} cannot be decoded ({error}): its file is truncated or corrupt. Pass a "
                "complete image file."
            ) from None
        return image
    if isinstance(image, (str, os.PathLike)):
        return _load_path(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if not data:
            raise CorruptImageError("The given bytes are empty; pass the content of an image file.")
        return _decode(io.BytesIO(data), "The given bytes")
    if isinstance(image, np.ndarray):
        # np.asarray drops ndarray subclasses (np.matrix indexes differently; a masked
        # array's mask has no meaning for pixels).
        return _array_to_pil(
            np.asarray(image),
            f"The array of shape {tuple(image.shape)}",
            "H x W or H x W x C (channels last)",
        )
    if is_tensor(image):
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
    tensor = is_tensor(images)
    if tensor:
        _refuse_nested(images)
    if tensor and images.ndim == 3:  # type: ignore[union-attr]
        _refuse_ambiguous_tensor(images, size)  # type: ignore[arg-type]
    if isinstance(images, (list, tuple)):
        return list(images), True
    if (isinstance(images, np.ndarray) or tensor) and images.ndim == 4:  # type: ignore[union-attr]
        return list(images), True  # type: ignore[arg-type]
    return [images], False  # type: ignore[list-item]


def to_face_batch(images: Sequence[ImageInput], *, size: int = IMAGE_SIZE) -> npt.NDArray[np.uint8]:
    """Load images and apply the shared grayscale/resize rule to each.

    Args:
        images: Images of any accepted type, each one face (already cropped).
        size: Side of the square model input.

    Returns:
        A ``uint8`` array ``N x size x size``, the same pixels the dataset path gives.

    Raises:
        ImageNotFoundError: See :func:`load_image`.
        CorruptImageError: See :func:`load_image`.
        InvalidImageError: See :func:`load_image`.
        UnsupportedInputError: See :func:`load_image`.

    Example:
        >>> from PIL import Image
        >>> int(to_face_batch([Image.new("RGB", (64, 64), "white")], size=48)[0, 0, 0])
        255
    """
    if not images:
        return np.empty((0, size, size), dtype=np.uint8)
    arrays = [_unchanged_by_the_rule(image, size) for image in images]
    faces = [
        array if array is not None else to_face_array(load_image(image), size)
        for image, array in zip(images, arrays, strict=True)
    ]
    return np.stack(faces)


def _unchanged_by_the_rule(image: object, size: int) -> npt.NDArray[np.uint8] | None:
    """The pixels of a ``uint8`` grayscale ``size x size`` array or tensor, else ``None``.

    :func:`~emotionnet.preprocessing.to_face_array` returns such an image unchanged (no
    conversion, no resize), so a batch of ready faces skips the round trip through PIL.
    """
    if (
        is_tensor(image)
        and str(image.dtype) == "torch.uint8"  # type: ignore[attr-defined]
        and tuple(image.shape) in ((size, size), (1, size, size))  # type: ignore[attr-defined]
    ):
        return np.asarray(image.detach().cpu().reshape(size, size).numpy())  # type: ignore[attr-defined]
    if (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.shape in ((size, size), (size, size, 1))
    ):
        return np.asarray(image).reshape(size, size)  # np.asarray: a plain array, not np.matrix
    return None
