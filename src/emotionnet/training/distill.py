r"""Knowledge distillation: the loss, the teacher, and teacher targets computed once to a file.

A student learns from the hard labels and from a teacher's probabilities softened by a
temperature ``T`` (Hinton et al., 2015; with the student's own architecture as teacher:
born-again networks). The loss is

.. math::

    (1 - w)\,\mathrm{CE}(z_s, y) + w\,T^2\,\mathrm{KL}\big(\mathrm{softmax}(z_t / T)
    \,\|\, \mathrm{softmax}(z_s / T)\big)

(:func:`distillation_loss`; the ``T^2`` keeps the soft part's gradients on the scale of the
hard part's as ``T`` changes). The teacher is a model folder
(:meth:`EmotionNet.from_pretrained <emotionnet.models.EmotionNet.from_pretrained>`, strict),
and its targets come either **online**, from the teacher run on every training batch (the
student's augmented, mixed view), or **precomputed** once for the un-augmented training
faces, with test-time augmentation if asked (``flip_crop``: the view set the bundled model
is reported with), and then mixed with the same coefficient and partner as the images. A
precomputed file (:func:`precompute_teacher_targets`) holds one row per distinct face, keyed
by a digest of the face's pixels: any subset or order of the faces finds its rows, and a
face the file lacks is computed by the teacher (or refused, without one).

Example:
    >>> import torch
    >>> logits, targets = torch.zeros(2, 3), torch.tensor([0, 1])
    >>> teacher = torch.full((2, 3), 1 / 3)
    >>> round(float(distillation_loss(logits, targets, teacher, weight=1.0)), 6)  # same: no KL
    0.0
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import torch
import torch.nn.functional as F

from .._atomic import atomic_write_bytes
from .._checks import resolve_device
from .._io import open_regular_file
from ..errors import CheckpointError, InvalidArgumentError

if TYPE_CHECKING:
    from ..models import EmotionNet

__all__ = [
    "DISTILL_MODES",
    "TEACHER_TARGETS",
    "distillation_loss",
    "precompute_teacher_targets",
]

logger = logging.getLogger("emotionnet.training")

DISTILL_MODES: Final[tuple[str, ...]] = ("online", "precomputed")
"""Valid values of :attr:`TrainConfig.distill_mode <emotionnet.training.TrainConfig>`."""

TEACHER_TARGETS: Final[str] = "teacher_targets.safetensors"
"""File name of the precomputed teacher targets a run keeps in its ``checkpoint_dir``."""

_FORMAT: Final[str] = "emotionnet.teacher-targets"
_KEY_BYTES: Final[int] = 16
_WEIGHTS: Final[str] = "model.safetensors"
_PRECOMPUTE_CHUNK: Final[int] = 2048  # faces computed between two writes of the file


def distillation_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    teacher_probs: torch.Tensor,
    *,
    temperature: float = 1.0,
    weight: float = 0.5,
    label_smoothing: float = 0.0,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The knowledge-distillation loss: hard cross-entropy and soft KL at a temperature.

    ``(1 - weight) * CE(logits, targets) + weight * T**2 * KL(teacher_probs || softmax(logits
    / T))``, the KL averaged over the batch (``reduction="batchmean"``). The cross-entropy is
    :func:`torch.nn.functional.cross_entropy` with ``class_weights`` and ``label_smoothing``,
    so ``weight=0`` is exactly the training loss without a teacher.

    Args:
        logits: The student's logits ``N x C``.
        targets: Class indices ``N``, or soft (mixed) targets ``N x C``.
        teacher_probs: The teacher's probabilities at temperature ``T``
            (``softmax(teacher_logits / T)``), ``N x C``, rows summing to 1 (mixed ones too).
        temperature: ``T > 0``.
        weight: Share of the soft part, in ``[0, 1]``.
        label_smoothing: Label smoothing of the hard part.
        class_weights: Per-class weights of the hard part, or ``None``.

    Returns:
        The scalar ``float32`` loss.

    Example:
        >>> import torch
        >>> student = torch.tensor([[2.0, 0.0]])
        >>> teacher = torch.tensor([[0.5, 0.5]])
        >>> hard = distillation_loss(student, torch.tensor([0]), teacher, weight=0.0)
        >>> round(float(hard), 4)  # -log(softmax([2, 0])[0])
        0.1269
        >>> round(float(distillation_loss(student, torch.tensor([0]), teacher, weight=1.0)), 4)
        0.4338
    """
    student = logits.float()
    hard = F.cross_entropy(student, targets, weight=class_weights, label_smoothing=label_smoothing)
    log_student = F.log_softmax(student / temperature, dim=1)
    soft = F.kl_div(log_student, teacher_probs.float(), reduction="batchmean")
    return (1.0 - weight) * hard + weight * temperature**2 * soft


def soften(teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The teacher's probabilities at ``temperature``: ``softmax(logits / T)`` in float32.

    For test-time-augmented logits (the log of view-averaged probabilities) this is the
    averaged distribution sharpened or flattened by ``T``.
    """
    return F.softmax(teacher_logits.float() / temperature, dim=1)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open_regular_file(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_teacher(path: str | os.PathLike[str]) -> tuple[EmotionNet, str]:
    """Load a teacher model folder strictly, in eval mode and frozen, with its weights' SHA-256.

    Raises:
        InvalidArgumentError: If ``path`` is not a model folder.
        WeightsNotFoundError: If the folder has no weights.
        ModelLoadError: If the weights do not fit the folder's ``config.json``.
    """
    from ..models import EmotionNet

    folder = Path(path)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise InvalidArgumentError(
            f"distill_teacher={os.fspath(path)!r} is not a model folder (one with config.json "
            "and model.safetensors, as save_pretrained writes); name the folder of the teacher "
            "model, e.g. src/emotionnet/weights/default for the bundled model."
        )
    teacher = EmotionNet.from_pretrained(str(folder))
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher, file_sha256(folder / _WEIGHTS)


def check_teacher(
    teacher: EmotionNet, *, labels: tuple[str, ...], image_size: tuple[int, int], source: str
) -> None:
    """Refuse a teacher whose classes or input size differ from the student's data.

    Raises:
        InvalidArgumentError: If they differ.
    """
    config = teacher.config
    if tuple(config.labels) != tuple(labels):
        raise InvalidArgumentError(
            f"The teacher {source} has the classes {list(config.labels)}, the student "
            f"{list(labels)}; distillation needs the same classes in the same order. Use a "
            "teacher trained on the student's labels."
        )
    if config.in_chans != 1:
        raise InvalidArgumentError(
            f"The teacher {source} takes {config.in_chans} channels; the trainer feeds "
            "grayscale faces (1 channel)."
        )
    if (config.input_size, config.input_size) != tuple(image_size):
        raise InvalidArgumentError(
            f"The teacher {source} takes {config.input_size}x{config.input_size} images, but "
            f"the training images are {image_size[0]}x{image_size[1]}; use a teacher for "
            "that size, or resize the faces."
        )


def image_keys(images: torch.Tensor) -> torch.Tensor:
    """A 16-byte BLAKE2b digest of each image's pixels (and shape): ``N x 16`` ``uint8``."""
    flat = images.reshape(images.shape[0], -1).to("cpu").contiguous().numpy()
    shape = "x".join(str(side) for side in images.shape[1:]).encode("ascii")
    keys = np.empty((flat.shape[0], _KEY_BYTES), dtype=np.uint8)
    for row, pixels in enumerate(flat):
        digest = hashlib.blake2b(pixels.tobytes(), digest_size=_KEY_BYTES, person=b"emotionnet")
        digest.update(shape)
        keys[row] = np.frombuffer(digest.digest(), dtype=np.uint8)
    return torch.from_numpy(keys)


def _teacher_logits(
    teacher: EmotionNet, images: torch.Tensor, *, tta: str, batch_size: int, device: torch.device
) -> torch.Tensor:
    from ..inference import predict_logits

    config = teacher.config
    return predict_logits(
        teacher,
        images,
        batch_size=batch_size,
        device=device,
        tta=tta,
        mean=config.mean[0],
        std=config.std[0],
    )


def _read_targets(path: Path) -> tuple[torch.Tensor, torch.Tensor, dict[str, str]]:
    """``(keys, logits, metadata)`` of a teacher-targets file, checked."""
    from safetensors import safe_open

    hint = (
        f"Delete {path} (it is recomputed from distill_teacher), or name another file as "
        "distill_targets."
    )
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            keys, logits = handle.get_tensor("keys"), handle.get_tensor("logits")
    except Exception as exc:  # safetensors raises its own and OS errors
        raise CheckpointError(f"Could not read the teacher targets {path} ({exc}). {hint}") from exc
    if (
        metadata.get("format") != _FORMAT
        or keys.dtype != torch.uint8
        or keys.ndim != 2
        or keys.shape[1] != _KEY_BYTES
        or logits.ndim != 2
        or logits.shape[0] != keys.shape[0]
        or not logits.is_floating_point()
    ):
        raise CheckpointError(
            f"{path} is not an emotionnet teacher-targets file (keys N x {_KEY_BYTES} and "
            f"logits N x C, format {_FORMAT!r}). {hint}"
        )
    if not bool(torch.isfinite(logits).all()):
        raise CheckpointError(f"The teacher targets in {path} hold NaN or infinite values. {hint}")
    return keys, logits.float(), metadata


def _write_targets(
    path: Path, keys: torch.Tensor, logits: torch.Tensor, *, tta: str, teacher_sha256: str
) -> None:
    from safetensors.torch import save

    metadata = {"format": _FORMAT, "tta": tta, "teacher_sha256": teacher_sha256}
    tensors = {"keys": keys.contiguous(), "logits": logits.float().contiguous()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, save(tensors, metadata=metadata))
    except OSError as exc:
        raise CheckpointError(
            f"Could not write the teacher targets {path} ({exc}); choose a folder you can write to."
        ) from exc


def teacher_logits_for(
    images: torch.Tensor,
    *,
    teacher: str | os.PathLike[str] | None,
    targets_file: Path | None,
    tta: str,
    labels: tuple[str, ...],
    device: torch.device,
    batch_size: int = 256,
    write: bool = True,
) -> torch.Tensor:
    """The teacher's logits for each of ``images`` (``uint8`` ``N x 1 x H x W``), ``N x C``.

    Rows are read from ``targets_file`` where it has them; the faces it lacks (all, without
    a file) are run through ``teacher`` and, with ``write``, added to the file.

    Raises:
        InvalidArgumentError: If the file was made with other test-time augmentation or by
            another teacher, or lacks faces and there is no teacher to compute them.
        CheckpointError: If the file cannot be read or written.
    """
    keys = image_keys(images)
    stored: tuple[torch.Tensor, torch.Tensor, dict[str, str]] | None = None
    if targets_file is not None and targets_file.exists():
        stored = _read_targets(targets_file)
        made_with = stored[2].get("tta")
        if made_with != tta:
            raise InvalidArgumentError(
                f"The teacher targets {targets_file} were computed with tta={made_with!r}, "
                f"but distill_tta is {tta!r}; set distill_tta={made_with!r}, or name another "
                "distill_targets file (it is computed from the teacher)."
            )
    teacher_sha: str | None = None
    weights = None if teacher is None else Path(teacher) / _WEIGHTS
    if weights is not None and weights.is_file():
        teacher_sha = file_sha256(weights)
    if stored is not None and teacher_sha is not None:
        made_by = stored[2].get("teacher_sha256")
        if made_by != teacher_sha:
            raise InvalidArgumentError(
                f"The teacher targets {targets_file} were computed by another teacher (weights "
                f"sha256 {str(made_by)[:12]}...) than {weights} ({teacher_sha[:12]}...); delete "
                "the file to recompute it, or name the teacher that made it."
            )
    num_classes = len(labels)
    rows = torch.full((keys.shape[0],), -1, dtype=torch.int64)
    if stored is not None:
        if stored[1].shape[1] != num_classes:
            raise InvalidArgumentError(
                f"The teacher targets {targets_file} have {stored[1].shape[1]} classes, the "
                f"student {num_classes}; name a file made by a teacher of the student's classes."
            )
        index = {bytes(key.tolist()): row for row, key in enumerate(stored[0])}
        rows = torch.tensor([index.get(bytes(key.tolist()), -1) for key in keys])
    missing = torch.nonzero(rows < 0).flatten()
    if len(missing) == 0 and stored is not None:
        return stored[1][rows]
    if teacher is None:
        raise InvalidArgumentError(
            f"The teacher targets {targets_file} lack {len(missing)} of the "
            f"{keys.shape[0]} training faces, and no distill_teacher is set to compute them: "
            "set distill_teacher to the model folder that made the file, or precompute the "
            "file for these faces (emotionnet.training.precompute_teacher_targets)."
        )
    model, sha = load_teacher(teacher)
    size = (int(images.shape[-2]), int(images.shape[-1]))
    check_teacher(model, labels=labels, image_size=size, source=str(teacher))
    logger.info("computing the teacher's targets (tta=%s) for %d training faces", tta, len(missing))
    computed = _teacher_logits(
        model, images[missing], tta=tta, batch_size=batch_size, device=device
    )
    if stored is None:
        all_keys, all_logits = keys[missing], computed
    else:
        all_keys = torch.cat([stored[0], keys[missing]])
        all_logits = torch.cat([stored[1], computed])
    if write and targets_file is not None:
        _write_targets(targets_file, all_keys, all_logits, tta=tta, teacher_sha256=sha)
    logits = torch.empty(keys.shape[0], computed.shape[1], dtype=torch.float32)
    found = rows >= 0
    if stored is not None and bool(found.any()):
        logits[found] = stored[1][rows[found]]
    logits[missing] = computed
    return logits


def precompute_teacher_targets(
    teacher: str | os.PathLike[str],
    images: object,
    path: str | os.PathLike[str],
    *,
    tta: str = "flip_crop",
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> Path:
    """Compute a teacher's targets for training faces once, into a file a run reads.

    The file (safetensors) holds the teacher's logits (with ``tta``: the log of its
    view-averaged probabilities) for each distinct face, keyed by a digest of its pixels, and
    the SHA-256 of the teacher's weights. A :class:`~emotionnet.training.Trainer` with
    ``distill_mode="precomputed"`` and ``distill_targets`` naming it finds each training
    face's row there, whatever the subset or order; faces it lacks are added from the
    teacher. A GPU run can thus take the file (a few hundred KB for FER2013) instead of the
    teacher's weights. Computing into an existing file adds the faces it lacks, and the file
    is written every 2,048 faces, so an interrupted computation continues where it stopped
    when run again. On the CPU it is slow (FER2013's 28,709 faces with ``flip_crop`` are
    115,000 forward passes: 9 faces/s were measured on one busy core); on a GPU, seconds.

    Args:
        teacher: The teacher's model folder.
        images: The training faces: a ``uint8`` tensor ``N x H x W`` (or ``N x 1 x H x W``),
            or labelled data :func:`emotionnet.data.as_tensors` reads (a FER2013 split).
        path: The file to write (``.safetensors``).
        tta: The teacher's test-time augmentation (:data:`emotionnet.tta.TTA_MODES`).
        batch_size: Images per forward pass.
        device: Where the teacher runs.

    Returns:
        The file written.

    Raises:
        InvalidArgumentError: If the teacher, the images, ``tta`` or an existing file do not
            fit.
        CheckpointError: If the file cannot be read or written.

    Example:
        >>> import tempfile, pathlib, torch
        >>> from emotionnet.models import EmotionNet
        >>> faces = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     EmotionNet(stem="imagenet").save_pretrained(f"{folder}/teacher")
        ...     path = precompute_teacher_targets(
        ...         f"{folder}/teacher", faces, f"{folder}/targets.safetensors", tta="flip")
        ...     path.name
        'targets.safetensors'
    """
    from ..tta import TTA_MODES

    if tta not in TTA_MODES:
        raise InvalidArgumentError(
            f"Unknown value {tta!r} for argument tta. Valid values are {list(TTA_MODES)}."
        )
    if isinstance(images, torch.Tensor):
        faces = images
    else:
        from ..data import as_tensors

        faces = as_tensors(images)[0]
    if faces.dtype != torch.uint8 or faces.ndim not in (3, 4) or faces.shape[0] == 0:
        raise InvalidArgumentError(
            f"images must be a non-empty uint8 batch N x H x W, got {faces.dtype} shaped "
            f"{tuple(faces.shape)}."
        )
    faces = faces.unsqueeze(1) if faces.ndim == 3 else faces
    target = Path(path)
    teacher_model, _ = load_teacher(teacher)
    labels = tuple(teacher_model.config.labels)
    del teacher_model
    # Chunk by chunk, each added to the file: an interrupted run continues where it stopped.
    for start in range(0, faces.shape[0], _PRECOMPUTE_CHUNK):
        teacher_logits_for(
            faces[start : start + _PRECOMPUTE_CHUNK],
            teacher=teacher,
            targets_file=target,
            tta=tta,
            labels=labels,
            device=torch.device(resolve_device(device)),
            batch_size=batch_size,
        )
        logger.info(
            "teacher targets: %d of %d faces done",
            min(start + _PRECOMPUTE_CHUNK, faces.shape[0]),
            faces.shape[0],
        )
    return target


def teacher_input(
    inputs: torch.Tensor, *, mean: float, std: float, teacher_mean: float, teacher_std: float
) -> torch.Tensor:
    """Re-normalise a student batch for a teacher trained with another mean/std."""
    if mean == teacher_mean and std == teacher_std:
        return inputs
    return inputs * (std / teacher_std) + (mean - teacher_mean) / teacher_std
