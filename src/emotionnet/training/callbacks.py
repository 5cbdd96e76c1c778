"""Trainer callbacks: the :class:`Callback` hooks, and the two handlers every run has.

:class:`BestWeights` keeps the weights of the epoch with the best monitored metric (and
writes ``best.safetensors``); :class:`EarlyStopping` ends a run whose metric stopped
improving. Like Ignite's handlers, both have ``state_dict()`` / ``load_state_dict()``: the
:class:`~emotionnet.training.Trainer` saves their state in ``last.ckpt`` and restores it on
resume, so a resumed run selects and stops exactly as an uninterrupted one. A callback of
yours with these two methods is saved and restored the same way (change its state in
:meth:`Callback.on_validation_end`, which runs before the epoch's checkpoint is written).

Example:
    >>> stopper = EarlyStopping(patience=2)
    >>> for epoch, accuracy in enumerate([0.5, 0.6, 0.55, 0.58], start=1):
    ...     stop = stopper.update(epoch, accuracy)
    >>> stopper.state_dict()
    {'metric': 'val_accuracy', 'best': 0.6, 'best_epoch': 2, 'bad_epochs': 2}
    >>> stopper.triggered
    True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._atomic import atomic_write_bytes
from .._checks import check_choice, check_int
from ..errors import CheckpointError, InvalidArgumentError
from .checkpoint import BEST_WEIGHTS, weights_file_bytes
from .config import MONITORS
from .history import History, Row

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["BestWeights", "Callback", "EarlyStopping"]

logger = logging.getLogger("emotionnet.training")


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

    def on_validation_end(self, trainer: Trainer, row: Row) -> None:
        """Called after each epoch's validation, before its checkpoint is written.

        Change here what ``last.ckpt`` must hold for this epoch (the state of a callback with
        ``state_dict``, ``trainer.should_stop``); the trainer's own handlers
        (:class:`BestWeights`, :class:`EarlyStopping`) run first.
        """

    def on_epoch_end(self, trainer: Trainer, row: Row) -> None:
        """Called after each epoch's validation and checkpoint with its history row."""

    def on_fit_end(self, trainer: Trainer, history: History) -> None:
        """Called once after training ends normally."""


def _better(value: float, best: float | None, mode: str) -> bool:
    """Whether ``value`` improves on ``best`` (a NaN never does; anything beats ``None``)."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value > best if mode == "max" else value < best


def _non_finite(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors of ``state`` with a NaN or infinite value."""
    names = [name for name, tensor in state.items() if tensor.is_floating_point()]
    if not names:
        return []
    finite = torch.stack([torch.isfinite(state[name]).all() for name in names]).tolist()
    return [name for name, ok in zip(names, finite, strict=True) if not ok]


class _MonitorHandler(Callback):
    """A handler that follows one metric of the history rows, in its better direction."""

    def __init__(self, monitor: str = "val_accuracy") -> None:
        self.monitor = str(check_choice("monitor", monitor, MONITORS))
        self.mode = MONITORS[self.monitor]

    def _value(self, row: Row) -> float:
        value = row.get(self.monitor)
        if value is None:
            raise InvalidArgumentError(
                f"The epoch's row has no {self.monitor!r} (it needs a validation set); monitor "
                "'train_loss' to train without one."
            )
        return float(value)


class BestWeights(_MonitorHandler):
    """Keep the weights of the epoch with the best monitored metric.

    After each epoch, if ``monitor`` improved, the weights the trainer validates
    (:attr:`Trainer.evaluated_model <emotionnet.training.Trainer.evaluated_model>`: the
    weight average when ``ema_decay`` is set) are copied to the CPU and, when the trainer
    has a ``checkpoint_dir``, written to ``best.safetensors`` atomically with a SHA-256
    digest of their data. Only rank 0 keeps and writes them under distributed training.
    Best weights are always finite: an epoch whose weights hold a NaN or an infinity is
    never selected, whatever its metric (a warning says so), since no loader accepts them.
    :meth:`Trainer.load_best <emotionnet.training.Trainer.load_best>` loads them back.

    Args:
        monitor: One of :data:`~emotionnet.training.MONITORS`.

    Attributes:
        value: The best value so far (``None`` before the first epoch).
        epoch: Its epoch (counting from 1), or ``None``.
        weights: The best weights on the CPU (rank 0, this process only; not part of
            :meth:`state_dict`: they are in ``best.safetensors``).

    Example:
        >>> best = BestWeights("val_loss")
        >>> best.update(1, 0.9), best.update(2, 1.1), best.update(3, 0.7)
        (True, False, True)
        >>> best.state_dict()
        {'metric': 'val_loss', 'value': 0.7, 'epoch': 3}
    """

    def __init__(self, monitor: str = "val_accuracy") -> None:
        super().__init__(monitor)
        self.value: float | None = None
        self.epoch: int | None = None
        self.weights: dict[str, torch.Tensor] | None = None

    def reset(self) -> None:
        """Forget the best epoch (a fresh run)."""
        self.value, self.epoch, self.weights = None, None, None

    def update(self, epoch: int, value: float) -> bool:
        """Record an epoch's value; ``True`` if it is the new best."""
        if not _better(value, self.value, self.mode):
            return False
        self.value, self.epoch = float(value), int(epoch)
        return True

    def on_validation_end(self, trainer: Trainer, row: Row) -> None:
        """Keep (and write) the epoch's weights if its metric is the best so far.

        Weights with a NaN or infinite value are never kept, whatever their metric: a model
        loader refuses them, so the epoch is passed over (and a warning logged) and the best
        epoch stays the previous one.
        """
        epoch, value = int(row["epoch"]), self._value(row)
        if not _better(value, self.value, self.mode):
            return
        weights = {
            name: tensor.detach().to("cpu", copy=True)
            for name, tensor in trainer.evaluated_model.state_dict().items()
        }
        bad = _non_finite(weights)
        if bad:
            if trainer.is_main_process:
                logger.warning(
                    "epoch %d: %s %.4g would be the best so far, but the weights hold NaN or "
                    "infinite values (%s); they are not kept as the best weights, which stay "
                    "those of %s",
                    epoch,
                    self.monitor,
                    value,
                    ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else ""),
                    "no epoch yet" if self.epoch is None else f"epoch {self.epoch}",
                )
            return
        self.update(epoch, value)
        if not trainer.is_main_process:
            return
        self.weights = weights
        folder = trainer.checkpoint_dir
        if folder is not None:
            self.save(folder / BEST_WEIGHTS)

    def save(self, path: Path) -> None:
        """Write the best weights to ``path`` (safetensors, with their SHA-256 digest).

        Raises:
            CheckpointError: If the file cannot be written (the previous one is intact).
        """
        if self.weights is None:
            return
        tensors = {name: tensor.contiguous() for name, tensor in self.weights.items()}
        metadata = {
            "format": "pt",
            "epoch": str(self.epoch),
            "monitor": self.monitor,
            "value": repr(self.value),
        }
        try:
            atomic_write_bytes(path, weights_file_bytes(tensors, metadata))
        except Exception as exc:
            raise CheckpointError(
                f"Could not write {path} ({exc}); the previous file is intact."
            ) from exc

    def state_dict(self) -> dict[str, Any]:
        """The metric, the best value and its epoch (what ``last.ckpt`` stores as ``best``)."""
        return {"metric": self.monitor, "value": self.value, "epoch": self.epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; a state for another metric starts afresh."""
        same = state.get("metric") == self.monitor
        self.value = state.get("value") if same else None
        self.epoch = state.get("epoch") if same else None
        self.weights = None


class EarlyStopping(_MonitorHandler):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs.

    It sets ``trainer.should_stop``; the trainer then ends after the current epoch (its
    checkpoint is written first, so a resumed run that stopped early stays stopped).

    Args:
        patience: Epochs without improvement to wait; ``None`` never stops (the count is
            still kept, so a resume with a patience stops at the right epoch).
        monitor: One of :data:`~emotionnet.training.MONITORS`.

    Attributes:
        best: The best value so far, and ``best_epoch`` its epoch.
        bad_epochs: Epochs since the last improvement.

    Example:
        >>> stopper = EarlyStopping(patience=1, monitor="val_loss")
        >>> stopper.update(1, 0.9), stopper.update(2, 0.95)
        (False, True)
    """

    def __init__(self, patience: int | None, monitor: str = "val_accuracy") -> None:
        super().__init__(monitor)
        if patience is not None:
            check_int("patience", patience, minimum=1, hint="or None to never stop early")
        self.patience = patience
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    @property
    def triggered(self) -> bool:
        """Whether the run has gone ``patience`` epochs without improving."""
        return self.patience is not None and self.bad_epochs >= self.patience

    def reset(self) -> None:
        """Forget the run so far (a fresh run)."""
        self.best, self.best_epoch, self.bad_epochs = None, None, 0

    def update(self, epoch: int, value: float) -> bool:
        """Record an epoch's value; ``True`` if training should stop now."""
        if _better(value, self.best, self.mode):
            self.best, self.best_epoch, self.bad_epochs = float(value), int(epoch), 0
        else:
            self.bad_epochs += 1
        return self.triggered

    def on_validation_end(self, trainer: Trainer, row: Row) -> None:
        """Count the epoch and set ``trainer.should_stop`` when patience has run out."""
        if not self.update(int(row["epoch"]), self._value(row)):
            return
        trainer.should_stop = True
        if trainer.is_main_process:
            logger.info(
                "early stopping: %s has not improved for %d epochs (best %.4f at epoch %d)",
                self.monitor,
                self.patience,
                self.best,
                self.best_epoch,
            )

    def state_dict(self) -> dict[str, Any]:
        """The metric, the best value, its epoch and the epochs since."""
        return {
            "metric": self.monitor,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; a state for another metric starts afresh."""
        if state.get("metric") != self.monitor:
            self.reset()
            return
        self.best = state.get("best")
        self.best_epoch = state.get("best_epoch")
        self.bad_epochs = int(state.get("bad_epochs", 0))
