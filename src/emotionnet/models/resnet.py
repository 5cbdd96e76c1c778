"""ResNet18 for faces: :class:`EmotionNet` and its one builder, :func:`build_model`.

See :mod:`emotionnet.models` for the stems and their cost.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from huggingface_hub import ModelCard, PyTorchModelHubMixin
from huggingface_hub.constants import CONFIG_NAME
from huggingface_hub.hub_mixin import DataclassInstance
from torch import nn
from torchvision.models import ResNet, ResNet18_Weights
from torchvision.models.resnet import BasicBlock

from .._atomic import atomic_write_bytes
from .._optional import require
from ..errors import (
    InvalidArgumentError,
    MissingDependencyError,
    ModelLoadError,
    WeightsNotFoundError,
)
from ..labels import EMOTIONS, NUM_CLASSES
from ..preprocessing import FER2013_MEAN, FER2013_STD, IMAGE_SIZE
from ..runtime import INT8_ONNX_NAME, ONNX_NAME
from .card import CARD_TEMPLATE, LIBRARY_NAME, LICENSE, PIPELINE_TAG, TAGS, model_card
from .config import ModelConfig
from .hub import MODEL_CARD_NAME, WEIGHTS_NAME, resolve_model_files
from .weights import load_weights

__all__ = ["EmotionNet", "build_model"]

_DTYPES: Final[tuple[torch.dtype, ...]] = (torch.float32, torch.float16, torch.bfloat16)

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
    load_weights(model, state, source=f"torchvision's {_IMAGENET_WEIGHTS}")


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
    place); build one with :func:`build_model`. Saving, loading and uploading go through
    huggingface_hub's :class:`~huggingface_hub.PyTorchModelHubMixin`, the one path of every
    emotionnet model folder (:meth:`EmotionRecognizer.from_pretrained
    <emotionnet.EmotionRecognizer.from_pretrained>` and ``save_pretrained`` use it too):
    :meth:`save_pretrained` writes ``model.safetensors``, ``model.onnx`` (the graph of the
    saved weights, for the torch-free inference install), ``config.json`` (the
    :class:`ModelConfig` fields, plus what ``config=`` adds) and a ``README.md`` model card
    (:func:`model_card`, with ``model_card_kwargs={"evaluation": ...}`` filled with the
    evaluation numbers); :meth:`from_pretrained` reads the bundled default model, a folder, a
    Hub repository (downloaded within a time bound) or its cached copy (``HF_HUB_OFFLINE=1``),
    and loads **strictly** by default: a missing, extra, misshaped or non-finite tensor is a
    :class:`~emotionnet.errors.ModelLoadError` (pass ``strict=False`` for the mixin's lenient
    loading). :meth:`push_to_hub` uploads the same files.

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
        ...     model.save_pretrained(folder, onnx=False)
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

    # (dtype, onnx) of the save under way: _save_pretrained, the mixin's hook, takes no options.
    _saving: tuple[torch.dtype, bool] | None = None
    _saving_config: Mapping[str, Any] | None = None

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike[str] | None = None,
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        timeout: float | None = None,
        **model_kwargs: Any,
    ) -> EmotionNet:
        """Load a model folder, strictly: the bundled default, a folder or a Hub repository.

        The name is resolved as :meth:`EmotionRecognizer.from_pretrained
        <emotionnet.EmotionRecognizer.from_pretrained>` resolves it
        (:func:`~emotionnet.models.hub.resolve_model_files`: Hub downloads bounded in time
        and size, checked against their checksums, offline with ``HF_HUB_OFFLINE=1`` or
        ``local_files_only=True``); the mixin then builds the model from ``config.json`` and
        :func:`~emotionnet.models.load_weights` loads ``model.safetensors`` into it.

        Args:
            pretrained_model_name_or_path: ``None`` for the bundled default model, a folder
                written by :meth:`save_pretrained`, or a Hub repo id ``"org/name"``.
            force_download: Not supported: a damaged cached file is downloaded anew anyway.
            token: Hub token for private or gated repositories.
            cache_dir: Hugging Face cache folder (default ``HF_HUB_CACHE``).
            local_files_only: Only look in the cache, never on the network.
            revision: Hub branch, tag or commit hash.
            timeout: Most seconds spent on the Hub (``None``: ``EMOTIONNET_HUB_TIMEOUT``,
                default 30).
            **model_kwargs: ``strict=False`` (load what fits), ``map_location`` (default
                ``"cpu"``), or :class:`ModelConfig` fields that override ``config.json``.

        Returns:
            The model, in eval mode.

        Raises:
            WeightsNotFoundError: If the model is not found (or is only an ONNX graph).
            ModelLoadError: If the weights do not fit the config or hold unusable values.
            InvalidArgumentError: If an argument or a config field is invalid.
        """
        if force_download:
            raise InvalidArgumentError(
                "force_download=True is not supported: files in the Hugging Face cache are "
                "checked against their checksums and downloaded anew when damaged. To fetch a "
                "model again, delete it from the cache (`hf cache delete`)."
            )
        files = resolve_model_files(
            pretrained_model_name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            timeout=timeout,
        )
        if files.weights is None:
            raise WeightsNotFoundError(
                f"{files.source} holds only model.onnx, not the PyTorch weights "
                f"({WEIGHTS_NAME}); run it with EmotionRecognizer.from_pretrained, or load "
                "the folder it was exported from."
            )
        return super().from_pretrained(files.folder, **model_kwargs)

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
        # from_pretrained resolved model_id to a local folder.
        model = cls(**model_kwargs)
        load_weights(model, Path(model_id, WEIGHTS_NAME), strict=strict)
        return model.to(map_location).eval()  # type: ignore[no-any-return]

    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        *,
        config: dict[Any, Any] | DataclassInstance | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: dict[str, Any] | None = None,
        dtype: torch.dtype | str | None = None,
        onnx: bool | None = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Save the model folder: weights, ONNX graph, ``config.json`` and model card.

        Existing files are replaced; a ``model.int8.onnx`` of earlier weights is removed
        (``quantize_folder`` makes one anew).

        Args:
            save_directory: The folder (created if needed).
            config: What ``config.json`` holds (default: :meth:`ModelConfig.to_dict`);
                :meth:`EmotionRecognizer.save_pretrained
                <emotionnet.EmotionRecognizer.save_pretrained>` adds a ``"metadata"`` entry.
            repo_id: With ``push_to_hub=True``: the Hub repository.
            push_to_hub: Upload the folder too (:meth:`push_to_hub`).
            model_card_kwargs: ``evaluation``, ``name`` (default: the folder's name) and
                ``metadata``, as :func:`~emotionnet.models.card.model_card` takes them.
            dtype: ``torch.float32`` (exact; the default) or ``torch.float16`` /
                ``torch.bfloat16`` (half the size), also as a string.
            onnx: Write ``model.onnx`` (default; needs the ``onnx`` package, in the ``torch``
                extra), exported from the weights *as saved* with their SHA-256 in its
                metadata; ``False`` leaves it out (and removes a stale one), and loading the
                folder for inference then exports it in memory.
            **push_to_hub_kwargs: Passed to :meth:`push_to_hub`.

        Returns:
            The commit URL with ``push_to_hub=True``, else ``None``.

        Raises:
            InvalidArgumentError: If ``dtype`` is not a floating-point dtype.
            MissingDependencyError: If ``onnx`` is on and the ``onnx`` package is missing.
        """
        card = dict(model_card_kwargs or {})
        if card.get("name") is None:
            card["name"] = Path(save_directory).resolve().name
        chosen = config if config is not None else self._hub_mixin_config
        outer_config = self._saving_config
        # _save_pretrained writes config.json itself, atomically (the mixin writes it with
        # a plain write_text, which a crash can leave half written).
        self._saving_config = asdict(chosen) if is_dataclass(chosen) else dict(chosen)  # type: ignore[arg-type]
        try:
            with self._save_options(dtype, onnx):
                return super().save_pretrained(
                    Path(save_directory),
                    config=config,
                    repo_id=repo_id,
                    push_to_hub=push_to_hub,
                    model_card_kwargs=card,
                    **push_to_hub_kwargs,
                )
        finally:
            self._saving_config = outer_config

    def push_to_hub(
        self,
        repo_id: str,
        *,
        dtype: torch.dtype | str | None = None,
        onnx: bool | None = None,
        **kwargs: Any,
    ) -> str:
        """Upload the :meth:`save_pretrained` folder to the Hub (the mixin's ``push_to_hub``).

        The repository is created if needed; ``dtype`` and ``onnx`` are as for
        :meth:`save_pretrained`, the other arguments the mixin's (``config``,
        ``commit_message``, ``private``, ``token``, ``branch``, ``create_pr``,
        ``model_card_kwargs``...).
        """
        with self._save_options(dtype, onnx):
            return str(super().push_to_hub(repo_id, **kwargs))

    @contextlib.contextmanager
    def _save_options(self, dtype: torch.dtype | str | None, onnx: bool | None) -> Iterator[None]:
        """Hand ``dtype`` and ``onnx`` to :meth:`_save_pretrained` for one save (or upload)."""
        outer = self._saving
        before = outer or (torch.float32, True)
        chosen = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype or before[0]
        if chosen not in _DTYPES:
            raise InvalidArgumentError(
                f"dtype must be torch.float32, torch.float16 or torch.bfloat16 (or their "
                f"names), got {dtype!r}."
            )
        with_onnx = before[1] if onnx is None else bool(onnx)
        if with_onnx:
            try:
                require("onnx", "Writing model.onnx")
            except MissingDependencyError as error:
                raise MissingDependencyError(
                    f"{error} Or pass onnx=False to save without model.onnx (loading the "
                    "folder then needs torch)."
                ) from error
        self._saving = (chosen, with_onnx)
        try:
            yield
        finally:
            self._saving = outer

    def _save_pretrained(self, save_directory: Path) -> None:
        """Write ``model.safetensors`` and ``model.onnx`` (the mixin writes the rest)."""
        from safetensors.torch import save

        from .onnx import onnx_bytes

        if self._saving_config is not None:  # first: the mixin has just removed the old one
            text = json.dumps(self._saving_config, sort_keys=True, indent=2)
            atomic_write_bytes(save_directory / CONFIG_NAME, text.encode("utf-8"))
        dtype, with_onnx = self._saving or (torch.float32, True)
        state = {
            key: (tensor.to(dtype) if tensor.is_floating_point() else tensor)
            .detach()
            .to("cpu")
            .contiguous()
            for key, tensor in self.state_dict().items()
        }
        weights = save(state, metadata={"format": "pt"})
        graph = None
        if with_onnx:
            # The graph of the weights as saved (as loading the folder gives them).
            exported = copy.deepcopy(self).to(device="cpu", dtype=torch.float32)
            exported.load_state_dict(
                {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
            )
            sha256 = hashlib.sha256(weights).hexdigest()
            graph = onnx_bytes(exported, config=self.config, weights_sha256=sha256)
        atomic_write_bytes(save_directory / WEIGHTS_NAME, weights)
        if graph is not None:
            atomic_write_bytes(save_directory / ONNX_NAME, graph)
        else:
            (save_directory / ONNX_NAME).unlink(missing_ok=True)
        # A quantized copy of earlier weights no longer matches: quantize_folder makes anew.
        (save_directory / INT8_ONNX_NAME).unlink(missing_ok=True)
        # The mixin writes the card only where there is none: this one is made anew.
        (save_directory / MODEL_CARD_NAME).unlink(missing_ok=True)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The model card :meth:`save_pretrained` writes (:func:`model_card`).

        Args:
            *args: Unused (the mixin's signature).
            **kwargs: ``model_card_kwargs`` of :meth:`save_pretrained`: ``evaluation``,
                ``name`` and ``metadata`` as :func:`model_card` takes them.
        """
        return ModelCard(model_card(self.config, **kwargs))


def build_model(
    config: ModelConfig,
    *,
    weights: str | os.PathLike[str] | Mapping[str, torch.Tensor] | None = None,
    progress: bool = True,
) -> EmotionNet:
    """Build the model a :class:`ModelConfig` describes: the one builder of emotionnet models.

    The model (an :class:`EmotionNet`) takes a normalised ``float`` batch
    ``N x in_chans x H x W`` (48x48 for FER2013, see :func:`emotionnet.preprocessing.normalize`)
    and returns logits ``N x num_classes``.

    With ``weights="imagenet"`` the torchvision ``ResNet18_Weights.IMAGENET1K_V1`` weights are
    loaded through torchvision's weights API (downloaded once into
    ``$TORCH_HOME/hub/checkpoints``). The RGB first-conv kernels are summed for one input
    channel (timm's ``adapt_input_conv`` rule). For the ``"small"`` and ``"middle"`` stems,
    whose first conv is 3x3, the 7x7 kernels are resampled to 3x3 by area (each new tap
    sums the old taps it covers, fractionally at its edges), which keeps each filter's total
    weight and so its response to smooth input: the pretrained ``bn1`` statistics still fit.
    ``fc`` is freshly initialised unless ``num_classes`` is 1000.

    Args:
        config: The model config (stem, classes, channels, dropout, ...).
        weights: ``None`` for random initialisation, ``"imagenet"``, or the weights for
            exactly this model: the path of a ``.safetensors`` or ``.pt``/``.pth`` state dict
            (an emotionnet training checkpoint works too), or a state dict. Loaded strictly
            by :func:`~emotionnet.models.load_weights`.
        progress: Show a download progress bar for ``"imagenet"``.

    Returns:
        The model, in training mode.

    Raises:
        InvalidArgumentError: If ``config`` is not a :class:`ModelConfig` or ``weights`` has
            an unsupported type.
        WeightsNotFoundError: If the weights file is missing, or the ImageNet weights are not
            cached and cannot be downloaded (the message names the cache file to place).
        ModelLoadError: If the weights cannot be read or do not fit the model.

    Example:
        >>> import torch
        >>> model = build_model(ModelConfig(stem="small", dropout=0.2)).eval()
        >>> model(torch.zeros(1, 1, 48, 48)).shape
        torch.Size([1, 7])
        >>> model.conv1
        Conv2d(1, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
        >>> build_model(ModelConfig(stem="imagenet")).conv1.kernel_size
        (7, 7)
    """
    if not isinstance(config, ModelConfig):
        raise InvalidArgumentError(
            f"build_model expects a ModelConfig, got {type(config).__name__}; load one with "
            "ModelConfig.load(path) or ModelConfig.from_dict(d)."
        )
    if weights is not None and not isinstance(weights, (str, os.PathLike, Mapping)):
        raise InvalidArgumentError(
            f"weights must be None, 'imagenet' or a path to a state dict (or a state dict), "
            f"got {weights!r}."
        )
    model = EmotionNet(**config.to_dict())
    if isinstance(weights, str) and weights == "imagenet":
        _apply_imagenet_weights(model, config.in_chans, progress)
    elif weights is not None:
        load_weights(model, weights)
    return model
