"""Exceptions raised by emotionnet.

Every exception derives from :class:`EmotionNetError`, so ``except EmotionNetError`` catches
anything this library raises on purpose. Each one also subclasses the builtin that fits
(``ValueError``, ``TypeError``, ``FileNotFoundError``, ...), so code written against the
builtins keeps working, as in :mod:`huggingface_hub.errors`.

Messages name the bad value, what was expected and how to fix it.

Example:
    >>> from emotionnet.errors import EmotionNetError, UnknownEmotionError
    >>> issubclass(UnknownEmotionError, (EmotionNetError, ValueError))
    True
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "CorruptImageError",
    "DatasetNotFoundError",
    "EmotionNetError",
    "ImageNotFoundError",
    "InvalidArgumentError",
    "InvalidImageError",
    "MalformedDataError",
    "MissingDependencyError",
    "MissingLabelsError",
    "ModelLoadError",
    "NonFiniteLossError",
    "SplitNotAvailableError",
    "UnknownEmotionError",
    "UnsupportedInputError",
    "WeightsNotFoundError",
]


class EmotionNetError(Exception):
    """Base class of every error emotionnet raises on purpose."""


class InvalidArgumentError(EmotionNetError, ValueError):
    """An argument has a value outside the documented ones."""


class UnknownEmotionError(InvalidArgumentError):
    """An emotion name, alias, folder name or index is not one of the seven FER2013 classes."""


class DatasetNotFoundError(EmotionNetError, FileNotFoundError):
    """No supported FER2013 layout was found where one was expected."""


class SplitNotAvailableError(InvalidArgumentError):
    """The requested split is valid in general but the data source does not hold it."""


class MalformedDataError(EmotionNetError, ValueError):
    """A data file (CSV row, folder layout, cache) does not have the expected content."""


class MissingLabelsError(EmotionNetError, ValueError):
    """Labels are needed but the data has none (the Kaggle challenge's test.csv, label -1)."""


class CorruptImageError(MalformedDataError):
    """An image file could not be decoded."""


class InvalidImageError(EmotionNetError, ValueError):
    """An image given for prediction has unusable content (empty, NaN, wrong channels, ...)."""


class ImageNotFoundError(EmotionNetError, FileNotFoundError):
    """An image path given for prediction does not exist or is not a file."""


class UnsupportedInputError(EmotionNetError, TypeError):
    """An input has a type that the function does not accept."""


class MissingDependencyError(EmotionNetError, ImportError):
    """An optional dependency is needed; the message names the extra that installs it."""


class WeightsNotFoundError(EmotionNetError, FileNotFoundError):
    """Model weights are neither in the cache nor downloadable (for example when offline)."""


class ModelLoadError(EmotionNetError, RuntimeError):
    """A model cannot be used: its files are unreadable or do not match it.

    Missing, unexpected or mis-shaped tensors; unusable values (NaN weights, a config outside
    its ranges); or outputs that are not finite probabilities.
    """


class CheckpointError(EmotionNetError, RuntimeError):
    """A training checkpoint is missing, corrupt or belongs to another run."""


class NonFiniteLossError(EmotionNetError, FloatingPointError):
    """Training stopped: the loss was NaN or infinite for too many steps in a row.

    Raised by :meth:`emotionnet.training.Trainer.fit` after more than
    :attr:`~emotionnet.training.TrainConfig.max_nonfinite_steps` consecutive bad steps. The
    bad steps were skipped (the weights never saw them) and the last checkpoint on disk is
    the one written before them.

    Example:
        >>> issubclass(NonFiniteLossError, (EmotionNetError, FloatingPointError))
        True
    """
