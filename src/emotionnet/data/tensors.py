"""``(images, targets)`` tensors from any labelled data set: :func:`as_tensors`."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Subset, TensorDataset

from ..errors import (
    InvalidArgumentError,
    UnsupportedInputError,
)
from ..preprocessing import as_uint8_batch, to_face_array

__all__ = ["as_tensors"]

logger = logging.getLogger("emotionnet.data")  # one logger for the package

# --------------------------------------------------------------------------------------------
# Tensors from any data set


def _images_tensor(images: Any, what: str) -> torch.Tensor:
    return as_uint8_batch(images, what)


def _targets_tensor(targets: Any, count: int, what: str) -> torch.Tensor:
    try:
        array = np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets)
    except (TypeError, ValueError) as error:
        raise UnsupportedInputError(
            f"{what}: expected the targets as a 1-D sequence of integer labels, "
            f"got {type(targets).__name__} ({error})."
        ) from None
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or (array.size == 0 and array.dtype == np.float64)
    ):
        raise InvalidArgumentError(
            f"{what}: expected integer labels, got dtype {array.dtype}; pass class indices "
            "0..6 (or -1 for unlabeled images)."
        )
    if array.ndim != 1 or array.shape[0] != count:
        raise InvalidArgumentError(
            f"{what}: expected one label per image ({count} labels, shape ({count},)), "
            f"got shape {array.shape}."
        )
    result = torch.from_numpy(array.astype(np.int64, copy=False))
    return result.to(targets.device) if isinstance(targets, torch.Tensor) else result


def _sample_image(image: Any, index: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    if isinstance(image, Image.Image):
        return to_face_array(image)
    array = image.cpu().numpy() if isinstance(image, torch.Tensor) else image
    if not isinstance(array, np.ndarray):
        raise UnsupportedInputError(
            f"Sample {index}: expected a PIL image or a uint8 tensor/array, got "
            f"{type(image).__name__}; remove transforms that turn images into other types."
        )
    if array.dtype != np.uint8:
        raise InvalidArgumentError(
            f"Sample {index}: expected uint8 pixels, got dtype {array.dtype}; as_tensors needs "
            "the raw images, so build the dataset without ToTensor/Normalize transforms."
        )
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise InvalidArgumentError(
            f"Sample {index}: expected a grayscale image H x W or 1 x H x W, "
            f"got shape {array.shape}; pass PIL images (converted with to_face_array) instead."
        )
    return array


def _sample_target(target: Any, index: int) -> int:
    if target is None:
        return -1
    if isinstance(target, torch.Tensor) and target.numel() == 1:
        target = target.item()
    if isinstance(target, (bool, np.bool_)) or not isinstance(target, (int, np.integer)):
        raise InvalidArgumentError(
            f"Sample {index}: expected an integer label (or None when unlabeled), "
            f"got {type(target).__name__} {target!r}; remove the target_transform."
        )
    return int(target)


def _from_dataset(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    images: list[np.ndarray[Any, np.dtype[np.uint8]]] = []
    labels: list[int] = []
    for index in range(len(data)):
        sample = data[index]
        if not isinstance(sample, (tuple, list)) or len(sample) != 2:
            raise UnsupportedInputError(
                f"Sample {index} of {type(data).__name__} is a {type(sample).__name__}; "
                "as_tensors expects a dataset yielding (image, label) pairs."
            )
        image = _sample_image(sample[0], index)
        if images and image.shape != images[0].shape:
            raise InvalidArgumentError(
                f"Sample {index} has shape {image.shape} but sample 0 has {images[0].shape}; "
                "all images must have the same size (return PIL images to get the shared "
                "48x48 resize rule)."
            )
        images.append(image)
        labels.append(_sample_target(sample[1], index))
    if not images:
        return torch.empty(0, 48, 48, dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64)


def as_tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the images of a data set as one ``uint8`` tensor and its labels as ``int64``.

    This is how :class:`~emotionnet.training.Trainer`, :func:`~emotionnet.metrics.evaluate`
    and the recognizer read data, so each accepts any of these inputs:

    * an object with ``.images`` and ``.targets`` tensors, such as :class:`FER2013` (no copy:
      the tensors are returned as they are, and the dataset's ``transform`` is not applied);
    * a :class:`torch.utils.data.Subset` of such an object (indexed without decoding) or a
      :class:`torch.utils.data.TensorDataset` of ``(images, targets)``;
    * an ``(images, targets)`` tuple of tensors or arrays, images ``uint8`` ``N x H x W`` or
      ``N x 1 x H x W``, targets a sequence of ``N`` integers;
    * any map-style dataset yielding ``(image, label)``, the image a PIL image (converted with
      :func:`~emotionnet.preprocessing.to_face_array`, the shared 48x48 rule) or a ``uint8``
      ``H x W`` / ``1 x H x W`` tensor or array, the label an integer or ``None`` (unlabeled).

    Unlabeled images have the target ``-1``.

    Args:
        data: The data set, in one of the forms above.

    Returns:
        ``(images, targets)``: ``uint8`` ``N x H x W`` and ``int64`` ``N``.

    Raises:
        UnsupportedInputError: If ``data`` is none of the accepted forms.
        InvalidArgumentError: If the images are not ``uint8``, have the wrong shape, differ in
            size, or the labels are not one integer per image.

    Example:
        >>> import numpy as np
        >>> from PIL import Image
        >>> samples = [(Image.new("L", (96, 96), 200), 3), (Image.new("RGB", (48, 48)), 0)]
        >>> images, targets = as_tensors(samples)
        >>> images.shape, images.dtype, targets.tolist()
        (torch.Size([2, 48, 48]), torch.uint8, [3, 0])
    """
    if isinstance(data, Subset):
        images, targets = as_tensors(data.dataset)
        indices = torch.as_tensor(list(data.indices), dtype=torch.int64)
        return images[indices.to(images.device)], targets[indices.to(targets.device)]
    if isinstance(data, TensorDataset):
        if len(data.tensors) != 2:
            raise UnsupportedInputError(
                f"as_tensors expects a TensorDataset of (images, targets), got "
                f"{len(data.tensors)} tensors."
            )
        images = _images_tensor(data.tensors[0], "TensorDataset images")
        return images, _targets_tensor(data.tensors[1], images.shape[0], "TensorDataset targets")
    images_attr = getattr(data, "images", None)
    targets_attr = getattr(data, "targets", None)
    if isinstance(images_attr, torch.Tensor) and isinstance(targets_attr, torch.Tensor):
        what = f"{type(data).__name__}.images"
        images = _images_tensor(images_attr, what)
        return images, _targets_tensor(
            targets_attr, images.shape[0], f"{type(data).__name__}.targets"
        )
    if (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and isinstance(data[0], (torch.Tensor, np.ndarray))
        and data[0].ndim in (3, 4)
    ):
        images = _images_tensor(data[0], "images")
        return images, _targets_tensor(data[1], images.shape[0], "targets")
    if isinstance(data, (str, bytes)) or not (
        hasattr(data, "__len__") and hasattr(data, "__getitem__")
    ):
        raise UnsupportedInputError(
            f"as_tensors cannot read a {type(data).__name__}: pass a FER2013 data set, an "
            "(images, targets) tuple of uint8 images and integer labels, or a map-style dataset "
            "yielding (PIL image, label) pairs."
        )
    return _from_dataset(data)
