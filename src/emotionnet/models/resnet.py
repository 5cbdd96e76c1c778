"""ResNet18 for faces: :class:`EmotionNet`, :func:`resnet18_emotion`, :func:`build_model`.

See :mod:`emotionnet.models` for the stems and their cost.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from huggingface_hub import ModelCard, PyTorchModelHubMixin, hf_hub_download
from torch import nn
from torchvision.models import ResNet, ResNet18_Weights
from torchvision.models.resnet import BasicBlock

from ..errors import InvalidArgumentError, ModelLoadError, WeightsNotFoundError
from ..labels import EMOTIONS, NUM_CLASSES
from ..preprocessing import FER2013_MEAN, FER2013_STD, IMAGE_SIZE
from .card import CARD_TEMPLATE, LIBRARY_NAME, LICENSE, PIPELINE_TAG, TAGS, model_card
from .config import ModelConfig
from .weights import load_state_dict_strict, read_state_dict

__all__ = ["EmotionNet", "build_model", "resnet18_emotion"]

WEIGHTS_FILENAME: Final[str] = "model.safetensors"

_IMAGENET_WEIGHTS: Final = ResNet18_Weights.IMAGENET1K_V1


class _InputDropout:
    """Forward pre-hook applying dropout to a module's input while it trains.

    A hook rather than an ``nn.Dropout`` layer keeps the state-dict keys torchvision's.
    A class rather than a closure keeps the model picklable and deep-copyable.
    """

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        return (F.dropout(args[0], self.p, module.training),)


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


# torchvision is untyped, so ResNet is Any to mypy.
class EmotionNet(
    ResNet,  # type: ignore[misc]
    PyTorchModelHubMixin,
    library_name=LIBRARY_NAME,
    license=LICENSE,
    pipeline_tag=PIPELINE_TAG,
    tags=list(TAGS),
    docs_url="https://emotionnet.readthedocs.io",
    model_card_template=CARD_TEMPLATE,
):
    """A torchvision ResNet18 for faces that saves and loads itself like any Hub model.

    A :class:`torchvision.models.ResNet` (same layers, same state-dict keys) with the stem
    of :data:`STEMS`, built from the fields of a :class:`ModelConfig` (checked there, in one
    place) and with huggingface_hub's :class:`~huggingface_hub.PyTorchModelHubMixin`:
    :meth:`save_pretrained` writes ``model.safetensors``, ``config.json`` (the
    :class:`ModelConfig` fields) and a ``README.md`` model card (:func:`model_card`, with
    ``model_card_kwargs={"evaluation": ...}`` filled with the evaluation numbers);
    :meth:`from_pretrained` reads a folder, a Hub repository or its cached copy
    (``HF_HUB_OFFLINE=1``), and loads **strictly** by default: a missing, extra, misshaped or
    non-finite tensor is a :class:`~emotionnet.errors.ModelLoadError` (pass ``strict=False``
    for the mixin's lenient loading). :meth:`push_to_hub` uploads the same files.
    :func:`resnet18_emotion` and :func:`build_model` return this class.

    Args:
        architecture: ``"resnet18"``.
        stem: One of :data:`STEMS`.
        num_classes: Number of output logits.
        in_chans: Number of input channels.
        input_size: Side of the square input the model is fed (it does not change layers).
        mean: Per-channel normalisation mean (0..1 scale); ``None``: FER2013's per channel.
        std: Per-channel standard deviation; ``None``: FER2013's per channel.
        labels: Class names; ``None``: the seven emotions for 7 classes, else ``class_<i>``.
        dropout: Dropout probability before ``fc`` while training (a hook: no new keys).
        temperatures: Calibration temperature per TTA mode (:attr:`ModelConfig.temperatures`);
            ``None``: none (1.0 for every mode).

    Attributes:
        config: The :class:`ModelConfig` of the model.

    Raises:
        InvalidArgumentError: If a field is invalid (see :class:`ModelConfig`).

    Example:
        >>> import tempfile, torch
        >>> model = EmotionNet(stem="small").eval()
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     model.save_pretrained(folder)
        ...     loaded = EmotionNet.from_pretrained(folder)
        >>> loaded.config == model.config, loaded.training
        (True, False)
        >>> torch.equal(loaded(torch.zeros(1, 1, 48, 48)), model(torch.zeros(1, 1, 48, 48)))
        True
    """

    def __init__(
        self,
        *,
        architecture: str = "resnet18",
        stem: str = "middle",
        num_classes: int = NUM_CLASSES,
        in_chans: int = 1,
        input_size: int = IMAGE_SIZE,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        labels: Sequence[str] | None = None,
        dropout: float = 0.0,
        temperatures: Mapping[str, float] | None = None,
    ) -> None:
        channels = in_chans if isinstance(in_chans, int) and 0 < in_chans <= 64 else 1
        if labels is None and isinstance(num_classes, int) and 0 < num_classes <= 10_000:
            labels = (
                EMOTIONS
                if num_classes == NUM_CLASSES
                else [f"class_{i}" for i in range(num_classes)]
            )
        config = ModelConfig(
            architecture=architecture,
            stem=stem,
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            mean=tuple(mean) if mean is not None else (FER2013_MEAN,) * channels,
            std=tuple(std) if std is not None else (FER2013_STD,) * channels,
            labels=tuple(labels) if labels is not None else EMOTIONS,
            dropout=dropout,
            temperatures=temperatures if temperatures is not None else {},
        )
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=config.num_classes)
        self.config = config
        # What save_pretrained writes as config.json: every field, defaults included.
        self._hub_mixin_config = config.to_dict()
        if config.stem != "imagenet" or config.in_chans != 3:
            if config.stem == "imagenet":
                self.conv1 = nn.Conv2d(
                    config.in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False
                )
            else:
                stride = 1 if config.stem == "small" else 2
                self.conv1 = nn.Conv2d(config.in_chans, 64, 3, stride=stride, padding=1, bias=False)
                self.maxpool = nn.Identity()
            # torchvision initialises its convs in ResNet.__init__; the new conv1 likewise.
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        if config.dropout > 0.0:
            self.fc.register_forward_pre_hook(_InputDropout(config.dropout))

    @classmethod
    def from_config(cls, config: ModelConfig) -> EmotionNet:
        """Build the model a :class:`ModelConfig` describes (random weights).

        Example:
            >>> EmotionNet.from_config(ModelConfig(stem="imagenet")).conv1.kernel_size
            (7, 7)
        """
        fields = config.to_dict()
        return cls(**fields)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The model card :meth:`save_pretrained` writes (:func:`model_card`).

        Args:
            *args: Unused (the mixin's signature).
            **kwargs: ``model_card_kwargs`` of :meth:`save_pretrained`: ``evaluation``,
                ``name`` and ``metadata`` as :func:`model_card` takes them.
        """
        return ModelCard(model_card(self.config, **kwargs))

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs: Any,
    ) -> EmotionNet:
        model = cls(**model_kwargs)
        if os.path.isdir(model_id):
            path = Path(model_id, WEIGHTS_FILENAME)
        else:
            path = Path(
                hf_hub_download(
                    repo_id=model_id,
                    filename=WEIGHTS_FILENAME,
                    revision=revision,
                    cache_dir=cache_dir,
                    force_download=force_download,
                    token=token,
                    local_files_only=local_files_only,
                )
            )
        state = read_state_dict(path)
        if strict:
            load_state_dict_strict(model, state, source=str(path))
        else:
            model.load_state_dict(state, strict=False)
        model.to(map_location)
        model.eval()
        return model


def resnet18_emotion(
    *,
    num_classes: int = NUM_CLASSES,
    in_chans: int = 1,
    stem: str = "middle",
    weights: str | os.PathLike[str] | None = None,
    dropout: float = 0.0,
    progress: bool = True,
) -> EmotionNet:
    """Build a torchvision ResNet18 for small grayscale face images (an :class:`EmotionNet`).

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
    model = EmotionNet(num_classes=num_classes, in_chans=in_chans, stem=stem, dropout=dropout)
    _apply_weights(model, weights, progress)
    return model


def _apply_weights(
    model: EmotionNet, weights: str | os.PathLike[str] | None, progress: bool
) -> None:
    if isinstance(weights, str) and weights == "imagenet":
        _apply_imagenet_weights(model, model.config.in_chans, progress)
    elif weights is not None:
        if not isinstance(weights, (str, os.PathLike)):
            raise InvalidArgumentError(
                f"weights must be None, 'imagenet' or a path to a state dict, got {weights!r}."
            )
        path = Path(weights)
        load_state_dict_strict(model, read_state_dict(path), source=str(path))


def build_model(
    config: ModelConfig,
    *,
    weights: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> EmotionNet:
    """Build the model a :class:`ModelConfig` describes (an :class:`EmotionNet`).

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
    model = EmotionNet.from_config(config)
    _apply_weights(model, weights, progress)
    return model
