"""Train emotion classifiers: :class:`TrainConfig`, :class:`Trainer`, :class:`History`.

The trainer takes a model and two data sets (anything :func:`emotionnet.data.as_tensors`
reads), and runs a plain PyTorch loop with everything a FER2013 recipe needs: SGD (Nesterov)
or AdamW, warm-up + cosine, one-cycle or plateau schedules, label smoothing, class weights,
mixup/cutmix, gradient clipping, bf16 autocast wherever the hardware computes bf16 natively
(CUDA GPUs, CPUs with AVX512-BF16 or AMX), ``channels_last``, validation every epoch,
best-checkpoint selection, early stopping and exact resume. The defaults are the fast
settings on both CPU and GPU (see ``benchmarks/bench_train_step.py``).

Data path:
    Images stay ``uint8`` until a batch is built. A batch is built the same way everywhere:
    the epoch's permutation is sliced, the images are augmented by
    :func:`~emotionnet.augmentation.augment_batch`, normalised, and optionally mixed by
    :func:`~emotionnet.augmentation.mix_batch`. By default the whole training set lives on
    the training device and batches are built there, in the training process (a DataLoader
    feeding 48x48 images would be the bottleneck on a GPU, and on the CPU augmenting a batch
    costs about 2% of its training step); the same batch builder can also run in DataLoader
    worker processes (``data_on_device=False``, ``num_workers > 0``). Every random choice of
    batch ``b`` in epoch ``e`` on rank ``r`` comes from a generator seeded with
    ``(seed, e, r, b)``, so the result does not depend on the number of workers or on where
    the batch was built.

Checkpoints (``checkpoint_dir``):
    ``last.ckpt`` (resume state, see :func:`load_checkpoint`), ``best.safetensors`` (the
    weights with the best monitored metric), ``config.json`` (the
    :class:`~emotionnet.models.ModelConfig`, when given), ``train_config.json``,
    ``history.json`` and ``history.csv``. Every file is written to a temporary file in the
    same folder, flushed to disk and renamed over the old one, so a kill at any moment leaves
    the previous version intact (the next write removes a killed write's temporary file).
    ``last.ckpt`` and ``best.safetensors`` carry a SHA-256 digest of their content, written
    with them; a file that no longer matches it (a flipped bit, a truncated copy) is refused
    with :class:`~emotionnet.errors.CheckpointError` instead of being resumed from or loaded.

Non-finite losses:
    A step whose loss is NaN or infinite (or, with ``grad_clip``, whose gradient norm is) is
    skipped: neither the weights, the optimizer, the batch-norm statistics nor the weight
    average see it. More than :attr:`TrainConfig.max_nonfinite_steps` such steps in a row stop
    the run with :class:`~emotionnet.errors.NonFiniteLossError`; the last checkpoint is the
    one written before them.

Distributed training:
    Started with ``torchrun``, the trainer reads ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``,
    initialises the process group (NCCL on CUDA, Gloo on the CPU), wraps the model in
    :class:`~torch.nn.parallel.DistributedDataParallel` and gives each rank its share of the
    epoch's permutation (padded to equal length, as ``DistributedSampler`` does).
    ``batch_size`` is per process. Validation runs on rank 0 and its metrics are broadcast;
    only rank 0 writes files, logs and shows progress bars.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from emotionnet.training import TrainConfig, Trainer
    >>> images = torch.randint(0, 256, (32, 48, 48), dtype=torch.uint8)
    >>> targets = torch.arange(32) % 7
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7))
    >>> config = TrainConfig(max_epochs=2, batch_size=16, lr=0.01, progress=False)
    >>> history = Trainer(model, (images, targets), (images, targets), config).fit()
    >>> len(history), sorted(history[-1])[:3]
    (2, ['epoch', 'images_per_sec', 'lr'])
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import io
import json
import logging
import math
import os
import random
import string
import struct
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any, Final, Literal, cast

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, Sampler

from ._atomic import atomic_write, atomic_write_bytes, atomic_write_text
from ._checks import check_choice
from ._config import config_values
from ._io import open_regular_file, read_text_file
from .augmentation import AugmentConfig, augment_batch, mix_batch
from .errors import (
    CheckpointError,
    InvalidArgumentError,
    MissingDependencyError,
    NonFiniteLossError,
    UnsupportedInputError,
)
from .labels import EMOTIONS
from .models import ModelConfig
from .preprocessing import FER2013_MEAN, FER2013_STD, normalize

__all__ = [
    "AMP_MODES",
    "HISTORY_COLUMNS",
    "MONITORS",
    "ONE_CLASS_WARNING_SHARE",
    "OPTIMIZERS",
    "SCHEDULES",
    "Callback",
    "History",
    "TrainConfig",
    "Trainer",
    "bf16_supported",
    "load_checkpoint",
    "read_config_file",
]

logger = logging.getLogger(__name__)

OPTIMIZERS: Final[tuple[str, ...]] = ("sgd", "adamw")
"""Valid values of :attr:`TrainConfig.optimizer`."""

SCHEDULES: Final[tuple[str, ...]] = ("cosine", "onecycle", "plateau", "constant")
"""Valid values of :attr:`TrainConfig.schedule`."""

AMP_MODES: Final[tuple[str, ...]] = ("auto", "bf16", "fp16", "off")
"""Valid values of :attr:`TrainConfig.amp`."""

MONITORS: Final[dict[str, str]] = {
    "val_accuracy": "max",
    "val_macro_f1": "max",
    "val_loss": "min",
    "train_loss": "min",
}
"""Metrics :attr:`TrainConfig.monitor` can select, with the direction that is better."""

HISTORY_COLUMNS: Final[tuple[str, ...]] = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_macro_f1",
    "lr",
    "images_per_sec",
    "seconds",
)
"""Columns of each :class:`History` row (``val_*`` are ``None`` without a validation set)."""

ONE_CLASS_WARNING_SHARE: Final[float] = 0.9
"""When the trained model predicts one class for at least this share of the validation set,
:meth:`Trainer.fit` logs a warning (``emotionnet.training`` logger, level ``WARNING``).

Such a model has not learnt to tell the classes apart: FER2013's largest class, ``happy``, is
a quarter of the faces, so a model that answers ``happy`` for nine faces in ten is stuck on
the class prior (a run too short for its learning-rate warm-up, a learning rate too high, or
wrong labels). The check uses the validation predictions of the best epoch, the weights
:meth:`Trainer.load_best` restores (else of the last epoch validated)."""

_MONITOR_ALIASES: Final[dict[str, str]] = {
    "accuracy": "val_accuracy",
    "macro_f1": "val_macro_f1",
    "loss": "val_loss",
}
CHECKPOINT_FORMAT: Final[str] = "emotionnet.training-checkpoint"
CHECKPOINT_VERSION: Final[int] = 1
LAST_CHECKPOINT: Final[str] = "last.ckpt"
BEST_WEIGHTS: Final[str] = "best.safetensors"
# Differences in these settings are expected when resuming and not worth a warning.
_RESUME_FREE_KEYS: Final[frozenset[str]] = frozenset(
    {
        "checkpoint_dir",
        "progress",
        "num_workers",
        "num_threads",
        "device",
        "max_epochs",
        "compile",
        "max_nonfinite_steps",
    }
)
# Keys every checkpoint holds, with their types (the others are optional, see load_checkpoint).
_CHECKPOINT_KEYS: Final[dict[str, type]] = {
    "epoch": int,
    "global_step": int,
    "model": dict,
    "optimizer": dict,
    "scheduler": dict,
    "rng": list,
    "history": list,
    "config": dict,
    "best": dict,
    "bad_epochs": int,
}
# last.ckpt is the zip file torch.save writes, with a SHA-256 digest of everything before the
# zip comment in the comment: any zip reader (torch.load too) still reads it.
_ZIP_END: Final[bytes] = b"PK\x05\x06"  # signature of the zip end-of-central-directory record
_ZIP_END_SIZE: Final[int] = 22  # that record without its comment
_DIGEST_TAG: Final[bytes] = b"emotionnet-sha256:"
_DIGEST_COMMENT_SIZE: Final[int] = len(_DIGEST_TAG) + 64
# best.safetensors holds the SHA-256 of its tensor data under this metadata key.
_WEIGHTS_DIGEST_KEY: Final[str] = "emotionnet.sha256"
_READ_CHUNK: Final[int] = 1 << 20
# Schedules whose LR at each step depends on the run's length: a resumed run must keep it.
_LENGTH_BOUND_SCHEDULES: Final[frozenset[str]] = frozenset({"cosine", "onecycle"})


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def bf16_supported(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes in bfloat16 natively, so bf16 autocast pays off there.

    On CUDA this is :func:`torch.cuda.is_bf16_supported`. On the CPU it is what PyTorch's
    own CPU feature detection reports: AVX512-BF16 or AMX instructions (recent Intel Xeon,
    AMD Zen 4 and later). Elsewhere (other CPUs, ``mps``) it is ``False``: bf16 would be
    emulated there and run slower than float32.

    Args:
        device: A device or device string.

    Returns:
        ``True`` if bf16 autocast is fast on ``device``.

    Example:
        >>> bf16_supported("cpu") in (True, False)
        True
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def _fail(name: str, value: object, expected: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{name} must be {expected}, got {value!r}.")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _choice(name: str, value: object, valid: Iterable[str]) -> str:
    return str(check_choice(name, value, valid))


def _toml_loads(text: str, source: Path) -> object:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    try:  # pragma: no cover - Python 3.10 only
        tomli = importlib.import_module("tomli")
    except ModuleNotFoundError as exc:  # pragma: no cover
        raise MissingDependencyError(
            f"Reading {source} needs a TOML parser: Python 3.11+ has one built in; on "
            "Python 3.10 run `pip install tomli`, or use a JSON config."
        ) from exc
    return cast(object, tomli.loads(text))  # pragma: no cover


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON or TOML config file into a dict.

    TOML needs Python 3.11+ (``tomllib``) or the ``tomli`` package on 3.10. Only a regular
    file is opened: a named pipe, a device or a folder is refused at once (reading a pipe
    would wait for a writer).

    Args:
        path: A ``.json`` or ``.toml`` file, UTF-8 encoded.

    Returns:
        The parsed top-level table.

    Raises:
        FileNotFoundError: If the file does not exist.
        InvalidArgumentError: If the suffix is neither ``.json`` nor ``.toml``, the path is
            not a regular file or cannot be read, the file is larger than 16 MiB or not
            UTF-8, or it does not parse to a table.
        MissingDependencyError: For TOML on Python 3.10 without ``tomli``.

    Example:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = pathlib.Path(folder, "train.json")
        ...     _ = path.write_text('{"max_epochs": 3}')
        ...     read_config_file(path)
        {'max_epochs': 3}
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise InvalidArgumentError(
            f"Config file {target} has the suffix {target.suffix!r}; use a .json or .toml file."
        )
    text = read_text_file(target, "config file")
    data: object
    try:
        data = json.loads(text) if suffix == ".json" else _toml_loads(text, target)
    except ValueError as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise InvalidArgumentError(f"Could not parse {target}: {exc}.") from exc
    except RecursionError as exc:
        raise InvalidArgumentError(
            f"Could not parse {target}: it is nested too deeply to be a config file."
        ) from exc
    if not isinstance(data, dict):
        raise InvalidArgumentError(
            f"{target} must hold a table of settings, got {type(data).__name__}."
        )
    return data


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a training run; JSON/TOML round-trippable.

    Attributes:
        max_epochs: Number of epochs. The cosine and one-cycle schedules span them, so a
            resumed run must keep the value (see :meth:`Trainer.fit`).
        batch_size: Images per optimizer step and process.
        optimizer: ``"sgd"`` (with Nesterov momentum when ``momentum > 0``) or ``"adamw"``.
        lr: Peak learning rate.
        momentum: SGD momentum (ignored by AdamW).
        weight_decay: Weight decay.
        decay_norm_and_bias: Also decay 1-D parameters (norm weights, biases); off by default,
            as in most ResNet recipes.
        schedule: ``"cosine"`` (linear warm-up, then cosine to ``min_lr``), ``"onecycle"``
            (:class:`~torch.optim.lr_scheduler.OneCycleLR`, warm-up fraction
            ``warmup_epochs / max_epochs`` or 0.3 when ``warmup_epochs`` is 0; a positive
            warm-up must span at least 2 optimizer steps),
            ``"plateau"`` (linear warm-up, then the LR is multiplied by ``plateau_factor``
            when the monitored metric has not improved for ``plateau_patience`` epochs) or
            ``"constant"`` (linear warm-up, then ``lr``). Warm-up and cosine step per batch.
        warmup_epochs: Length of the linear warm-up (may be fractional).
        min_lr: Final LR of the cosine schedule, lower bound of the plateau schedule.
        plateau_factor: LR factor of the plateau schedule.
        plateau_patience: Epochs without improvement before the plateau schedule decays.
        label_smoothing: Label smoothing of the cross-entropy loss.
        class_weights: ``None``, a method name of
            :func:`emotionnet.class_weights.compute_class_weights` (e.g. ``"balanced"``),
            computed from the training labels, or one weight per class.
        mixup_alpha: Mixup Beta parameter; 0 disables mixup.
        cutmix_alpha: Cutmix Beta parameter; 0 disables cutmix.
        mix_prob: Probability that a batch is mixed (when an alpha is positive).
        mix_switch_prob: Probability of cutmix rather than mixup when both are enabled.
        mix_off_epochs: Train the last this many epochs without mixup and cutmix, so the
            model ends on the images as they are.
        grad_clip: Maximum gradient norm, or ``None``.
        max_nonfinite_steps: How many optimizer steps in a row may have a NaN or infinite
            loss (or, with ``grad_clip``, gradient norm); such steps are skipped, as if their
            batch did not exist (the LR schedule still advances). One more stops the run with
            :class:`~emotionnet.errors.NonFiniteLossError`, leaving the last checkpoint as it
            was; 0 stops at the first one. A diverged run, whose every step is non-finite,
            thus stops within ``max_nonfinite_steps + 1`` steps. (Under ``amp="fp16"`` the
            gradient scaler skips steps with overflowing gradients itself; those do not
            count.)
        ema_decay: Keep an exponential moving average of the weights and the batch-norm
            buffers, updated after every optimizer step with this decay (``0.999`` averages
            over about the last 1,000 steps); validation, best-checkpoint selection,
            ``best.safetensors`` and :meth:`Trainer.load_best` then use the averaged model.
            ``None`` (the default) keeps no average. Built on
            :class:`torch.optim.swa_utils.AveragedModel`.
        seed: Seed of every random choice of the run (a non-negative integer).
        device: ``"auto"`` (CUDA when available, else CPU), or a torch device string.
        num_workers: DataLoader worker processes that build batches when
            ``data_on_device`` is off; ``None`` picks ``min(4, cpu_count // 4)`` then, and 0
            (batches built in the training process) otherwise.
        num_threads: Intra-op CPU threads while :meth:`Trainer.fit` runs
            (:func:`torch.set_num_threads`, restored afterwards); ``None`` keeps PyTorch's
            setting, one thread per physical core. On a machine where other processes keep
            cores busy, fewer threads than cores train faster (see the training guide).
        data_on_device: Keep the training set on the training device and build each batch
            there in the training process (on the CPU: no DataLoader workers); ``None``
            means on unless ``num_workers`` asks for worker processes. On is the fastest
            on CUDA and, measured by ``benchmarks/bench_train_step.py``, on the CPU too.
        amp: ``"auto"`` (bf16 autocast where the device computes bf16 natively, see
            :func:`bf16_supported`: CUDA GPUs with bf16, CPUs with AVX512-BF16 or AMX;
            float32 elsewhere), ``"bf16"``, ``"fp16"`` (CUDA only, with a gradient scaler)
            or ``"off"``.
        channels_last: Use the ``channels_last`` memory format; ``None`` means on (on the
            CPU it measures faster than NCHW in float32 and the same under bf16).
        compile: Train through :func:`torch.compile`.
        augment: Per-image augmentation, see :class:`~emotionnet.augmentation.AugmentConfig`.
        monitor: Metric that selects the best checkpoint, drives early stopping and the
            plateau schedule: one of :data:`MONITORS` (``"accuracy"``, ``"macro_f1"`` and
            ``"loss"`` are short for the ``val_`` ones).
        early_stopping_patience: Stop after this many epochs without improvement; ``None``
            never stops early.
        checkpoint_dir: Folder for checkpoints and logs; ``None`` writes nothing.
        save_every: Write ``last.ckpt`` every this many epochs (and always at the end).
        progress: Show tqdm progress bars.
        eval_batch_size: Images per forward pass in validation.
        eval_tta: Test-time augmentation in validation (``tta`` of
            :func:`emotionnet.inference.predict_logits`): ``False``, ``True`` or one of
            :data:`emotionnet.inference.TTA_MODES`.

    Example:
        >>> config = TrainConfig(max_epochs=5, monitor="macro_f1")
        >>> config.monitor
        'val_macro_f1'
        >>> TrainConfig.from_dict(config.to_dict()) == config
        True
    """

    max_epochs: int = 30
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = False
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    min_lr: float = 0.0
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    label_smoothing: float = 0.0
    class_weights: str | Sequence[float] | None = None
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    mix_switch_prob: float = 0.5
    mix_off_epochs: int = 0
    grad_clip: float | None = None
    max_nonfinite_steps: int = 3
    ema_decay: float | None = None
    seed: int = 0
    device: str = "auto"
    num_workers: int | None = None
    num_threads: int | None = None
    data_on_device: bool | None = None
    amp: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    monitor: str = "val_accuracy"
    early_stopping_patience: int | None = None
    checkpoint_dir: str | None = None
    save_every: int = 1
    progress: bool = True
    eval_batch_size: int = 256
    eval_tta: bool | str = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("max_epochs", "batch_size", "save_every", "eval_batch_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise _fail(name, value, "a positive integer")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("amp", self.amp, AMP_MODES)
        if not _is_number(self.lr) or not self.lr > 0:
            raise _fail("lr", self.lr, "a positive number")
        for name in ("momentum", "weight_decay", "min_lr", "warmup_epochs"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise _fail(name, value, "a number >= 0")
            set_(self, name, float(value))
        set_(self, "lr", float(self.lr))
        if self.momentum >= 1:
            raise _fail("momentum", self.momentum, "in [0, 1)")
        if self.schedule == "onecycle" and self.warmup_epochs >= self.max_epochs:
            raise _fail(
                "warmup_epochs",
                self.warmup_epochs,
                f"shorter than max_epochs ({self.max_epochs}) for the one-cycle schedule",
            )
        if not _is_number(self.plateau_factor) or not 0 < self.plateau_factor < 1:
            raise _fail("plateau_factor", self.plateau_factor, "in (0, 1)")
        set_(self, "plateau_factor", float(self.plateau_factor))
        if not _is_int(self.plateau_patience) or self.plateau_patience < 0:
            raise _fail("plateau_patience", self.plateau_patience, "an integer >= 0")
        if not _is_number(self.label_smoothing) or not 0 <= self.label_smoothing < 1:
            raise _fail("label_smoothing", self.label_smoothing, "in [0, 1)")
        set_(self, "label_smoothing", float(self.label_smoothing))
        weights = self.class_weights
        if isinstance(weights, (list, tuple)):
            if not weights or not all(_is_number(w) and w >= 0 for w in weights):
                raise _fail("class_weights", weights, "a list of non-negative numbers")
            set_(self, "class_weights", tuple(float(w) for w in weights))
        elif isinstance(weights, str):
            from .class_weights import METHODS

            _choice("class_weights", weights, METHODS)
        elif weights is not None:
            raise _fail("class_weights", weights, "None, a method name or one weight per class")
        for name in ("mixup_alpha", "cutmix_alpha"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise _fail(name, value, "a number >= 0 (0 disables it)")
            set_(self, name, float(value))
        for name in ("mix_prob", "mix_switch_prob"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value <= 1:
                raise _fail(name, value, "a probability in [0, 1]")
            set_(self, name, float(value))
        if not _is_int(self.mix_off_epochs) or not 0 <= self.mix_off_epochs <= self.max_epochs:
            raise _fail(
                "mix_off_epochs", self.mix_off_epochs, f"an integer in [0, {self.max_epochs}]"
            )
        if self.ema_decay is not None:
            if not _is_number(self.ema_decay) or not 0 < self.ema_decay < 1:
                raise _fail("ema_decay", self.ema_decay, "None or a number in (0, 1), e.g. 0.999")
            set_(self, "ema_decay", float(self.ema_decay))
        if self.grad_clip is not None:
            if not _is_number(self.grad_clip) or not self.grad_clip > 0:
                raise _fail("grad_clip", self.grad_clip, "None or a positive number")
            set_(self, "grad_clip", float(self.grad_clip))
        if not _is_int(self.max_nonfinite_steps) or self.max_nonfinite_steps < 0:
            raise _fail(
                "max_nonfinite_steps", self.max_nonfinite_steps, "an integer >= 0 (0 stops at once)"
            )
        if not _is_int(self.seed) or self.seed < 0:
            raise _fail("seed", self.seed, "a non-negative integer")
        if not isinstance(self.device, str):
            set_(self, "device", str(self.device))
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError as exc:
                raise _fail("device", self.device, "'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
        if self.num_workers is not None and (not _is_int(self.num_workers) or self.num_workers < 0):
            raise _fail("num_workers", self.num_workers, "None or an integer >= 0")
        if self.num_threads is not None and (not _is_int(self.num_threads) or self.num_threads < 1):
            raise _fail("num_threads", self.num_threads, "None or a positive integer")
        for name in ("data_on_device", "channels_last"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise _fail(name, value, "None (automatic), True or False")
        if self.data_on_device and self.num_workers:
            raise InvalidArgumentError(
                f"num_workers={self.num_workers} builds batches in worker processes, but "
                "data_on_device=True builds them in the training process; set num_workers=0 "
                "(or None), or data_on_device=False."
            )
        for name in ("compile", "decay_norm_and_bias", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise _fail(name, getattr(self, name), "True or False")
        if isinstance(self.augment, Mapping):
            set_(self, "augment", AugmentConfig.from_dict(self.augment))
        elif not isinstance(self.augment, AugmentConfig):
            raise _fail("augment", self.augment, "an AugmentConfig or a table of its fields")
        monitor = _MONITOR_ALIASES.get(str(self.monitor), self.monitor)
        set_(self, "monitor", _choice("monitor", monitor, [*MONITORS, *_MONITOR_ALIASES]))
        patience = self.early_stopping_patience
        if patience is not None and (not _is_int(patience) or patience < 1):
            raise _fail("early_stopping_patience", patience, "None or a positive integer")
        if self.checkpoint_dir is not None:
            if not isinstance(self.checkpoint_dir, (str, os.PathLike)):
                raise _fail("checkpoint_dir", self.checkpoint_dir, "None or a folder path")
            set_(self, "checkpoint_dir", os.fspath(self.checkpoint_dir))
        if not isinstance(self.eval_tta, (bool, str)):
            raise _fail("eval_tta", self.eval_tta, "False, True or a TTA mode name")
        if isinstance(self.eval_tta, str):
            from .inference import TTA_MODES

            if self.eval_tta not in TTA_MODES:
                raise InvalidArgumentError(
                    f"Unknown value {self.eval_tta!r} for argument eval_tta. Valid values are "
                    f"False, True, {', '.join(repr(m) for m in TTA_MODES)}."
                )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict of the settings (``augment`` as a nested dict).

        Returns:
            Setting names to values.

        Example:
            >>> TrainConfig().to_dict()["augment"]["hflip"]
            0.5
        """
        result: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, AugmentConfig):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            result[item.name] = value
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build a config from a dict such as :meth:`to_dict` or a config file gives.

        ``epochs`` is accepted as another name for ``max_epochs``.

        Args:
            data: Setting names to values; missing settings take their defaults.

        Returns:
            The config.

        Raises:
            InvalidArgumentError: If ``data`` has unknown keys or invalid values.

        Example:
            >>> TrainConfig.from_dict({"epochs": 3, "augment": {"hflip": 0.0}}).max_epochs
            3
        """
        values = config_values(cls, data, what="training config", aliases={"epochs": "max_epochs"})
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, section: str | None = None) -> TrainConfig:
        r"""Read a config from a JSON or TOML file.

        Args:
            path: A ``.json`` or ``.toml`` file.
            section: Read this table of the file (e.g. ``"train"`` in a recipe file that also
                holds model and data settings); ``None`` reads the top level.

        Returns:
            The config.

        Raises:
            InvalidArgumentError: If the file, the section or a setting is invalid.
            MissingDependencyError: For TOML on Python 3.10 without ``tomli``.

        Example:
            >>> import tempfile, pathlib
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     path = pathlib.Path(folder, "recipe.toml")
            ...     _ = path.write_text("[train]\nmax_epochs = 4\n[train.augment]\nhflip = 0\n")
            ...     config = TrainConfig.from_file(path, section="train")
            >>> config.max_epochs, config.augment.hflip
            (4, 0.0)
        """
        data = read_config_file(path)
        if section is not None:
            table = data.get(section)
            if not isinstance(table, Mapping):
                raise InvalidArgumentError(
                    f"{path} has no table [{section}]; its top-level keys are {sorted(data)}."
                )
            data = dict(table)
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the config as JSON.

        Args:
            path: The ``.json`` file to write (parent folders are created).

        Returns:
            The path written.

        Example:
            >>> import tempfile, pathlib
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     path = TrainConfig(lr=0.05).save(pathlib.Path(folder, "train.json"))
            ...     TrainConfig.from_file(path).lr
            0.05
        """
        return _write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @property
    def monitor_mode(self) -> str:
        """``"max"`` or ``"min"``: which direction of :attr:`monitor` is better."""
        return MONITORS[self.monitor]


# --------------------------------------------------------------------------------------------
# History and callbacks
# --------------------------------------------------------------------------------------------

Row = dict[str, Any]


class History(Sequence[Row]):
    """Per-epoch metrics of a run: a sequence of dict rows with :data:`HISTORY_COLUMNS`.

    Args:
        rows: Initial rows.

    Example:
        >>> history = History([{"epoch": 1, "train_loss": 1.5, "val_accuracy": 0.4}])
        >>> history.column("train_loss")
        [1.5]
        >>> print(history.to_csv().splitlines()[0])
        epoch,train_loss,val_loss,val_accuracy,val_macro_f1,lr,images_per_sec,seconds
    """

    def __init__(self, rows: Iterable[Mapping[str, Any]] = ()) -> None:
        self._rows: list[Row] = [dict(row) for row in rows]

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> Row:  # type: ignore[override]
        return self._rows[index]

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, History) and self._rows == other._rows

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"History({len(self)} epochs)"

    @property
    def rows(self) -> list[Row]:
        """The rows as a list of dicts (a copy)."""
        return [dict(row) for row in self._rows]

    def append(self, row: Mapping[str, Any]) -> None:
        """Add the row of one epoch.

        Args:
            row: Column names to values.
        """
        self._rows.append(dict(row))

    def column(self, name: str) -> list[Any]:
        """Return one column's values, ``None`` where a row lacks it.

        Args:
            name: Column name, e.g. ``"val_accuracy"``.

        Returns:
            One value per epoch.
        """
        return [row.get(name) for row in self._rows]

    def best(self, monitor: str = "val_accuracy") -> Row | None:
        """Return the row with the best value of a metric (the first one on ties).

        Args:
            monitor: One of :data:`MONITORS` or its short name.

        Returns:
            The row, or ``None`` when no row has the metric.

        Raises:
            InvalidArgumentError: If ``monitor`` is unknown.

        Example:
            >>> History([{"epoch": 1, "val_loss": 0.9}, {"epoch": 2, "val_loss": 0.7}]).best(
            ...     "loss")["epoch"]
            2
        """
        name = _MONITOR_ALIASES.get(monitor, monitor)
        _choice("monitor", name, MONITORS)
        rows = [row for row in self._rows if row.get(name) is not None]
        if not rows:
            return None
        sign = 1.0 if MONITORS[name] == "max" else -1.0
        best = rows[0]
        for row in rows[1:]:
            if sign * row[name] > sign * best[name]:
                best = row
        return best

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """Serialise the rows as a JSON list, optionally writing it to ``path`` atomically.

        Args:
            path: File to write, or ``None``.

        Returns:
            The JSON text.
        """
        text = json.dumps(self._rows, indent=2) + "\n"
        if path is not None:
            _write_text(Path(path), text)
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike[str]) -> History:
        """Read rows written by :meth:`to_json`.

        Args:
            source: A JSON file path, or the JSON text itself.

        Returns:
            The history.

        Raises:
            FileNotFoundError: If ``source`` names a file that does not exist.
            InvalidArgumentError: If the file cannot be read, is not UTF-8, or the JSON is
                not a list of objects.

        Example:
            >>> History.from_json('[{"epoch": 1}]')[0]
            {'epoch': 1}
        """
        text = str(source)
        if not text.lstrip().startswith("["):
            text = read_text_file(Path(source), "history file")
        try:
            rows = json.loads(text)
        except (ValueError, RecursionError) as exc:
            reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise InvalidArgumentError(f"Could not parse the history JSON: {reason}.") from exc
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise InvalidArgumentError("A history must be a JSON list of objects (one per epoch).")
        return cls(rows)

    def to_csv(self, path: str | os.PathLike[str] | None = None) -> str:
        """Serialise the rows as CSV, optionally writing it to ``path`` atomically.

        Columns are :data:`HISTORY_COLUMNS` followed by any extra keys in first-seen order;
        missing values are empty cells.

        Args:
            path: File to write, or ``None``.

        Returns:
            The CSV text.
        """
        columns = list(HISTORY_COLUMNS)
        for row in self._rows:
            columns.extend(key for key in row if key not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in self._rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        text = buffer.getvalue()
        if path is not None:
            _write_text(Path(path), text)
        return text


class Callback:
    """Base class of trainer callbacks; override the hooks you need.

    Any object with some of these methods works as a callback too. Hooks run on every rank
    (check ``trainer.is_main_process`` before writing files). Setting
    ``trainer.should_stop = True`` ends training after the current epoch.

    Example:
        >>> class StopAt(Callback):
        ...     def on_epoch_end(self, trainer, row):
        ...         trainer.should_stop = row["epoch"] >= 2
    """

    def on_fit_start(self, trainer: Trainer) -> None:
        """Called once before the first epoch (after a resume is restored)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Called before each epoch; ``epoch`` counts from 1."""

    def on_epoch_end(self, trainer: Trainer, row: Row) -> None:
        """Called after each epoch's validation and checkpoint with its history row."""

    def on_fit_end(self, trainer: Trainer, history: History) -> None:
        """Called once after training ends normally."""


# --------------------------------------------------------------------------------------------
# Files and checkpoints
# --------------------------------------------------------------------------------------------


def _write_text(path: Path, text: str) -> Path:
    """Write ``text`` atomically, creating the parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, text)


class _DigestWriter:
    """The file object :func:`torch.save` writes ``last.ckpt`` through.

    The bytes go on to ``handle`` and into a SHA-256 digest, except the last
    :data:`_ZIP_END_SIZE`, held back until :meth:`finish` has checked that they are the zip
    end record: its comment length is then set and the digest appended as the comment.
    """

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._digest = hashlib.sha256()
        self._tail = b""

    def _emit(self, chunk: bytes | memoryview) -> None:
        if len(chunk):
            self._digest.update(chunk)
            self._handle.write(chunk)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if view.nbytes >= _ZIP_END_SIZE:
            self._emit(self._tail)
            self._emit(view[:-_ZIP_END_SIZE])
            self._tail = bytes(view[-_ZIP_END_SIZE:])
        else:
            joined = self._tail + bytes(view)
            self._emit(joined[:-_ZIP_END_SIZE])
            self._tail = joined[-_ZIP_END_SIZE:]
        return view.nbytes

    def flush(self) -> None:
        self._handle.flush()

    def finish(self) -> None:
        tail = self._tail
        if len(tail) != _ZIP_END_SIZE or not tail.startswith(_ZIP_END) or tail[-2:] != b"\0\0":
            raise CheckpointError(
                "torch.save did not end the checkpoint with a plain zip end record, so no "
                "integrity digest can be added; this torch version is not supported by this "
                "emotionnet."
            )
        self._emit(tail[:-2])  # the digest covers everything up to the comment length
        comment = _DIGEST_TAG + self._digest.hexdigest().encode("ascii")
        self._handle.write(struct.pack("<H", len(comment)) + comment)


def _save_checkpoint_file(state: Mapping[str, Any], handle: IO[bytes]) -> None:
    """Write ``state`` with :func:`torch.save` and its SHA-256 digest to ``handle``."""
    writer = _DigestWriter(handle)
    torch.save(state, cast(Any, writer))
    writer.finish()


def _corrupt(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(
        f"The checkpoint {path} is corrupt: {reason}. Resuming from it would continue from "
        "damaged weights, so it is refused. Delete it (or move it away) and resume from a copy "
        f"you trust, or start afresh (resume=False), for example from the weights in "
        f"{BEST_WEIGHTS}."
    )


def _check_checkpoint_digest(handle: IO[bytes], path: Path) -> bool:
    """Check ``last.ckpt``'s digest: ``True`` if it matches, ``False`` for a file without one.

    Raises:
        CheckpointError: If the file does not match its digest, or ends neither in a digest
            nor in the plain zip end record of a checkpoint written before digests.
    """
    size = os.fstat(handle.fileno()).st_size
    if size >= _ZIP_END_SIZE:
        handle.seek(size - _ZIP_END_SIZE)
        end = handle.read(_ZIP_END_SIZE)
        if end.startswith(_ZIP_END) and end[-2:] == b"\0\0":
            return False  # written by an emotionnet version without digests
    trailer_size = _ZIP_END_SIZE + _DIGEST_COMMENT_SIZE
    if size < trailer_size:
        raise _corrupt(path, f"it is only {size} bytes long (truncated)")
    handle.seek(size - trailer_size)
    trailer = handle.read(trailer_size)
    comment = trailer[_ZIP_END_SIZE:]
    expected = comment[len(_DIGEST_TAG) :].decode("ascii", "replace")
    if (
        not trailer.startswith(_ZIP_END)
        or struct.unpack("<H", trailer[_ZIP_END_SIZE - 2 : _ZIP_END_SIZE])[0]
        != _DIGEST_COMMENT_SIZE
        or not comment.startswith(_DIGEST_TAG)
        or not set(expected) <= set(string.hexdigits.lower())
    ):
        raise _corrupt(path, "its end (the zip end record and the SHA-256 digest) is damaged")
    digest = hashlib.sha256()
    handle.seek(0)
    remaining = size - _DIGEST_COMMENT_SIZE - 2
    while remaining > 0:
        chunk = handle.read(min(_READ_CHUNK, remaining))
        if not chunk:
            raise _corrupt(path, "it changed while it was read")
        digest.update(chunk)
        remaining -= len(chunk)
    if digest.hexdigest() != expected:
        raise _corrupt(
            path,
            f"its content does not match the SHA-256 digest written with it (expected "
            f"{expected[:12]}..., found {digest.hexdigest()[:12]}...)",
        )
    return True


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a training checkpoint written by :class:`Trainer` (``last.ckpt``).

    The file is first checked against the SHA-256 digest written with it (the zip comment
    of the file :func:`torch.save` writes), so a flipped bit or a truncated copy is refused
    rather than resumed from. Checkpoints written by earlier emotionnet versions, which
    have no digest, still load, with a logged warning. Loading uses
    ``torch.load(weights_only=True)``: a checkpoint holds only tensors and plain
    containers, and no code in it is ever run.

    Its keys: ``format``, ``version``, ``epoch`` (completed epochs),
    ``global_step``, ``model`` (state dict), ``optimizer``, ``scheduler``, ``scaler`` (or
    ``None``), ``ema`` (the weight average's state dict, or ``None``; older checkpoints lack
    it), ``rng`` (per-rank torch/CUDA/numpy/python RNG states as tensors), ``history``
    (list of rows), ``config`` (:meth:`TrainConfig.to_dict`), ``model_config`` (dict or
    ``None``), ``best`` (``metric``, ``value``, ``epoch``), ``bad_epochs``,
    ``should_stop`` (the run stopped early; older checkpoints lack it) and
    ``nonfinite_steps`` (non-finite steps in a row at the end of the last epoch; older
    checkpoints lack it).

    Args:
        path: The checkpoint file.
        map_location: Where to load tensors.

    Returns:
        The checkpoint dict.

    Raises:
        CheckpointError: If the file is missing, unreadable, does not match its digest, is
            not an emotionnet checkpoint or lacks some of its keys.

    Example:
        >>> load_checkpoint("no/such/last.ckpt")
        Traceback (most recent call last):
        ...
        emotionnet.errors.CheckpointError: No checkpoint at no/such/last.ckpt; ...
    """
    target = Path(path)
    if not target.is_file():
        raise CheckpointError(
            f"No checkpoint at {target}; pass the last.ckpt of an earlier run (in its "
            "checkpoint_dir), or resume=False to start afresh."
        )
    try:
        # One open file for the check and the load: both see the same bytes.
        with open_regular_file(target) as handle:
            verified = _check_checkpoint_digest(handle, target)
            handle.seek(0)
            data = torch.load(handle, map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # pickle, zip and torch errors share no base class
        raise CheckpointError(
            f"Could not read the checkpoint {target} ({exc}); it is corrupt or not a "
            "training checkpoint. Resume from another one or start afresh."
        ) from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{target} is not an emotionnet training checkpoint (no format "
            f"{CHECKPOINT_FORMAT!r}); model weights load with resnet18_emotion(weights=...)."
        )
    if data.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{target} has checkpoint version {data.get('version')!r}; this emotionnet reads "
            f"version {CHECKPOINT_VERSION}."
        )
    missing = [key for key in _CHECKPOINT_KEYS if key not in data]
    if missing:
        raise CheckpointError(
            f"The checkpoint {target} lacks the keys {missing}: it was not written whole by "
            "Trainer.save_checkpoint. Resume from another checkpoint, or start afresh "
            "(resume=False)."
        )
    wrong = [
        f"{key} is of type {type(data[key]).__name__}, expected {kind.__name__}"
        for key, kind in _CHECKPOINT_KEYS.items()
        if not isinstance(data[key], kind)
    ]
    if wrong:
        raise CheckpointError(
            f"The checkpoint {target} is malformed ({'; '.join(wrong)}). Resume from another "
            "checkpoint, or start afresh (resume=False)."
        )
    if not verified:
        logger.warning(
            "%s has no integrity digest (it was written by an older emotionnet), so it "
            "cannot be checked for corruption; the next checkpoint written will have one",
            target,
        )
    return data


def _weights_digest(data: bytes | memoryview) -> tuple[dict[str, str], str]:
    """Return the metadata of a safetensors file's bytes and the SHA-256 of its tensor data.

    Raises:
        ValueError: If the header is not a safetensors header.
    """
    view = memoryview(data)
    if view.nbytes < 8:
        raise ValueError(f"{view.nbytes} bytes is too short for a safetensors file")
    size = int.from_bytes(view[:8], "little")
    if size > view.nbytes - 8:
        raise ValueError(f"its header claims {size} bytes but the file has {view.nbytes}")
    header = json.loads(bytes(view[8 : 8 + size]))
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise ValueError("its metadata is not a JSON object")
    return metadata, hashlib.sha256(view[8 + size :]).hexdigest()


def _weights_file_bytes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """Serialise ``tensors`` as safetensors, with the SHA-256 of the tensor data in metadata."""
    from safetensors.torch import save

    first = save(dict(tensors), metadata=dict(metadata))
    _, digest = _weights_digest(first)
    # The tensor data does not depend on the metadata: the same bytes, now with their digest.
    return save(dict(tensors), metadata={**metadata, _WEIGHTS_DIGEST_KEY: digest})


def _load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """Read ``best.safetensors``, refusing a file that does not match its digest."""
    from safetensors.torch import load

    hint = (
        f"Delete the file (or move it away): the next improvement of the monitored metric "
        f"writes a new one; the latest weights are in {LAST_CHECKPOINT}."
    )
    try:
        with open_regular_file(path) as handle:
            data = handle.read()
    except OSError as exc:
        raise CheckpointError(f"Could not read the best weights {path} ({exc}). {hint}") from exc
    try:
        metadata, digest = _weights_digest(data)
        expected = metadata.get(_WEIGHTS_DIGEST_KEY)
        if expected is not None and expected != digest:
            raise CheckpointError(
                f"The best weights {path} are corrupt: their tensor data does not match the "
                f"SHA-256 digest written with them (expected {str(expected)[:12]}..., found "
                f"{digest[:12]}...). {hint}"
            )
        state = load(data)
    except CheckpointError:
        raise
    except Exception as exc:  # JSON, safetensors and value errors share no base class
        raise CheckpointError(
            f"The best weights {path} are corrupt or not a safetensors file ({exc}). {hint}"
        ) from exc
    if expected is None:
        logger.warning(
            "%s has no integrity digest (it was written by an older emotionnet), so it "
            "cannot be checked for corruption",
            path,
        )
    return state


def _rng_state(device: torch.device) -> dict[str, Any]:
    np_state = cast(tuple[str, Any, int, int, float], np.random.get_state(legacy=True))
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
    }
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py_state = state["python"]
    random.setstate(
        (py_state["version"], tuple(int(v) for v in py_state["state"]), py_state["gauss_next"])
    )


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


def _derive_seed(*entropy: int) -> int:
    return int(np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0] >> 1)


class _BatchSource(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Builds training batch ``(epoch, index)``; the one batch path of every device.

    Used directly in the loop (data on the device, or no workers) and as a map-style data
    set of whole batches in DataLoader workers.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        *,
        batch_size: int,
        seed: int,
        rank: int,
        world_size: int,
        augment: AugmentConfig,
        mean: float,
        std: float,
        num_classes: int,
        mixup_alpha: float,
        cutmix_alpha: float,
        mix_prob: float,
        mix_switch_prob: float,
        mix_until: int,
    ) -> None:
        self.images = images
        self.targets = targets
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.augment = augment
        self.mean = mean
        self.std = std
        self.num_classes = num_classes
        self.mix = dict(
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            prob=mix_prob,
            switch_prob=mix_switch_prob,
        )
        self.mixing = (mixup_alpha > 0 or cutmix_alpha > 0) and mix_prob > 0
        self.mix_until = mix_until  # epochs from this index on are not mixed
        self.shard_size = math.ceil(images.shape[0] / world_size)
        self.num_batches = max(1, self.shard_size // batch_size)
        self._order: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return self.num_batches

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """This rank's shard of the epoch's permutation, as ``DistributedSampler`` shards."""
        if self._order is None or self._order[0] != epoch:
            count = self.images.shape[0]
            generator = torch.Generator().manual_seed(_derive_seed(self.seed, 0, epoch))
            order = torch.randperm(count, generator=generator)
            total = self.shard_size * self.world_size
            if total > count:
                order = torch.cat([order, order[: total - count]])
            shard = order[self.rank : total : self.world_size]
            self._order = (epoch, shard.to(self.images.device))
        return self._order[1]

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        order = self.epoch_order(epoch)
        chosen = order[index * self.batch_size : (index + 1) * self.batch_size]
        seed = _derive_seed(self.seed, 1, epoch, self.rank, index)
        generator = torch.Generator().manual_seed(seed)
        images = augment_batch(self.images[chosen], self.augment, generator=generator)
        batch = normalize(images, self.mean, self.std)
        targets = self.targets[chosen]
        if self.mixing and epoch < self.mix_until:
            batch, targets = mix_batch(
                batch, targets, num_classes=self.num_classes, generator=generator, **self.mix
            )
        return batch, targets


class _EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, batch index)`` keys; the trainer sets :attr:`epoch` each epoch."""

    def __init__(self, num_batches: int) -> None:
        self.num_batches = num_batches
        self.epoch = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, index) for index in range(self.num_batches)])

    def __len__(self) -> int:
        return self.num_batches


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------


def _dist_env() -> tuple[int, int, int]:
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise InvalidArgumentError(
            f"WORLD_SIZE/RANK/LOCAL_RANK must be integers (as torchrun sets them): {exc}."
        ) from exc
    if world > 1 and not 0 <= rank < world:
        raise InvalidArgumentError(f"RANK={rank} is outside 0..WORLD_SIZE-1 ({world - 1}).")
    return max(world, 1), rank if world > 1 else 0, local_rank if world > 1 else 0


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


class Trainer:
    """Train a classifier on uint8 face images, with validation, checkpoints and resume.

    The model maps normalised ``float`` ``N x 1 x H x W`` input to ``N x C`` logits (see
    :func:`emotionnet.models.resnet18_emotion`). It is trained in place; after :meth:`fit`,
    it holds the last epoch's weights (:meth:`load_best` switches to the best ones).

    Args:
        model: The model to train.
        train_set: Labelled training data, anything :func:`emotionnet.data.as_tensors`
            accepts (a :class:`~emotionnet.FER2013` split, an ``(images, targets)`` pair, ...).
        val_set: Labelled validation data, or ``None`` (then ``monitor`` must be
            ``"train_loss"``).
        config: The settings; ``None`` uses :class:`TrainConfig`'s defaults.
        model_config: The model's :class:`~emotionnet.models.ModelConfig`; saved as
            ``config.json`` next to ``best.safetensors``, and its mean/std and labels are
            used. Without it, the FER2013 mean/std are used.
        callbacks: Objects with any of the :class:`Callback` hooks.

    Raises:
        InvalidArgumentError: If the data is unlabelled, labels are out of range, the model
            output does not fit, or the settings do not fit the data or the machine.
        UnsupportedInputError: If ``model`` or ``config`` has the wrong type.

    Attributes:
        history: The :class:`History` of the run so far.
        epoch: Number of completed epochs.
        should_stop: Set by callbacks (or early stopping) to end after the current epoch.
        device: The device training runs on.
        rank: This process's rank (0 without distributed training).
        world_size: Number of processes.

    Example:
        >>> import dataclasses, tempfile, torch
        >>> from torch import nn
        >>> images = torch.randint(0, 256, (16, 48, 48), dtype=torch.uint8)
        >>> data = (images, torch.arange(16) % 7)
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7))
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     config = TrainConfig(max_epochs=2, batch_size=8, schedule="constant",
        ...                          checkpoint_dir=folder, progress=False)
        ...     first = Trainer(model, data, data, dataclasses.replace(config, max_epochs=1))
        ...     _ = first.fit()
        ...     history = Trainer(model, data, data, config).fit(resume=True)
        >>> [row["epoch"] for row in history]
        [1, 2]
    """

    def __init__(
        self,
        model: nn.Module,
        train_set: object,
        val_set: object | None = None,
        config: TrainConfig | None = None,
        *,
        model_config: ModelConfig | None = None,
        callbacks: Iterable[object] = (),
    ) -> None:
        from .data import as_tensors

        if not isinstance(model, nn.Module):
            raise UnsupportedInputError(
                f"model must be a torch.nn.Module, got {type(model).__name__}."
            )
        config = TrainConfig() if config is None else config
        if not isinstance(config, TrainConfig):
            raise UnsupportedInputError(
                f"config must be a TrainConfig, got {type(config).__name__}; build one with "
                "TrainConfig(...) or TrainConfig.from_file(path)."
            )
        if model_config is not None and not isinstance(model_config, ModelConfig):
            raise UnsupportedInputError(
                f"model_config must be a ModelConfig or None, got {type(model_config).__name__}."
            )
        if model_config is not None and model_config.in_chans != 1:
            raise InvalidArgumentError(
                f"The trainer feeds grayscale images (1 channel), but model_config.in_chans is "
                f"{model_config.in_chans}; build the model with in_chans=1."
            )
        self.model = model
        self.config = config
        self.model_config = model_config
        self.callbacks = list(callbacks)
        self.world_size, self.rank, self.local_rank = _dist_env()
        self.device = self._resolve_device()

        images, targets = as_tensors(train_set)
        self._train_images = images.unsqueeze(1) if images.ndim == 3 else images
        self._train_targets = targets.long()
        if self._train_images.shape[0] < 2 * self.world_size:
            raise InvalidArgumentError(
                f"The training set has {self._train_images.shape[0]} images; training needs at "
                f"least 2 per process ({self.world_size} processes)."
            )
        self.num_classes = self._infer_num_classes()
        self._check_labels("train_set", self._train_targets)
        self._val: tuple[torch.Tensor, torch.Tensor] | None = None
        if val_set is not None:
            val_images, val_targets = as_tensors(val_set)
            if val_images.shape[0] == 0:
                raise InvalidArgumentError("val_set is empty; pass labelled images or None.")
            self._check_labels("val_set", val_targets.long())
            self._val = (val_images, val_targets.long())
        elif config.monitor != "train_loss":
            raise InvalidArgumentError(
                f"monitor={config.monitor!r} needs a val_set; pass one, or use "
                "monitor='train_loss' to train without validation."
            )

        if model_config is not None:
            self.mean, self.std = model_config.mean[0], model_config.std[0]
            self.labels = model_config.labels
        else:
            self.mean, self.std = FER2013_MEAN, FER2013_STD
            self.labels = (
                EMOTIONS
                if self.num_classes == len(EMOTIONS)
                else tuple(f"class_{i}" for i in range(self.num_classes))
            )
        self.amp_dtype = self._resolve_amp()
        self.channels_last = config.channels_last is not False
        workers = config.num_workers
        self.data_on_device = (
            config.data_on_device if config.data_on_device is not None else not workers
        )
        if self.data_on_device:
            self.num_workers = 0
        else:
            self.num_workers = (
                workers if workers is not None else min(4, (os.cpu_count() or 1) // 4)
            )
        self.class_weights = self._resolve_class_weights()

        self.history = History()
        self.epoch = 0
        self.global_step = 0
        self.should_stop = False
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self._best_state: dict[str, torch.Tensor] | None = None
        self._bad_epochs = 0
        self._nonfinite_steps = 0
        self._ema: AveragedModel | None = None
        # Per epoch validated by this process: the most predicted class, its share, the count.
        self._val_majority: dict[int, tuple[str, float, int]] = {}
        self._last_majority: tuple[str, float, int] | None = None

    # ---- setup -------------------------------------------------------------------------------

    @property
    def is_main_process(self) -> bool:
        """Whether this process is rank 0, the one that writes files and logs."""
        return self.rank == 0

    @property
    def evaluated_model(self) -> nn.Module:
        """The model that is validated and saved as the best.

        The weight average when ``ema_decay`` is set (from the start of :meth:`fit`), else
        :attr:`model` itself.

        Example:
            >>> from torch import nn
            >>> data = (torch.zeros(4, 48, 48, dtype=torch.uint8), torch.arange(4) % 2)
            >>> model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 2))
            >>> Trainer(model, data, data, TrainConfig(progress=False)).evaluated_model is model
            True
        """
        return self.model if self._ema is None else self._ema.module

    @property
    def checkpoint_dir(self) -> Path | None:
        """The checkpoint folder, or ``None`` when the run writes no files."""
        folder = self.config.checkpoint_dir
        return None if folder is None else Path(folder)

    def _resolve_device(self) -> torch.device:
        wanted = self.config.device
        if wanted == "auto":
            wanted = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(wanted)
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise InvalidArgumentError(
                    f"device={self.config.device!r} but CUDA is not available here; use "
                    "device='auto' or 'cpu'."
                )
            if device.index is None:
                device = torch.device("cuda", self.local_rank)
        return device

    def _resolve_amp(self) -> torch.dtype | None:
        amp = self.config.amp
        if amp == "auto":
            return torch.bfloat16 if bf16_supported(self.device) else None
        if amp == "off":
            return None
        if amp == "fp16" and self.device.type != "cuda":
            raise InvalidArgumentError(
                f"amp='fp16' needs CUDA, but the device is {self.device}; use amp='bf16' or "
                "'off' on the CPU."
            )
        return torch.bfloat16 if amp == "bf16" else torch.float16

    def _infer_num_classes(self) -> int:
        height, width = self._train_images.shape[-2:]
        probe = torch.zeros(2, 1, height, width, device=_model_device(self.model))
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        try:
            with torch.no_grad():
                output = self.model(probe)
        except RuntimeError as exc:
            raise InvalidArgumentError(
                f"The model failed on a normalised batch shaped {tuple(probe.shape)} ({exc}); "
                "it must take N x 1 x H x W float input."
            ) from exc
        finally:
            for module, training in modes:
                module.training = training
        if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[0] != 2:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output)
            raise InvalidArgumentError(
                f"The model must return logits shaped (N, num_classes), got {shape}."
            )
        classes = int(output.shape[1])
        if self.model_config is not None and classes != self.model_config.num_classes:
            raise InvalidArgumentError(
                f"The model outputs {classes} logits but model_config.num_classes is "
                f"{self.model_config.num_classes}; build the model from its config."
            )
        return classes

    def _check_labels(self, name: str, targets: torch.Tensor) -> None:
        if targets.numel() == 0:
            return
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= self.num_classes:
            unlabelled = " (-1 marks unlabelled images)" if low == -1 else ""
            raise InvalidArgumentError(
                f"{name} has labels from {low} to {high}{unlabelled}, but the model has "
                f"{self.num_classes} classes (labels 0..{self.num_classes - 1}); train and "
                "validate on labelled splits."
            )

    def _resolve_class_weights(self) -> torch.Tensor | None:
        weights = self.config.class_weights
        if weights is None:
            return None
        if isinstance(weights, str):
            from .class_weights import compute_class_weights

            result = compute_class_weights(
                self._train_targets, num_classes=self.num_classes, method=weights
            )
            return torch.as_tensor(result, dtype=torch.float32)
        if len(weights) != self.num_classes:
            raise InvalidArgumentError(
                f"class_weights has {len(weights)} values but the model has {self.num_classes} "
                "classes; give one weight per class."
            )
        return torch.tensor(weights, dtype=torch.float32)

    def _init_distributed(self) -> bool:
        if self.world_size == 1:
            return False
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        owned = False
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
            owned = True
        if dist.get_world_size() != self.world_size or dist.get_rank() != self.rank:
            raise InvalidArgumentError(
                f"The process group has world size {dist.get_world_size()} and rank "
                f"{dist.get_rank()}, but WORLD_SIZE/RANK say {self.world_size}/{self.rank}."
            )
        return owned

    def _setup(self) -> None:
        config = self.config
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        on_device = self.data_on_device
        images = self._train_images.to(self.device) if on_device else self._train_images
        targets = self._train_targets.to(self.device) if on_device else self._train_targets
        self._source = _BatchSource(
            images,
            targets,
            batch_size=config.batch_size,
            seed=config.seed,
            rank=self.rank,
            world_size=self.world_size,
            augment=config.augment,
            mean=self.mean,
            std=self.std,
            num_classes=self.num_classes,
            mixup_alpha=config.mixup_alpha,
            cutmix_alpha=config.cutmix_alpha,
            mix_prob=config.mix_prob,
            mix_switch_prob=config.mix_switch_prob,
            mix_until=config.max_epochs - config.mix_off_epochs,
        )
        self.steps_per_epoch = self._source.num_batches
        self._loader: DataLoader[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._sampler: _EpochSampler | None = None
        if self.num_workers > 0:
            self._sampler = _EpochSampler(self.steps_per_epoch)
            self._loader = DataLoader(
                self._source,
                batch_size=None,
                sampler=self._sampler,
                num_workers=self.num_workers,
                persistent_workers=True,
                pin_memory=self.device.type == "cuda",
                # Its own generator keeps the global RNG untouched by the loader.
                generator=torch.Generator().manual_seed(config.seed),
            )
        if self._val is not None and on_device:
            self._val = (self._val[0].to(self.device), self._val[1])

        decay, no_decay = [], []
        for parameter in self.model.parameters():
            if not parameter.requires_grad:
                continue
            if parameter.ndim <= 1 and not config.decay_norm_and_bias:
                no_decay.append(parameter)
            else:
                decay.append(parameter)
        groups: list[dict[str, Any]] = [{"params": decay, "weight_decay": config.weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        self.optimizer: torch.optim.Optimizer
        if config.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(
                groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0
            )
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=config.lr)
        self._base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.scheduler = self._make_scheduler()
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        self._loss_weights = (
            None if self.class_weights is None else self.class_weights.to(self.device)
        )

        # Skipped (non-finite) steps restore the buffers their forward pass updated.
        self._model_buffers = list(self.model.buffers())
        self._buffer_backup = [buffer.detach().clone() for buffer in self._model_buffers]

        self._ema = None
        if config.ema_decay is not None:
            average = get_ema_multi_avg_fn(config.ema_decay)  # type: ignore[no-untyped-call]
            self._ema = AveragedModel(self.model, multi_avg_fn=average, use_buffers=True)

        module: nn.Module = self.model
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            module = DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None
            )
        if config.compile:
            module = cast(nn.Module, torch.compile(module))
        self._train_module = module

    def _warmup_steps(self) -> int:
        return round(self.config.warmup_epochs * self.steps_per_epoch)

    def _make_scheduler(self) -> Any:
        config = self.config
        total = config.max_epochs * self.steps_per_epoch
        warmup = self._warmup_steps()
        if config.schedule == "onecycle":
            pct = config.warmup_epochs / config.max_epochs if config.warmup_epochs > 0 else 0.3
            # OneCycleLR divides by (warm-up steps - 1): a single step is a ZeroDivisionError
            # inside torch, and less than one silently skips the warm-up.
            warmup_steps = config.warmup_epochs * self.steps_per_epoch
            if 0 < warmup_steps < 2:
                raise InvalidArgumentError(
                    f"warmup_epochs={config.warmup_epochs:g} is {warmup_steps:g} optimizer "
                    f"step(s) at {self.steps_per_epoch} steps per epoch; the one-cycle "
                    "schedule needs a warm-up of at least 2 steps. Set warmup_epochs to at "
                    f"least {2 / self.steps_per_epoch:g}, or to 0 for the default 30% warm-up."
                )
            return torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer, max_lr=self._base_lrs, total_steps=total, pct_start=pct
            )
        if config.schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer,
                mode=cast(Literal["min", "max"], config.monitor_mode),
                factor=config.plateau_factor,
                patience=config.plateau_patience,
                min_lr=config.min_lr,
            )
        floor = min(config.min_lr / config.lr, 1.0)
        cosine = config.schedule == "cosine"

        # A plain function: LambdaLR then keeps it out of its state dict.
        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if not cosine:
                return 1.0
            progress = min((step - warmup) / max(1, total - warmup), 1.0)
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    # ---- training ----------------------------------------------------------------------------

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _plateau_warmup(self) -> None:
        warmup = self._warmup_steps()
        if self.config.schedule != "plateau" or self.global_step >= warmup:
            return
        scale = min((self.global_step + 1) / warmup, 1.0) if warmup else 1.0
        for group, base in zip(self.optimizer.param_groups, self._base_lrs, strict=True):
            group["lr"] = base * scale

    def _batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._loader is not None and self._sampler is not None:
            self._sampler.epoch = epoch
            yield from self._loader
        else:
            for index in range(self.steps_per_epoch):
                yield self._source[(epoch, index)]

    def _train_epoch(self, epoch: int) -> tuple[float, int, float, float]:
        from tqdm.auto import tqdm

        config = self.config
        module = self._train_module
        module.train()
        per_step_schedule = config.schedule != "plateau"
        loss_sum = torch.zeros((), device=self.device)
        seen = 0
        first_lr = math.nan
        bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {epoch + 1}/{config.max_epochs}",
            unit="batch",
            leave=False,
            disable=not (config.progress and self.is_main_process),
        )
        start = time.perf_counter()
        check_norm = config.grad_clip is not None and not self.scaler.is_enabled()
        with bar:
            for index, (inputs, targets) in enumerate(self._batches(epoch)):
                inputs = inputs.to(self.device, non_blocking=True)
                targets = targets.to(self.device, non_blocking=True)
                if self.channels_last:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                self._plateau_warmup()
                if index == 0:
                    first_lr = float(self.optimizer.param_groups[0]["lr"])
                if self._model_buffers:
                    torch._foreach_copy_(self._buffer_backup, self._model_buffers)
                with self._autocast():
                    logits = module(inputs)
                loss = F.cross_entropy(
                    logits.float(),
                    targets,
                    weight=self._loss_weights,
                    label_smoothing=config.label_smoothing,
                )
                finite = loss_finite = self._all_finite(loss)
                if finite:
                    self.optimizer.zero_grad(set_to_none=True)
                    torch.autograd.backward(self.scaler.scale(loss))
                    if config.grad_clip is not None:
                        self.scaler.unscale_(self.optimizer)
                        norm = nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
                        # DDP all-reduced the gradients: every rank sees the same norm.
                        finite = not check_norm or bool(torch.isfinite(norm))
                if finite:
                    self._nonfinite_steps = 0
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    if per_step_schedule:
                        self.scheduler.step()
                    if self._ema is not None:
                        self._ema.update_parameters(self.model)
                    loss_sum += loss.detach() * inputs.shape[0]
                    seen += inputs.shape[0]
                else:
                    reason = self._nonfinite_reason(loss, loss_finite)
                    self._skip_step(reason, epoch, index, per_step_schedule)
                self.global_step += 1
                bar.update(1)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        totals = torch.stack([loss_sum.float(), torch.tensor(float(seen), device=self.device)])
        if self.world_size > 1:
            dist.all_reduce(totals)
            self._sync_buffers()
        return float(totals[0] / totals[1]), int(totals[1]), seconds, first_lr

    def _all_finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every rank (collective under DDP)."""
        bad = (~torch.isfinite(loss.detach())).to(torch.float32)
        if self.world_size > 1:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        return not bool(bad)

    def _nonfinite_reason(self, loss: torch.Tensor, loss_finite: bool) -> str:
        if loss_finite:
            return "the gradient norm is not finite"
        value = float(loss.detach())
        return f"the loss is {value}" if not math.isfinite(value) else "the loss is not finite"

    def _skip_step(self, reason: str, epoch: int, index: int, per_step_schedule: bool) -> None:
        """Undo what the forward pass of a non-finite step changed, count it, maybe stop."""
        self.optimizer.zero_grad(set_to_none=True)
        if self._model_buffers:
            torch._foreach_copy_(self._model_buffers, self._buffer_backup)
        if per_step_schedule:
            # The schedule follows the position in the run, skipped batches included.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", Warning)
                self.scheduler.step()
        self._nonfinite_steps += 1
        limit = self.config.max_nonfinite_steps
        place = f"epoch {epoch + 1}, batch {index + 1}/{self.steps_per_epoch}"
        if self._nonfinite_steps <= limit:
            if self.is_main_process:
                logger.warning(
                    "%s: %s; the step is skipped (%d in a row; max_nonfinite_steps=%d)",
                    place,
                    reason,
                    self._nonfinite_steps,
                    limit,
                )
            return
        folder = self.checkpoint_dir
        last = None if folder is None else folder / LAST_CHECKPOINT
        if last is not None and last.is_file():
            kept = (
                f"The last checkpoint, {last}, is intact: after changing the settings, "
                "continue from it with fit(resume=True) (--resume in the CLI)."
            )
        elif last is not None:
            kept = f"No checkpoint was written yet in {folder}; start afresh."
        else:
            kept = "No checkpoint_dir is set, so there is no checkpoint to resume from."
        raise NonFiniteLossError(
            f"Training stopped at {place}: {reason}, for {self._nonfinite_steps} steps in a row "
            f"(max_nonfinite_steps={limit}). The weights have not changed since the last "
            f"finite step. {kept} A lower lr, a longer warm-up (warmup_epochs), gradient "
            "clipping (grad_clip) or amp='off' usually keep the loss finite."
        )

    def _sync_buffers(self) -> None:
        # DDP broadcasts buffers before each forward, so after the last batch each rank holds
        # its own batch-norm statistics; rank 0's make every rank's model identical.
        for buffer in self.model.buffers():
            dist.broadcast(buffer, src=0)

    def _validate(self) -> dict[str, float | None]:
        empty: dict[str, float | None] = {
            "val_loss": None,
            "val_accuracy": None,
            "val_macro_f1": None,
        }
        self._last_majority = None
        if self._val is None:
            return empty
        metrics: dict[str, float | None] = dict(empty)
        if self.is_main_process:
            from .inference import predict_logits
            from .metrics import report_from_predictions

            images, targets = self._val
            with self._autocast():
                logits = predict_logits(
                    self.evaluated_model,
                    images,
                    batch_size=self.config.eval_batch_size,
                    tta=self.config.eval_tta,
                    mean=self.mean,
                    std=self.std,
                )
            predicted = logits.argmax(dim=1)
            report = report_from_predictions(targets, predicted, labels=self.labels)
            counts = torch.bincount(predicted.cpu(), minlength=len(self.labels))
            top = int(counts.argmax())
            self._last_majority = (
                self.labels[top],
                float(counts[top]) / max(1, len(predicted)),
                len(predicted),
            )
            metrics = {
                "val_loss": float(F.cross_entropy(logits.float(), targets)),
                "val_accuracy": report.accuracy,
                "val_macro_f1": report.macro_f1,
            }
        if self.world_size > 1:
            shared: list[object] = [metrics]
            dist.broadcast_object_list(shared, src=0)
            metrics = cast(dict[str, float | None], shared[0])
        return metrics

    def _improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best_value is None:
            return True
        if self.config.monitor_mode == "max":
            return value > self.best_value
        return value < self.best_value

    def _run_callbacks(self, hook: str, *args: object) -> None:
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is not None:
                method(self, *args)

    def fit(self, resume: bool | str | os.PathLike[str] = False) -> History:
        """Train for ``config.max_epochs`` epochs (or until stopped) and return the history.

        When the trained model predicts one class for at least
        :data:`ONE_CLASS_WARNING_SHARE` (90%) of the validation set, a warning is logged at
        the end: such a model has not learnt to tell the classes apart.

        Args:
            resume: ``False`` starts afresh (seeding every RNG from ``config.seed``);
                ``True`` continues from ``checkpoint_dir/last.ckpt``; a path continues from
                that checkpoint. Resuming restores the model, optimizer, scheduler, scaler,
                RNG states, history, best metric and early-stopping state, so the result
                equals an uninterrupted run (a run that stopped early returns at once).
                ``max_epochs`` may change on resume only with the ``"plateau"`` and
                ``"constant"`` schedules: the cosine and one-cycle schedules span the run.

        Returns:
            The :class:`History`, one row per epoch (including resumed ones).

        Raises:
            CheckpointError: If the checkpoint to resume from is missing, unreadable, corrupt
                (it does not match the digest written with it) or does not fit the model, it
                was trained for another ``max_epochs`` with the cosine or one-cycle
                schedule, or a file in ``checkpoint_dir`` cannot be written (a read-only
                folder, a full disk).
            InvalidArgumentError: If ``resume=True`` without a ``checkpoint_dir``, the
                ``checkpoint_dir`` is a file, or the one-cycle warm-up is shorter than 2
                optimizer steps.
            NonFiniteLossError: If more than ``config.max_nonfinite_steps`` steps in a row had
                a NaN or infinite loss; those steps were skipped, and the last checkpoint is
                intact to resume from once the settings are fixed.
        """
        owned_group = self._init_distributed()
        threads = torch.get_num_threads()
        if self.config.num_threads is not None:
            torch.set_num_threads(self.config.num_threads)
        benchmark = torch.backends.cudnn.benchmark
        # Every training batch has the same shape: let cuDNN pick its fastest kernels.
        torch.backends.cudnn.benchmark = benchmark or self.device.type == "cuda"
        try:
            self._check_checkpoint_dir()
            self._setup()
            if resume is False:
                self._start_fresh()
            else:
                self._restore(self._resume_path(resume))
            self._val_majority = {}
            return self._loop()
        finally:
            # Dropping the loader shuts its persistent worker processes down.
            self._loader = None
            self._sampler = None
            torch.backends.cudnn.benchmark = benchmark
            torch.set_num_threads(threads)
            if owned_group and dist.is_initialized():
                dist.destroy_process_group()

    def _resume_path(self, resume: bool | str | os.PathLike[str]) -> Path:
        if resume is True:
            if self.checkpoint_dir is None:
                raise InvalidArgumentError(
                    "resume=True needs config.checkpoint_dir (where last.ckpt is); set it or "
                    "pass the checkpoint path as resume=."
                )
            return self.checkpoint_dir / LAST_CHECKPOINT
        if isinstance(resume, (str, os.PathLike)):
            return Path(resume)
        raise InvalidArgumentError(
            f"resume must be False, True or a checkpoint path, got {resume!r}."
        )

    def _start_fresh(self) -> None:
        seed = self.config.seed + self.rank
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        self.history = History()
        self.epoch = 0
        self.global_step = 0
        self.best_value = None
        self.best_epoch = None
        self._best_state = None
        self._bad_epochs = 0
        self._nonfinite_steps = 0
        self.should_stop = False

    def _check_checkpoint_dir(self) -> None:
        folder = self.checkpoint_dir
        if folder is not None and self.is_main_process and folder.exists() and not folder.is_dir():
            raise InvalidArgumentError(
                f"checkpoint_dir {folder} is a file, not a folder; pass the path of a folder "
                "(it is created if missing), or move the file away."
            )

    def _write_output(self, path: Path, write: Callable[[Path], object]) -> None:
        """Run ``write(path)`` for a file in ``checkpoint_dir``; OS errors become ours."""
        try:
            write(path)
        except OSError as exc:
            raise CheckpointError(
                f"Could not write {path} ({exc}); the previous file there is intact. Make "
                "checkpoint_dir a folder you can write to, with free space, or choose another."
            ) from exc

    def _loop(self) -> History:
        from tqdm.auto import tqdm

        config = self.config
        main = self.is_main_process
        folder = self.checkpoint_dir
        if main and folder is not None:
            self._write_output(folder, lambda path: path.mkdir(parents=True, exist_ok=True))
            self._write_output(folder / "train_config.json", config.save)
            if self.model_config is not None:
                text = json.dumps(self.model_config.to_dict(), indent=2) + "\n"
                self._write_output(
                    folder / "config.json", lambda path: atomic_write_text(path, text)
                )
        self._run_callbacks("on_fit_start")
        epochs_bar = tqdm(
            total=config.max_epochs,
            initial=self.epoch,
            desc="train",
            unit="epoch",
            disable=not (config.progress and main),
        )
        with epochs_bar:
            while self.epoch < config.max_epochs and not self.should_stop:
                row = self._run_epoch(self.epoch)
                epochs_bar.update(1)
                epochs_bar.set_postfix(
                    {k: f"{v:.4g}" for k, v in row.items() if k != "epoch" and v is not None}
                )
        self._warn_if_one_class()
        self._run_callbacks("on_fit_end", self.history)
        return self.history

    def _run_epoch(self, epoch: int) -> Row:
        config = self.config
        self._run_callbacks("on_epoch_start", epoch + 1)
        started = time.perf_counter()
        train_loss, seen, train_seconds, lr = self._train_epoch(epoch)
        metrics = self._validate()
        row: Row = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            **metrics,
            "lr": lr,
            "images_per_sec": seen / train_seconds if train_seconds > 0 else None,
            "seconds": time.perf_counter() - started,
        }
        self.epoch = epoch + 1
        self.history.append(row)
        if self._last_majority is not None:
            self._val_majority[self.epoch] = self._last_majority

        value = row[config.monitor]
        if config.schedule == "plateau" and self.global_step >= self._warmup_steps():
            self.scheduler.step(value)
        if self._improved(value):
            self.best_value, self.best_epoch, self._bad_epochs = float(value), epoch + 1, 0
            # Only rank 0 writes best.safetensors: the other ranks skip the copy to the CPU.
            if self.is_main_process:
                self._best_state = {
                    k: v.detach().to("cpu", copy=True)
                    for k, v in self.evaluated_model.state_dict().items()
                }
                self._save_best()
        else:
            self._bad_epochs += 1
        patience = config.early_stopping_patience
        if patience is not None and self._bad_epochs >= patience:
            self.should_stop = True
            if self.is_main_process:
                logger.info(
                    "early stopping: %s has not improved for %d epochs (best %.4f at epoch %d)",
                    config.monitor,
                    patience,
                    self.best_value,
                    self.best_epoch,
                )
        self._log(row)
        last = self.epoch >= config.max_epochs or self.should_stop
        if self.checkpoint_dir is not None and (last or self.epoch % config.save_every == 0):
            self.save_checkpoint()
        if self.is_main_process and self.checkpoint_dir is not None:
            self._write_output(self.checkpoint_dir / "history.json", self.history.to_json)
            self._write_output(self.checkpoint_dir / "history.csv", self.history.to_csv)
        self._run_callbacks("on_epoch_end", row)
        if self.world_size > 1:
            flag = torch.tensor(float(self.should_stop), device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self.should_stop = bool(flag.item())
        return row

    def _warn_if_one_class(self) -> None:
        """Log a warning when the trained model answers one class for nearly every image.

        Checked on the validation predictions of the best epoch (the weights
        :meth:`load_best` restores), else of the last epoch this run validated.
        """
        if not self.is_main_process or not self._val_majority:
            return
        epoch = self.best_epoch if self.best_epoch in self._val_majority else None
        if epoch is None:
            epoch = max(self._val_majority)
        label, share, count = self._val_majority[epoch]
        if share < ONE_CLASS_WARNING_SHARE:
            return
        logger.warning(
            "The model of epoch %d predicts %r for %.0f%% of the %d validation images: it has "
            "not learnt to tell the classes apart, and its predictions mean little. Train "
            "longer (max_epochs) or on more images, check the learning rate (lr) and that the "
            "warm-up (warmup_epochs) is shorter than the run, and check the training labels.",
            epoch,
            label,
            100 * share,
            count,
        )

    def _log(self, row: Row) -> None:
        if not self.is_main_process:
            return
        parts = [f"epoch {row['epoch']}/{self.config.max_epochs}"]
        for key in ("train_loss", "val_loss", "val_accuracy", "val_macro_f1"):
            if row.get(key) is not None:
                parts.append(f"{key} {row[key]:.4f}")
        parts.append(f"lr {row['lr']:.3g}")
        if row.get("images_per_sec") is not None:
            parts.append(f"{row['images_per_sec']:.0f} images/s")
        parts.append(f"{row['seconds']:.1f} s")
        logger.info("  ".join(parts))

    # ---- checkpoints -------------------------------------------------------------------------

    def _save_best(self) -> None:
        folder = self.checkpoint_dir
        if not self.is_main_process or folder is None or self._best_state is None:
            return
        tensors = {k: v.contiguous() for k, v in self._best_state.items()}
        metadata = {
            "format": "pt",
            "epoch": str(self.best_epoch),
            "monitor": self.config.monitor,
            "value": repr(self.best_value),
        }
        data = _weights_file_bytes(tensors, metadata)
        try:
            atomic_write_bytes(folder / BEST_WEIGHTS, data)
        except Exception as exc:
            raise CheckpointError(
                f"Could not write {folder / BEST_WEIGHTS} ({exc}); the previous file is intact."
            ) from exc

    def checkpoint_state(self) -> dict[str, Any]:
        """Return the resume state that :meth:`save_checkpoint` writes.

        Collective under distributed training: every rank must call it (RNG states are
        gathered from all ranks).

        Returns:
            The checkpoint dict described in :func:`load_checkpoint`.
        """
        rng = _rng_state(self.device)
        if self.world_size > 1:
            gathered: list[object] = [None] * self.world_size
            dist.all_gather_object(gathered, rng)
            rng_states = gathered
        else:
            rng_states = [rng]
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "world_size": self.world_size,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "ema": None if self._ema is None else self._ema.state_dict(),
            "rng": rng_states,
            "history": self.history.rows,
            "config": self.config.to_dict(),
            "model_config": None if self.model_config is None else self.model_config.to_dict(),
            "best": {
                "metric": self.config.monitor,
                "value": self.best_value,
                "epoch": self.best_epoch,
            },
            "bad_epochs": self._bad_epochs,
            "should_stop": self.should_stop,
            "nonfinite_steps": self._nonfinite_steps,
        }

    def save_checkpoint(self, path: str | os.PathLike[str] | None = None) -> Path | None:
        """Write the resume state atomically (rank 0 only; collective under DDP).

        The file is :func:`torch.save`'s zip with a SHA-256 digest of its content as the zip
        comment, which :func:`load_checkpoint` checks.

        Args:
            path: Target file; ``None`` writes ``checkpoint_dir/last.ckpt``.

        Returns:
            The path written on rank 0, ``None`` on other ranks.

        Raises:
            CheckpointError: If writing fails (the previous checkpoint is left intact) or
                there is no ``checkpoint_dir`` and no ``path``.
        """
        if path is None:
            if self.checkpoint_dir is None:
                raise CheckpointError(
                    "No checkpoint path: set config.checkpoint_dir or pass path=."
                )
            target = self.checkpoint_dir / LAST_CHECKPOINT
        else:
            target = Path(path)
        state = self.checkpoint_state()
        if not self.is_main_process:
            return None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, lambda handle: _save_checkpoint_file(state, handle))
        except Exception as exc:
            raise CheckpointError(
                f"Could not write the checkpoint {target} ({exc}); the previous checkpoint "
                "there is intact."
            ) from exc
        return target

    def _restore(self, path: Path) -> None:
        state = load_checkpoint(path)
        try:
            self._apply_checkpoint(path, state)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise CheckpointError(
                f"The checkpoint {path} is malformed ({type(exc).__name__}: {exc}); it was not "
                "written whole by Trainer.save_checkpoint. Resume from another checkpoint, or "
                "start afresh (resume=False)."
            ) from exc

    def _apply_checkpoint(self, path: Path, state: Mapping[str, Any]) -> None:
        self._check_resumable_length(path, dict(state["config"]))
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(
                f"The model does not fit the checkpoint {path}: {exc}. Build the model the "
                "checkpoint was trained with (see its model_config)."
            ) from exc
        saved = dict(state["config"])
        current = self.config.to_dict()
        changed = sorted(
            key
            for key in set(saved) | set(current)
            if key not in _RESUME_FREE_KEYS and saved.get(key) != current.get(key)
        )
        if changed and self.is_main_process:
            logger.warning(
                "resuming %s with changed settings %s; the run will differ from an "
                "uninterrupted one",
                path,
                changed,
            )
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler") is not None and self.scaler.is_enabled():
                self.scaler.load_state_dict(state["scaler"])
            if self._ema is not None:
                if state.get("ema") is None:
                    raise KeyError("it holds no weight average (it was trained without ema_decay)")
                self._ema.load_state_dict(state["ema"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(
                f"The optimizer or scheduler state in {path} does not fit this run ({exc}); "
                "resume with the optimizer and schedule it was trained with."
            ) from exc
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.history = History(state["history"])
        best = state["best"]
        same_metric = best.get("metric") == self.config.monitor
        self.best_value = best.get("value") if same_metric else None
        self.best_epoch = best.get("epoch") if same_metric else None
        self._bad_epochs = int(state["bad_epochs"]) if same_metric else 0
        self._nonfinite_steps = int(state.get("nonfinite_steps", 0))
        self._best_state = None
        # A run that stopped early stays stopped; checkpoints without the flag recompute it.
        patience = self.config.early_stopping_patience
        self.should_stop = bool(state.get("should_stop", False)) or (
            patience is not None and self._bad_epochs >= patience
        )
        rng_states = state["rng"]
        if len(rng_states) == self.world_size:
            _set_rng_state(rng_states[self.rank], self.device)
        else:
            logger.warning(
                "%s was written by %d processes, this run has %d: RNG states are reseeded",
                path,
                len(rng_states),
                self.world_size,
            )
            seed = _derive_seed(self.config.seed, 2, self.epoch, self.rank) % 2**32
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
        if self.is_main_process:
            logger.info("resumed from %s after epoch %d", path, self.epoch)

    def _check_resumable_length(self, path: Path, saved: Mapping[str, Any]) -> None:
        config = self.config
        before = saved.get("max_epochs")
        if config.schedule not in _LENGTH_BOUND_SCHEDULES or before == config.max_epochs:
            return
        raise CheckpointError(
            f"{path} was trained with max_epochs={before} and its {config.schedule!r} "
            f"learning-rate schedule spans those {before} epochs; resuming with "
            f"max_epochs={config.max_epochs} would break it. Resume with "
            f"max_epochs={before} (--epochs {before} in the CLI), or to train for "
            f"{config.max_epochs} epochs start a new run (resume=False) from the weights in "
            f"{BEST_WEIGHTS}. Only the 'plateau' and 'constant' schedules can be extended on "
            "resume."
        )

    def load_best(self) -> nn.Module:
        """Load the best weights seen by :meth:`fit` into the model.

        Under distributed training only rank 0 keeps the best weights in memory; the other
        ranks read ``best.safetensors`` from ``checkpoint_dir``.

        Returns:
            The model, now holding the best epoch's weights.

        Raises:
            CheckpointError: If no epoch has been evaluated yet, on a rank other than 0
                without ``best.safetensors`` in ``checkpoint_dir``, or if that file is
                corrupt (it does not match the SHA-256 digest written with it, or does not
                parse) or does not fit the model.
        """
        state = self._best_state
        path: Path | None = None
        if state is None and self.checkpoint_dir is not None:
            path = self.checkpoint_dir / BEST_WEIGHTS
            if path.is_file():
                state = _load_weights_file(path)
        if state is None and not self.is_main_process and self.best_epoch is not None:
            raise CheckpointError(
                f"Rank {self.rank} holds no best weights: under distributed training only "
                "rank 0 keeps them. Call load_best() on rank 0, or set checkpoint_dir to a "
                f"folder every rank can read {BEST_WEIGHTS} from."
            )
        if state is None:
            raise CheckpointError(
                "No best weights yet: call fit() first (best weights are kept from the epoch "
                "with the best monitored metric)."
            )
        try:
            self.model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(
                f"The best weights in {path} do not fit the model ({exc}). Delete the file, "
                "or build the model the run was trained with (see config.json beside it)."
            ) from exc
        return self.model
