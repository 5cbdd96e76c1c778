"""The one preprocessing rule shared by the dataset, the trainer and the recognizer.

A face becomes model input in two steps, the same everywhere in emotionnet:

1. :func:`to_face_array`: any PIL image -> 8-bit grayscale ``size x size`` ``uint8`` array.
   Colour is converted with Pillow's ITU-R 601-2 luma transform (``L = R*299/1000 +
   G*587/1000 + B*114/1000``); transparent pixels are composited onto white first; 16-bit,
   32-bit and float images are mapped to 0..255 by the rule of their type
   (:func:`pixels_to_uint8`: ``I;16`` on the 16-bit scale, ``I`` must hold 0..255, ``F``
   must lie in ``[0, 1]``; never guessed from the values). An image that is not already
   ``size x size`` is resized as a whole (no crop, so a non-square image is stretched) with
   Pillow's antialiased bilinear filter. FER2013 images are 48x48 and pass through unchanged.
2. :func:`normalize`: ``uint8`` batch -> ``float32`` ``N x 1 x H x W`` array (or tensor, for
   a tensor batch), ``(x / 255 - mean) / std`` with the model's mean and std.

Everything here runs on numpy and Pillow alone; torch is imported only when a torch tensor is
passed in (by the training layer), so the inference install never needs it.

Example:
    >>> import numpy as np
    >>> from PIL import Image
    >>> from emotionnet.preprocessing import to_face_array, normalize
    >>> arr = to_face_array(Image.new("RGB", (96, 64), (255, 0, 0)))
    >>> arr.shape, arr.dtype, int(arr[0, 0])
    ((48, 48), dtype('uint8'), 76)
    >>> normalize(np.stack([arr])).shape
    (1, 1, 48, 48)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, overload

import numpy as np
import numpy.typing as npt
from PIL import Image

from .errors import InvalidImageError, UnsupportedInputError

if TYPE_CHECKING:
    import torch

__all__ = [
    "FER2013_MEAN",
    "FER2013_STD",
    "IMAGE_SIZE",
    "as_uint8_array",
    "as_uint8_batch",
    "normalize",
    "pixels_to_uint8",
    "to_face_array",
    "to_grayscale",
]

IMAGE_SIZE: Final[int] = 48
"""Side of the square grayscale image the FER2013 models take."""

FER2013_MEAN: Final[float] = 0.5077
"""Mean pixel value of the FER2013 training images, on a 0..1 scale."""

FER2013_STD: Final[float] = 0.2550
"""Standard deviation of the FER2013 training pixels, on a 0..1 scale."""

_SIXTEEN_BIT_MODES: Final[frozenset[str]] = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})

_CONVERTIBLE_MODES: Final[str] = (
    "1, L, LA, La, P, PA, RGB, RGBA, RGBa, RGBX, CMYK, YCbCr, HSV, I, I;16 (B/L/N) and F"
)
"""The PIL modes :func:`to_grayscale` converts (for the error message of the others)."""


_BAND_PIXELS: Final[int] = 1 << 20
"""Pixels converted at once by :func:`to_grayscale` for 16-bit, 32-bit and float images, so
that converting a large image needs no full-size temporary array."""


def pixels_to_uint8(array: npt.NDArray[Any], what: str) -> npt.NDArray[np.uint8]:
    """Map pixel values to 0..255 by the one rule of their dtype.

    The scale follows the type, never the values: ``uint8`` as is; 16-bit unsigned on the
    16-bit scale (rounded ``v / 257``); other integers must hold 0..255; ``bool`` is
    black/white; floats must be finite and in ``[0, 1]`` (times 255, rounded). Values outside
    the range of their type are an error, not clipped or rescaled, for every input type.

    Args:
        array: Pixels of any shape.
        what: The image, for messages (``"The array of shape (2, 2)"``).

    Returns:
        A ``uint8`` array of the same shape.

    Raises:
        InvalidImageError: If values lie outside their type's range, or are NaN/infinite.
        UnsupportedInputError: If the dtype is not a pixel type (complex, object, ...).

    Example:
        >>> import numpy as np
        >>> pixels_to_uint8(np.array([0.0, 0.5, 1.0]), "x").tolist()
        [0, 128, 255]
        >>> pixels_to_uint8(np.array([0, 32896, 65535], dtype=np.uint16), "x").tolist()
        [0, 128, 255]
    """
    kind = array.dtype.kind
    if array.size == 0 and kind in "biuf":
        return np.zeros(array.shape, dtype=np.uint8)
    if kind == "b":
        black_white: npt.NDArray[np.uint8] = array.astype(np.uint8) * np.uint8(255)
        return black_white
    if array.dtype == np.uint8:
        return array
    if kind == "u" and array.dtype.itemsize == 2:
        # round(v / 257) in integers: v / 257 is never exactly k + 1/2 for an integer v.
        wide = array.astype(np.uint32)
        return ((wide * 2 + 257) // 514).astype(np.uint8)
    if kind in "iu":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise InvalidImageError(
                f"{what} has {array.dtype} pixels in {low}..{high}; integer images other than "
                "16-bit must hold 0..255. Convert to uint8, uint16 or float in [0, 1]."
            )
        return array.astype(np.uint8)
    if kind == "f":
        if not np.isfinite(array).all():
            raise InvalidImageError(
                f"{what} contains NaN or infinite values; pass finite pixel values in [0, 1]."
            )
        fmin, fmax = float(array.min()), float(array.max())
        if fmin < 0.0 or fmax > 1.0:
            raise InvalidImageError(
                f"{what} has float pixels in [{fmin:g}, {fmax:g}]; float images must lie in "
                "[0, 1] (divide 0..255 values by 255)."
            )
        scaled = np.multiply(array, 255.0, dtype=np.float64 if array.itemsize > 4 else np.float32)
        rounded: npt.NDArray[np.uint8] = np.rint(scaled, out=scaled).astype(np.uint8)
        return rounded
    raise UnsupportedInputError(
        f"{what} has dtype {array.dtype}, which is not a pixel type; pass uint8, uint16, "
        "another integer type holding 0..255, bool or float in [0, 1]."
    )


def _scaled_mode_to_l(image: Image.Image) -> Image.Image:
    """Convert an ``I;16*``, ``I`` or ``F`` image to ``L`` by :func:`pixels_to_uint8`.

    Band by band, so the only full-size buffer besides the image is the 8-bit result.
    """
    width, height = image.size
    out = np.empty((height, width), dtype=np.uint8)
    rows = max(1, _BAND_PIXELS // max(width, 1))
    what = f"The {image.mode!r} image"
    for top in range(0, height, rows):
        band = image.crop((0, top, width, min(top + rows, height)))
        out[top : top + band.height] = pixels_to_uint8(np.asarray(band), what)
    return Image.fromarray(out, mode="L")


def to_grayscale(image: Image.Image) -> Image.Image:
    """Convert a PIL image of any mode to 8-bit grayscale (mode ``"L"``).

    Args:
        image: A PIL image in any mode (``L``, ``RGB``, ``RGBA``, ``P``, ``I;16``, ``F``, ...).

    Returns:
        The image in mode ``"L"``, same size.

    Raises:
        InvalidImageError: If an ``I`` image holds values outside 0..255, or an ``F`` image
            values outside ``[0, 1]`` or NaN/infinite ones (see :func:`pixels_to_uint8`).
        UnsupportedInputError: If Pillow cannot convert the mode to grayscale (``LAB``, ...).

    Example:
        >>> from PIL import Image
        >>> to_grayscale(Image.new("I;16", (2, 2), 65535)).getpixel((0, 0))
        255
    """
    mode = image.mode
    if mode == "L":
        return image
    if mode in _SIXTEEN_BIT_MODES or mode in {"I", "F"}:
        return _scaled_mode_to_l(image)
    try:
        if mode in {"RGBA", "LA", "PA", "La", "RGBa"} or (
            mode == "P" and "transparency" in image.info
        ):
            # Pillow converts premultiplied "La" only to "LA".
            rgba = (image.convert("LA") if mode == "La" else image).convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("L")
        return image.convert("L")
    except ValueError as error:  # Pillow: "conversion from LAB to RGB not supported"
        raise UnsupportedInputError(
            f"Cannot convert a PIL image in mode {mode!r} to grayscale ({error}); accepted "
            f"modes are {_CONVERTIBLE_MODES}. Convert it to RGB first (LAB with "
            "PIL.ImageCms), or pass the pixels as an RGB numpy array."
        ) from None


def to_face_array(image: Image.Image, size: int = IMAGE_SIZE) -> npt.NDArray[np.uint8]:
    """Turn a face image into the ``size x size`` ``uint8`` grayscale array models see.

    This is the only resize rule in emotionnet: the dataset applies it to image files that
    are not 48x48, and :class:`~emotionnet.EmotionRecognizer` applies it to every input.

    Args:
        image: A PIL image of a face, any mode and size.
        size: Output side in pixels.

    Returns:
        A C-contiguous ``uint8`` array of shape ``(size, size)``.

    Raises:
        InvalidImageError: If the image is empty (zero width or height) or holds invalid values.

    Example:
        >>> from PIL import Image
        >>> int(to_face_array(Image.new("L", (48, 48), 7)).sum()) == 7 * 48 * 48
        True
    """
    if image.width == 0 or image.height == 0:
        raise InvalidImageError(
            f"The image is empty ({image.width}x{image.height} pixels); pass a face image."
        )
    gray = to_grayscale(image)
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(gray, dtype=np.uint8))


def _torch_tensor_type() -> type | None:
    """``torch.Tensor`` when torch is already imported (by the caller), else ``None``."""
    torch = sys.modules.get("torch")
    return None if torch is None else torch.Tensor


def is_tensor(value: object) -> bool:
    """Whether ``value`` is a torch tensor, without importing torch.

    A tensor can only exist once its caller imported torch, so torch's absence from
    :data:`sys.modules` answers ``False`` without the 4-second import.

    Example:
        >>> import numpy as np
        >>> is_tensor(np.zeros(3))
        False
    """
    tensor = _torch_tensor_type()
    return tensor is not None and isinstance(value, tensor)


def _check_face_batch_shape(shape: tuple[int, ...], what: str, allow_empty: bool) -> None:
    if len(shape) != 3:
        raise InvalidImageError(
            f"{what}: expected a grayscale batch shaped N x H x W or N x 1 x H x W, got shape "
            f"{shape}; add a batch dimension with images[None] for one face."
        )
    if not allow_empty and shape[0] == 0:
        raise InvalidImageError(
            f"{what}: an empty batch (0 images); pass at least one image or skip the call."
        )
    if shape[0] and (shape[1] == 0 or shape[2] == 0):
        raise InvalidImageError(f"{what}: the images are empty ({shape}).")


def _not_uint8(what: str, dtype: object) -> InvalidImageError:
    return InvalidImageError(
        f"{what}: expected uint8 pixels (0..255), got dtype {dtype}; pass the raw "
        "images (for example FER2013.images or emotionnet.to_face_array output), not "
        "normalised ones."
    )


def as_uint8_array(
    images: object, what: str = "The images", *, allow_empty: bool = True
) -> npt.NDArray[np.uint8]:
    """Check a batch of ready faces and return it as a ``uint8`` ``N x H x W`` numpy array.

    The one check of face batches: a numpy array (or a CPU torch tensor) of ``uint8`` pixels,
    ``N x H x W`` or ``N x 1 x H x W`` (squeezed). The array shares memory with the input
    when it can. :func:`as_uint8_batch` is the same check returning a tensor.

    Args:
        images: The batch.
        what: The batch, for messages.
        allow_empty: Accept ``N = 0``.

    Returns:
        The ``N x H x W`` array.

    Raises:
        UnsupportedInputError: If ``images`` is neither an array nor a tensor.
        InvalidImageError: If the pixels are not ``uint8``, the shape is not a grayscale
            batch, or the batch (or each image) is empty when that is not allowed.

    Example:
        >>> as_uint8_array(np.zeros((2, 1, 48, 48), dtype=np.uint8)).shape
        (2, 48, 48)
        >>> as_uint8_array(np.zeros((2, 48, 48)))
        Traceback (most recent call last):
        ...
        emotionnet.errors.InvalidImageError: The images: expected uint8 pixels (0..255), got dtype float64; pass the raw images (for example FER2013.images or emotionnet.to_face_array output), not normalised ones.
    """  # noqa: E501
    if is_tensor(images):
        return as_uint8_batch(images, what, allow_empty=allow_empty).cpu().numpy()
    if not isinstance(images, np.ndarray):
        raise UnsupportedInputError(
            f"{what}: expected a uint8 numpy array (or torch.Tensor) shaped N x H x W, got "
            f"{type(images).__name__}; stack single faces with numpy.stack first."
        )
    if images.dtype != np.uint8:
        raise _not_uint8(what, images.dtype)
    batch = np.asarray(images)
    if batch.ndim == 4 and batch.shape[1] == 1:
        batch = batch[:, 0]
    _check_face_batch_shape(tuple(batch.shape), what, allow_empty)
    return batch


def as_uint8_batch(
    images: object, what: str = "The images", *, allow_empty: bool = True
) -> torch.Tensor:
    """Check a batch of ready faces and return it as a ``uint8`` ``N x H x W`` tensor.

    :func:`as_uint8_array`'s check, for the training layer (the data set's ``as_tensors``,
    ``predict_logits`` and ``predict_proba``): a tensor or array of ``uint8`` pixels,
    ``N x H x W`` or ``N x 1 x H x W`` (squeezed). numpy arrays share memory with the
    tensor when they can. Needs torch.

    Args:
        images: The batch.
        what: The batch, for messages.
        allow_empty: Accept ``N = 0``.

    Returns:
        The ``N x H x W`` tensor.

    Raises:
        UnsupportedInputError: If ``images`` is neither a tensor nor an array.
        InvalidImageError: If the pixels are not ``uint8``, the shape is not a grayscale
            batch, or the batch (or each image) is empty when that is not allowed.

    Example:
        >>> import torch
        >>> as_uint8_batch(np.zeros((2, 1, 48, 48), dtype=np.uint8)).shape
        torch.Size([2, 48, 48])
        >>> as_uint8_batch(torch.zeros(2, 48, 48))
        Traceback (most recent call last):
        ...
        emotionnet.errors.InvalidImageError: The images: expected uint8 pixels (0..255), got dtype torch.float32; pass the raw images (for example FER2013.images or emotionnet.to_face_array output), not normalised ones.
    """  # noqa: E501
    import torch

    batch = (
        torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    )
    if not isinstance(batch, torch.Tensor):
        raise UnsupportedInputError(
            f"{what}: expected a uint8 torch.Tensor or numpy array shaped N x H x W, got "
            f"{type(images).__name__}; stack single faces with torch.stack or numpy.stack first."
        )
    if batch.dtype != torch.uint8:
        raise _not_uint8(what, batch.dtype)
    if batch.ndim == 4 and batch.shape[1] == 1:
        batch = batch[:, 0]
    _check_face_batch_shape(tuple(batch.shape), what, allow_empty)
    return batch


def _mean_std(mean: float | Sequence[float], std: float | Sequence[float]) -> tuple[float, float]:
    m = float(mean if isinstance(mean, (int, float)) else mean[0])
    s = float(std if isinstance(std, (int, float)) else std[0])
    return m, s


@overload
def normalize(
    images: npt.NDArray[np.uint8],
    mean: float | Sequence[float] = ...,
    std: float | Sequence[float] = ...,
) -> npt.NDArray[np.float32]: ...


@overload
def normalize(
    images: torch.Tensor,
    mean: float | Sequence[float] = ...,
    std: float | Sequence[float] = ...,
) -> torch.Tensor: ...


def normalize(
    images: torch.Tensor | npt.NDArray[np.uint8],
    mean: float | Sequence[float] = FER2013_MEAN,
    std: float | Sequence[float] = FER2013_STD,
) -> torch.Tensor | npt.NDArray[np.float32]:
    """Convert a ``uint8`` image batch to the normalised ``float32`` model input.

    A numpy batch gives a numpy array (the onnxruntime path); a tensor gives a tensor on its
    own device (a CUDA ``uint8`` tensor is normalised on the GPU). Both compute
    ``(images / 255 - mean) / std`` in ``float32`` in that order, so they agree exactly.

    Args:
        images: ``N x H x W`` or ``N x 1 x H x W`` ``uint8`` array or tensor (0..255).
        mean: Mean on the 0..1 scale (a float, or a one-element sequence).
        std: Standard deviation on the 0..1 scale.

    Returns:
        A ``float32`` array or tensor ``N x 1 x H x W``.

    Raises:
        InvalidImageError: If the batch is not ``uint8`` or has the wrong number of dimensions.

    Example:
        >>> normalize(np.full((2, 48, 48), 255, dtype=np.uint8), 0.5, 0.5)[0, 0, 0, 0]
        np.float32(1.0)
    """
    dtype = images.dtype
    if dtype not in (np.uint8,) and str(dtype) != "torch.uint8":
        raise InvalidImageError(
            f"normalize expects uint8 pixels (0..255), got dtype {dtype}; "
            "convert with to_face_array or .astype(numpy.uint8) first."
        )
    shape = tuple(images.shape)
    if len(shape) == 3:
        shape = (shape[0], 1, *shape[1:])
    if len(shape) != 4 or shape[1] != 1:
        raise InvalidImageError(
            "normalize expects a batch shaped N x H x W or N x 1 x H x W, "
            f"got {tuple(images.shape)}."
        )
    m, s = _mean_std(mean, std)
    if isinstance(images, np.ndarray):
        out = images.reshape(shape).astype(np.float32)
        out /= np.float32(255.0)
        out -= np.float32(m)
        out /= np.float32(s)
        return out
    return images.reshape(shape).float().div_(255.0).sub_(m).div_(s)
