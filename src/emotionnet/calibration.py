"""Calibrated probabilities: temperature scaling and the expected calibration error.

A classifier is *calibrated* when, of the faces it labels with confidence 0.8, about 80% are
right. Temperature scaling (Guo et al., 2017) divides the logits by one number ``T`` fitted
on held-out data: ``T > 1`` softens over-confident probabilities, ``T < 1`` sharpens
under-confident ones. Dividing by a positive number keeps the order of the logits, so the
predicted class, and with it the accuracy, never changes; only the confidence does.

emotionnet fits one temperature per test-time augmentation mode (averaging views changes the
confidence, so each view set needs its own) on PublicTest when a model is packaged, and keeps
them in :attr:`ModelConfig.temperatures <emotionnet.ModelConfig.temperatures>`.

The logits here are what :func:`emotionnet.inference.predict_logits` returns: the raw logits
for a single view, the log of the view-averaged probabilities with TTA. This module needs
only numpy (no torch, no SciPy), so the slim inference install can use it.

Example:
    >>> import numpy as np
    >>> logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 2.0]])
    >>> temperature = fit_temperature(logits, [0, 1, 1, 1])
    >>> round(temperature, 2)  # one face in four is wrong, and confidently so: soften
    4.38
    >>> calibrated = apply_temperature(logits, temperature)
    >>> calibrated.argmax(axis=1).tolist()  # the same classes
    [0, 1, 0, 1]
    >>> before = expected_calibration_error([0, 1, 1, 1], apply_temperature(logits, 1.0))
    >>> after = expected_calibration_error([0, 1, 1, 1], calibrated)
    >>> round(before, 3), round(after, 3)
    (0.365, 0.138)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from ._checks import check_int
from .errors import InvalidArgumentError, UnsupportedInputError

__all__ = [
    "ECE_BINS",
    "MAX_TEMPERATURE",
    "MIN_TEMPERATURE",
    "apply_temperature",
    "expected_calibration_error",
    "fit_temperature",
]

ECE_BINS: Final[int] = 15
"""Number of equal-width confidence bins of the expected calibration error."""

MIN_TEMPERATURE: Final[float] = 0.05
"""The smallest temperature :func:`fit_temperature` returns."""

MAX_TEMPERATURE: Final[float] = 20.0
"""The largest temperature :func:`fit_temperature` returns. Outside
[:data:`MIN_TEMPERATURE`, :data:`MAX_TEMPERATURE`] the fit has stopped measuring the model:
separable logits drive the optimum to 0, logits that say nothing drive it to infinity."""

_PROBA_SUM_TOLERANCE: Final[float] = 1e-3
# The fit stops when the log of 1/T moves less than this (a relative change of T of 1e-12).
_FIT_TOLERANCE: Final[float] = 1e-12
_FIT_MAX_STEPS: Final[int] = 200


def _to_numpy(values: object) -> object:
    # A torch tensor, without importing torch: this module runs where torch is not installed.
    detach = getattr(values, "detach", None)
    if callable(detach):
        return detach().cpu().numpy()
    return values


def _as_label_array(name: str, values: object) -> npt.NDArray[np.int64]:
    try:
        array = np.asarray(_to_numpy(values))
    except (TypeError, ValueError) as exc:
        raise UnsupportedInputError(
            f"{name} must be a sequence of class indices, got {type(values).__name__} ({exc})."
        ) from None
    if array.ndim != 1:
        raise InvalidArgumentError(
            f"{name} must be one-dimensional (one class index per sample), got shape "
            f"{array.shape}; pass class indices, not one-hot rows or probabilities."
        )
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise InvalidArgumentError(
            f"{name} must hold integer class indices, got dtype {array.dtype}; convert names "
            "with emotionnet.emotion_to_index and probabilities with argmax first."
        )
    return array.astype(np.int64, copy=False)


def _check_class_range(name: str, values: npt.NDArray[np.int64], labels: Sequence[str]) -> None:
    bad = values[(values < 0) | (values >= len(labels))]
    if bad.size:
        raise InvalidArgumentError(
            f"{name} holds {bad.size} value(s) outside 0..{len(labels) - 1} (for example "
            f"{int(bad[0])}); with {len(labels)} labels {list(labels)} every class index must "
            "lie in that range."
        )


def _as_probabilities(
    values: object, num_samples: int, num_classes: int | None
) -> npt.NDArray[np.float64]:
    try:
        proba = np.asarray(_to_numpy(values), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UnsupportedInputError(
            f"y_proba must be an array of probabilities, got {type(values).__name__} ({exc})."
        ) from None
    expected = "num_classes" if num_classes is None else str(num_classes)
    if (
        proba.ndim != 2
        or proba.shape[0] != num_samples
        or (num_classes is not None and proba.shape[1] != num_classes)
    ):
        raise InvalidArgumentError(
            f"y_proba must be shaped (num_samples, num_classes) = ({num_samples}, {expected}), "
            f"got {proba.shape}."
        )
    if not np.isfinite(proba).all() or (proba < 0).any():
        raise InvalidArgumentError(
            "y_proba holds negative, NaN or infinite values; pass probabilities "
            "(softmax of the logits), not logits."
        )
    sums = proba.sum(axis=1)
    worst = int(np.abs(sums - 1.0).argmax())
    if abs(float(sums[worst]) - 1.0) > _PROBA_SUM_TOLERANCE:
        raise InvalidArgumentError(
            f"The rows of y_proba must sum to 1, but row {worst} sums to {float(sums[worst]):g}; "
            "apply softmax to logits first (or use emotionnet.inference.predict_proba)."
        )
    # Renormalise the float rounding away so log-losses see exact distributions.
    normalized: npt.NDArray[np.float64] = proba / sums[:, None]
    return normalized


def _as_logits(values: object, *, allow_minus_inf: bool) -> npt.NDArray[np.float64]:
    try:
        logits = np.asarray(_to_numpy(values), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UnsupportedInputError(
            f"logits must be an array of numbers, got {type(values).__name__} ({exc})."
        ) from None
    if logits.ndim == 0 or logits.shape[-1] == 0:
        raise InvalidArgumentError(
            f"logits must have one value per class along the last axis, got shape {logits.shape}."
        )
    # The log of an averaged probability that underflowed to 0 is -inf: a class with
    # probability 0, which a temperature leaves at 0.
    bad = np.isnan(logits) | (logits == np.inf)
    if not allow_minus_inf:
        bad |= logits == -np.inf
    if bad.any():
        allowed = "finite numbers or -inf" if allow_minus_inf else "finite numbers"
        raise InvalidArgumentError(
            f"logits must be {allowed}, got {int(bad.sum())} NaN or infinite value(s); pass "
            "the output of emotionnet.inference.predict_logits."
        )
    if allow_minus_inf and not np.isfinite(logits).any(axis=-1).all():
        raise InvalidArgumentError(
            "Every row of logits needs a finite value; a row of -inf gives no probabilities."
        )
    return logits


def _check_temperature(temperature: object) -> float:
    number: float | None = None
    if not isinstance(temperature, bool) and isinstance(temperature, numbers.Real):
        try:
            number = float(temperature)
        except OverflowError:  # an integer beyond the float range
            number = None
    if number is None or not math.isfinite(number) or number <= 0.0:
        raise InvalidArgumentError(
            f"temperature must be a positive finite number, got {temperature!r}; 1.0 leaves "
            "the probabilities unchanged, and fit_temperature finds the calibrated one."
        )
    return number


def _log_softmax(scaled: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    shifted = scaled - scaled.max(axis=-1, keepdims=True)
    result: npt.NDArray[np.float64] = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return result


def apply_temperature(logits: npt.ArrayLike, temperature: float) -> npt.NDArray[np.float64]:
    """Return the probabilities ``softmax(logits / temperature)`` along the last axis.

    Computed in float64 with the row maximum subtracted first, so large logits do not
    overflow. A logit of ``-inf`` (a class whose averaged probability underflowed to 0) stays
    at probability 0. The largest probability of each row is where the largest logit is, for
    every temperature: float64 keeps two different float32 logits apart (only logits closer
    than about ``1e-16 * temperature`` could come out equally probable).

    Args:
        logits: An array (or CPU tensor) whose last axis holds one value per class, such as
            the ``N x C`` output of :func:`emotionnet.inference.predict_logits`.
        temperature: A positive finite number; ``1.0`` gives the plain softmax.

    Returns:
        A float64 array of the same shape whose last axis sums to 1.

    Raises:
        InvalidArgumentError: If ``temperature`` is not positive and finite, or the logits
            hold NaN or ``+inf`` or a row of only ``-inf``.
        UnsupportedInputError: If ``logits`` cannot be read as an array of numbers.

    Example:
        >>> apply_temperature([[2.0, 0.0]], 1.0).round(4).tolist()
        [[0.8808, 0.1192]]
        >>> apply_temperature([[2.0, 0.0]], 2.0).round(4).tolist()  # softer, same class
        [[0.7311, 0.2689]]
    """
    scale = _check_temperature(temperature)
    values = _as_logits(logits, allow_minus_inf=True)
    probabilities: npt.NDArray[np.float64] = np.exp(_log_softmax(values / scale))
    return probabilities


def _nll_gradient(
    logits: npt.NDArray[np.float64], targets: npt.NDArray[np.int64], beta: float
) -> tuple[float, float]:
    """First and second derivative of the mean NLL of ``softmax(beta * logits)`` in ``beta``.

    ``d/dbeta = mean(E_p[z] - z_y)`` and ``d2/dbeta2 = mean(Var_p[z]) >= 0``: the loss is
    convex in ``beta = 1 / T``, so its minimum is the one root of the first derivative.
    """
    probabilities = np.exp(_log_softmax(beta * logits))
    expected = (probabilities * logits).sum(axis=1)
    variance = (probabilities * (logits - expected[:, None]) ** 2).sum(axis=1)
    target_logits = logits[np.arange(logits.shape[0]), targets]
    return float((expected - target_logits).mean()), float(variance.mean())


def fit_temperature(logits: npt.ArrayLike, targets: npt.ArrayLike) -> float:
    """Fit the temperature that minimises the log-loss of ``softmax(logits / T)``.

    The mean negative log-likelihood of the targets is convex in ``1 / T``; its minimum is
    found by Newton steps on ``1 / T``, kept inside a bracket that halves when a step would
    leave it. Deterministic: the same logits give the same temperature, to the last bit. The
    result is clipped to [:data:`MIN_TEMPERATURE`, :data:`MAX_TEMPERATURE`]; logits that are
    the same for every class in every row carry no confidence to scale, and give ``1.0``.

    Fit it on held-out data (PublicTest for FER2013), not on the training data; calibration
    measured on the data the temperature was fitted on is in-sample, an optimistic number.

    Args:
        logits: ``N x C`` finite logits (array or CPU tensor), as
            :func:`emotionnet.inference.predict_logits` returns them for one TTA mode.
        targets: ``N`` true class indices in ``0..C-1``.

    Returns:
        The temperature ``T > 0``; :func:`apply_temperature` applies it.

    Raises:
        InvalidArgumentError: If the logits are not a finite ``N x C`` matrix with ``N >= 1``
            and ``C >= 2``, or the targets do not give one class index in range per row.
        UnsupportedInputError: If an input cannot be read as an array.

    Example:
        >>> import numpy as np
        >>> logits = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # right, right, right
        >>> fit_temperature(logits, [0, 1, 0]) < 1.0  # sharpen: it is always right
        True
        >>> fit_temperature(logits, [0, 1, 1]) > 1.0  # soften: one in three is wrong
        True
    """
    values = _as_logits(logits, allow_minus_inf=False)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 2:
        raise InvalidArgumentError(
            f"logits must be shaped (num_samples, num_classes) with at least one sample and "
            f"two classes, got {values.shape}."
        )
    labels = _as_label_array("targets", targets)
    if labels.size != values.shape[0]:
        raise InvalidArgumentError(
            f"targets has {labels.size} class indices for {values.shape[0]} rows of logits; "
            "pass one target per row."
        )
    _check_class_range("targets", labels, [str(i) for i in range(values.shape[1])])
    # Centred rows: the same softmax for every beta, and smaller numbers to multiply.
    values = values - values.mean(axis=1, keepdims=True)
    if not values.any():
        return 1.0

    low, high = 1.0 / MAX_TEMPERATURE, 1.0 / MIN_TEMPERATURE
    slope_low, _ = _nll_gradient(values, labels, low)
    if slope_low >= 0.0:
        return MAX_TEMPERATURE
    slope_high, _ = _nll_gradient(values, labels, high)
    if slope_high <= 0.0:
        return MIN_TEMPERATURE
    beta = 1.0
    for _ in range(_FIT_MAX_STEPS):
        slope, curvature = _nll_gradient(values, labels, beta)
        if slope == 0.0:
            break
        if slope < 0.0:
            low = beta
        else:
            high = beta
        step = beta - slope / curvature if curvature > 0.0 else math.nan
        candidate = step if low < step < high else 0.5 * (low + high)
        if abs(math.log(candidate / beta)) < _FIT_TOLERANCE:
            beta = candidate
            break
        beta = candidate
    return float(min(max(1.0 / beta, MIN_TEMPERATURE), MAX_TEMPERATURE))


def expected_calibration_error(
    y_true: Sequence[int] | npt.ArrayLike,
    y_proba: npt.ArrayLike,
    *,
    n_bins: int = ECE_BINS,
) -> float:
    """Top-label expected calibration error (Guo et al., 2017).

    Each sample's confidence is its largest probability and it counts as correct when that
    class (the first one on ties) is the true one. Samples are put into ``n_bins`` equal-width
    bins ``((m - 1) / n_bins, m / n_bins]`` by confidence (a confidence of exactly 0 goes to
    the first bin), and ``ECE = sum_m |B_m| / N * |accuracy(B_m) - mean confidence(B_m)|``.
    0 is perfect calibration; 1 is always fully confident and always wrong.

    The argument order is scikit-learn's (``y_true`` first), as in
    :func:`emotionnet.report_from_predictions`.

    Args:
        y_true: True class indices, shape ``(N,)`` (list, array or CPU tensor).
        y_proba: Class probabilities, shape ``(N, C)``; rows sum to 1.
        n_bins: Number of confidence bins.

    Returns:
        The ECE in ``[0, 1]``.

    Raises:
        InvalidArgumentError: If the shapes disagree, labels are out of range, the rows are not
            probabilities, or ``n_bins < 1``.
        UnsupportedInputError: If an input cannot be read as an array.

    Example:
        >>> expected_calibration_error([0, 0, 1, 1], [[0.75, 0.25]] * 4)
        0.25
    """
    check_int("n_bins", n_bins, minimum=1)
    targets = _as_label_array("y_true", y_true)
    if targets.size == 0:
        raise InvalidArgumentError("y_true is empty; the ECE needs at least one sample.")
    proba = _as_probabilities(y_proba, targets.size, None)
    _check_class_range("y_true", targets, [str(i) for i in range(proba.shape[1])])
    return _ece(targets, proba, n_bins)


def _ece(targets: npt.NDArray[np.int64], proba: npt.NDArray[np.float64], n_bins: int) -> float:
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == targets).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    # |B_m|/N * |acc_m - conf_m| == |sum of correct in B_m - sum of confidence in B_m| / N
    correct_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    confidence_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    return float(np.abs(correct_sum - confidence_sum).sum() / targets.size)
