"""The :class:`ModelConfig` that travels with the weights as ``config.json``."""

from __future__ import annotations

import json
import math
import numbers
import os
import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .._atomic import atomic_write_text
from .._checks import check_choice, check_int
from .._config import config_values
from .._io import read_json_file
from ..errors import InvalidArgumentError
from ..labels import EMOTIONS, NUM_CLASSES
from ..preprocessing import FER2013_MEAN, FER2013_STD, IMAGE_SIZE
from ..tta import TTA_MODES

__all__ = ["ARCHITECTURES", "STEMS", "ModelConfig"]

STEMS: Final[tuple[str, ...]] = ("imagenet", "small", "middle")
"""The ``stem`` values of :func:`build_model`: ``"imagenet"`` (7x7 stride-2 convolution
and max-pool, 2x2 final map at 48 px), ``"small"`` (3x3 stride 1, no max-pool, 6x6) and
``"middle"`` (3x3 stride 2, no max-pool, 3x3; the default)."""

ARCHITECTURES: Final[tuple[str, ...]] = ("resnet18",)
"""Valid values of :attr:`ModelConfig.architecture`."""

CONFIG_FILENAME: Final[str] = "config.json"


# Limits of a config (documented in ModelConfig): beyond them a config.json of a few
# kilobytes would make build_model or predict allocate gigabytes.
_MIN_INPUT_SIZE: Final[int] = 8
_MAX_INPUT_SIZE: Final[int] = 1024
_MAX_CLASSES: Final[int] = 10_000
_MAX_CHANNELS: Final[int] = 64
_MIN_STD: Final[float] = 1e-6

# The longest class name, in characters (documented in ModelConfig): labels reach terminals,
# CSV headers and web pages, which a model file's author must not be able to flood.
_MAX_LABEL_LENGTH: Final[int] = 64

# Characters a label must not hold: controls (Cc: escape sequences, newlines), format
# characters (Cf: bidirectional overrides, zero-width joiners), line and paragraph
# separators (Zl, Zp), surrogates, private-use and unassigned code points. They reach the
# terminal raw, or make two different labels print alike.
_BAD_LABEL_CATEGORIES: Final[dict[str, str]] = {
    "Cc": "a control character",
    "Cf": "an invisible format character",
    "Cs": "a surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}

_TTA_MODES: Final[tuple[str, ...]] = TTA_MODES


class _Temperatures(Mapping[str, float]):
    """A read-only, hashable mapping of TTA mode to temperature, in :data:`_TTA_MODES` order."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, float]) -> None:
        self._items = {mode: items[mode] for mode in _TTA_MODES if mode in items}

    def __getitem__(self, key: str) -> float:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __repr__(self) -> str:
        return repr(self._items)


def _positive_finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range
        return None
    return number if math.isfinite(number) and number > 0 else None


def _check_temperatures(temperatures: object) -> _Temperatures:
    if not isinstance(temperatures, Mapping):
        raise InvalidArgumentError(
            f"temperatures must be a mapping of TTA mode to temperature, such as "
            f'{{"flip_crop": 0.87}}, got {temperatures!r}.'
        )
    checked: dict[str, float] = {}
    for mode, value in temperatures.items():
        if mode not in _TTA_MODES:
            raise InvalidArgumentError(
                f"Unknown TTA mode {mode!r} in temperatures. Valid modes are "
                f"{', '.join(repr(m) for m in _TTA_MODES)}."
            )
        number = _positive_finite(value)
        if number is None:
            raise InvalidArgumentError(
                f"temperatures[{mode!r}] must be a positive finite number, got {value!r}; the "
                "logits are divided by it (1.0 leaves them unchanged). Fit it with "
                "emotionnet.calibration.fit_temperature."
            )
        checked[mode] = number
    return _Temperatures(checked)


def _read_config_json(path: Path) -> Any:
    return read_json_file(path, "model config")


def _check_positive_int(name: str, value: object, hint: str) -> int:
    return check_int(name, value, minimum=1, hint=hint)


def _check_range(name: str, value: int, low: int, high: int, hint: str) -> None:
    check_int(name, value, minimum=low, maximum=high, hint=hint)


def _check_stem(stem: object) -> str:
    return check_choice("stem", stem, STEMS)


def _check_dropout(dropout: object) -> float:
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, (int, float))
        or not 0.0 <= dropout < 1.0
    ):
        raise InvalidArgumentError(
            f"dropout must be a probability in [0, 1), got {dropout!r}; use 0.0 to disable it."
        )
    return float(dropout)


def _shown(label: str) -> str:
    """A label as a message may show it: escaped (``ascii``), and shortened when long."""
    text = ascii(label if len(label) <= 40 else label[:40])
    return text if len(label) <= 40 else f"{text}... ({len(label)} characters)"


def _check_labels(labels: object, num_classes: int) -> tuple[str, ...]:
    """The labels as a tuple, refused unless safe to print: see :class:`ModelConfig`."""
    if (
        isinstance(labels, (str, bytes))
        or not isinstance(labels, Sequence)
        or not all(isinstance(x, str) for x in labels)
    ):
        shown = ascii(labels) if len(repr(labels)) <= 200 else type(labels).__name__
        raise InvalidArgumentError(f"labels must be a sequence of class names, got {shown}.")
    names = tuple(labels)
    if len(names) != num_classes:
        raise InvalidArgumentError(
            f"labels has {len(names)} names but num_classes is {num_classes}; "
            "give one name per class."
        )
    for index, label in enumerate(names):
        if not label.strip():
            raise InvalidArgumentError(
                f"labels must not be empty names, got {_shown(label)} at index {index}; name "
                "every class."
            )
        if len(label) > _MAX_LABEL_LENGTH:
            raise InvalidArgumentError(
                f"label {index} is {len(label)} characters long, more than the "
                f"{_MAX_LABEL_LENGTH} allowed: {_shown(label)}; give the class a short name."
            )
        for char in label:
            what = _BAD_LABEL_CATEGORIES.get(unicodedata.category(char))
            if what is not None:
                raise InvalidArgumentError(
                    f"label {index} {_shown(label)} holds {what} (U+{ord(char):04X}); class "
                    "names must be printable text: remove it."
                )
    repeated = sorted(label for label, count in Counter(names).items() if count > 1)
    if repeated:
        listed = str(list(names)) if len(names) <= 20 else f"the {len(names)} labels"
        raise InvalidArgumentError(
            f"labels must name each class once, but {repeated} appear more than once in {listed}."
        )
    seen: dict[str, str] = {}
    for label in names:
        # Two names that differ only in case or Unicode form (fullwidth letters, ligatures,
        # composed accents) print alike: a reader could not tell the classes apart.
        key = unicodedata.normalize("NFKC", label).casefold().strip()
        if key in seen:
            raise InvalidArgumentError(
                f"labels must name each class once, but {_shown(label)} looks like "
                f"{_shown(seen[key])} (compared ignoring case and Unicode normalisation); "
                "rename one of them."
            )
        seen[key] = label
    return names


def _as_float_tuple(name: str, value: object) -> tuple[float, ...]:
    items = (value,) if isinstance(value, (int, float)) else value
    if (
        not isinstance(items, Sequence)
        or isinstance(items, str)
        or not items
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items)
    ):
        raise InvalidArgumentError(
            f"{name} must be a non-empty sequence of numbers (one per channel), got {value!r}."
        )
    try:
        return tuple(float(v) for v in items)
    except OverflowError:  # an integer beyond the float range
        raise InvalidArgumentError(
            f"{name} values must be finite numbers (0..1 scale), got {value!r}."
        ) from None


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model and feed it, saved as ``config.json``.

    Attributes:
        architecture: Network family; only ``"resnet18"`` for now.
        stem: One of :data:`STEMS`.
        num_classes: Number of output logits, 1 to 10,000.
        in_chans: Number of input channels, 1 to 64.
        input_size: Side of the square input image in pixels, 8 to 1024.
        mean: Per-channel mean on the 0..1 scale used by :func:`~emotionnet.normalize`;
            finite.
        std: Per-channel standard deviation on the 0..1 scale; finite and above 1e-6.
        labels: Class names, index ``i`` naming logit ``i``: not empty, at most
            64 characters, printable (no control, format,
            line-separator, private-use or unassigned characters), and distinct even when
            compared ignoring case and Unicode normalisation (NFKC), so that no two print
            alike. A ``config.json`` or ONNX model with other labels is refused at load with
            :class:`~emotionnet.errors.ModelLoadError`.
        dropout: Dropout before the classifier during training.
        temperatures: The calibration temperature of each test-time augmentation mode
            (``"none"``, ``"flip"``, ``"flip_shift"``, ``"flip_crop"``, ``"ten_crop"``): the
            logits of that view set are divided by it before the softmax
            (:func:`emotionnet.calibration.apply_temperature`). Positive and finite; a mode
            left out has temperature 1.0 (:meth:`temperature_for`). Fitted on PublicTest
            when a model is packaged; it never changes a predicted class. Read-only.

    Example:
        >>> config = ModelConfig(stem="small")
        >>> ModelConfig.from_dict(config.to_dict()) == config
        True
        >>> config.to_dict()["labels"][:2]
        ['angry', 'disgust']
        >>> calibrated = ModelConfig(temperatures={"flip_crop": 0.87})
        >>> calibrated.temperature_for("flip_crop"), calibrated.temperature_for("none")
        (0.87, 1.0)
    """

    architecture: str = "resnet18"
    stem: str = "middle"
    num_classes: int = NUM_CLASSES
    in_chans: int = 1
    input_size: int = IMAGE_SIZE
    mean: tuple[float, ...] = (FER2013_MEAN,)
    std: tuple[float, ...] = (FER2013_STD,)
    labels: tuple[str, ...] = EMOTIONS
    dropout: float = 0.0
    temperatures: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise InvalidArgumentError(
                f"Unknown value {self.architecture!r} for architecture. Valid values are "
                f"{set(ARCHITECTURES)}."
            )
        _check_stem(self.stem)
        _check_positive_int("num_classes", self.num_classes, "e.g. 7 for FER2013")
        _check_range("num_classes", self.num_classes, 1, _MAX_CLASSES, "e.g. 7 for FER2013")
        _check_positive_int("in_chans", self.in_chans, "1 for grayscale, 3 for RGB")
        _check_range("in_chans", self.in_chans, 1, _MAX_CHANNELS, "1 for grayscale, 3 for RGB")
        _check_positive_int("input_size", self.input_size, "48 for FER2013")
        _check_range(
            "input_size",
            self.input_size,
            _MIN_INPUT_SIZE,
            _MAX_INPUT_SIZE,
            "the side of the square input in pixels, 48 for FER2013",
        )
        _check_dropout(self.dropout)
        mean = _as_float_tuple("mean", self.mean)
        std = _as_float_tuple("std", self.std)
        if len(mean) != self.in_chans or len(std) != self.in_chans:
            raise InvalidArgumentError(
                f"mean {mean} and std {std} need one value per input channel "
                f"(in_chans={self.in_chans})."
            )
        if not all(math.isfinite(m) for m in mean):
            raise InvalidArgumentError(
                f"mean values must be finite numbers (0..1 scale), got {mean}."
            )
        if not all(math.isfinite(s) and s > _MIN_STD for s in std):
            raise InvalidArgumentError(
                f"std values must be positive (greater than {_MIN_STD:g}) and finite, got "
                f"{std}; the pixels are divided by them."
            )
        labels = _check_labels(self.labels, self.num_classes)
        # Lists from JSON become tuples so configs compare, hash and stay immutable.
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "dropout", float(self.dropout))
        object.__setattr__(self, "temperatures", _check_temperatures(self.temperatures))

    def temperature_for(self, mode: str) -> float:
        """The calibration temperature of a test-time augmentation mode.

        Args:
            mode: A TTA mode name (``"none"``, ``"flip"``, ``"flip_shift"``,
                ``"flip_crop"``, ``"ten_crop"``).

        Returns:
            The stored temperature, or 1.0 (no change) when none was fitted for ``mode``.

        Raises:
            InvalidArgumentError: If ``mode`` is not a TTA mode name.

        Example:
            >>> ModelConfig(temperatures={"flip": 0.9}).temperature_for("flip")
            0.9
        """
        if mode not in _TTA_MODES:
            raise InvalidArgumentError(
                f"Unknown TTA mode {mode!r}; valid modes are "
                f"{', '.join(repr(m) for m in _TTA_MODES)}."
            )
        return self.temperatures.get(mode, 1.0)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict of the fields (tuples become lists).

        Returns:
            A dict that :meth:`from_dict` turns back into an equal config.

        Example:
            >>> ModelConfig().to_dict()["stem"]
            'middle'
        """
        return {
            "architecture": self.architecture,
            "stem": self.stem,
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "labels": list(self.labels),
            "dropout": self.dropout,
            "temperatures": dict(self.temperatures),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build a config from a dict such as :meth:`to_dict` returns.

        Missing keys take their defaults.

        Args:
            data: Field names to values.

        Returns:
            The config.

        Raises:
            InvalidArgumentError: If ``data`` has unknown keys or invalid values.

        Example:
            >>> ModelConfig.from_dict({"stem": "small"}).stem
            'small'
        """
        return cls(**config_values(cls, data, what="model config"))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the config as JSON.

        Args:
            path: A ``.json`` file, or a directory in which ``config.json`` is written
                (created if needed).

        Returns:
            The path of the written file.

        Example:
            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     written = ModelConfig().save(folder)
            ...     ModelConfig.load(folder) == ModelConfig(), written.name
            (True, 'config.json')
        """
        target = _config_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(target, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelConfig:
        """Read a config written by :meth:`save`.

        Args:
            path: A ``.json`` file, or a directory holding ``config.json``.

        Returns:
            The config.

        Raises:
            FileNotFoundError: If the file does not exist.
            InvalidArgumentError: If the file is not a regular file, not valid JSON (or
                nested too deeply), or has unknown keys or invalid values.

        Example:
            >>> import tempfile, pathlib
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     _ = pathlib.Path(folder, "config.json").write_text('{"stem": "small"}')
            ...     ModelConfig.load(folder).stem
            'small'
        """
        return cls.from_dict(_read_config_json(_config_path(path)))


def _config_path(path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    return target if target.suffix == ".json" else target / CONFIG_FILENAME
