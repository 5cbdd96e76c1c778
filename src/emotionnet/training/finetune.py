r"""Fine-tune a trained model on your own labelled folder, any label set: :func:`finetune`.

The schedule is meant to work without tuning on 100 to 5,000 images:

1. **Head**: the backbone is frozen and only the new final layer
   (:func:`~emotionnet.models.replace_head`) trains, for :data:`HEAD_EPOCHS` epochs (AdamW,
   lr :data:`HEAD_LR`), so that the random rows of new labels do not push large gradients
   into the trained backbone.
2. **All layers** at a lower learning rate (SGD with Nesterov momentum, lr :data:`FULL_LR`,
   a one-epoch warm-up then cosine), with the release recipe's augmentation (flips, small
   rotations, shifts and scales, random erasing) and label smoothing; early stopping on the
   validation split (:data:`PATIENCE` epochs without a better validation accuracy), and the
   best epoch's weights (of either phase) are the ones kept.

Both phases run the :class:`~emotionnet.Trainer`; bf16 autocast where the processor has it
(``amp="auto"``) and a thread count chosen from the cores other processes leave free when the
run starts (:func:`free_cores`), so that a busy machine does not slow training by half.

Example:
    >>> import tempfile, logging
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from emotionnet.training import finetune
    >>> logging.getLogger("emotionnet").setLevel(logging.ERROR)
    >>> data, out = tempfile.TemporaryDirectory(), tempfile.TemporaryDirectory()
    >>> for label, shade in (("calm", 60), ("excited", 200)):
    ...     Path(data.name, label).mkdir()
    ...     for i in range(6):
    ...         Image.new("L", (48, 48), shade + 5 * i).save(f"{data.name}/{label}/{i}.png")
    >>> result = finetune(data.name, Path(out.name, "model"), epochs=2, progress=False)
    >>> result.labels, result.report.labels, len(result.history)
    (('calm', 'excited'), ('calm', 'excited'), 2)
    >>> sorted(p.name for p in result.folder.iterdir())  # doctest: +NORMALIZE_WHITESPACE
    ['README.md', 'config.json', 'evaluation_validation.json', 'finetune.json',
     'history.csv', 'history.json', 'model.onnx', 'model.safetensors']
    >>> data.cleanup(); out.cleanup()
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import torch
from torch import nn

from .._atomic import atomic_write_text
from .._checks import check_int
from ..augmentation import AugmentConfig
from ..data import LabelledFolder, as_tensors
from ..errors import InvalidArgumentError, UnsupportedInputError
from ..models import EmotionNet, ModelConfig, replace_head
from .config import TrainConfig
from .history import History
from .trainer import Trainer

if TYPE_CHECKING:
    from ..metrics import EvaluationReport

__all__ = [
    "FULL_LR",
    "HEAD_EPOCHS",
    "HEAD_LR",
    "PATIENCE",
    "FinetuneResult",
    "finetune",
    "free_cores",
]

logger = logging.getLogger("emotionnet.training")

HEAD_EPOCHS: Final[int] = 2
"""Epochs of the first phase, in which only the new head trains."""
HEAD_LR: Final[float] = 3e-3
"""AdamW learning rate of the head phase."""
FULL_LR: Final[float] = 0.003
"""Peak SGD learning rate of the all-layers phase: about a thirtieth of the release recipe's
(0.1). On a 3-label FER2013 subset of 450 faces, 0.002 gained 5 points over the start, 0.01
and 0.0005 2 to 4 (epochs noisier at 0.01)."""
PATIENCE: Final[int] = 4
"""Early stopping: epochs of the all-layers phase without a better validation accuracy."""
_PRECISION: Final[dict[torch.dtype | None, str]] = {
    None: "float32",
    torch.bfloat16: "bf16 autocast",
    torch.float16: "fp16 autocast",
}
VALIDATION_NAME: Final[str] = "validation"
"""The name of the validation report in the saved folder (``evaluation_validation.json``)."""

# The release recipe's augmentation (configs/fer2013_resnet18.toml): what the backbone saw.
_AUGMENT: Final[AugmentConfig] = AugmentConfig(
    hflip=0.5,
    rotation=10.0,
    translate=0.1,
    scale=(0.9, 1.1),
    erasing=0.5,
    erasing_scale=(0.02, 0.33),
    erasing_ratio=(0.3, 3.3),
    erasing_value="random",
)
# Enough optimizer passes over a small set to converge, few enough on a large one to finish
# in minutes: about 10,000 images seen, within these bounds.
_MIN_EPOCHS: Final[int] = 12
_MAX_EPOCHS: Final[int] = 40
_IMAGES_SEEN: Final[int] = 10_000


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune` made.

    Attributes:
        folder: The saved model folder (``EmotionRecognizer.from_pretrained(folder)``).
        labels: The model's labels, position = class index.
        report: The best model's :class:`~emotionnet.EvaluationReport` on the validation
            images, over its own labels.
        history: One row per epoch of both phases (``"phase"``: ``"head"`` or ``"all"``).
        train_size: Training images.
        val_size: Validation images.
        best_epoch: The epoch whose weights were kept.
        seconds: Wall time of the whole run, data loading included.
        skipped: Files that could not be read (with the reason) or, with ``faces=True``,
            held no face.
    """

    folder: Path
    labels: tuple[str, ...]
    report: EvaluationReport
    history: History
    train_size: int
    val_size: int
    best_epoch: int
    seconds: float
    skipped: tuple[str, ...]


def free_cores() -> int:
    """Return how many of this process's cores other processes leave idle, at least 1.

    Measured over a fifth of a second from ``/proc/stat`` (Linux); elsewhere all the cores
    this process may use. :func:`finetune` trains with this many threads: one thread per core
    is fastest on a quiet machine, but when another process keeps a core busy every
    operation waits for its slowest thread, and a 2-thread run on 2 cores falls below a
    1-thread one (see the training guide).

    Returns:
        The number of threads to train with.

    Example:
        >>> 1 <= free_cores() <= (os.cpu_count() or 1)
        True
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        before = _cpu_times()
        time.sleep(0.2)
        after = _cpu_times()
    except (OSError, ValueError, IndexError):
        return cores
    total = sum(after) - sum(before)
    idle = (after[3] + after[4]) - (before[3] + before[4])
    if total <= 0:
        return cores
    machine_cores = os.cpu_count() or cores
    busy = (1.0 - idle / total) * machine_cores  # cores' worth of work by others (we slept)
    return max(1, min(cores, machine_cores - round(busy)))


def _cpu_times() -> list[int]:
    with open("/proc/stat", encoding="ascii") as stat:
        # user nice system idle iowait irq softirq steal (guest time is counted in user)
        return [int(value) for value in stat.readline().split()[1:9]]


def _load_init(init: object) -> EmotionNet:
    if isinstance(init, EmotionNet):
        return init
    from ..recognizer import EmotionRecognizer

    if isinstance(init, EmotionRecognizer):
        recognizer = init
    elif init is None or isinstance(init, (str, os.PathLike)):
        name = None if init is None or str(init) == "default" else init
        recognizer = EmotionRecognizer.from_pretrained(name, device="cpu", backend="torch")
    else:
        raise UnsupportedInputError(
            f"init must be 'default', a model folder, a Hub repo id, an EmotionNet or an "
            f"EmotionRecognizer, got {type(init).__name__}."
        )
    model = recognizer.model
    if not isinstance(model, EmotionNet):
        raise InvalidArgumentError(
            f"The init model {getattr(recognizer, 'source', init)!s} has no PyTorch weights "
            "(an .onnx file cannot be fine-tuned); pass the model folder it was exported from."
        )
    return model


def _check_output(output: Path, data_root: Path | None, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise InvalidArgumentError(
            f"The output {str(output)!r} is a file; pass a folder path for the model."
        )
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise InvalidArgumentError(
            f"The output folder {str(output)!r} exists and is not empty; choose another "
            "folder, or pass overwrite=True (--overwrite) to replace the model files in it."
        )
    if data_root is not None:
        resolved = output.resolve()
        if resolved == data_root.resolve() or data_root.resolve() in resolved.parents:
            raise InvalidArgumentError(
                f"The output folder {str(output)!r} is inside the data folder "
                f"{str(data_root)!r}, where it would be read as a label; put it elsewhere."
            )


def _as_folder(
    data: object,
    *,
    size: int,
    faces: bool,
    detector: Any,
    group_pattern: str | None,
    labels: Sequence[str] | None = None,
) -> LabelledFolder:
    if isinstance(data, LabelledFolder):
        if data.size != size:
            raise InvalidArgumentError(
                f"The images of {str(data.root)!r} were read at {data.size}x{data.size}, but "
                f"the init model takes {size}x{size} input; read the folder with "
                f"LabelledFolder(..., size={size}), or pass its path."
            )
        if labels is not None and tuple(data.labels) != tuple(labels):
            raise InvalidArgumentError(
                f"The validation folder has the labels {list(data.labels)} but the training "
                f"folder {list(labels)}; read it with LabelledFolder(..., labels=train.labels)."
            )
        return data
    if not isinstance(data, (str, os.PathLike)):
        raise UnsupportedInputError(
            f"data must be a folder path or a LabelledFolder, got {type(data).__name__}."
        )
    return LabelledFolder(
        data,
        labels=labels,
        size=size,
        faces=faces,
        detector=detector,
        group_pattern=group_pattern,
    )


def _default_epochs(train_size: int) -> int:
    return max(_MIN_EPOCHS, min(_MAX_EPOCHS, math.ceil(_IMAGES_SEEN / train_size)))


def _head_epochs(epochs: int) -> int:
    return min(HEAD_EPOCHS, epochs // 3)


def _set_trainable(model: nn.Module, *, head_only: bool) -> None:
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not head_only or name.startswith("fc."))


def finetune(
    data: str | os.PathLike[str] | LabelledFolder,
    output: str | os.PathLike[str],
    *,
    init: str | os.PathLike[str] | EmotionNet | Any = "default",
    epochs: int | None = None,
    val: str | os.PathLike[str] | LabelledFolder | None = None,
    val_split: float = 0.2,
    seed: int = 0,
    faces: bool = False,
    detector: Any = None,
    group_pattern: str | None = None,
    overwrite: bool = False,
    batch_size: int | None = None,
    device: str = "auto",
    num_threads: int | None = None,
    amp: str = "auto",
    progress: bool = True,
) -> FinetuneResult:
    r"""Fine-tune a trained model on a labelled folder and save it as a model folder.

    ``data`` holds one sub-folder per label (see :class:`~emotionnet.data.LabelledFolder`
    for the images it reads and the label order). The model starts from ``init`` with a new
    head for these labels (:func:`~emotionnet.models.replace_head`: the backbone's weights
    kept, the rows of labels ``init`` knows kept too) and trains by the two-phase schedule of
    :mod:`emotionnet.training.finetune`. The best epoch's weights are saved in ``output``
    with :meth:`~emotionnet.EmotionRecognizer.save_pretrained` (``model.safetensors``,
    ``config.json`` with the labels, input size and normalisation, a ``README.md`` card with
    the validation metrics over the model's own labels), together with
    ``evaluation_validation.json`` (the validation report), ``history.json``/``.csv`` and
    ``finetune.json`` (the settings, the data, the validation files, the skipped files).
    Every command and :meth:`~emotionnet.EmotionRecognizer.from_pretrained` then predict the
    new labels.

    Args:
        data: The training folder (or a :class:`~emotionnet.data.LabelledFolder`).
        output: The model folder to write.
        init: The model to start from: ``"default"`` (the bundled model), a model folder or
            Hub repo id (as :meth:`~emotionnet.EmotionRecognizer.from_pretrained` takes), an
            :class:`~emotionnet.EmotionNet` or an :class:`~emotionnet.EmotionRecognizer`.
        epochs: Epochs of both phases together; ``None`` chooses from the data size (about
            10,000 training images seen, 12 to 40 epochs). Early stopping may end sooner.
        val: A separate validation folder with the same labels; ``None`` splits ``data``.
        val_split: Share of ``data`` held out for validation when ``val`` is ``None``,
            stratified by label and seeded by ``seed`` (:meth:`LabelledFolder.split`).
        seed: Seed of the split, the new head and the training.
        faces: Detect and crop the largest face of each image (needs ``emotionnet[face]``).
        detector: The face detector with ``faces=True``.
        group_pattern: A regular expression whose first group, searched in each file name,
            is the image's group (e.g. ``r"^(S\d+)_"`` for a subject id): no group is in
            both training and validation.
        overwrite: Write into an ``output`` folder that exists and is not empty (the files
            listed above are replaced, others are left alone).
        batch_size: Images per step; ``None``: 32 below 1,000 training images, else 64.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        num_threads: CPU threads; ``None`` uses :func:`free_cores`.
        amp: As :attr:`TrainConfig.amp`: ``"auto"`` is bf16 where the device computes it
            natively.
        progress: Show progress bars (per-epoch lines are logged by ``emotionnet.training``
            at level ``INFO`` either way).

    Returns:
        The :class:`FinetuneResult`.

    Raises:
        InvalidArgumentError: For an ``output`` folder that exists (without ``overwrite``),
            a data folder with fewer than two labels, an empty label folder, a folder name
            that is not a valid label, an ``init`` model whose input size differs from that
            of a given :class:`~emotionnet.data.LabelledFolder` or that is not grayscale, a
            validation folder with other labels, or invalid settings.
        DatasetNotFoundError: If a data folder does not exist.
        WeightsNotFoundError: If ``init`` names no model.

    Example:
        >>> from emotionnet import finetune
        >>> result = finetune("my_faces", "my_model", epochs=15)  # doctest: +SKIP
        >>> f"{result.report.accuracy:.1%}"  # doctest: +SKIP
        '91.3%'
    """
    started = time.perf_counter()
    output = Path(output)
    data_root = data.root if isinstance(data, LabelledFolder) else None
    if isinstance(data, (str, os.PathLike)):
        data_root = Path(data)
    _check_output(output, data_root, overwrite)
    seed = check_int("seed", seed, minimum=0, maximum=2**32 - 1)
    if epochs is not None:
        epochs = check_int("epochs", epochs, minimum=1, maximum=10_000)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1)
    base = _load_init(init)
    config = base.config
    if config.in_chans != 1:
        raise InvalidArgumentError(
            f"The init model takes {config.in_chans}-channel input; fine-tuning feeds "
            "grayscale faces, so start from a 1-channel model (the bundled one, for one)."
        )
    train_folder = _as_folder(
        data,
        size=config.input_size,
        faces=faces,
        detector=detector,
        group_pattern=group_pattern,
    )
    labels = train_folder.labels
    skipped = [f"{file}: {why}" for file, why in train_folder.skipped]
    skipped += [f"{file}: no face found" for file in train_folder.no_face]
    train_set: Any
    val_set: Any
    if val is None:
        train_set, val_set = train_folder.split(val_split, seed=seed)
        val_files = [train_folder.files[i] for i in val_set.indices]
    else:
        train_set = train_folder
        val_folder = _as_folder(
            val,
            size=config.input_size,
            faces=faces,
            detector=detector,
            group_pattern=None,
            labels=labels,
        )
        skipped += [f"{file}: {why}" for file, why in val_folder.skipped]
        skipped += [f"{file}: no face found" for file in val_folder.no_face]
        val_set = val_folder
        val_files = list(val_folder.files)
    train_images, train_targets = as_tensors(train_set)
    val_images, val_targets = as_tensors(val_set)
    train_size, val_size = len(train_targets), len(val_targets)
    total_epochs = epochs if epochs is not None else _default_epochs(train_size)
    head_epochs = _head_epochs(total_epochs)
    batch = batch_size or (32 if train_size < 1000 else 64)
    threads = num_threads if num_threads is not None else free_cores()
    logger.info(
        "fine-tuning %s on %d training and %d validation images, labels %s: %d epochs "
        "(%d head only), batch %d, %d thread(s)",
        _init_name(init),
        train_size,
        val_size,
        list(labels),
        total_epochs,
        head_epochs,
        batch,
        threads,
    )

    torch.manual_seed(seed)
    model = replace_head(base, labels)
    model_config: ModelConfig = model.config
    common = TrainConfig(
        max_epochs=max(1, head_epochs),
        batch_size=min(batch, train_size),
        optimizer="adamw",
        lr=HEAD_LR,
        weight_decay=0.05,
        schedule="constant",
        warmup_epochs=0.0,
        label_smoothing=0.1,
        augment=_AUGMENT,
        seed=seed,
        device=device,
        num_threads=threads,
        amp=amp,
        progress=progress,
        monitor="val_accuracy",
    )
    train_data = (train_images, train_targets)
    val_data = (val_images, val_targets)
    history = History()
    best_state: dict[str, torch.Tensor] | None = None
    best_value: float | None = None
    best_epoch = 0
    if head_epochs:
        logger.info("phase 1/2: the new head only, %d epoch(s)", head_epochs)
        _set_trainable(model, head_only=True)
        head = Trainer(model, train_data, val_data, common, model_config=model_config)
        for row in head.fit():
            history.append({**row, "phase": "head"})
        best_value, best_epoch = head.best_value, head.best_epoch or 0
        best_state = head.best_weights.weights
        best_state = None if best_state is None else {k: v.clone() for k, v in best_state.items()}
    _set_trainable(model, head_only=False)
    full_config = dataclasses.replace(
        common,
        max_epochs=total_epochs - head_epochs,
        optimizer="sgd",
        lr=FULL_LR,
        weight_decay=5e-4,
        schedule="cosine",
        warmup_epochs=min(1.0, (total_epochs - head_epochs) / 2),
        early_stopping_patience=PATIENCE,
        num_threads=num_threads if num_threads is not None else free_cores(),
    )
    logger.info(
        "phase 2/2: all layers, up to %d epoch(s) (early stopping after %d without a better "
        "validation accuracy), %d thread(s)",
        full_config.max_epochs,
        PATIENCE,
        full_config.num_threads,
    )
    full = Trainer(model, train_data, val_data, full_config, model_config=model_config)
    for row in full.fit():
        history.append({**row, "epoch": row["epoch"] + head_epochs, "phase": "all"})
    full.load_best()
    if (
        best_value is not None
        and best_state is not None
        and (full.best_value is None or best_value > full.best_value)
    ):
        model.load_state_dict(best_state)  # the head phase's best was better
    else:
        best_epoch = (full.best_epoch or 0) + head_epochs
    return _save(
        model,
        output,
        data_root=data_root,
        init=init,
        labels=labels,
        val_data=val_data,
        history=history,
        best_epoch=best_epoch,
        sizes=(train_size, val_size),
        settings={
            "epochs": total_epochs,
            "head_epochs": head_epochs,
            "batch_size": batch,
            "val": None if val is None else str(getattr(val, "root", val)),
            "val_split": None if val is not None else val_split,
            "seed": seed,
            "faces": faces,
            "group_pattern": group_pattern,
            "threads": threads,
            "amp": amp,
            "device": str(full.device),
            "precision": _PRECISION.get(full.amp_dtype, str(full.amp_dtype)),
            "val_files": val_files,
        },
        skipped=skipped,
        started=started,
    )


def _save(
    model: EmotionNet,
    output: Path,
    *,
    data_root: Path | None,
    init: object,
    labels: tuple[str, ...],
    val_data: tuple[torch.Tensor, torch.Tensor],
    history: History,
    best_epoch: int,
    sizes: tuple[int, int],
    settings: dict[str, Any],
    skipped: list[str],
    started: float,
) -> FinetuneResult:
    from ..recognizer import EmotionRecognizer

    init_name = _init_name(init)
    seconds = time.perf_counter() - started
    training = {
        "made by": "emotionnet.finetune (emotionnet finetune)",
        "started from": init_name,
        "data": str(data_root) if data_root is not None else "a LabelledFolder",
        "images": f"{sizes[0]} training, {sizes[1]} validation",
        "epochs": f"{len(history)} trained; epoch {best_epoch} selected by validation accuracy",
        "hardware": f"{_hardware(settings['device'])}, {settings['threads']} thread(s), "
        f"{settings['precision']}",
        "training time": f"{seconds:.0f} s",
    }
    recognizer = EmotionRecognizer(
        model.eval(), model.config, device="cpu", backend="torch", metadata={"training": training}
    )
    report = recognizer.evaluate(val_data, tta="none")
    output.mkdir(parents=True, exist_ok=True)
    recognizer.save_pretrained(output, evaluation={VALIDATION_NAME: report})
    report.save_json(output / f"evaluation_{VALIDATION_NAME}.json")
    history.to_json(output / "history.json")
    history.to_csv(output / "history.csv")
    summary = {
        **settings,
        "init": init_name,
        "data": training["data"],
        "labels": list(labels),
        "train_size": sizes[0],
        "val_size": sizes[1],
        "best_epoch": best_epoch,
        "val_accuracy": report.accuracy,
        "seconds": seconds,
        "skipped": skipped,
    }
    atomic_write_text(output / "finetune.json", json.dumps(summary, indent=2) + "\n")
    return FinetuneResult(
        folder=output,
        labels=labels,
        report=report,
        history=history,
        train_size=sizes[0],
        val_size=sizes[1],
        best_epoch=best_epoch,
        seconds=seconds,
        skipped=tuple(skipped),
    )


def _init_name(init: object) -> str:
    if init is None or (isinstance(init, str) and init == "default"):
        return "the bundled default model"
    if isinstance(init, (str, os.PathLike)):
        return str(init)
    return str(getattr(init, "source", None) or "a model given in Python")


def _hardware(device: str) -> str:
    if device.startswith("cuda"):  # the trainer's device: resolved, and there
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
