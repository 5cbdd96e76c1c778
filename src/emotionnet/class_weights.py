"""Per-class loss weights against the class imbalance of FER2013.

FER2013's train split has 7,215 happy faces and 436 disgusted ones. Passing class weights to
:class:`torch.nn.CrossEntropyLoss` makes each class count about equally.

Methods (``n_c`` = samples of class ``c``, ``N`` = all samples, ``K`` = classes with samples):

==================== ====================================== ==============================
``method``           weight of class ``c``                  scale
==================== ====================================== ==============================
``balanced``         ``N / (K * n_c)``                      scikit-learn's: the mean weight
                                                            per sample is 1
``inverse``          ``1 / n_c``                            the weights sum to ``K``
``inverse_sqrt``     ``1 / sqrt(n_c)``                      the weights sum to ``K``
``effective_number`` ``(1 - beta) / (1 - beta ** n_c)``     the weights sum to ``K``
                     (Cui et al., CVPR 2019)                (as in the paper)
==================== ====================================== ==============================

``balanced`` equals :func:`sklearn.utils.class_weight.compute_class_weight` with
``"balanced"`` (and is computed by it when labels are given). The scale hardly matters for
``CrossEntropyLoss(weight=..., reduction="mean")``, which divides by the summed weights of the
batch's targets; the ones above keep the weights near 1 for a readable loss.

**Classes without samples** get the weight 0 and a :class:`UserWarning` naming them. They
contribute no term to a training loss, so no weight could matter there; 0 (rather than an
infinite ``1 / 0``) keeps a loss on other data finite, and the warning flags what is most often
a mistake (a wrong subset or label mapping). ``K`` above counts only the classes with samples,
so the other weights are the same as if the empty classes did not exist.

Example:
    >>> from emotionnet.class_weights import compute_class_weights
    >>> counts = [3995, 436, 4097, 7215, 4830, 3171, 4965]  # FER2013 train
    >>> compute_class_weights(counts, counts=True)
    tensor([1.0266, 9.4066, 1.0010, 0.5684, 0.8491, 1.2934, 0.8260])
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     weights = compute_class_weights([0, 0, 3, 3, 3, 6], method="inverse")
    >>> weights
    tensor([0.8182, 0.0000, 0.0000, 0.5455, 0.0000, 0.0000, 1.6364])
    >>> print(caught[0].message)  # doctest: +ELLIPSIS
    No samples of class 1 disgust, 2 fear, 4 sad, 5 surprise: weight 0 ...
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch

from ._checks import check_choice, check_int, check_number
from .errors import InvalidArgumentError, MissingLabelsError, UnsupportedInputError
from .labels import EMOTIONS, NUM_CLASSES

__all__ = ["METHODS", "compute_class_weights"]

METHODS: Final[tuple[str, ...]] = ("balanced", "inverse", "inverse_sqrt", "effective_number")
"""The weighting methods of :func:`compute_class_weights`."""

FloatArray = npt.NDArray[np.float64]


def _class_names(indices: Sequence[int], num_classes: int) -> str:
    if num_classes == NUM_CLASSES:
        return ", ".join(f"{i} {EMOTIONS[i]}" for i in indices)
    return ", ".join(str(i) for i in indices)


def _unsupported(value: Any) -> UnsupportedInputError:
    return UnsupportedInputError(
        f"compute_class_weights cannot read a {type(value).__name__}: pass a data set with "
        "class_counts() (such as FER2013), a tensor, array or list of integer labels, or "
        "per-class counts with counts=True."
    )


def _as_array(values: Any) -> npt.NDArray[Any]:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    if isinstance(values, (np.ndarray, list, tuple, range)):
        try:
            return np.asarray(values)
        except (TypeError, ValueError) as error:
            raise InvalidArgumentError(
                f"Expected a flat sequence of numbers, got {type(values).__name__} ({error})."
            ) from None
    raise _unsupported(values)


def _is_sample(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2


def _counts_from_labels(labels: npt.NDArray[Any], num_classes: int) -> FloatArray:
    if labels.ndim != 1:
        raise InvalidArgumentError(
            f"Expected a 1-D sequence of labels, got shape {labels.shape}; pass per-class "
            "counts with counts=True."
        )
    if labels.size == 0:
        raise InvalidArgumentError(
            "The labels are empty: class weights need at least one labelled sample."
        )
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise InvalidArgumentError(
            f"Expected integer class labels, got dtype {labels.dtype}; if these are per-class "
            "counts, pass counts=True."
        )
    if (labels == -1).any():
        raise MissingLabelsError(
            f"{int((labels == -1).sum())} labels are -1 (unlabeled images, such as the "
            "challenge's test.csv); compute class weights on labelled data."
        )
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise InvalidArgumentError(
            f"Label {int(bad[0])} is outside 0..{num_classes - 1} (num_classes={num_classes}); "
            "if the input holds per-class counts rather than one label per sample, pass "
            "counts=True."
        )
    return np.bincount(labels.astype(np.int64), minlength=num_classes).astype(np.float64)


def _checked_counts(counts: npt.NDArray[Any], num_classes: int) -> FloatArray:
    if counts.shape != (num_classes,):
        raise InvalidArgumentError(
            f"Expected {num_classes} per-class counts (num_classes={num_classes}), got shape "
            f"{counts.shape}; pass one count per class, or labels without counts=True."
        )
    if counts.dtype == np.bool_ or not np.issubdtype(counts.dtype, np.number):
        raise InvalidArgumentError(f"Expected numeric class counts, got dtype {counts.dtype}.")
    values = counts.astype(np.float64)
    if not np.isfinite(values).all() or (values < 0).any():
        raise InvalidArgumentError(f"Class counts must be finite and >= 0, got {counts.tolist()}.")
    if not (values > 0).any():
        raise InvalidArgumentError(
            "Every class count is 0: class weights need at least one sample."
        )
    return values


def compute_class_weights(
    labels_or_counts: Any,
    *,
    num_classes: int = NUM_CLASSES,
    method: str = "balanced",
    beta: float = 0.9999,
    counts: bool = False,
) -> torch.Tensor:
    """Compute per-class loss weights from labels, class counts or a data set.

    What the first argument is, is never guessed from its values:

    * an object with a ``class_counts()`` method (such as :class:`~emotionnet.FER2013`):
      its counts;
    * with ``counts=True``: a sequence, array or tensor of ``num_classes`` per-class counts;
    * otherwise a sequence, array or tensor of integer labels (one per sample), or any
      map-style data set of ``(image, label)`` items (read through
      :func:`~emotionnet.data.as_tensors`, for example a
      :class:`~torch.utils.data.Subset` of FER2013).

    See the module documentation for the methods, their scale, and classes without samples
    (weight 0, with a warning).

    Args:
        labels_or_counts: Labels, counts (with ``counts=True``) or a data set, as above.
        num_classes: Number of classes (7 for FER2013).
        method: One of :data:`METHODS`.
        beta: ``effective_number`` only: in ``[0, 1)``; 0 gives equal weights, values
            towards 1 approach ``inverse``. The paper uses 0.9, 0.99, 0.999 or 0.9999.
        counts: Read ``labels_or_counts`` as per-class counts instead of labels.

    Returns:
        A ``float32`` tensor of shape ``(num_classes,)``, finite and >= 0, positive for
        every class with samples.

    Raises:
        InvalidArgumentError: If an argument is out of range, a label is not in
            ``0..num_classes-1``, the counts have the wrong length or are negative, or there
            are no samples at all.
        MissingLabelsError: If a label is -1 (an unlabeled image).
        UnsupportedInputError: If ``labels_or_counts`` is of an unsupported type.

    Example:
        >>> import torch
        >>> compute_class_weights(torch.tensor([0, 0, 0, 1]), num_classes=2)
        tensor([0.6667, 2.0000])
        >>> compute_class_weights([30, 10], counts=True, num_classes=2, method="inverse_sqrt")
        tensor([0.7321, 1.2679])
        >>> compute_class_weights([1, 1000], counts=True, num_classes=2,
        ...                       method="effective_number", beta=0.99)
        tensor([1.9802, 0.0198])
    """
    check_int("num_classes", num_classes, minimum=1)
    check_choice("method", method, METHODS)
    check_number("beta", beta, low=0, high=1, high_open=True, hint="typically 0.9 .. 0.9999")

    labels: npt.NDArray[Any] | None = None
    class_counts = getattr(labels_or_counts, "class_counts", None)
    if callable(class_counts):
        values = _checked_counts(_as_array(class_counts()), num_classes)
    elif counts:
        values = _checked_counts(_as_array(labels_or_counts), num_classes)
    elif isinstance(labels_or_counts, (torch.Tensor, np.ndarray, range)) or (
        isinstance(labels_or_counts, (list, tuple))
        and not any(_is_sample(item) for item in labels_or_counts)
    ):
        labels = _as_array(labels_or_counts)
        values = _counts_from_labels(labels, num_classes)
    elif hasattr(labels_or_counts, "__len__") and hasattr(labels_or_counts, "__getitem__"):
        # A data set of (image, label) items, a Subset of FER2013 for example.
        from .data import as_tensors

        labels = as_tensors(labels_or_counts)[1].numpy()
        values = _counts_from_labels(labels, num_classes)
    else:
        raise _unsupported(labels_or_counts)

    present = values > 0
    if not present.all():
        empty = np.flatnonzero(~present).tolist()
        warnings.warn(
            f"No samples of class {_class_names(empty, num_classes)}: weight 0 (it adds nothing "
            "to a loss on this data). Check the subset or the label mapping if that is "
            "unexpected.",
            UserWarning,
            stacklevel=2,
        )
    present_counts = values[present]
    weights = np.zeros(num_classes, dtype=np.float64)
    if method == "balanced":
        if labels is not None:
            from sklearn.utils.class_weight import compute_class_weight

            classes = np.flatnonzero(present)
            weights[present] = compute_class_weight("balanced", classes=classes, y=labels)
        else:
            # scikit-learn's formula, in its order of operations, for counts without labels.
            weights[present] = present_counts.sum() / (present.sum() * present_counts)
    else:
        if method == "inverse":
            raw = 1.0 / present_counts
        elif method == "inverse_sqrt":
            raw = 1.0 / np.sqrt(present_counts)
        elif beta == 0.0:
            raw = np.ones_like(present_counts)
        else:
            # (1 - beta) / (1 - beta**n) with expm1/log1p, which stay exact for beta near 1.
            raw = (1.0 - beta) / -np.expm1(present_counts * np.log1p(-(1.0 - beta)))
        weights[present] = raw * (present.sum() / raw.sum())
    return torch.from_numpy(weights.astype(np.float32))
