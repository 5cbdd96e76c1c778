"""Evaluate emotion classifiers: batched prediction, test-time augmentation and metric reports.

Three layers, each usable on its own:

* :func:`~emotionnet.predict_logits` / :func:`~emotionnet.predict_proba` run a model over a
  ``uint8`` image batch in chunks, on the model's device, optionally with test-time
  augmentation (TTA).
* :func:`report_from_predictions` turns labels and predictions into an
  :class:`EvaluationReport` without any model (scikit-learn computes every metric except the
  calibration error, which scikit-learn does not have: :mod:`emotionnet.calibration` does).
* :func:`evaluate` does both for a model and a data set, optionally with calibrated
  probabilities (a temperature, see :mod:`emotionnet.calibration`), and
  :func:`plot_confusion_matrix` draws the result (needs the ``plot`` extra).

Prediction itself (the forward pass, batching and test-time augmentation) lives in
:mod:`emotionnet.inference`, the calibration error in :mod:`emotionnet.calibration`.

Example:
    >>> from emotionnet.metrics import report_from_predictions
    >>> report = report_from_predictions([3, 3, 6, 0], [3, 6, 6, 0])
    >>> report.accuracy, round(report.macro_f1, 4)
    (0.75, 0.3333)
    >>> report.per_class["happy"].recall
    0.5
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from ._atomic import atomic_write_text
from ._io import open_regular_file
from ._optional import require
from .calibration import (
    ECE_BINS,
    _as_label_array,
    _as_probabilities,
    _check_class_range,
    _check_temperature,
    _ece,
    apply_temperature,
    fit_temperature,
)
from .data import as_tensors
from .errors import (
    InvalidArgumentError,
    MalformedDataError,
    UnsupportedInputError,
)
from .inference import predict_logits
from .labels import EMOTIONS
from .preprocessing import FER2013_MEAN, FER2013_STD
from .tta import resolve_tta

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "ClassMetrics",
    "EvaluationReport",
    "evaluate",
    "plot_confusion_matrix",
    "report_from_predictions",
]

_REPORT_FORMAT_VERSION: Final[int] = 1


@dataclass(frozen=True)
class ClassMetrics:
    """Precision, recall, F1 and support of one class.

    Attributes:
        precision: Fraction of the predictions of this class that are right (0 when the class
            is never predicted).
        recall: Fraction of this class's samples predicted as it (0 when it has no samples).
        f1: Harmonic mean of precision and recall (0 when both are 0).
        support: Number of samples whose true label is this class.

    Example:
        >>> ClassMetrics(precision=1.0, recall=0.5, f1=2 / 3, support=2).support
        2
    """

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class EvaluationReport:
    """Classification metrics of one evaluation, ready to print, save and compare.

    Build it with :func:`evaluate` or :func:`report_from_predictions`. Averages follow
    scikit-learn: the macro F1 is the unweighted mean over *all* labels (a label absent from
    both the targets and the predictions counts as F1 0), the weighted F1 weights each label
    by its support, and the balanced accuracy is the mean recall over the labels present in
    the targets.

    Attributes:
        labels: Class names, position = class index.
        num_samples: Number of evaluated samples.
        accuracy: Fraction of correct predictions.
        balanced_accuracy: Mean per-class recall over the classes present in the targets.
        macro_f1: Unweighted mean of the per-class F1 scores.
        weighted_f1: Support-weighted mean of the per-class F1 scores.
        per_class: Per-class metrics keyed by class name, in label order.
        confusion_matrix: Counts; row ``i`` = true class ``i``, column ``j`` = predicted ``j``.
        confusion_matrix_normalized: Each row divided by its sum (the per-class recall on the
            diagonal); a row of a class with no samples is all zeros.
        ece: Expected calibration error (see
            :func:`~emotionnet.calibration.expected_calibration_error`), ``None`` when no
            probabilities were given; of the calibrated probabilities when a
            ``temperature`` was applied.
        nll: Mean negative log-likelihood of the true class in nats (scikit-learn's
            ``log_loss``), ``None`` when no probabilities were given; of the calibrated
            probabilities when a ``temperature`` was applied.
        tta: The test-time augmentation used (``"none"``, ``"flip"``, ...), ``None`` when
            unknown (predictions passed in directly).
        temperature: The calibration temperature the probabilities were divided by
            (:func:`emotionnet.calibration.apply_temperature`), ``None`` when none was
            applied. It never changes a prediction, so every other metric is the same as
            without it.
        uncalibrated_ece: The ECE before calibration (temperature 1), ``None`` without a
            ``temperature``.
        uncalibrated_nll: The NLL before calibration, ``None`` without a ``temperature``.

    Example:
        >>> report = report_from_predictions([0, 1, 1], [0, 1, 0], labels=("cat", "dog"))
        >>> report.confusion_matrix
        ((1, 0), (1, 1))
        >>> EvaluationReport.from_dict(report.to_dict()) == report
        True
    """

    labels: tuple[str, ...]
    num_samples: int
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    weighted_f1: float
    per_class: dict[str, ClassMetrics]
    confusion_matrix: tuple[tuple[int, ...], ...]
    confusion_matrix_normalized: tuple[tuple[float, ...], ...]
    ece: float | None = None
    nll: float | None = None
    tta: str | None = None
    temperature: float | None = None
    uncalibrated_ece: float | None = None
    uncalibrated_nll: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dictionary that :meth:`from_dict` turns back into the report.

        Returns:
            Plain Python types only: lists, dicts, str, int, float and None.

        Example:
            >>> report = report_from_predictions([0, 1], [0, 1], labels=("a", "b"))
            >>> report.to_dict()["per_class"]["b"]
            {'precision': 1.0, 'recall': 1.0, 'f1': 1.0, 'support': 1}
        """
        return {
            "format_version": _REPORT_FORMAT_VERSION,
            "labels": list(self.labels),
            "num_samples": self.num_samples,
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "macro_f1": self.macro_f1,
            "weighted_f1": self.weighted_f1,
            "ece": self.ece,
            "nll": self.nll,
            "tta": self.tta,
            "temperature": self.temperature,
            "uncalibrated_ece": self.uncalibrated_ece,
            "uncalibrated_nll": self.uncalibrated_nll,
            "per_class": {
                name: {
                    "precision": m.precision,
                    "recall": m.recall,
                    "f1": m.f1,
                    "support": m.support,
                }
                for name, m in self.per_class.items()
            },
            "confusion_matrix": [list(row) for row in self.confusion_matrix],
            "confusion_matrix_normalized": [list(row) for row in self.confusion_matrix_normalized],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationReport:
        """Rebuild a report from :meth:`to_dict` output.

        Args:
            data: A mapping as written by :meth:`to_dict` (for example parsed JSON).

        Returns:
            The report.

        Raises:
            InvalidArgumentError: If keys are missing or unknown, or values have the wrong
                type or shape.

        Example:
            >>> report = report_from_predictions([1, 0], [1, 1], labels=("a", "b"))
            >>> EvaluationReport.from_dict(report.to_dict()).accuracy
            0.5
        """
        if not isinstance(data, Mapping):
            raise InvalidArgumentError(
                f"Expected a mapping as written by EvaluationReport.to_dict(), got "
                f"{type(data).__name__}."
            )
        version = data.get("format_version", _REPORT_FORMAT_VERSION)
        if version != _REPORT_FORMAT_VERSION:
            raise InvalidArgumentError(
                f"Unsupported evaluation report format_version {version!r}; this emotionnet "
                f"reads version {_REPORT_FORMAT_VERSION}. Upgrade emotionnet to read it."
            )
        required = {
            "labels",
            "num_samples",
            "accuracy",
            "balanced_accuracy",
            "macro_f1",
            "weighted_f1",
            "per_class",
            "confusion_matrix",
            "confusion_matrix_normalized",
        }
        optional = {
            "format_version",
            "ece",
            "nll",
            "tta",
            "temperature",
            "uncalibrated_ece",
            "uncalibrated_nll",
        }
        missing = required - set(data)
        unknown = set(data) - required - optional
        if missing or unknown:
            raise InvalidArgumentError(
                f"Evaluation report keys do not match: missing {sorted(missing)}, unknown "
                f"{sorted(unknown)}. Expected {sorted(required)} and optionally "
                f"{sorted(optional)}."
            )
        try:
            labels = tuple(str(name) for name in data["labels"])
            num_classes = len(labels)
            matrix = tuple(tuple(int(v) for v in row) for row in data["confusion_matrix"])
            normalized = tuple(
                tuple(float(v) for v in row) for row in data["confusion_matrix_normalized"]
            )
            per_class_data = data["per_class"]
            per_class = {
                name: ClassMetrics(
                    precision=float(per_class_data[name]["precision"]),
                    recall=float(per_class_data[name]["recall"]),
                    f1=float(per_class_data[name]["f1"]),
                    support=int(per_class_data[name]["support"]),
                )
                for name in labels
            }
            ece, nll, temperature, uncalibrated_ece, uncalibrated_nll = (
                None if data.get(key) is None else float(data[key])
                for key in ("ece", "nll", "temperature", "uncalibrated_ece", "uncalibrated_nll")
            )
            tta = None if data.get("tta") is None else str(data["tta"])
            report = cls(
                labels=labels,
                num_samples=int(data["num_samples"]),
                accuracy=float(data["accuracy"]),
                balanced_accuracy=float(data["balanced_accuracy"]),
                macro_f1=float(data["macro_f1"]),
                weighted_f1=float(data["weighted_f1"]),
                per_class=per_class,
                confusion_matrix=matrix,
                confusion_matrix_normalized=normalized,
                ece=ece,
                nll=nll,
                tta=tta,
                temperature=temperature,
                uncalibrated_ece=uncalibrated_ece,
                uncalibrated_nll=uncalibrated_nll,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                f"Malformed evaluation report ({type(exc).__name__}: {exc}); pass the output "
                "of EvaluationReport.to_dict()."
            ) from None
        if set(per_class_data) != set(labels):
            raise InvalidArgumentError(
                f"per_class has classes {sorted(per_class_data)} but labels are {list(labels)}."
            )
        for name, rows in (
            ("confusion_matrix", matrix),
            ("confusion_matrix_normalized", normalized),
        ):
            if len(rows) != num_classes or any(len(row) != num_classes for row in rows):
                raise InvalidArgumentError(
                    f"{name} must be {num_classes} x {num_classes} (one row and column per "
                    f"label), got rows of lengths {[len(row) for row in rows]}."
                )
        return report

    def save_json(self, path: str | os.PathLike[str]) -> None:
        """Write the report as JSON, atomically (a crash never leaves a half-written file).

        Args:
            path: Destination file; its folder must exist.

        Example:
            >>> import tempfile, pathlib
            >>> report = report_from_predictions([0, 1], [0, 0], labels=("a", "b"))
            >>> with tempfile.TemporaryDirectory() as tmp:
            ...     path = pathlib.Path(tmp) / "report.json"
            ...     report.save_json(path)
            ...     EvaluationReport.load_json(path) == report
            True
        """
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load_json(cls, path: str | os.PathLike[str]) -> EvaluationReport:
        """Read a report written by :meth:`save_json`.

        Args:
            path: A JSON file.

        Returns:
            The report.

        Raises:
            FileNotFoundError: If the file does not exist.
            OSError: If it is not a regular file (a folder, a pipe: never waited on) or
                cannot be read.
            MalformedDataError: If the file is not a valid report.

        Example:
            >>> import tempfile, pathlib
            >>> with tempfile.TemporaryDirectory() as tmp:
            ...     path = pathlib.Path(tmp) / "r.json"
            ...     report_from_predictions([0], [0], labels=("a", "b")).save_json(path)
            ...     EvaluationReport.load_json(path).num_samples
            1
        """
        source = Path(path)
        with open_regular_file(source) as handle:
            raw = handle.read()
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
            raise MalformedDataError(
                f"{source} is not valid UTF-8 JSON ({reason}); write reports with "
                "EvaluationReport.save_json."
            ) from None
        try:
            return cls.from_dict(data)
        except InvalidArgumentError as exc:
            raise MalformedDataError(f"{source} is not an evaluation report: {exc}") from None

    def to_markdown(self) -> str:
        """Render the headline metrics, the per-class table and the confusion matrix.

        Returns:
            GitHub-flavoured Markdown.

        Example:
            >>> report = report_from_predictions([0, 1], [0, 1], labels=("a", "b"))
            >>> print(report.to_markdown().splitlines()[0])
            Evaluation on 2 samples (TTA: not recorded)
        """
        tta = self.tta if self.tta is not None else "not recorded"
        lines = [
            f"Evaluation on {self.num_samples} samples (TTA: {tta})",
            "",
            "| metric | value |",
            "|---|---:|",
            f"| accuracy | {self.accuracy:.2%} |",
            f"| balanced accuracy | {self.balanced_accuracy:.2%} |",
            f"| macro F1 | {self.macro_f1:.4f} |",
            f"| weighted F1 | {self.weighted_f1:.4f} |",
        ]
        calibrated = "" if self.temperature is None else ", calibrated"
        if self.ece is not None:
            lines.append(f"| ECE ({ECE_BINS} bins){calibrated} | {self.ece:.4f} |")
        if self.nll is not None:
            lines.append(f"| NLL{calibrated} | {self.nll:.4f} |")
        if self.temperature is not None:
            lines.append(f"| calibration temperature | {self.temperature:.4f} |")
            if self.uncalibrated_ece is not None:
                lines.append(
                    f"| ECE ({ECE_BINS} bins), uncalibrated | {self.uncalibrated_ece:.4f} |"
                )
            if self.uncalibrated_nll is not None:
                lines.append(f"| NLL, uncalibrated | {self.uncalibrated_nll:.4f} |")
        lines += ["", "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for name, m in self.per_class.items():
            lines.append(
                f"| {name} | {m.precision:.4f} | {m.recall:.4f} | {m.f1:.4f} | {m.support} |"
            )
        lines += [
            "",
            "Confusion matrix (rows: true class, columns: predicted class, counts):",
            "",
            "| true \\ predicted | " + " | ".join(self.labels) + " |",
            "|---|" + "---:|" * len(self.labels),
        ]
        for name, row in zip(self.labels, self.confusion_matrix, strict=True):
            lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.to_markdown()


def _check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    if isinstance(labels, str) or not all(isinstance(name, str) for name in labels):
        raise InvalidArgumentError(
            f"labels must be a sequence of class names, got {labels!r}; for example "
            "emotionnet.EMOTIONS."
        )
    names = tuple(labels)
    if len(names) < 2 or len(set(names)) != len(names):
        raise InvalidArgumentError(
            f"labels must be at least two unique class names, got {list(names)}."
        )
    return names


def report_from_predictions(
    y_true: Sequence[int] | npt.ArrayLike | torch.Tensor,
    y_pred: Sequence[int] | npt.ArrayLike | torch.Tensor,
    y_proba: npt.ArrayLike | torch.Tensor | None = None,
    *,
    labels: Sequence[str] = EMOTIONS,
    tta: str | None = None,
) -> EvaluationReport:
    """Compute an :class:`EvaluationReport` from true and predicted class indices.

    Accuracy, balanced accuracy, precision/recall/F1/support (``zero_division=0``), the macro
    and weighted F1 and the confusion matrices come from scikit-learn with
    ``labels=range(len(labels))``, so classes missing from the targets or the predictions
    still get a row. The ECE and NLL need ``y_proba``.

    Args:
        y_true: True class indices, shape ``(N,)`` (list, numpy array or tensor).
        y_pred: Predicted class indices, shape ``(N,)``.
        y_proba: Optional class probabilities, shape ``(N, len(labels))``, rows summing to 1.
        labels: Class names, position = class index.
        tta: Recorded in the report as the test-time augmentation used.

    Returns:
        The report.

    Raises:
        InvalidArgumentError: If the inputs are empty, differ in length, hold class indices
            outside ``range(len(labels))``, or ``y_proba`` is not a probability matrix.
        UnsupportedInputError: If an input cannot be read as an array.

    Example:
        >>> report = report_from_predictions([0, 1, 2, 2], [0, 2, 2, 2], labels=("a", "b", "c"))
        >>> report.accuracy, report.balanced_accuracy
        (0.75, 0.6666666666666666)
        >>> report.per_class["c"]
        ClassMetrics(precision=0.6666666666666666, recall=1.0, f1=0.8, support=2)
    """
    # scikit-learn loads SciPy: import it when metrics are computed, not with emotionnet.
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        log_loss,
        precision_recall_fscore_support,
    )

    names = _check_labels(labels)
    targets = _as_label_array("y_true", y_true)
    predictions = _as_label_array("y_pred", y_pred)
    if targets.size != predictions.size:
        raise InvalidArgumentError(
            f"y_true and y_pred differ in length ({targets.size} vs {predictions.size}); pass "
            "one prediction per sample."
        )
    if targets.size == 0:
        raise InvalidArgumentError("y_true and y_pred are empty; evaluate at least one sample.")
    _check_class_range("y_true", targets, names)
    _check_class_range("y_pred", predictions, names)
    proba = None if y_proba is None else _as_probabilities(y_proba, targets.size, len(names))

    label_ids = list(range(len(names)))
    with warnings.catch_warnings():
        # Documented behaviour, not problems: classes absent from y_true are left out of the
        # balanced accuracy, and a single class present is fine since labels= fixes the shape.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        accuracy = float(accuracy_score(targets, predictions))
        balanced = float(balanced_accuracy_score(targets, predictions))
        precision, recall, f1, support = precision_recall_fscore_support(
            targets, predictions, labels=label_ids, zero_division=0
        )
        macro_f1 = float(
            f1_score(targets, predictions, labels=label_ids, average="macro", zero_division=0)
        )
        weighted_f1 = float(
            f1_score(targets, predictions, labels=label_ids, average="weighted", zero_division=0)
        )
        counts = confusion_matrix(targets, predictions, labels=label_ids)
        normalized = confusion_matrix(targets, predictions, labels=label_ids, normalize="true")
        nll = None if proba is None else float(log_loss(targets, proba, labels=label_ids))
    return EvaluationReport(
        labels=names,
        num_samples=int(targets.size),
        accuracy=accuracy,
        balanced_accuracy=balanced,
        macro_f1=macro_f1,
        weighted_f1=weighted_f1,
        per_class={
            name: ClassMetrics(
                precision=float(precision[i]),
                recall=float(recall[i]),
                f1=float(f1[i]),
                support=int(support[i]),
            )
            for i, name in enumerate(names)
        },
        confusion_matrix=tuple(tuple(int(v) for v in row) for row in counts),
        confusion_matrix_normalized=tuple(tuple(float(v) for v in row) for row in normalized),
        ece=None if proba is None else _ece(targets, proba, ECE_BINS),
        nll=nll,
        tta=tta,
    )


def evaluate(
    model: nn.Module,
    data: object,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    tta: bool | str = False,
    mean: float | Sequence[float] = FER2013_MEAN,
    std: float | Sequence[float] = FER2013_STD,
    labels: Sequence[str] | None = None,
    progress: bool = False,
    temperature: float | Literal["fit"] | None = None,
) -> EvaluationReport:
    """Evaluate a classifier on a labelled data set.

    The data goes through :func:`emotionnet.data.as_tensors`, the model through
    :func:`~emotionnet.predict_logits`; predictions are the argmax of the (TTA-averaged)
    probabilities.

    With a ``temperature`` the report's probability metrics (ECE, NLL) are those of the
    calibrated probabilities ``softmax(logits / temperature)``, and the report also records
    the temperature and the ECE and NLL before calibration. The predictions, so the accuracy,
    the F1 scores and the confusion matrix, are the same with and without it.

    Args:
        model: A module mapping ``float`` ``N x 1 x H x W`` input to ``N x len(labels)`` logits.
        data: A :class:`~emotionnet.FER2013` split, an ``(images, targets)`` pair of tensors or
            arrays, or a data set yielding ``(image, label)``.
        batch_size: Images per forward pass.
        device: Where to run (``None``: the model's device; otherwise the model is moved).
        tta: ``False``/``"none"``, ``True``/``"flip"``, ``"flip_shift"``, ``"flip_crop"``
            or ``"ten_crop"``.
        mean: Normalisation mean on the 0..1 scale.
        std: Normalisation standard deviation on the 0..1 scale.
        labels: Class names, position = class index; the model must output one logit each.
            ``None``: the model's own labels (``model.config.labels``, as every
            :class:`~emotionnet.EmotionNet`, fine-tuned ones included, has them), so that
            every metric averages over the classes the model predicts; the seven FER2013
            emotions for a model without a config.
        progress: Show a tqdm progress bar.
        temperature: ``None`` (uncalibrated), a positive temperature (for a model folder:
            ``config.temperature_for(mode)``), or ``"fit"``: fit it on this data with
            :func:`~emotionnet.calibration.fit_temperature` (what packaging a model does on
            PublicTest; the calibration it reports is then measured on the data it was
            fitted on).

    Returns:
        The :class:`EvaluationReport`, with ECE and NLL and the TTA mode recorded (and the
        temperature and the uncalibrated ECE and NLL when ``temperature`` is given).

    Raises:
        InvalidArgumentError: If the data holds unlabelled samples (target ``-1``) or labels
            outside ``range(len(labels))``, the model outputs another number of classes, or
            ``temperature`` is neither ``None``, ``"fit"`` nor a positive finite number.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7))
        >>> images = torch.randint(0, 256, (8, 48, 48), dtype=torch.uint8)
        >>> targets = torch.tensor([0, 1, 2, 3, 4, 5, 6, 3])
        >>> report = evaluate(model, (images, targets), tta="flip")
        >>> report.num_samples, report.tta
        (8, 'flip')
        >>> from emotionnet.models import ModelConfig, build_model
        >>> config = ModelConfig(stem="imagenet", num_classes=3, labels=("neg", "neu", "pos"))
        >>> evaluate(build_model(config), (images[:3], torch.tensor([0, 1, 2]))).labels
        ('neg', 'neu', 'pos')
        >>> calibrated = evaluate(model, (images, targets), tta="flip", temperature="fit")
        >>> calibrated.accuracy == report.accuracy, calibrated.nll <= calibrated.uncalibrated_nll
        (True, True)
    """
    mode = resolve_tta(tta)
    if temperature is not None and temperature != "fit":
        temperature = _check_temperature(temperature)
    if labels is None:
        labels = _model_labels(model) or EMOTIONS
    names = _check_labels(labels)
    images, targets = as_tensors(data)
    target_array = _as_label_array("targets", targets)
    unlabelled = int((target_array == -1).sum())
    if unlabelled:
        raise InvalidArgumentError(
            f"{unlabelled} of {target_array.size} samples have no label (target -1), so they "
            "cannot be evaluated; use a labelled split such as 'public_test' or "
            "'private_test', or drop the unlabelled samples."
        )
    _check_class_range("targets", target_array, names)
    logits = predict_logits(
        model,
        images,
        batch_size=batch_size,
        device=device,
        tta=mode,
        mean=mean,
        std=std,
        progress=progress,
    )
    if logits.shape[1] != len(names):
        raise InvalidArgumentError(
            f"The model outputs {logits.shape[1]} logits per image but {len(names)} labels "
            f"were given ({list(names)}); pass labels matching the model's classes."
        )
    proba = logits.softmax(dim=1)
    report = report_from_predictions(
        target_array, proba.argmax(dim=1), proba, labels=names, tta=mode
    )
    if temperature is None:
        return report
    logit_array = logits.double().numpy()
    fitted = fit_temperature(logit_array, target_array) if temperature == "fit" else temperature
    # The predictions stay those of the uncalibrated probabilities: a temperature keeps the
    # order of the logits, and taking them from one place keeps the accuracy identical even
    # where rounding would tie two nearly equal probabilities.
    calibrated = report_from_predictions(
        target_array,
        proba.argmax(dim=1),
        apply_temperature(logit_array, fitted),
        labels=names,
        tta=mode,
    )
    return dataclasses.replace(
        calibrated,
        temperature=fitted,
        uncalibrated_ece=report.ece,
        uncalibrated_nll=report.nll,
    )


def _model_labels(model: object) -> tuple[str, ...] | None:
    """The label names a model carries in its config (``EmotionNet``, ``OnnxClassifier``)."""
    labels = getattr(getattr(model, "config", None), "labels", None)
    if isinstance(labels, tuple) and labels and all(isinstance(x, str) for x in labels):
        return labels
    return None


# --------------------------------------------------------------------------------------------
# Plotting
# --------------------------------------------------------------------------------------------


def plot_confusion_matrix(
    report_or_matrix: EvaluationReport | npt.ArrayLike | torch.Tensor,
    path: str | os.PathLike[str] | None = None,
    *,
    normalize: bool = True,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    cmap: str = "Blues",
) -> Figure:
    """Draw a confusion matrix as an annotated heat map, optionally saved to an image file.

    scikit-learn's :class:`~sklearn.metrics.ConfusionMatrixDisplay` draws it on a
    :class:`matplotlib.figure.Figure` that pyplot does not manage, so it works without a
    display and leaves pyplot's open figures alone.

    Args:
        report_or_matrix: An :class:`EvaluationReport` or a square ``C x C`` count matrix
            (rows: true class, columns: predicted class).
        path: If given, the figure is saved there (format from the suffix, PNG by default).
        normalize: Show row-normalised fractions (per-class recall on the diagonal) instead of
            counts. Rows with no samples show zeros.
        labels: Class names; defaults to the report's labels, or :data:`~emotionnet.EMOTIONS`
            for a 7 x 7 matrix, or ``0..C-1``.
        title: Figure title; defaults to one naming the accuracy when a report is given.
        cmap: Matplotlib colour map name.

    Returns:
        The matplotlib figure.

    Raises:
        MissingDependencyError: If matplotlib is not installed.
        InvalidArgumentError: If the matrix is not square and non-negative, or ``labels`` has
            the wrong length.

    Example:
        >>> figure = plot_confusion_matrix([[5, 1], [2, 4]], labels=["yes", "no"])
        >>> [label.get_text() for label in figure.axes[0].get_xticklabels()]
        ['yes', 'no']
    """
    require("matplotlib", "plot_confusion_matrix")
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    accuracy: float | None = None
    if isinstance(report_or_matrix, EvaluationReport):
        counts = np.asarray(report_or_matrix.confusion_matrix, dtype=np.float64)
        default_labels: tuple[str, ...] = report_or_matrix.labels
        accuracy = report_or_matrix.accuracy
    else:
        source = report_or_matrix
        if isinstance(source, torch.Tensor):
            source = source.detach().cpu().numpy()
        try:
            counts = np.asarray(source, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise UnsupportedInputError(
                f"Expected an EvaluationReport or a square matrix, got "
                f"{type(report_or_matrix).__name__} ({exc})."
            ) from None
        size = counts.shape[0] if counts.ndim else 0
        default_labels = EMOTIONS if size == len(EMOTIONS) else tuple(str(i) for i in range(size))
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise InvalidArgumentError(
            f"A confusion matrix must be square (C x C), got shape {counts.shape}."
        )
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise InvalidArgumentError("A confusion matrix holds non-negative finite values only.")
    names = default_labels if labels is None else _check_labels(labels)
    if len(names) != counts.shape[0]:
        raise InvalidArgumentError(
            f"Got {len(names)} labels for a {counts.shape[0]} x {counts.shape[0]} matrix; pass "
            "one name per row."
        )

    values = counts
    if normalize:
        row_sums = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    integral = not normalize and bool(np.all(values == np.round(values)))
    size_inches = max(4.0, 0.75 * len(names) + 2.0)
    figure = Figure(figsize=(size_inches + 1.0, size_inches), layout="constrained")
    ConfusionMatrixDisplay(
        values.astype(np.int64) if integral else values, display_labels=list(names)
    ).plot(
        ax=figure.add_subplot(),
        cmap=cmap,
        xticks_rotation=45,
        values_format="d" if integral else ".2f",
        im_kw={"vmin": 0.0, "vmax": 1.0 if normalize else max(float(values.max()), 1.0)},
        text_kw={"fontsize": 8},
    )
    if title is None:
        title = f"Confusion matrix ({'row-normalised' if normalize else 'counts'})"
        if accuracy is not None:
            title += f", accuracy {accuracy:.2%}"
    figure.axes[0].set_title(title)
    if path is not None:
        figure.savefig(Path(path), dpi=150)
    return figure
