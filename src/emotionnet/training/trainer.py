"""The :class:`Trainer`: a plain PyTorch loop with validation, checkpoints and exact resume.

See :mod:`emotionnet.training` for the data path, the checkpoint files, non-finite losses and
distributed training.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Final, Literal, cast

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from .._atomic import atomic_write, atomic_write_text
from .._checks import resolve_device
from ..errors import (
    CheckpointError,
    InvalidArgumentError,
    NonFiniteLossError,
    UnsupportedInputError,
)
from ..inference import _model_device
from ..labels import EMOTIONS
from ..models import ModelConfig
from ..preprocessing import FER2013_MEAN, FER2013_STD
from .batches import BatchSource, EpochSampler, derive_seed
from .callbacks import BestWeights, EarlyStopping
from .checkpoint import (
    BEST_WEIGHTS,
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    LAST_CHECKPOINT,
    load_checkpoint,
    load_weights_file,
    rng_state,
    save_checkpoint_file,
    set_rng_state,
)
from .config import _DEVICE_FIX, _RUN_ONLY_SETTINGS, TrainConfig, bf16_supported
from .distill import TEACHER_TARGETS, distillation_loss, soften, teacher_input
from .distributed import dist_env
from .history import History, Row
from .lock import FolderLock

__all__ = ["ONE_CLASS_WARNING_SHARE", "Trainer"]

logger = logging.getLogger("emotionnet.training")  # one logger for the package

ONE_CLASS_WARNING_SHARE: Final[float] = 0.9
"""When the trained model predicts one class for at least this share of the validation set,
:meth:`Trainer.fit` logs a warning (``emotionnet.training`` logger, level ``WARNING``).

Such a model has not learnt to tell the classes apart: FER2013's largest class, ``happy``, is
a quarter of the faces, so a model that answers ``happy`` for nine faces in ten is stuck on
the class prior (a run too short for its learning-rate warm-up, a learning rate too high, or
wrong labels). The check uses the validation predictions of the best epoch, the weights
:meth:`Trainer.load_best` restores (else of the last epoch validated)."""

# Differences in these settings are expected when resuming and not worth a warning: the run-only
# ones, the hardware and speed ones, the non-finite-step limit, and max_epochs (a schedule whose
# learning rate depends on the run's length is checked on its own, see below).
_RESUME_FREE_KEYS: Final[frozenset[str]] = _RUN_ONLY_SETTINGS | {
    "num_workers",
    "num_threads",
    "device",
    "max_epochs",
    "compile",
    "cuda_graph",
    "max_nonfinite_steps",
}
# Schedules whose LR at each step depends on the run's length: a resumed run must keep it.
_LENGTH_BOUND_SCHEDULES: Final[frozenset[str]] = frozenset({"cosine", "onecycle"})


class _Forward(nn.Module):
    """The model's forward as a module of its own: graphing it leaves the model as it is."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.model(inputs))


class Trainer:
    """Train a classifier on uint8 face images, with validation, checkpoints and resume.

    The model maps normalised ``float`` ``N x 1 x H x W`` input to ``N x C`` logits (see
    :func:`emotionnet.models.build_model`). It is trained in place; after :meth:`fit`,
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
        callbacks: Objects with any of the :class:`Callback` hooks. Their
            ``on_validation_end`` runs after the trainer's own handlers
            (:attr:`best_weights`, :attr:`early_stopping`) and before the epoch's checkpoint,
            ``on_epoch_end`` after it. Those with ``state_dict()`` and ``load_state_dict()``
            are saved in ``last.ckpt`` (plain values and tensors only) and restored on resume.

    Raises:
        InvalidArgumentError: If the data is unlabelled, labels are out of range, the images
            are not of ``model_config.input_size``, the model output does not fit, or the
            settings do not fit the data or the machine.
        UnsupportedInputError: If ``model`` or ``config`` has the wrong type.

    Attributes:
        history: The :class:`History` of the run so far.
        epoch: Number of completed epochs.
        should_stop: Set by callbacks (or early stopping) to end after the current epoch.
        best_weights: The :class:`~emotionnet.training.BestWeights` handler following
            ``config.monitor`` (:attr:`best_value` and :attr:`best_epoch` are its).
        early_stopping: The :class:`~emotionnet.training.EarlyStopping` handler
            (``config.early_stopping_patience``; ``None`` patience never stops).
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
        from ..data import as_tensors

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
        self.world_size, self.rank, self.local_rank = dist_env()
        self.device = self._resolve_device()

        images, targets = as_tensors(train_set)
        self._train_images = images.unsqueeze(1) if images.ndim == 3 else images
        self._train_targets = targets.long()
        if self._train_images.shape[0] < 2 * self.world_size:
            raise InvalidArgumentError(
                f"The training set has {self._train_images.shape[0]} images; training needs at "
                f"least 2 per process ({self.world_size} processes)."
            )
        self._check_image_size("train_set", self._train_images)
        self.num_classes = self._infer_num_classes()
        self._check_labels("train_set", self._train_targets)
        self._val: tuple[torch.Tensor, torch.Tensor] | None = None
        if val_set is not None:
            val_images, val_targets = as_tensors(val_set)
            if val_images.shape[0] == 0:
                raise InvalidArgumentError("val_set is empty; pass labelled images or None.")
            self._check_image_size("val_set", val_images)
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
        if config.cuda_graph and (self.device.type != "cuda" or self.world_size > 1):
            where = (
                f"the device is {self.device}"
                if self.device.type != "cuda"
                else f"this is one of {self.world_size} processes"
            )
            raise InvalidArgumentError(
                f"cuda_graph=True replays the training step on one CUDA device, but {where}; "
                "set cuda_graph=False (a CPU step gains nothing from graphs)."
            )
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
        # The run's own handlers: they run before each epoch's checkpoint, which holds their
        # state, and then the callbacks given here.
        self.best_weights = BestWeights(config.monitor)
        self.early_stopping = EarlyStopping(config.early_stopping_patience, config.monitor)
        self._nonfinite_steps = 0
        self._ema: AveragedModel | None = None
        # Distillation with an online teacher: the teacher and its normalisation mean/std.
        self._teacher: nn.Module | None = None
        self._teacher_norm = (self.mean, self.std)
        # Per epoch validated by this process: the most predicted class, its share, the count.
        self._val_majority: dict[int, tuple[str, float, int]] = {}
        self._last_majority: tuple[str, float, int] | None = None

    # ---- setup -------------------------------------------------------------------------------

    @property
    def best_value(self) -> float | None:
        """The best value of ``config.monitor`` so far (:attr:`best_weights`'s)."""
        return self.best_weights.value

    @best_value.setter
    def best_value(self, value: float | None) -> None:
        self.best_weights.value = value

    @property
    def best_epoch(self) -> int | None:
        """The epoch of :attr:`best_value` (counting from 1), or ``None``."""
        return self.best_weights.epoch

    @best_epoch.setter
    def best_epoch(self, epoch: int | None) -> None:
        self.best_weights.epoch = epoch

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
        device = torch.device(resolve_device(self.config.device, fix=_DEVICE_FIX))
        if device.type == "cuda" and device.index is None:
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

    def _check_image_size(self, name: str, images: torch.Tensor) -> None:
        """Refuse images of another size than the model config's input size."""
        if self.model_config is None:
            return
        height, width = (int(side) for side in images.shape[-2:])
        size = self.model_config.input_size
        if (height, width) != (size, size):
            raise InvalidArgumentError(
                f"{name} holds {height}x{width} images, but the model takes {size}x{size} "
                f"(model_config.input_size={size}); a model trained on other sizes than it is "
                f"fed answers poorly. Resize the faces to {size}x{size}, or build the model "
                f"with input_size={height} for square {height}x{height} faces."
            )

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
            from ..class_weights import compute_class_weights

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
        soft_targets = self._setup_teacher()
        if soft_targets is not None and on_device:
            soft_targets = soft_targets.to(self.device)
        self._source = BatchSource(
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
            soft_targets=soft_targets,
        )
        self.steps_per_epoch = self._source.num_batches
        self._loader: DataLoader[tuple[torch.Tensor, ...]] | None = None
        self._sampler: EpochSampler | None = None
        if self.num_workers > 0:
            self._sampler = EpochSampler(self.steps_per_epoch)
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
        # With cuda_graph, captured at the first training step (after a resume has loaded
        # the weights into the same tensors), for that step's batch shape.
        self._graphed: tuple[nn.Module, torch.Size] | None = None

    def _setup_teacher(self) -> torch.Tensor | None:
        """Load the online teacher, or return the precomputed teacher probabilities."""
        from .distill import check_teacher, load_teacher, teacher_logits_for

        config = self.config
        self._teacher = None
        if not config.distilling:
            return None
        image_size = (int(self._train_images.shape[-2]), int(self._train_images.shape[-1]))
        if config.distill_mode == "online":
            source = config.distill_teacher
            if source is None:  # distill_targets alone: TrainConfig refuses it for online
                raise InvalidArgumentError("distill_mode='online' needs distill_teacher.")
            teacher, _ = load_teacher(source)
            check_teacher(teacher, labels=self.labels, image_size=image_size, source=source)
            teacher.to(self.device)
            if self.channels_last:
                teacher.to(memory_format=torch.channels_last)
            self._teacher = teacher
            self._teacher_norm = (float(teacher.config.mean[0]), float(teacher.config.std[0]))
            return None
        if config.distill_targets is not None:
            targets_file: Path | None = Path(config.distill_targets)
        elif self.checkpoint_dir is not None:
            targets_file = self.checkpoint_dir / TEACHER_TARGETS
        else:
            targets_file = None
        logits = teacher_logits_for(
            self._train_images,
            teacher=config.distill_teacher,
            targets_file=targets_file,
            tta=config.distill_tta,
            labels=self.labels,
            device=self.device,
            batch_size=config.eval_batch_size,
            write=self.is_main_process,
        )
        return soften(logits, config.distill_temperature)

    def _loss(
        self, logits: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor, rest: list[Any]
    ) -> torch.Tensor:
        """The training loss of a batch: cross-entropy, or the distillation loss."""
        config = self.config
        teacher_probs: torch.Tensor | None = rest[0].to(self.device) if rest else None
        if self._teacher is not None:
            mean, std = self._teacher_norm
            view = teacher_input(
                inputs, mean=self.mean, std=self.std, teacher_mean=mean, teacher_std=std
            )
            with torch.no_grad(), self._autocast():
                teacher_probs = soften(self._teacher(view), config.distill_temperature)
        if teacher_probs is None:
            return F.cross_entropy(
                logits.float(),
                targets,
                weight=self._loss_weights,
                label_smoothing=config.label_smoothing,
            )
        return distillation_loss(
            logits,
            targets,
            teacher_probs,
            temperature=config.distill_temperature,
            weight=config.distill_weight,
            label_smoothing=config.label_smoothing,
            class_weights=self._loss_weights,
        )

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

    def _batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
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
            for index, (inputs, targets, *rest) in enumerate(self._batches(epoch)):
                inputs = inputs.to(self.device, non_blocking=True)
                targets = targets.to(self.device, non_blocking=True)
                if self.channels_last:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                self._plateau_warmup()
                if index == 0:
                    first_lr = float(self.optimizer.param_groups[0]["lr"])
                if self._model_buffers:
                    torch._foreach_copy_(self._buffer_backup, self._model_buffers)
                forward = self._graphed_model(inputs) if config.cuda_graph else module
                with self._autocast():
                    logits = forward(inputs)
                loss = self._loss(logits, targets, inputs, rest)
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

    def _graphed_model(self, inputs: torch.Tensor) -> nn.Module:
        """The model's training forward/backward as CUDA graphs, captured on first use."""
        if self._graphed is None:
            sample = torch.zeros_like(inputs)
            # Capture runs a few warm-up steps, whose batch-norm statistics must not count.
            before = [buffer.detach().clone() for buffer in self._model_buffers]
            amp = (
                nullcontext()
                if self.amp_dtype is None
                # Autocast's weight cache cannot be captured: the casts go in the graph.
                else torch.autocast(self.device.type, dtype=self.amp_dtype, cache_enabled=False)
            )
            with amp:
                graphed = torch.cuda.make_graphed_callables(_Forward(self.model), (sample,))
            if self._model_buffers:
                torch._foreach_copy_(self._model_buffers, before)
            self._graphed = (cast(nn.Module, graphed), inputs.shape)
        graphed, shape = self._graphed
        if inputs.shape != shape:
            # A replay copies the batch into the captured one, broadcasting a smaller batch.
            raise InvalidArgumentError(
                f"cuda_graph=True captured batches shaped {tuple(shape)}, got "
                f"{tuple(inputs.shape)}; every training batch must have the same shape."
            )
        return graphed

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
            from ..inference import predict_logits
            from ..metrics import report_from_predictions

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
                schedule or on training data of another size (another number of images or
                steps per epoch), another live run holds ``checkpoint_dir`` (its
                ``train.lock`` names the process, host and start time; a dead process's lock
                on this host is taken over with a warning), or a file in ``checkpoint_dir``
                cannot be written (a read-only folder, a full disk).
            InvalidArgumentError: If ``resume=True`` without a ``checkpoint_dir``, the
                ``checkpoint_dir`` is a file, the one-cycle warm-up is shorter than 2
                optimizer steps, or the distillation teacher or its targets file does not fit
                (other classes or image size, another teacher or view set, faces missing
                without a teacher to compute them).
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
        lock: FolderLock | None = None
        try:
            self._check_checkpoint_dir()
            if self.is_main_process and self.checkpoint_dir is not None:
                lock = FolderLock(self.checkpoint_dir).acquire()
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
            self._teacher = None
            if lock is not None:
                lock.release()
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
        self.best_weights.reset()
        self.early_stopping.reset()
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

        if config.schedule == "plateau" and self.global_step >= self._warmup_steps():
            self.scheduler.step(row[config.monitor])
        # Only rank 0 keeps and writes the best weights; every rank counts for early stopping.
        self.best_weights.on_validation_end(self, row)
        self.early_stopping.on_validation_end(self, row)
        self._run_callbacks("on_validation_end", row)
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

    def checkpoint_state(self) -> dict[str, Any]:
        """Return the resume state that :meth:`save_checkpoint` writes.

        Collective under distributed training: every rank must call it (RNG states are
        gathered from all ranks).

        Returns:
            The checkpoint dict described in :func:`load_checkpoint`.
        """
        rng = rng_state(self.device)
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
            "best": self.best_weights.state_dict(),
            "bad_epochs": self.early_stopping.bad_epochs,
            "should_stop": self.should_stop,
            "nonfinite_steps": self._nonfinite_steps,
            "data": self._data_record(),
            "callbacks": {
                key: callback.state_dict() for key, callback in self._stateful_callbacks()
            },
        }

    def _data_record(self) -> dict[str, int]:
        """What a resume must train on: the training set's size and the steps per epoch."""
        return {
            "num_samples": int(self._train_images.shape[0]),
            "steps_per_epoch": int(self.steps_per_epoch),
        }

    def _check_resumable_data(self, path: Path, saved: object) -> None:
        """Refuse to resume a run on training data of another size (another schedule)."""
        if not isinstance(saved, Mapping):
            return  # written before the data was recorded
        now = self._data_record()
        if all(saved.get(key) == value for key, value in now.items()):
            return
        raise CheckpointError(
            f"{path} was trained on {saved.get('num_samples')} images "
            f"({saved.get('steps_per_epoch')} steps per epoch), but this run has "
            f"{now['num_samples']} ({now['steps_per_epoch']} steps per epoch): the epochs, the "
            "learning-rate schedule and the sample order of the resumed run would not be the "
            "checkpoint's. Resume on the data the run started with (the same split and "
            "--max-train-samples), or start a new run (resume=False), e.g. from the weights "
            f"in {BEST_WEIGHTS}."
        )

    def _stateful_callbacks(self) -> list[tuple[str, Any]]:
        """The given callbacks with ``state_dict``, keyed by position and class name."""
        return [
            (f"{index}:{type(callback).__qualname__}", callback)
            for index, callback in enumerate(self.callbacks)
            if callable(getattr(callback, "state_dict", None))
        ]

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
            atomic_write(target, lambda handle: save_checkpoint_file(state, handle))
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
        self._check_resumable_data(path, state.get("data"))
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
        self.best_weights.load_state_dict(best)
        self.early_stopping.load_state_dict(
            {
                "metric": best.get("metric"),
                "best": best.get("value"),
                "best_epoch": best.get("epoch"),
                "bad_epochs": state["bad_epochs"],
            }
        )
        self._nonfinite_steps = int(state.get("nonfinite_steps", 0))
        # A run that stopped early stays stopped; checkpoints without the flag recompute it.
        self.should_stop = bool(state.get("should_stop", False)) or self.early_stopping.triggered
        saved_callbacks = state.get("callbacks") or {}
        for key, callback in self._stateful_callbacks():
            loader = getattr(callback, "load_state_dict", None)
            if key in saved_callbacks and callable(loader):
                loader(saved_callbacks[key])
            elif self.is_main_process:
                logger.warning("%s holds no state for the callback %s; it starts afresh", path, key)
        rng_states = state["rng"]
        if len(rng_states) == self.world_size:
            set_rng_state(rng_states[self.rank], self.device)
        else:
            logger.warning(
                "%s was written by %d processes, this run has %d: RNG states are reseeded",
                path,
                len(rng_states),
                self.world_size,
            )
            seed = derive_seed(self.config.seed, 2, self.epoch, self.rank) % 2**32
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
        state = self.best_weights.weights
        path: Path | None = None
        if state is None and self.checkpoint_dir is not None:
            path = self.checkpoint_dir / BEST_WEIGHTS
            if path.is_file():
                state = load_weights_file(path)
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
