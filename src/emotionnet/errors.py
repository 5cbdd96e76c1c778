"""Exceptions raised by emotionnet, and the warnings it issues.

Every exception derives from :class:`EmotionNetError`, so ``except EmotionNetError`` catches
anything this library raises on purpose. Each one also subclasses the builtin that fits
(``ValueError``, ``TypeError``, ``FileNotFoundError``, ...), so code written against the
builtins keeps working, as in :mod:`huggingface_hub.errors`.

Warnings (:class:`NotAFaceCropWarning`) derive from :class:`UserWarning`: the call went
through, but its result is probably not what was meant.

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
    "NotAFaceCropWarning",
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


class NotAFaceCropWarning(UserWarning):
    """An image predicted as one face looks like a photo with a smaller face in it.

    :meth:`EmotionRecognizer.predict <emotionnet.EmotionRecognizer.predict>` (and
    ``emotionnet predict`` without ``--faces``) scores each image as one face, whole: on a
    photo that is mostly background, and says little (``predict_faces`` finds and crops the
    faces first). The rule, cheap and deterministic: when OpenCV is installed (the ``face``
    extra), the first image of each call whose shorter side is at least twice the model input
    (96 px for 48 px models) is searched with OpenCV's Haar cascade, on a grayscale copy at
    most 160 px on its longer side (faces under 15% of the longer side are too small to be seen
    there); if the largest face found is less than a third of the image's shorter side, this
    warning is issued. A check costs about 5 ms on one CPU core. Smaller images (FER2013's
    48x48 crops), ready ``uint8`` face batches and the other images of the call are never
    searched, and without OpenCV nothing is. The prediction is returned all the same.

    Silence it with ``warnings.filterwarnings("ignore", category=NotAFaceCropWarning)``.

    Args:
        message: What was found and what to do.
        source: The image's path, when it was given as one.
        box: ``(x, y, w, h)`` of the face found, in the image's pixels.
        image_size: ``(width, height)`` of the image.

    Attributes:
        source: See the argument.
        box: See the argument.
        image_size: See the argument.

    Example:
        >>> warning = NotAFaceCropWarning("...", box=(10, 20, 30, 30), image_size=(320, 240))
        >>> issubclass(NotAFaceCropWarning, UserWarning), warning.box
        (True, (10, 20, 30, 30))
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        box: tuple[int, int, int, int] | None = None,
        image_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.box = box
        self.image_size = image_size
