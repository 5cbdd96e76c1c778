"""Class weights: scikit-learn agreement, properties, inputs and zero-count classes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from sklearn.utils.class_weight import compute_class_weight
from torch.utils.data import Subset

from emotionnet import FER2013, compute_class_weights
from emotionnet.class_weights import METHODS
from emotionnet.errors import (
    InvalidArgumentError,
    MissingLabelsError,
    UnsupportedInputError,
)

FER2013_TRAIN = [3995, 436, 4097, 7215, 4830, 3171, 4965]

labels_strategy = st.lists(st.integers(0, 6), min_size=1, max_size=200)
positive_counts = st.lists(st.integers(1, 100_000), min_size=7, max_size=7)


def quiet(*args: object, **kwargs: object) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return compute_class_weights(*args, **kwargs)


def sklearn_balanced(labels: np.ndarray) -> np.ndarray:
    classes = np.unique(labels)
    full = np.zeros(7)
    full[classes] = compute_class_weight("balanced", classes=classes, y=labels)
    return full


def test_balanced_by_hand():
    # n / (classes present * count): 12 samples, 3 classes present -> 12 / (3 * count);
    # the four absent classes get 0.
    labels = [0] * 6 + [3] * 4 + [6] * 2
    weights = quiet(np.array(labels))
    expected = [12 / 18, 0, 0, 12 / 12, 0, 0, 12 / 6]
    assert weights.tolist() == pytest.approx(expected)


@given(labels=labels_strategy)
def test_balanced_equals_scikit_learn(labels):
    y = np.array(labels)
    reference = torch.from_numpy(sklearn_balanced(y).astype(np.float32))
    assert torch.equal(quiet(y), reference)
    assert torch.equal(quiet(torch.tensor(labels)), reference)
    counts = np.bincount(y, minlength=7)
    assert torch.allclose(quiet(counts, counts=True), reference, rtol=1e-6, atol=0)


@pytest.mark.parametrize("method", METHODS)
@given(counts=st.lists(st.integers(0, 100_000), min_size=7, max_size=7).filter(any))
def test_finite_non_negative_and_positive_exactly_where_there_are_samples(method, counts):
    weights = quiet(counts, counts=True, method=method)
    assert weights.dtype == torch.float32 and weights.shape == (7,)
    assert torch.isfinite(weights).all()
    assert ((weights > 0) == (torch.tensor(counts) > 0)).all()


@pytest.mark.parametrize("method", METHODS)
@given(counts=positive_counts, permutation=st.permutations(range(7)))
def test_permutation_equivariant(method, counts, permutation):
    weights = compute_class_weights(counts, counts=True, method=method)
    permuted = compute_class_weights([counts[i] for i in permutation], counts=True, method=method)
    assert torch.allclose(permuted, weights[list(permutation)], rtol=1e-5)


@pytest.mark.parametrize("method", ["balanced", "inverse", "inverse_sqrt"])
@given(counts=positive_counts, factor=st.integers(2, 1000))
def test_invariant_to_scaling_the_counts(method, counts, factor):
    weights = compute_class_weights(counts, counts=True, method=method)
    scaled = compute_class_weights([c * factor for c in counts], counts=True, method=method)
    assert torch.allclose(scaled, weights, rtol=1e-5)


@given(counts=positive_counts)
def test_effective_number_between_uniform_and_inverse(counts):
    uniform = compute_class_weights(counts, counts=True, method="effective_number", beta=0.0)
    assert torch.allclose(uniform, torch.ones(7))
    near_one = compute_class_weights(counts, counts=True, method="effective_number", beta=1e-12)
    assert torch.allclose(near_one, torch.ones(7), atol=1e-5)
    weights = compute_class_weights(counts, counts=True, method="effective_number", beta=0.999)
    assert torch.isclose(weights.sum(), torch.tensor(7.0), rtol=1e-5)  # Cui et al.'s scale
    order = np.argsort(counts, kind="stable")
    assert (np.diff(weights.numpy()[order]) <= 1e-6).all()  # fewer samples, more weight


def test_effective_number_formula_of_the_paper():
    n = np.array(FER2013_TRAIN, dtype=np.float64)
    beta = 0.9999
    raw = (1 - beta) / (1 - beta**n)
    reference = raw / raw.sum() * 7
    weights = compute_class_weights(FER2013_TRAIN, counts=True, method="effective_number")
    assert np.allclose(weights.numpy(), reference, rtol=1e-6)


def test_effective_number_approaches_inverse_as_beta_nears_one():
    inverse = compute_class_weights([10, 20, 40, 80, 160, 320, 640], counts=True, method="inverse")
    effective = compute_class_weights(
        [10, 20, 40, 80, 160, 320, 640], counts=True, method="effective_number", beta=1 - 1e-9
    )
    assert torch.allclose(effective, inverse, rtol=1e-4)


def test_documented_scales():
    balanced = compute_class_weights(FER2013_TRAIN, counts=True)
    mean_per_sample = (balanced.double() * torch.tensor(FER2013_TRAIN)).sum() / sum(FER2013_TRAIN)
    assert float(mean_per_sample) == pytest.approx(1.0, rel=1e-6)
    for method in ("inverse", "inverse_sqrt"):
        weights = compute_class_weights(FER2013_TRAIN, counts=True, method=method)
        assert float(weights.sum()) == pytest.approx(7.0, rel=1e-6)
    assert int(torch.argmax(balanced)) == 1  # disgust, the rarest class


def test_zero_count_class_gets_weight_zero_and_a_warning():
    counts = [10, 0, 30, 40, 50, 0, 70]
    for method in METHODS:
        with pytest.warns(UserWarning, match="No samples of class 1 disgust, 5 surprise"):
            weights = compute_class_weights(counts, counts=True, method=method)
        assert weights[1] == 0 and weights[5] == 0
        # The other classes are weighted as if the empty ones did not exist.
        alone = compute_class_weights(
            [10, 30, 40, 50, 70], counts=True, num_classes=5, method=method
        )
        assert torch.allclose(weights[[0, 2, 3, 4, 6]], alone, rtol=1e-6)


def test_inputs_dataset_subset_labels_and_counts(tmp_path):
    face = " ".join(["1"] * 2304)
    rows = [f"{label},{face},Training" for label in [0, 1, 2, 3, 4, 5, 6, 3, 3, 6]]
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    data = FER2013(tmp_path, cache=False)
    from_dataset = compute_class_weights(data)
    assert torch.equal(from_dataset, compute_class_weights(data.targets))
    assert torch.equal(from_dataset, compute_class_weights(data.targets.tolist()))
    assert torch.allclose(from_dataset, compute_class_weights(data.class_counts(), counts=True))
    subset = Subset(data, [0, 1, 2, 3, 4, 5, 6, 7, 8])
    assert torch.equal(compute_class_weights(subset), compute_class_weights(data.targets[:9]))
    samples = [(Image.new("L", (48, 48)), label) for label in range(7)]
    assert torch.equal(compute_class_weights(samples), torch.ones(7))


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((FER2013_TRAIN,), {}, InvalidArgumentError, "pass counts=True"),
        (([0.0, 1.0],), {}, InvalidArgumentError, "integer class labels"),
        (([],), {}, InvalidArgumentError, "empty"),
        ((np.array([[0, 1], [2, 3]]),), {}, InvalidArgumentError, "1-D"),
        (([0, 1, -1],), {}, MissingLabelsError, "unlabeled"),
        (([0, 9],), {}, InvalidArgumentError, "Label 9 is outside 0..6"),
        (([1, 2, 3],), {"counts": True}, InvalidArgumentError, "Expected 7 per-class counts"),
        (([1, -2, 3, 4, 5, 6, 7],), {"counts": True}, InvalidArgumentError, ">= 0"),
        (([0] * 7,), {"counts": True}, InvalidArgumentError, "Every class count is 0"),
        (([0, 1],), {"method": "focal"}, InvalidArgumentError, "argument method"),
        (([0, 1],), {"method": "effective_number", "beta": 1.0}, InvalidArgumentError, "beta"),
        (([0, 1],), {"num_classes": 0}, InvalidArgumentError, "num_classes"),
        (("happy",), {}, UnsupportedInputError, "cannot read a str"),
        ((3,), {}, UnsupportedInputError, "cannot read a int"),
    ],
)
def test_invalid_inputs(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        quiet(*args, **kwargs)


def test_weights_plug_into_cross_entropy():
    weights = compute_class_weights(FER2013_TRAIN, counts=True)
    loss = torch.nn.CrossEntropyLoss(weight=weights)
    value = loss(torch.zeros(4, 7), torch.tensor([0, 1, 2, 3]))
    assert torch.isfinite(value)
