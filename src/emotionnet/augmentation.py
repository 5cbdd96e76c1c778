"""Batched data augmentation that runs the same way on the CPU and on a GPU.

FER2013 images are tiny (48x48), so per-image PIL transforms in a DataLoader are the
bottleneck of GPU training. Here every transform works on a whole ``N x C x H x W`` batch
with tensor operations, on whatever device the batch is on: the trainer calls
:func:`augment_batch` on the GPU for GPU-resident data and inside DataLoader workers on the
CPU, so both paths have the same semantics.

Randomness comes from a CPU :class:`torch.Generator`: all per-image parameters (angles,
shifts, flips, erasing boxes, the mixing coefficient) are drawn there in a fixed order, so
a seeded generator gives the same augmentation on every device. Only the noise that fills
erased boxes (``erasing_value="random"``) is drawn on the batch's device, from a seed taken
from the same generator.

Example:
    >>> import torch
    >>> from emotionnet.augmentation import AugmentConfig, augment_batch
    >>> images = torch.randint(0, 256, (8, 1, 48, 48), dtype=torch.uint8)
    >>> out = augment_batch(images, AugmentConfig(), generator=torch.Generator().manual_seed(0))
    >>> out.shape, out.dtype
    (torch.Size([8, 1, 48, 48]), torch.uint8)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import check_int, check_number, check_probability
from ._config import config_values
from .errors import InvalidArgumentError, UnsupportedInputError

__all__ = ["CROP_REFERENCE", "PADDING_MODES", "AugmentConfig", "augment_batch", "mix_batch"]

PADDING_MODES: Final[tuple[str, ...]] = ("zeros", "border", "reflection")
"""How :func:`augment_batch` fills pixels that an affine transform moves in from outside."""

# Rows of the per-image random draws, always drawn in full and in this order so that turning
# one transform off does not change the randomness of the others.
_ANGLE, _SHIFT_X, _SHIFT_Y, _SCALE, _FLIP, _ERASE, _AREA, _RATIO, _TOP, _LEFT = range(10)
_NUM_DRAWS: Final[int] = 10
# Rows of the random-crop draws, drawn after the others and only when cropping is on.
_CROP_SIDE, _CROP_X, _CROP_Y = range(3)
CROP_REFERENCE: Final[int] = 48
"""Image side in pixels that :attr:`AugmentConfig.crop` sides refer to (FER2013's 48)."""
_SEED_HIGH: Final[int] = 2**62


def _check_range(name: str, value: object, low: float, high: float) -> tuple[float, float]:
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        or not low < value[0] <= value[1] <= high
    ):
        raise InvalidArgumentError(
            f"{name} must be a (min, max) pair with {low} < min <= max <= {high}, got {value!r}."
        )
    return (float(value[0]), float(value[1]))


@dataclass(frozen=True)
class AugmentConfig:
    """Per-image augmentation settings; the defaults suit 48x48 FER2013 faces.

    Attributes:
        hflip: Probability of a horizontal flip.
        rotation: Maximum rotation in degrees; the angle is uniform in ``[-rotation, rotation]``.
        translate: Maximum shift as a fraction of the image side, drawn per axis.
        scale: ``(min, max)`` zoom factor, uniform.
        padding_mode: Fill for pixels moved in from outside the image: one of
            :data:`PADDING_MODES` (``"zeros"`` is black, as torchvision's ``RandomAffine``).
        erasing: Probability of random erasing (one box per image).
        erasing_scale: ``(min, max)`` erased area as a fraction of the image.
        erasing_ratio: ``(min, max)`` aspect ratio (height / width) of the box, log-uniform.
        erasing_value: ``"random"`` fills the box with uniform noise; a number in ``[0, 1]``
            fills it with that fraction of full scale (``0.5077`` is the FER2013 mean).
        crop: ``None``, or the ``(min, max)`` side in pixels of a random square crop that is
            taken from each image (side uniform in the range, position uniform inside the
            image) and zoomed back to the image size before the other transforms. Sides are
            for 48 px images and scale with other sizes. ``(40, 48)`` holds the 44 px views of
            ``tta="ten_crop"`` (:data:`emotionnet.tta.TEN_CROP_SIZE`) in its middle:
            training sees the views that test-time augmentation shows. Its random draws come
            after those of the other transforms, so switching it on leaves theirs unchanged.

    Example:
        >>> AugmentConfig().hflip
        0.5
        >>> AugmentConfig.from_dict(AugmentConfig(rotation=15).to_dict()).rotation
        15.0
        >>> AugmentConfig.disabled().is_identity
        True
    """

    hflip: float = 0.5
    rotation: float = 10.0
    translate: float = 0.1
    scale: tuple[float, float] = (0.9, 1.1)
    padding_mode: str = "zeros"
    erasing: float = 0.5
    erasing_scale: tuple[float, float] = (0.02, 0.33)
    erasing_ratio: tuple[float, float] = (0.3, 3.3)
    erasing_value: float | str = "random"
    crop: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "hflip", check_probability("hflip", self.hflip))
        set_(self, "erasing", check_probability("erasing", self.erasing))
        rotation = check_number("rotation", self.rotation, low=0, high=180, hint="in degrees")
        set_(self, "rotation", rotation)
        translate = check_number(
            "translate", self.translate, low=0, high=1, high_open=True, hint="of the image side"
        )
        set_(self, "translate", translate)
        set_(self, "scale", _check_range("scale", self.scale, 0.0, math.inf))
        if self.padding_mode not in PADDING_MODES:
            raise InvalidArgumentError(
                f"Unknown value {self.padding_mode!r} for argument padding_mode. Valid values "
                f"are {set(PADDING_MODES)}."
            )
        set_(self, "erasing_scale", _check_range("erasing_scale", self.erasing_scale, 0.0, 1.0))
        set_(
            self, "erasing_ratio", _check_range("erasing_ratio", self.erasing_ratio, 0.0, math.inf)
        )
        value = self.erasing_value
        if value != "random" and (
            isinstance(value, (bool, str))
            or not isinstance(value, (int, float))
            or not 0 <= value <= 1
        ):
            raise InvalidArgumentError(
                f"erasing_value must be 'random' or a fraction of full scale in [0, 1], got "
                f"{value!r}."
            )
        if not isinstance(value, str):
            set_(self, "erasing_value", float(value))
        if self.crop is not None:
            crop = self.crop
            if (
                not isinstance(crop, (tuple, list))
                or len(crop) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in crop)
                or not 1 <= crop[0] <= crop[1] <= CROP_REFERENCE
            ):
                raise InvalidArgumentError(
                    f"crop must be None or a (min, max) pair of crop sides in pixels with "
                    f"1 <= min <= max <= {CROP_REFERENCE}, e.g. (40, 48); got {crop!r}."
                )
            set_(self, "crop", (crop[0], crop[1]))

    @classmethod
    def disabled(cls) -> AugmentConfig:
        """Return a config that leaves images unchanged.

        Returns:
            A config with every transform switched off.

        Example:
            >>> AugmentConfig.disabled().hflip
            0.0
        """
        return cls(hflip=0.0, rotation=0.0, translate=0.0, scale=(1.0, 1.0), erasing=0.0)

    @property
    def has_affine(self) -> bool:
        """Whether rotation, translation, scaling or random cropping is switched on."""
        return (
            self.rotation > 0
            or self.translate > 0
            or self.scale != (1.0, 1.0)
            or self.crop not in (None, (CROP_REFERENCE, CROP_REFERENCE))
        )

    @property
    def is_identity(self) -> bool:
        """Whether the config leaves every image unchanged."""
        return not self.has_affine and self.hflip == 0 and self.erasing == 0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict of the fields.

        Returns:
            Field names to values (pairs as lists).

        Example:
            >>> AugmentConfig().to_dict()["scale"]
            [0.9, 1.1]
        """
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in fields(self)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AugmentConfig:
        """Build a config from a dict such as :meth:`to_dict` returns.

        Args:
            data: Field names to values; missing fields take their defaults.

        Returns:
            The config.

        Raises:
            InvalidArgumentError: If ``data`` has unknown keys or invalid values.

        Example:
            >>> AugmentConfig.from_dict({"hflip": 0.0, "scale": [1.0, 1.2]}).scale
            (1.0, 1.2)
        """
        values = config_values(cls, data, what="augment config")
        pairs: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in values.items()
        }
        return cls(**pairs)


def _check_generator(generator: torch.Generator | None) -> torch.Generator:
    if generator is None:
        return torch.default_generator
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise UnsupportedInputError(
            f"generator must be a CPU torch.Generator (parameters are drawn on the CPU so a "
            f"seed gives the same augmentation on every device), got {generator!r}."
        )
    return generator


def _as_batch(images: object, name: str = "images") -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise UnsupportedInputError(
            f"{name} must be a torch.Tensor batch N x C x H x W, got {type(images).__name__}; "
            "convert with torch.from_numpy or emotionnet.data.as_tensors."
        )
    if images.ndim not in (3, 4):
        raise InvalidArgumentError(
            f"{name} must be a batch shaped N x H x W or N x C x H x W, got shape "
            f"{tuple(images.shape)}."
        )
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise UnsupportedInputError(
            f"{name} must be uint8 (0..255) or floating point (0..1), got dtype {images.dtype}."
        )
    return images if images.ndim == 4 else images.unsqueeze(1)


def _affine_theta(
    draws: torch.Tensor,
    config: AugmentConfig,
    height: int,
    width: int,
    crop_draws: torch.Tensor | None = None,
) -> torch.Tensor:
    angle = torch.deg2rad((draws[_ANGLE] * 2 - 1) * config.rotation)
    low, high = config.scale
    scale = low + (high - low) * draws[_SCALE]
    shift_x = (draws[_SHIFT_X] * 2 - 1) * config.translate * 2
    shift_y = (draws[_SHIFT_Y] * 2 - 1) * config.translate * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # affine_grid maps output to input coordinates, so this is the inverse transform; the
    # H/W factors keep the rotation rigid in pixels for non-square images.
    a00, a01 = cos, sin * (height / width)
    a10, a11 = -sin * (width / height), cos
    theta = torch.stack(
        [
            torch.stack([a00, a01, -(a00 * shift_x + a01 * shift_y)], dim=1),
            torch.stack([a10, a11, -(a10 * shift_x + a11 * shift_y)], dim=1),
        ],
        dim=1,
    )
    if config.crop is not None and crop_draws is not None:
        # The crop comes first: a point of the transformed crop, x' = theta(x) in the crop's
        # own coordinates, lies at fraction * x' + centre in the image's (-1..1 coordinates).
        low, high = (side / CROP_REFERENCE for side in config.crop)
        fraction = low + (high - low) * crop_draws[_CROP_SIDE]
        # The outermost output pixels sample at most the outermost pixel centres, so the crop
        # never blends in padding, as a crop resized by F.interpolate would not.
        centre_x = (crop_draws[_CROP_X] * 2 - 1) * (1 - fraction) * (1 - 1 / width)
        centre_y = (crop_draws[_CROP_Y] * 2 - 1) * (1 - fraction) * (1 - 1 / height)
        theta = theta * fraction.view(-1, 1, 1)
        theta[:, 0, 2] += centre_x
        theta[:, 1, 2] += centre_y
    return theta.float()


def _erase_boxes(
    draws: torch.Tensor, config: AugmentConfig, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    low, high = config.erasing_scale
    area = (low + (high - low) * draws[_AREA]) * (height * width)
    log_low, log_high = math.log(config.erasing_ratio[0]), math.log(config.erasing_ratio[1])
    ratio = torch.exp(log_low + (log_high - log_low) * draws[_RATIO])
    box_h = torch.sqrt(area * ratio).round().clamp(1, height)
    box_w = torch.sqrt(area / ratio).round().clamp(1, width)
    top = torch.floor(draws[_TOP] * (height - box_h + 1)).clamp(max=height - box_h)
    left = torch.floor(draws[_LEFT] * (width - box_w + 1)).clamp(max=width - box_w)
    apply = draws[_ERASE] < config.erasing
    return apply, top.long(), left.long(), box_h.long(), box_w.long()


def augment_batch(
    images: torch.Tensor,
    config: AugmentConfig | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Randomly transform each image of a batch: affine, horizontal flip, random erasing.

    Each image gets its own rotation, shift and zoom (one bilinear ``grid_sample``), a flip
    with probability ``hflip`` (an exact mirror) and, with probability ``erasing``, one
    erased box. The batch stays on its device; the result has the input's shape and dtype
    (``uint8`` results are rounded).

    Args:
        images: ``uint8`` (0..255) or float (0..1) batch, ``N x C x H x W`` or ``N x H x W``,
            on any device.
        config: The settings; ``None`` uses :class:`AugmentConfig`'s defaults.
        generator: A CPU generator for reproducible results; ``None`` uses torch's global one.

    Returns:
        The augmented batch, a new tensor.

    Raises:
        UnsupportedInputError: If ``images`` is not a tensor of a supported dtype, or
            ``generator`` is not a CPU generator.
        InvalidArgumentError: If ``images`` has the wrong number of dimensions.

    Example:
        >>> import torch
        >>> x = torch.arange(6, dtype=torch.uint8).reshape(1, 1, 2, 3)
        >>> flip_only = AugmentConfig(hflip=1.0, rotation=0, translate=0, scale=(1, 1), erasing=0)
        >>> augment_batch(x, flip_only)
        tensor([[[[2, 1, 0],
                  [5, 4, 3]]]], dtype=torch.uint8)
    """
    config = AugmentConfig() if config is None else config
    if not isinstance(config, AugmentConfig):
        raise UnsupportedInputError(
            f"config must be an AugmentConfig, got {type(config).__name__}."
        )
    batch = _as_batch(images)
    gen = _check_generator(generator)
    n, channels, height, width = batch.shape
    draws = torch.rand((_NUM_DRAWS, n), generator=gen, dtype=torch.float64)
    noise_seed = int(torch.randint(0, _SEED_HIGH, (1,), generator=gen).item())
    crop_draws = (
        None if config.crop is None else torch.rand((3, n), generator=gen, dtype=torch.float64)
    )
    device = batch.device
    if n == 0 or config.is_identity:
        return images.clone()

    out = batch
    if config.has_affine:
        theta = _to_device(_affine_theta(draws, config, height, width, crop_draws), device)
        work = batch.float()
        grid = F.affine_grid(theta, [n, channels, height, width], align_corners=False)
        work = F.grid_sample(
            work, grid, mode="bilinear", padding_mode=config.padding_mode, align_corners=False
        )
        if batch.dtype == torch.uint8:
            out = work.round_().clamp_(0, 255).to(torch.uint8)
        else:
            out = work.to(batch.dtype)

    if config.hflip > 0:
        flip = _to_device(draws[_FLIP] < config.hflip, device).view(n, 1, 1, 1)
        out = torch.where(flip, out.flip(-1), out)

    if config.erasing > 0:
        apply, top, left, box_h, box_w = _erase_boxes(draws, config, height, width)
        if bool(apply.any()):
            rows = torch.arange(height, device=device).view(1, 1, height, 1)
            cols = torch.arange(width, device=device).view(1, 1, 1, width)
            boxes = _to_device(torch.stack([top, left, box_h, box_w, apply.long()]), device)
            top, left, box_h, box_w, apply = (t.view(n, 1, 1, 1) for t in boxes)
            apply = apply.bool()
            mask = (
                apply
                & (rows >= top)
                & (rows < top + box_h)
                & (cols >= left)
                & (cols < left + box_w)
            )
            out = torch.where(mask, _fill(out, config.erasing_value, noise_seed), out)

    if out is batch:
        out = batch.clone()
    return out if images.ndim == 4 else out.squeeze(1)


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy CPU-drawn parameters to the batch's device without waiting for queued GPU work.

    A copy from pageable memory would block until the GPU has finished everything queued
    before it, so the next batch could not be prepared while the current one trains.
    """
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def _fill(like: torch.Tensor, value: float | str, seed: int) -> torch.Tensor:
    full_scale = 255.0 if like.dtype == torch.uint8 else 1.0
    if value == "random":
        noise_gen = torch.Generator(device=like.device).manual_seed(seed)
        if like.dtype == torch.uint8:
            return torch.randint(
                0, 256, like.shape, generator=noise_gen, device=like.device, dtype=torch.uint8
            )
        return torch.rand(like.shape, generator=noise_gen, device=like.device, dtype=like.dtype)
    fill = float(value) * full_scale
    if like.dtype == torch.uint8:
        fill = round(fill)
    return torch.full((), fill, dtype=like.dtype, device=like.device)


def mix_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    num_classes: int,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix a batch with its reverse by mixup or cutmix, returning soft targets.

    As timm's ``Mixup`` in batch mode: with probability ``prob`` one coefficient
    ``lam ~ Beta(alpha, alpha)`` is drawn for the batch and image ``i`` is mixed with image
    ``N - 1 - i``. Mixup blends whole images; cutmix pastes a box covering ``1 - lam`` of the
    image (``lam`` is then corrected to the box actually pasted). With both alphas positive,
    cutmix is chosen with probability ``switch_prob``. Label smoothing is left to the loss.

    Args:
        images: Float batch ``N x C x H x W`` on any device (cutmix alone also takes uint8).
        targets: Class indices ``N`` (int64) or soft targets ``N x num_classes``.
        num_classes: Number of classes, for the one-hot targets.
        mixup_alpha: Beta parameter of mixup; 0 disables mixup.
        cutmix_alpha: Beta parameter of cutmix; 0 disables cutmix.
        prob: Probability that the batch is mixed at all.
        switch_prob: Probability of cutmix rather than mixup when both are enabled.
        generator: A CPU generator for reproducible results.

    Returns:
        ``(images, soft_targets)``: the mixed batch (a new tensor) and ``float32`` targets
        ``N x num_classes`` whose rows sum to 1.

    Raises:
        InvalidArgumentError: If a probability, alpha or the target shape is invalid, or
            (for CPU targets; checking GPU targets would wait for the GPU) a class index is
            out of range.
        UnsupportedInputError: If mixup is enabled for an integer batch.

    Example:
        >>> import torch
        >>> x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> mixed, soft = mix_batch(x, y, num_classes=7, mixup_alpha=0.4,
        ...                         generator=torch.Generator().manual_seed(0))
        >>> soft.shape, bool(torch.allclose(soft.sum(1), torch.ones(4)))
        (torch.Size([4, 7]), True)
    """
    batch = _as_batch(images)
    gen = _check_generator(generator)
    check_int("num_classes", num_classes, minimum=1)
    check_number("mixup_alpha", mixup_alpha, low=0)
    check_number("cutmix_alpha", cutmix_alpha, low=0)
    prob = check_probability("prob", prob)
    switch_prob = check_probability("switch_prob", switch_prob)
    if mixup_alpha > 0 and not batch.is_floating_point():
        raise UnsupportedInputError(
            f"mixup blends pixel values and needs a floating point batch, got {batch.dtype}; "
            "normalise the batch first (emotionnet.normalize)."
        )
    n = batch.shape[0]
    if targets.ndim == 1 and targets.shape[0] == n and not targets.is_floating_point():
        # Checking GPU labels would wait for the GPU; one_hot then reports bad labels itself.
        on_cpu = targets.device.type == "cpu"
        if n and on_cpu and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
            raise InvalidArgumentError(
                f"targets must be class indices in [0, {num_classes}), got values from "
                f"{int(targets.min())} to {int(targets.max())}."
            )
        soft = F.one_hot(targets.long(), num_classes).float()
    elif targets.shape == (n, num_classes):
        soft = targets.float()
    else:
        raise InvalidArgumentError(
            f"targets must be class indices shaped ({n},) or soft targets shaped "
            f"({n}, {num_classes}), got {tuple(targets.shape)}."
        )

    draws = torch.rand(2, generator=gen, dtype=torch.float64)
    seed = int(torch.randint(0, _SEED_HIGH, (1,), generator=gen).item())
    use_mixup, use_cutmix = mixup_alpha > 0, cutmix_alpha > 0
    if use_mixup and use_cutmix:
        use_cutmix = bool(draws[1] < switch_prob)
        use_mixup = not use_cutmix
    if n == 0 or not (use_mixup or use_cutmix) or not bool(draws[0] < prob):
        return images.clone(), soft

    # numpy draws the Beta variate: torch's Beta sampler takes no generator.
    rng = np.random.default_rng(seed)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    partner = batch.flip(0)
    if use_cutmix:
        height, width = batch.shape[-2:]
        cut = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * cut), int(width * cut)
        center_y, center_x = int(rng.integers(height)), int(rng.integers(width))
        y0, y1 = max(center_y - cut_h // 2, 0), min(center_y + cut_h // 2, height)
        x0, x1 = max(center_x - cut_w // 2, 0), min(center_x + cut_w // 2, width)
        mixed = batch.clone()
        mixed[:, :, y0:y1, x0:x1] = partner[:, :, y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
    else:
        mixed = batch * lam + partner * (1.0 - lam)
    soft = soft * lam + soft.flip(0) * (1.0 - lam)
    return (mixed if images.ndim == 4 else mixed.squeeze(1)), soft
