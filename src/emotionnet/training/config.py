"""Settings of a training run: :class:`TrainConfig`, its valid values, and config files.

Example:
    >>> TrainConfig(max_epochs=3).monitor_mode
    'max'
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, cast

import torch

from .._atomic import atomic_write_text
from .._checks import check_choice, check_int, check_number, check_probability, resolve_device
from .._config import config_values
from .._io import read_text_file
from .._optional import require
from ..augmentation import AugmentConfig
from ..errors import InvalidArgumentError
from .distill import DISTILL_MODES

__all__ = [
    "AMP_MODES",
    "MONITORS",
    "OPTIMIZERS",
    "SCHEDULES",
    "TrainConfig",
    "bf16_supported",
    "read_config_file",
]

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

_DEVICE_FIX: Final[str] = "use device='auto' (CUDA when available, else the CPU) or 'cpu'"

# Where and how a run reports, not what it trains: they never change the weights, a resumed run
# may set them afresh without a warning, and a saved recipe leaves them out.
_RUN_ONLY_SETTINGS: Final[frozenset[str]] = frozenset({"checkpoint_dir", "progress", "save_every"})

MONITOR_ALIASES: Final[dict[str, str]] = {
    "accuracy": "val_accuracy",
    "macro_f1": "val_macro_f1",
    "loss": "val_loss",
}


def bf16_supported(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes in bfloat16 fast enough that bf16 autocast pays off there.

    On CUDA this is :func:`torch.cuda.is_bf16_supported`. On the CPU it follows PyTorch's own
    CPU feature detection and what was measured: AMX (Intel Xeon since Sapphire Rapids), or
    AVX512-BF16 on an AMD processor (Zen 4 and later; 3x float32 measured on a Zen 5). An
    Intel processor with AVX512-BF16 but no AMX (Cooper Lake, some cloud Xeons) converts
    more than it gains: 0.8x float32 was measured on one, so it counts as ``False``, as do
    other CPUs (bf16 would be emulated) and ``mps``.

    Args:
        device: A device or device string.

    Returns:
        ``True`` if bf16 autocast is expected to be faster than float32 on ``device``.

    Example:
        >>> bf16_supported("cpu") in (True, False)
        True
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    if bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()):
        return True
    avx512_bf16 = bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())
    return avx512_bf16 and _cpu_vendor() == "AuthenticAMD"


def _cpu_vendor() -> str:
    """The CPU vendor string (``"AuthenticAMD"``, ``"GenuineIntel"``), or ``""`` if unknown.

    Read from ``/proc/cpuinfo`` on Linux, else from :func:`platform.processor`.

    Example:
        >>> isinstance(_cpu_vendor(), str)
        True
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "vendor_id":
                    return value.strip()
    except OSError:
        pass
    processor = platform.processor()
    for vendor in ("AuthenticAMD", "GenuineIntel"):
        if vendor in processor:
            return vendor
    return "AuthenticAMD" if "AMD" in processor else "GenuineIntel" if "Intel" in processor else ""


def _fail(name: str, value: object, expected: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{name} must be {expected}, got {value!r}.")


def _choice(name: str, value: object, valid: Iterable[str]) -> str:
    return str(check_choice(name, value, valid))


def _toml_loads(text: str, source: Path) -> object:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    tomli = require(  # pragma: no cover - Python 3.10 only
        "tomli",
        f"Reading {source} on Python 3.10 (3.11+ has a TOML parser built in)",
        alternative="or use a JSON config",
    )
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
        cuda_graph: Capture the model's training forward and backward pass as CUDA graphs
            (:func:`torch.cuda.make_graphed_callables`), replayed every step: on a GPU, a step
            of a small network on small images tends to be bound by launching its
            hundreds of kernels, not by arithmetic, and a replay launches them at once. CUDA
            only, one process, not with ``compile``; the model itself is left as it is (the
            graph wraps it), and validation runs it as usual. The same computation (not bit for
            bit: cuDNN may pick other algorithms), so a run may switch it on or off on resume.
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
            :data:`emotionnet.tta.TTA_MODES`.
        distill_teacher: Knowledge distillation from this teacher, a model folder (as
            ``save_pretrained`` writes; e.g. ``src/emotionnet/weights/default``, the bundled
            model), loaded strictly; ``None`` (the default) trains without a teacher. In a
            recipe file a relative path is relative to that file. See
            :mod:`emotionnet.training.distill`.
        distill_mode: ``"online"``: the teacher runs on every training batch, on the
            student's augmented and mixed view; ``"precomputed"``: its targets are computed
            once for the un-augmented training faces (with ``distill_tta``), kept in
            ``distill_targets`` (or ``checkpoint_dir/teacher_targets.safetensors``), and
            mixed with the same coefficient and partner as the images.
        distill_targets: The precomputed teacher-targets file
            (:func:`~emotionnet.training.precompute_teacher_targets`) to read, and to fill
            with the faces it lacks when ``distill_teacher`` is set; enables distillation
            without a teacher folder when it has every training face. Precomputed mode only.
        distill_temperature: Temperature ``T`` of the soft targets (and of the student's
            softmax in the soft loss, which is scaled by ``T**2``).
        distill_weight: Share of the soft (teacher) loss, in ``[0, 1]``; the hard
            cross-entropy gets ``1 - distill_weight``.
        distill_tta: The teacher's test-time augmentation for precomputed targets (one of
            :data:`emotionnet.tta.TTA_MODES`; ``"flip_crop"`` is the bundled model's
            reported view set); online targets are single-view (``"none"``).

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
    cuda_graph: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    monitor: str = "val_accuracy"
    early_stopping_patience: int | None = None
    checkpoint_dir: str | None = None
    save_every: int = 1
    progress: bool = True
    eval_batch_size: int = 256
    eval_tta: bool | str = False
    distill_teacher: str | None = None
    distill_mode: str = "online"
    distill_targets: str | None = None
    distill_temperature: float = 1.0
    distill_weight: float = 0.5
    distill_tta: str = "none"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("max_epochs", "batch_size", "save_every", "eval_batch_size"):
            check_int(name, getattr(self, name), minimum=1)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("amp", self.amp, AMP_MODES)
        set_(self, "lr", check_number("lr", self.lr, low=0, low_open=True))
        for name in ("weight_decay", "min_lr", "warmup_epochs"):
            set_(self, name, check_number(name, getattr(self, name), low=0))
        set_(
            self, "momentum", check_number("momentum", self.momentum, low=0, high=1, high_open=True)
        )
        if self.schedule == "onecycle" and self.warmup_epochs >= self.max_epochs:
            raise _fail(
                "warmup_epochs",
                self.warmup_epochs,
                f"shorter than max_epochs ({self.max_epochs}) for the one-cycle schedule",
            )
        factor = check_number(
            "plateau_factor", self.plateau_factor, low=0, high=1, low_open=True, high_open=True
        )
        set_(self, "plateau_factor", factor)
        check_int("plateau_patience", self.plateau_patience, minimum=0)
        smoothing = check_number(
            "label_smoothing", self.label_smoothing, low=0, high=1, high_open=True
        )
        set_(self, "label_smoothing", smoothing)
        weights = self.class_weights
        if isinstance(weights, (list, tuple)):
            if not weights:
                raise _fail("class_weights", weights, "a list of non-negative numbers")
            values = tuple(check_number("class_weights", w, low=0) for w in weights)
            set_(self, "class_weights", values)
        elif isinstance(weights, str):
            from ..class_weights import METHODS

            _choice("class_weights", weights, METHODS)
        elif weights is not None:
            raise _fail("class_weights", weights, "None, a method name or one weight per class")
        for name in ("mixup_alpha", "cutmix_alpha"):
            set_(self, name, check_number(name, getattr(self, name), low=0, hint="0 disables it"))
        for name in ("mix_prob", "mix_switch_prob"):
            set_(self, name, check_probability(name, getattr(self, name)))
        check_int("mix_off_epochs", self.mix_off_epochs, minimum=0, maximum=self.max_epochs)
        if self.ema_decay is not None:
            decay = check_number(
                "ema_decay",
                self.ema_decay,
                low=0,
                high=1,
                low_open=True,
                high_open=True,
                hint="e.g. 0.999, or None for no average",
            )
            set_(self, "ema_decay", decay)
        if self.grad_clip is not None:
            clip = check_number(
                "grad_clip", self.grad_clip, low=0, low_open=True, hint="or None for no clipping"
            )
            set_(self, "grad_clip", clip)
        check_int(
            "max_nonfinite_steps", self.max_nonfinite_steps, minimum=0, hint="0 stops at once"
        )
        check_int("seed", self.seed, minimum=0)
        # Only the spelling: the config may be written for another machine than this one.
        set_(self, "device", resolve_device(self.device, here=False, fix=_DEVICE_FIX))
        if self.num_workers is not None:
            check_int("num_workers", self.num_workers, minimum=0, hint="or None")
        if self.num_threads is not None:
            check_int("num_threads", self.num_threads, minimum=1, hint="or None")
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
        for name in ("compile", "cuda_graph", "decay_norm_and_bias", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise _fail(name, getattr(self, name), "True or False")
        if self.compile and self.cuda_graph:
            raise InvalidArgumentError(
                "compile=True and cuda_graph=True both take over the model's training forward "
                "pass; choose one of them."
            )
        if isinstance(self.augment, Mapping):
            set_(self, "augment", AugmentConfig.from_dict(self.augment))
        elif not isinstance(self.augment, AugmentConfig):
            raise _fail("augment", self.augment, "an AugmentConfig or a table of its fields")
        monitor = MONITOR_ALIASES.get(str(self.monitor), self.monitor)
        set_(self, "monitor", _choice("monitor", monitor, [*MONITORS, *MONITOR_ALIASES]))
        if self.early_stopping_patience is not None:
            check_int(
                "early_stopping_patience", self.early_stopping_patience, minimum=1, hint="or None"
            )
        if self.checkpoint_dir is not None:
            if not isinstance(self.checkpoint_dir, (str, os.PathLike)):
                raise _fail("checkpoint_dir", self.checkpoint_dir, "None or a folder path")
            set_(self, "checkpoint_dir", os.fspath(self.checkpoint_dir))
        if not isinstance(self.eval_tta, (bool, str)):
            raise _fail("eval_tta", self.eval_tta, "False, True or a TTA mode name")
        if isinstance(self.eval_tta, str):
            from ..tta import TTA_MODES

            if self.eval_tta not in TTA_MODES:
                raise InvalidArgumentError(
                    f"Unknown value {self.eval_tta!r} for argument eval_tta. Valid values are "
                    f"False, True, {', '.join(repr(m) for m in TTA_MODES)}."
                )

        self._check_distillation()

    def _check_distillation(self) -> None:
        set_ = object.__setattr__
        for name in ("distill_teacher", "distill_targets"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
                raise _fail(name, value, "None or a path")
            set_(self, name, os.fspath(value))
        _choice("distill_mode", self.distill_mode, DISTILL_MODES)
        temperature = check_number(
            "distill_temperature", self.distill_temperature, low=0, low_open=True
        )
        set_(self, "distill_temperature", temperature)
        set_(
            self,
            "distill_weight",
            check_number("distill_weight", self.distill_weight, low=0, high=1),
        )
        from ..tta import TTA_MODES

        _choice("distill_tta", self.distill_tta, TTA_MODES)
        if self.distill_mode == "online":
            if self.distill_targets is not None:
                raise InvalidArgumentError(
                    f"distill_targets={self.distill_targets!r} is a file of precomputed teacher "
                    "targets, but distill_mode is 'online' (the teacher runs on every batch); "
                    "set distill_mode='precomputed', or distill_targets=None."
                )
            if self.distill_tta != "none":
                raise InvalidArgumentError(
                    f"distill_tta={self.distill_tta!r} averages the teacher over views of the "
                    "un-augmented faces, which only distill_mode='precomputed' computes; set "
                    "distill_mode='precomputed', or distill_tta='none'."
                )

    @property
    def distilling(self) -> bool:
        """Whether the run learns from a teacher (``distill_teacher`` or ``distill_targets``)."""
        return self.distill_teacher is not None or self.distill_targets is not None

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
        return atomic_write_text(
            Path(path), json.dumps(self.to_dict(), indent=2) + "\n", parents=True
        )

    @property
    def monitor_mode(self) -> str:
        """``"max"`` or ``"min"``: which direction of :attr:`monitor` is better."""
        return MONITORS[self.monitor]
