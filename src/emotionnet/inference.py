"""Inference: a classifier over a ``uint8`` face batch, in chunks, with test-time augmentation.

:func:`predict_logits` and :func:`predict_proba` are the forward pass of everything that
predicts: :meth:`emotionnet.EmotionRecognizer.predict`, :func:`emotionnet.evaluate` and the
Trainer's validation. They take ``uint8`` images, normalise them with the model's mean and
std, run the model on its device in batches, and average the views of test-time
augmentation.

This is the PyTorch twin of :class:`emotionnet.runtime.OnnxModel` (the torch-free path):
the same views (:mod:`emotionnet.tta` defines them in numpy; here they are computed with
torch on the model's device) and the same averaging, to within 1e-5 in probability.

With test-time augmentation (TTA) the model sees several *views* of each image and the softmax
probabilities of the views are averaged; :mod:`emotionnet.tta` defines each view set
(``"none"``, ``"flip"``, ``"flip_shift"``, ``"flip_crop"``, ``"ten_crop"``). On the bundled
model ``"flip_crop"`` is as accurate as ``"ten_crop"`` on PublicTest for 4/10 of the cost
(``benchmarks/bench_tta.py``).

:func:`predict_proba` returns those averaged probabilities; :func:`predict_logits` returns
their logarithm (a valid logit vector: its softmax is the averaged probabilities), and the
model's raw logits without TTA.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7))
    >>> faces = torch.zeros(5, 48, 48, dtype=torch.uint8)
    >>> predict_proba(model, faces, tta="flip").shape
    torch.Size([5, 7])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_int, resolve_device
from .errors import InvalidArgumentError, UnsupportedInputError
from .preprocessing import FER2013_MEAN, FER2013_STD, as_uint8_batch, normalize
from .tta import TEN_CROP_SIZE, TTA_SHIFT, resolve_tta

__all__ = ["predict_logits", "predict_proba"]

# --------------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------------


def _as_image_batch(images: object) -> torch.Tensor:
    return as_uint8_batch(images, "The images", allow_empty=False)


def _model_device(model: nn.Module) -> torch.device:
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def _model_dtype(model: nn.Module) -> torch.dtype:
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _shift(batch: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move the content by ``(dy, dx)`` pixels, repeating the edge into the uncovered border."""
    if dy == 0 and dx == 0:
        return batch
    pad = max(abs(dy), abs(dx))
    height, width = batch.shape[-2:]
    padded = F.pad(batch, (pad, pad, pad, pad), mode="replicate")
    return padded[..., pad - dy : pad - dy + height, pad - dx : pad - dx + width]


def _tta_views(batch: torch.Tensor, mode: str) -> Iterator[torch.Tensor]:
    """Yield the views of a normalised ``N x 1 x H x W`` batch."""
    if mode == "none":
        yield batch
        return
    mirrored = torch.flip(batch, dims=(-1,))
    if mode == "flip":
        yield batch
        yield mirrored
    elif mode == "flip_shift":
        for dy, dx in ((0, 0), (0, TTA_SHIFT), (0, -TTA_SHIFT), (TTA_SHIFT, 0), (-TTA_SHIFT, 0)):
            yield _shift(batch, dy, dx)
            yield _shift(mirrored, dy, dx)
    elif mode in ("flip_crop", "ten_crop"):
        from torchvision.transforms.v2.functional import center_crop, ten_crop

        height, width = batch.shape[-2:]
        crop = [
            max(1, round(height * TEN_CROP_SIZE / 48)),
            max(1, round(width * TEN_CROP_SIZE / 48)),
        ]
        if mode == "flip_crop":
            yield batch
            yield mirrored
            crops: Iterable[torch.Tensor] = (center_crop(batch, crop), center_crop(mirrored, crop))
        else:
            crops = ten_crop(batch, crop)
        for view in crops:
            yield F.interpolate(view, size=(height, width), mode="bilinear", align_corners=False)
    else:  # pragma: no cover - resolve_tta guards the modes
        raise InvalidArgumentError(f"Unknown TTA mode {mode!r}.")


def _forward(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    output = model(batch)
    if not isinstance(output, torch.Tensor):
        raise UnsupportedInputError(
            f"The model returned {type(output).__name__}; emotionnet expects its forward to "
            "return a logits tensor shaped (batch, num_classes). Wrap the model so it does."
        )
    if output.ndim != 2 or output.shape[0] != batch.shape[0]:
        raise InvalidArgumentError(
            f"The model returned a tensor of shape {tuple(output.shape)} for a batch of "
            f"{batch.shape[0]} images; expected logits shaped ({batch.shape[0]}, num_classes). "
            "Check that the model ends in a classification layer."
        )
    return output


def predict_logits(
    model: nn.Module,
    images: torch.Tensor | npt.NDArray[np.uint8],
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    tta: bool | str = False,
    mean: float | Sequence[float] = FER2013_MEAN,
    std: float | Sequence[float] = FER2013_STD,
    progress: bool = False,
) -> torch.Tensor:
    """Run a classifier over a ``uint8`` image batch and return its logits.

    Images are moved to the device batch by batch and normalised there with
    :func:`emotionnet.preprocessing.normalize` (cast to the model's floating-point dtype). The
    model runs in eval mode under :func:`torch.inference_mode`; the train/eval mode of every
    submodule is restored afterwards, so this is safe to call in the middle of training.

    Args:
        model: A module mapping ``float`` ``N x 1 x H x W`` input to ``N x C`` logits.
        images: ``uint8`` tensor or array shaped ``N x H x W`` or ``N x 1 x H x W``, ``N >= 1``.
        batch_size: Images per forward pass. With TTA, the views of a chunk of images run
            as one forward pass when they fit in ``batch_size`` (a single face: one pass),
            else one pass per view.
        device: Where to run. ``None`` runs on the device of the model's parameters; otherwise
            the model is moved there in place (as :meth:`torch.nn.Module.to` does) and stays.
        tta: Test-time augmentation: ``False``/``"none"``, ``True``/``"flip"``,
            ``"flip_shift"``, ``"flip_crop"`` or ``"ten_crop"`` (views defined in
            :mod:`emotionnet.metrics`).
        mean: Normalisation mean on the 0..1 scale, as the model was trained with.
        std: Normalisation standard deviation on the 0..1 scale.
        progress: Show a tqdm progress bar.

    Returns:
        A ``float32`` CPU tensor ``N x C``: the raw logits without TTA; with TTA the log of the
        view-averaged softmax probabilities, ``log(mean_v softmax(z_v))``, whose softmax is
        exactly what :func:`predict_proba` returns.

    Raises:
        UnsupportedInputError: If ``images`` is not a tensor or array, or the model does not
            return a tensor.
        InvalidImageError: If the images are not ``uint8``, not a grayscale batch, or empty.
        InvalidArgumentError: If ``batch_size`` or ``tta`` is invalid, or the model's output
            is not shaped ``N x C``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7))
        >>> images = torch.zeros(5, 48, 48, dtype=torch.uint8)
        >>> predict_logits(model, images, batch_size=2).shape
        torch.Size([5, 7])
        >>> predict_logits(model, images, tta="flip").dtype
        torch.float32
    """
    mode = resolve_tta(tta)
    check_int("batch_size", batch_size, minimum=1, hint="256 is a good default")
    if not isinstance(model, nn.Module):
        raise UnsupportedInputError(
            f"Expected a torch.nn.Module as the model, got {type(model).__name__}."
        )
    batch_images = _as_image_batch(images)
    if device is None:
        target = _model_device(model)
    else:
        target = torch.device(resolve_device(device))
        model.to(target)
    dtype = _model_dtype(model)
    num_images = batch_images.shape[0]

    from tqdm.auto import tqdm

    # Restore each submodule's own flag: model.train(previous) would also flip submodules
    # the caller had deliberately put in another mode (for example frozen batch norms).
    modes = [(module, module.training) for module in model.modules()]
    chunks: list[torch.Tensor] = []
    model.eval()
    try:
        with (
            torch.inference_mode(),
            tqdm(
                total=num_images, disable=not progress, desc="predict", unit="img", leave=False
            ) as bar,
        ):
            for start in range(0, num_images, batch_size):
                chunk = batch_images[start : start + batch_size]
                batch = normalize(chunk.to(target), mean, std).to(dtype)
                if mode == "none":
                    chunks.append(_forward(model, batch).float().cpu())
                else:
                    views = list(_tta_views(batch, mode))
                    if batch.shape[0] * len(views) <= batch_size:
                        # Small batches (one face): one forward pass over every view is
                        # several times faster than one pass per view.
                        outputs = torch.split(_forward(model, torch.cat(views)), batch.shape[0])
                    else:
                        outputs = tuple(_forward(model, view) for view in views)
                    stacked = torch.stack([F.log_softmax(o.float(), dim=1) for o in outputs])
                    averaged = torch.logsumexp(stacked, dim=0) - math.log(stacked.shape[0])
                    chunks.append(averaged.cpu())
                bar.update(chunk.shape[0])
    finally:
        for module, training in modes:
            module.training = training
    # Concatenating outside inference mode returns an ordinary tensor that callers may
    # modify in place (inference tensors refuse that).
    return torch.cat(chunks)


def predict_proba(
    model: nn.Module,
    images: torch.Tensor | npt.NDArray[np.uint8],
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    tta: bool | str = False,
    mean: float | Sequence[float] = FER2013_MEAN,
    std: float | Sequence[float] = FER2013_STD,
    progress: bool = False,
) -> torch.Tensor:
    """Return class probabilities, averaged over the TTA views when ``tta`` is set.

    The same as ``predict_logits(...).softmax(dim=1)``; see :func:`predict_logits` for the
    arguments and the errors raised.

    Args:
        model: A module mapping ``float`` ``N x 1 x H x W`` input to ``N x C`` logits.
        images: ``uint8`` tensor or array shaped ``N x H x W`` or ``N x 1 x H x W``.
        batch_size: Images per forward pass.
        device: Where to run (``None``: the model's device).
        tta: ``False``/``"none"``, ``True``/``"flip"``, ``"flip_shift"``, ``"flip_crop"``
            or ``"ten_crop"``.
        mean: Normalisation mean on the 0..1 scale.
        std: Normalisation standard deviation on the 0..1 scale.
        progress: Show a tqdm progress bar.

    Returns:
        A ``float32`` CPU tensor ``N x C`` whose rows sum to 1.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7))
        >>> proba = predict_proba(model, torch.zeros(3, 48, 48, dtype=torch.uint8), tta=True)
        >>> torch.allclose(proba.sum(dim=1), torch.ones(3))
        True
    """
    logits = predict_logits(
        model,
        images,
        batch_size=batch_size,
        device=device,
        tta=tta,
        mean=mean,
        std=std,
        progress=progress,
    )
    return logits.softmax(dim=1)


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------
