"""ResNet18 for 48x48 grayscale faces, and the config that travels with its weights.

:func:`resnet18_emotion` returns a plain torchvision :class:`~torchvision.models.ResNet`
whose layer names (``conv1``, ``bn1``, ``layer1`` .. ``layer4``, ``fc``) and state-dict keys
are exactly torchvision's, so ImageNet weights and any ``resnet18`` tooling apply. Only the
stem changes with the input size in mind (:data:`STEMS`):

=============  ================================  =========  ==================
stem           first layers                      final map  multiply-adds
=============  ================================  =========  ==================
``imagenet``   conv 7x7 stride 2 + max-pool 3x3  2x2        0.09 G (1x)
``middle``     conv 3x3 stride 2, no max-pool    3x3        0.31 G (3.3x)
``small``      conv 3x3 stride 1, no max-pool    6x6        1.25 G (13x)
=============  ================================  =========  ==================

(per 48x48 image). :class:`ModelConfig` holds what is needed to rebuild the
model and feed it (stem, classes, input size, mean/std, label names); it is saved as
``config.json`` next to the weights.

Example:
    >>> import torch
    >>> from emotionnet.models import ModelConfig, build_model
    >>> model = build_model(ModelConfig(stem="middle"))
    >>> model.eval()(torch.zeros(2, 1, 48, 48)).shape
    torch.Size([2, 7])
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet, ResNet18_Weights, resnet18

from ._atomic import atomic_write_text
from ._checks import check_choice, check_int
from ._config import config_values
from ._io import file_kind, open_regular_file, read_json_file
from .errors import InvalidArgumentError, ModelLoadError, WeightsNotFoundError
from .labels import EMOTIONS, NUM_CLASSES
from .preprocessing import FER2013_MEAN, FER2013_STD, IMAGE_SIZE

__all__ = [
    "ARCHITECTURES",
    "STEMS",
    "ModelConfig",
    "build_model",
    "clean_state_dict",
    "read_state_dict",
    "resnet18_emotion",
]

STEMS: Final[tuple[str, ...]] = ("imagenet", "small", "middle")
"""The ``stem`` values of :func:`resnet18_emotion`: ``"imagenet"`` (7x7 stride-2 convolution
and max-pool, 2x2 final map at 48 px), ``"small"`` (3x3 stride 1, no max-pool, 6x6) and
``"middle"`` (3x3 stride 2, no max-pool, 3x3; the default)."""

ARCHITECTURES: Final[tuple[str, ...]] = ("resnet18",)
"""Valid values of :attr:`ModelConfig.architecture`."""

CONFIG_FILENAME: Final[str] = "config.json"

_IMAGENET_WEIGHTS: Final = ResNet18_Weights.IMAGENET1K_V1
_STRIP_PREFIXES: Final[tuple[str, ...]] = ("module.", "_orig_mod.")
_STATE_DICT_KEYS: Final[tuple[str, ...]] = ("state_dict", "model_state_dict", "model")

# Limits of a config (documented in ModelConfig): beyond them a config.json of a few
# kilobytes would make build_model or predict allocate gigabytes.
_MIN_INPUT_SIZE: Final[int] = 8
_MAX_INPUT_SIZE: Final[int] = 1024
_MAX_CLASSES: Final[int] = 10_000
_MAX_CHANNELS: Final[int] = 64
_MIN_STD: Final[float] = 1e-6
_PROBLEMS_SHOWN: Final[int] = 8


def _read_config_json(path: Path) -> Any:
    return read_json_file(path, "model config")


class _InputDropout:
    """Forward pre-hook applying dropout to a module's input while it trains.

    A hook rather than an ``nn.Dropout`` layer keeps the state-dict keys torchvision's.
    A class rather than a closure keeps the model picklable and deep-copyable.
    """

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        return (F.dropout(args[0], self.p, module.training),)


def _check_positive_int(name: str, value: object, hint: str) -> int:
    return check_int(name, value, minimum=1, hint=hint)


def _check_range(name: str, value: int, low: int, high: int, hint: str) -> None:
    check_int(name, value, minimum=low, maximum=high, hint=hint)


def _check_stem(stem: object) -> str:
    return check_choice("stem", stem, STEMS)


def _check_dropout(dropout: object) -> float:
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, (int, float))
        or not 0.0 <= dropout < 1.0
    ):
        raise InvalidArgumentError(
            f"dropout must be a probability in [0, 1), got {dropout!r}; use 0.0 to disable it."
        )
    return float(dropout)


def _imagenet_cache_file() -> Path:
    name = Path(urlparse(_IMAGENET_WEIGHTS.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _load_imagenet_state_dict(progress: bool) -> dict[str, torch.Tensor]:
    cache_file = _imagenet_cache_file()
    url = _IMAGENET_WEIGHTS.url
    try:
        state: dict[str, torch.Tensor] = _IMAGENET_WEIGHTS.get_state_dict(
            progress=progress, check_hash=True, weights_only=True
        )
    except Exception as exc:  # network, hash and unpickling errors share no base class
        if cache_file.is_file():
            raise ModelLoadError(
                f"The cached ImageNet weights at {cache_file} could not be read ({exc!r}); "
                "delete the file so it downloads again, or replace it with a copy of "
                f"{url}."
            ) from exc
        raise WeightsNotFoundError(
            f"ImageNet ResNet18 weights are not cached at {cache_file} and could not be "
            f"downloaded from {url} ({exc}). On a machine without network access, download "
            f"that file elsewhere and copy it to {cache_file} (the cache folder is "
            "$TORCH_HOME/hub/checkpoints, with TORCH_HOME defaulting to ~/.cache/torch)."
        ) from exc
    return state


def _adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt RGB first-conv kernels to ``in_chans`` input channels, as timm does.

    One channel sums the RGB kernels, so a gray image ``g`` (seen by the RGB network as
    ``(g, g, g)``) gets the same response. Other counts repeat the kernels and rescale so the
    response to a constant image is kept.
    """
    if in_chans == 3:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_chans / 3)
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (3.0 / in_chans)


def _area_matrix(source: int, target: int) -> torch.Tensor:
    """``target x source`` matrix whose row ``j`` is the overlap of each source tap with bin ``j``.

    The bins split the source extent evenly, so every column sums to 1 and resampling with it
    keeps the total weight.
    """
    edges = torch.linspace(0.0, float(source), target + 1, dtype=torch.float64)
    taps = torch.arange(source, dtype=torch.float64)
    low = torch.maximum(taps[None, :], edges[:-1, None])
    high = torch.minimum(taps[None, :] + 1, edges[1:, None])
    return (high - low).clamp(min=0)


def _resize_kernel(weight: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample conv kernels by area, keeping each filter's sum (its response to a flat image)."""
    if tuple(weight.shape[-2:]) == size:
        return weight
    rows = _area_matrix(weight.shape[-2], size[0])
    cols = _area_matrix(weight.shape[-1], size[1])
    resized = torch.einsum("ai,ocij,bj->ocab", rows, weight.double(), cols)
    return resized.to(weight.dtype)


def clean_state_dict(loaded: Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
    """Unwrap and unprefix a loaded state dict: the one reading of legacy weight files.

    A checkpoint that holds the weights under ``"state_dict"``, ``"model_state_dict"`` or
    ``"model"`` (emotionnet's own ``last.ckpt``) is unwrapped, and the ``module.`` (DataParallel,
    DDP) and ``_orig_mod.`` (``torch.compile``) prefixes are removed when every key has them.

    Args:
        loaded: What ``torch.load`` or safetensors returned, or a state dict.
        source: Where it came from, for messages.

    Returns:
        Names to tensors.

    Raises:
        ModelLoadError: If it holds no tensors or entries that are not tensors.

    Example:
        >>> import torch
        >>> clean_state_dict({"state_dict": {"module.fc.bias": torch.zeros(2)}}, "x")
        {'fc.bias': tensor([0., 0.])}
    """
    if not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        for key in _STATE_DICT_KEYS:
            inner = loaded.get(key)
            if isinstance(inner, Mapping):
                loaded = inner
                break
    bad = [str(k) for k, v in loaded.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad or not loaded:
        raise ModelLoadError(
            f"{source} is not a state dict of tensors"
            + (f" (non-tensor entries: {', '.join(bad[:5])})" if bad else " (it is empty)")
            + "; pass model.state_dict() or a checkpoint holding it under 'state_dict'."
        )
    state: dict[str, torch.Tensor] = dict(loaded)
    for prefix in _STRIP_PREFIXES:
        if all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or ``.pt``/``.pth`` state dict file, never running its code.

    ``.pt`` files go through ``torch.load(weights_only=True)``: tensors and plain containers
    are rebuilt, any other pickled object is refused. The result goes through
    :func:`clean_state_dict`.

    Args:
        path: The file (a regular file; a pipe or device is refused without blocking).

    Returns:
        Names to tensors.

    Raises:
        WeightsNotFoundError: If there is no such file.
        ModelLoadError: If it is not a regular file or not a state dict of tensors.

    Example:
        >>> read_state_dict("missing.pt")
        Traceback (most recent call last):
        ...
        emotionnet.errors.WeightsNotFoundError: No weights file at 'missing.pt'; check the path (a .safetensors or .pt state dict).
    """  # noqa: E501
    where = repr(os.fspath(path))
    try:
        kind = file_kind(path)
    except FileNotFoundError:
        raise WeightsNotFoundError(
            f"No weights file at {where}; check the path (a .safetensors or .pt state dict)."
        ) from None
    except OSError as error:
        raise ModelLoadError(f"Could not read weights from {where}: {error}.") from None
    if kind is not None:
        raise ModelLoadError(
            f"Could not read weights from {where}: it is {kind}, not a regular file."
        )
    try:
        if Path(path).suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: object = load_file(os.fspath(path), device="cpu")
        else:
            with open_regular_file(path) as handle:
                loaded = torch.load(handle, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and safetensors errors share no base class
        raise ModelLoadError(
            f"Could not read weights from {where} ({type(error).__name__}: {error}). Only "
            "tensors (and dicts/lists of them) are loaded, never arbitrary pickled objects: "
            "re-save the file with torch.save(model.state_dict(), path)."
        ) from None
    if not isinstance(loaded, Mapping):
        raise ModelLoadError(
            f"{where} holds a {type(loaded).__name__}, not a state dict; save it with "
            "torch.save(model.state_dict(), path)."
        )
    return clean_state_dict(loaded, where)


def load_state_dict_strict(
    model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str
) -> None:
    """Load a state dict, listing every missing, unexpected and mis-shaped tensor on failure.

    Args:
        model: The model.
        state: Tensor names to tensors.
        source: Where the tensors came from, for messages.

    Raises:
        ModelLoadError: If the names or shapes do not match the model exactly, or a tensor
            is unusable: integer or bool where the model has floats, NaN or infinite values,
            a negative batch-norm ``running_var`` (the message names each tensor).

    Example:
        >>> from torch import nn
        >>> load_state_dict_strict(nn.Linear(2, 1), {"weight": torch.zeros(1, 2)}, source="x")
        Traceback (most recent call last):
        ...
        emotionnet.errors.ModelLoadError: The weights of x do not fit the model: missing: bias. ...
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{key} {tuple(state[key].shape)} (model: {tuple(expected[key].shape)})"
        for key in set(expected) & set(state)
        if tuple(state[key].shape) != tuple(expected[key].shape)
    )
    problems = [
        f"{label}: {', '.join(items[:8])}{f' and {len(items) - 8} more' if len(items) > 8 else ''}"
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mis-shaped", misshaped),
        )
        if items
    ]
    if problems:
        raise ModelLoadError(
            f"The weights of {source} do not fit the model: {'; '.join(problems)}. Build the "
            "model with the stem, num_classes and in_chans the weights were trained with (the "
            "config.json saved next to them records them)."
        )
    unusable = _unusable_tensors(expected, state)
    if unusable:
        shown = "; ".join(unusable[:_PROBLEMS_SHOWN])
        more = len(unusable) - _PROBLEMS_SHOWN
        raise ModelLoadError(
            f"The weights of {source} are unusable: {shown}"
            f"{f' and {more} more' if more > 0 else ''}. The file is corrupt or comes from a "
            "training run that diverged; load weights saved from a healthy model."
        )
    model.load_state_dict(state, strict=True)


def _unusable_tensors(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]
) -> list[str]:
    """Describe the tensors of ``state`` whose kind or values would make the model answer NaN.

    Floating-point tensors of the model must come as finite floating-point values (checked
    after the cast ``load_state_dict`` does, so a float64 value that overflows float32 counts
    as infinite), and batch-norm variances must not be negative. Integer buffers (batch-norm
    ``num_batches_tracked``) are cast as ``load_state_dict`` does; only complex, NaN or
    infinite values are refused there.
    """
    problems = []
    for key, reference in expected.items():
        tensor = state[key].detach()
        if reference.is_floating_point():
            if not tensor.is_floating_point():
                problems.append(f"{key} is {tensor.dtype}, expected a floating-point tensor")
                continue
            values = tensor if tensor.dtype == reference.dtype else tensor.to(reference.dtype)
            if not bool(torch.isfinite(values).all()):
                problems.append(f"{key} has NaN or infinite values")
            elif key.rsplit(".", 1)[-1] == "running_var" and bool((values < 0).any()):
                problems.append(f"{key} has negative values (a variance is never negative)")
        elif tensor.is_complex() or (
            tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
        ):
            problems.append(f"{key} is {tensor.dtype} with values that are not integers")
    return problems


def _apply_imagenet_weights(model: ResNet, in_chans: int, progress: bool) -> None:
    state = _load_imagenet_state_dict(progress)
    own = model.state_dict()
    conv1 = _adapt_input_conv(state["conv1.weight"], in_chans)
    state["conv1.weight"] = _resize_kernel(conv1, tuple(own["conv1.weight"].shape[-2:]))
    if state["fc.weight"].shape != own["fc.weight"].shape:
        # A new head for the emotion classes: keep torchvision's fresh initialisation.
        state["fc.weight"] = own["fc.weight"]
        state["fc.bias"] = own["fc.bias"]
    load_state_dict_strict(model, state, source=f"torchvision's {_IMAGENET_WEIGHTS}")


def resnet18_emotion(
    *,
    num_classes: int = NUM_CLASSES,
    in_chans: int = 1,
    stem: str = "middle",
    weights: str | os.PathLike[str] | None = None,
    dropout: float = 0.0,
    progress: bool = True,
) -> ResNet:
    """Build a torchvision ResNet18 for small grayscale face images.

    The model takes a normalised ``float`` batch ``N x in_chans x H x W`` (48x48 for
    FER2013, see :func:`emotionnet.preprocessing.normalize`) and returns logits
    ``N x num_classes``.

    With ``weights="imagenet"`` the torchvision ``ResNet18_Weights.IMAGENET1K_V1`` weights are
    loaded through torchvision's weights API (downloaded once into
    ``$TORCH_HOME/hub/checkpoints``). The RGB first-conv kernels are summed for one input
    channel (timm's ``adapt_input_conv`` rule). For the ``"small"`` and ``"middle"`` stems,
    whose first conv is 3x3, the 7x7 kernels are resampled to 3x3 by area (each new tap
    sums the old taps it covers, fractionally at its edges), which keeps each filter's total
    weight and so its response to smooth input: the pretrained ``bn1`` statistics still fit.
    ``fc`` is freshly initialised unless ``num_classes`` is 1000.

    Args:
        num_classes: Number of output logits.
        in_chans: Number of input channels (1 for grayscale).
        stem: One of :data:`STEMS`: ``"imagenet"``, ``"small"`` or ``"middle"``.
        weights: ``None`` for random initialisation, ``"imagenet"``, or the path of a
            ``.safetensors`` or ``.pt``/``.pth`` state dict for exactly this model (an
            emotionnet training checkpoint works too). Loading is strict.
        dropout: Dropout probability applied to the pooled features before ``fc`` while
            training. It adds no parameters, so the state-dict keys stay torchvision's.
        progress: Show a download progress bar for ``"imagenet"``.

    Returns:
        A :class:`torchvision.models.ResNet`.

    Raises:
        InvalidArgumentError: If ``stem``, ``num_classes``, ``in_chans`` or ``dropout`` is
            invalid.
        WeightsNotFoundError: If the weights file is missing, or the ImageNet weights are not
            cached and cannot be downloaded (the message names the cache file to place).
        ModelLoadError: If the weights cannot be read or do not fit the model.

    Example:
        >>> import torch
        >>> model = resnet18_emotion(stem="small", dropout=0.2).eval()
        >>> model(torch.zeros(1, 1, 48, 48)).shape
        torch.Size([1, 7])
        >>> model.conv1
        Conv2d(1, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
    """
    num_classes = _check_positive_int(
        "num_classes", num_classes, "pass the number of emotion classes, e.g. 7"
    )
    in_chans = _check_positive_int("in_chans", in_chans, "pass 1 for grayscale or 3 for RGB")
    stem = _check_stem(stem)
    dropout = _check_dropout(dropout)

    model = resnet18(num_classes=num_classes)
    if stem != "imagenet" or in_chans != 3:
        if stem == "imagenet":
            model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            stride = 1 if stem == "small" else 2
            model.conv1 = nn.Conv2d(in_chans, 64, 3, stride=stride, padding=1, bias=False)
            model.maxpool = nn.Identity()
        # torchvision initialises its convs in ResNet.__init__; the new conv1 gets the same rule.
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")

    if isinstance(weights, str) and weights == "imagenet":
        _apply_imagenet_weights(model, in_chans, progress)
    elif weights is not None:
        if not isinstance(weights, (str, os.PathLike)):
            raise InvalidArgumentError(
                f"weights must be None, 'imagenet' or a path to a state dict, got {weights!r}."
            )
        path = Path(weights)
        load_state_dict_strict(model, read_state_dict(path), source=str(path))

    if dropout > 0.0:
        model.fc.register_forward_pre_hook(_InputDropout(dropout))
    return model


def _as_float_tuple(name: str, value: object) -> tuple[float, ...]:
    items = (value,) if isinstance(value, (int, float)) else value
    if (
        not isinstance(items, Sequence)
        or isinstance(items, str)
        or not items
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items)
    ):
        raise InvalidArgumentError(
            f"{name} must be a non-empty sequence of numbers (one per channel), got {value!r}."
        )
    try:
        return tuple(float(v) for v in items)
    except OverflowError:  # an integer beyond the float range
        raise InvalidArgumentError(
            f"{name} values must be finite numbers (0..1 scale), got {value!r}."
        ) from None


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model and feed it, saved as ``config.json``.

    Attributes:
        architecture: Network family; only ``"resnet18"`` for now.
        stem: One of :data:`STEMS`.
        num_classes: Number of output logits, 1 to 10,000.
        in_chans: Number of input channels, 1 to 64.
        input_size: Side of the square input image in pixels, 8 to 1024.
        mean: Per-channel mean on the 0..1 scale used by :func:`~emotionnet.normalize`;
            finite.
        std: Per-channel standard deviation on the 0..1 scale; finite and above 1e-6.
        labels: Class names, index ``i`` naming logit ``i``; distinct and not empty.
        dropout: Dropout before the classifier during training.

    Example:
        >>> config = ModelConfig(stem="small")
        >>> ModelConfig.from_dict(config.to_dict()) == config
        True
        >>> config.to_dict()["labels"][:2]
        ['angry', 'disgust']
    """

    architecture: str = "resnet18"
    stem: str = "middle"
    num_classes: int = NUM_CLASSES
    in_chans: int = 1
    input_size: int = IMAGE_SIZE
    mean: tuple[float, ...] = (FER2013_MEAN,)
    std: tuple[float, ...] = (FER2013_STD,)
    labels: tuple[str, ...] = EMOTIONS
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise InvalidArgumentError(
                f"Unknown value {self.architecture!r} for architecture. Valid values are "
                f"{set(ARCHITECTURES)}."
            )
        _check_stem(self.stem)
        _check_positive_int("num_classes", self.num_classes, "e.g. 7 for FER2013")
        _check_range("num_classes", self.num_classes, 1, _MAX_CLASSES, "e.g. 7 for FER2013")
        _check_positive_int("in_chans", self.in_chans, "1 for grayscale, 3 for RGB")
        _check_range("in_chans", self.in_chans, 1, _MAX_CHANNELS, "1 for grayscale, 3 for RGB")
        _check_positive_int("input_size", self.input_size, "48 for FER2013")
        _check_range(
            "input_size",
            self.input_size,
            _MIN_INPUT_SIZE,
            _MAX_INPUT_SIZE,
            "the side of the square input in pixels, 48 for FER2013",
        )
        _check_dropout(self.dropout)
        mean = _as_float_tuple("mean", self.mean)
        std = _as_float_tuple("std", self.std)
        if len(mean) != self.in_chans or len(std) != self.in_chans:
            raise InvalidArgumentError(
                f"mean {mean} and std {std} need one value per input channel "
                f"(in_chans={self.in_chans})."
            )
        if not all(math.isfinite(m) for m in mean):
            raise InvalidArgumentError(
                f"mean values must be finite numbers (0..1 scale), got {mean}."
            )
        if not all(math.isfinite(s) and s > _MIN_STD for s in std):
            raise InvalidArgumentError(
                f"std values must be positive (greater than {_MIN_STD:g}) and finite, got "
                f"{std}; the pixels are divided by them."
            )
        if isinstance(self.labels, str) or not all(isinstance(x, str) for x in self.labels):
            raise InvalidArgumentError(
                f"labels must be a sequence of class names, got {self.labels!r}."
            )
        labels = tuple(self.labels)
        if len(labels) != self.num_classes:
            raise InvalidArgumentError(
                f"labels has {len(labels)} names but num_classes is {self.num_classes}; "
                "give one name per class."
            )
        if not all(label.strip() for label in labels):
            raise InvalidArgumentError(f"labels must not be empty names, got {list(labels)}.")
        repeated = sorted(label for label, count in Counter(labels).items() if count > 1)
        if repeated:
            raise InvalidArgumentError(
                f"labels must name each class once, but {repeated} appear more than once in "
                f"{list(labels)}."
            )
        # Lists from JSON become tuples so configs compare, hash and stay immutable.
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "dropout", float(self.dropout))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict of the fields (tuples become lists).

        Returns:
            A dict that :meth:`from_dict` turns back into an equal config.

        Example:
            >>> ModelConfig().to_dict()["stem"]
            'middle'
        """
        return {
            "architecture": self.architecture,
            "stem": self.stem,
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "labels": list(self.labels),
            "dropout": self.dropout,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build a config from a dict such as :meth:`to_dict` returns.

        Missing keys take their defaults.

        Args:
            data: Field names to values.

        Returns:
            The config.

        Raises:
            InvalidArgumentError: If ``data`` has unknown keys or invalid values.

        Example:
            >>> ModelConfig.from_dict({"stem": "small"}).stem
            'small'
        """
        return cls(**config_values(cls, data, what="model config"))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the config as JSON.

        Args:
            path: A ``.json`` file, or a directory in which ``config.json`` is written
                (created if needed).

        Returns:
            The path of the written file.

        Example:
            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     written = ModelConfig().save(folder)
            ...     ModelConfig.load(folder) == ModelConfig(), written.name
            (True, 'config.json')
        """
        target = _config_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(target, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelConfig:
        """Read a config written by :meth:`save`.

        Args:
            path: A ``.json`` file, or a directory holding ``config.json``.

        Returns:
            The config.

        Raises:
            FileNotFoundError: If the file does not exist.
            InvalidArgumentError: If the file is not a regular file, not valid JSON (or
                nested too deeply), or has unknown keys or invalid values.

        Example:
            >>> import tempfile, pathlib
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     _ = pathlib.Path(folder, "config.json").write_text('{"stem": "small"}')
            ...     ModelConfig.load(folder).stem
            'small'
        """
        return cls.from_dict(_read_config_json(_config_path(path)))


def _config_path(path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    return target if target.suffix == ".json" else target / CONFIG_FILENAME


def build_model(
    config: ModelConfig,
    *,
    weights: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> nn.Module:
    """Build the model a :class:`ModelConfig` describes.

    Args:
        config: The model config.
        weights: As for :func:`resnet18_emotion`.
        progress: Show a download progress bar for ImageNet weights.

    Returns:
        The model, in training mode.

    Raises:
        InvalidArgumentError: If ``config`` is not a :class:`ModelConfig`.
        WeightsNotFoundError: See :func:`resnet18_emotion`.
        ModelLoadError: See :func:`resnet18_emotion`.

    Example:
        >>> build_model(ModelConfig(stem="imagenet")).conv1.kernel_size
        (7, 7)
    """
    if not isinstance(config, ModelConfig):
        raise InvalidArgumentError(
            f"build_model expects a ModelConfig, got {type(config).__name__}; load one with "
            "ModelConfig.load(path) or ModelConfig.from_dict(d)."
        )
    model: nn.Module = resnet18_emotion(
        num_classes=config.num_classes,
        in_chans=config.in_chans,
        stem=config.stem,
        weights=weights,
        dropout=config.dropout,
        progress=progress,
    )
    return model
