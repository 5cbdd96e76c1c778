"""Tests of emotionnet.calibration and ModelConfig.temperatures: temperature scaling.

The fit must find the temperature that generated the labels, never change a predicted class,
and run where only numpy is installed; the config must keep the temperatures it is given and
refuse those that would break a prediction.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import log_loss

from emotionnet.calibration import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
)
from emotionnet.errors import InvalidArgumentError, UnsupportedInputError
from emotionnet.models import ModelConfig
from emotionnet.models.hub import read_config
from emotionnet.tta import TTA_MODES

# --------------------------------------------------------------------------------------------
# helpers


def _synthetic(
    temperature: float, num_samples: int, seed: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Logits and labels drawn from ``softmax(logits / temperature)``: calibrated at it."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, size=(num_samples, 7))
    probabilities = softmax(logits / temperature, axis=1)
    cumulative = probabilities.cumsum(axis=1)
    draws = rng.random(num_samples)[:, None]
    labels = np.minimum((draws > cumulative).sum(axis=1), 6).astype(np.int64)
    return logits, labels


def _nll(logits: npt.NDArray[np.float64], labels: npt.NDArray[np.int64], t: float) -> float:
    return float(-log_softmax(logits / t, axis=1)[np.arange(labels.size), labels].mean())


def _separate_top(logits: npt.NDArray[np.floating], margin: float) -> npt.NDArray[np.floating]:
    """The logits with each row's (first) largest value raised by ``margin``: one argmax."""
    separated = logits.copy()
    rows = np.arange(logits.shape[0])
    separated[rows, logits.argmax(axis=1)] += margin
    return separated


logit_rows = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=2, max_side=12),
    elements=st.floats(-60.0, 60.0, allow_nan=False),
).map(lambda logits: _separate_top(logits, 1e-6))
temperatures = st.floats(MIN_TEMPERATURE, MAX_TEMPERATURE)


# --------------------------------------------------------------------------------------------
# fit_temperature


@pytest.mark.parametrize("true_temperature", [0.5, 0.87, 1.0, 2.5])
def test_the_fit_recovers_the_temperature_that_generated_the_labels(
    true_temperature: float,
) -> None:
    logits, labels = _synthetic(true_temperature, 40_000, seed=int(true_temperature * 100))
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.03)


def test_the_fit_is_the_minimum_of_the_log_loss() -> None:
    logits, labels = _synthetic(1.7, 3_000, seed=3)
    fitted = fit_temperature(logits, labels)
    reference = minimize_scalar(
        lambda log_t: _nll(logits, labels, math.exp(log_t)),
        bounds=(math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert fitted == pytest.approx(math.exp(reference.x), rel=1e-6)
    # It lowers scikit-learn's log-loss against the uncalibrated probabilities.
    assert log_loss(labels, apply_temperature(logits, fitted), labels=range(7)) < log_loss(
        labels, softmax(logits, axis=1), labels=range(7)
    )


def test_the_fit_is_deterministic_and_reads_tensors_and_float32() -> None:
    logits, labels = _synthetic(0.8, 2_000, seed=5)
    first = fit_temperature(logits, labels)
    assert fit_temperature(logits, labels) == first
    assert fit_temperature(torch.from_numpy(logits), torch.from_numpy(labels)) == first
    as_float32 = fit_temperature(logits.astype(np.float32), labels.tolist())
    assert as_float32 == pytest.approx(first, rel=1e-5)


def test_tta_logits_the_log_of_averaged_probabilities_are_fitted_too() -> None:
    # What predict_logits returns with TTA: log(mean_v softmax(z_v)); a temperature on it is
    # still fitted to the labels (views that agree more than they should: sharpen).
    rng = np.random.default_rng(11)
    views = rng.normal(0.0, 2.0, size=(4, 5_000, 7))
    averaged = np.log(softmax(views, axis=2).mean(axis=0))
    labels = np.argmax(averaged + rng.gumbel(size=averaged.shape) * 0.5, axis=1)
    fitted = fit_temperature(averaged, labels)
    assert MIN_TEMPERATURE < fitted < 1.0
    assert _nll(averaged, labels, fitted) < _nll(averaged, labels, 1.0)


def test_degenerate_logits_give_a_bounded_temperature() -> None:
    # Constant rows carry no confidence to scale; separable data pushes T to 0; labels that
    # always contradict the logits push it to infinity: each stops at a documented value.
    assert fit_temperature(np.zeros((3, 4)), [0, 1, 2]) == 1.0
    assert fit_temperature(np.full((2, 3), 5.0), [0, 2]) == 1.0
    separable = np.array([[5.0, 0.0], [0.0, 5.0]])
    assert fit_temperature(separable, [0, 1]) == MIN_TEMPERATURE
    assert fit_temperature(separable, [1, 0]) == MAX_TEMPERATURE


@pytest.mark.parametrize(
    ("logits", "targets", "match"),
    [
        (np.zeros((2, 3)), [0], "1 class indices for 2 rows"),
        (np.zeros((2, 3)), [0, 3], "outside 0..2"),
        (np.zeros((2, 3)), [0.0, 1.0], "integer class indices"),
        (np.zeros(3), [0], r"shaped \(num_samples, num_classes\)"),
        (np.zeros((2, 1)), [0, 0], "two classes"),
        (np.zeros((0, 3)), [], "at least one sample"),
        (np.array([[0.0, np.nan]]), [0], "finite numbers"),
        (np.array([[0.0, -np.inf]]), [0], "finite numbers"),
    ],
)
def test_fit_refuses_bad_input_with_a_clear_message(
    logits: npt.NDArray[np.float64], targets: list[float], match: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        fit_temperature(logits, targets)


def test_fit_refuses_what_is_not_an_array() -> None:
    with pytest.raises(UnsupportedInputError, match="logits must be an array"):
        fit_temperature([[0.0, 1.0], [2.0]], [0, 1])


@settings(max_examples=60, deadline=None)
@given(logit_rows, st.data())
def test_a_fitted_temperature_never_changes_an_argmax(
    logits: npt.NDArray[np.float64], data: st.DataObject
) -> None:
    labels = data.draw(
        hnp.arrays(np.int64, logits.shape[0], elements=st.integers(0, logits.shape[1] - 1))
    )
    fitted = fit_temperature(logits, labels)
    assert MIN_TEMPERATURE <= fitted <= MAX_TEMPERATURE
    calibrated = apply_temperature(logits, fitted)
    assert np.array_equal(calibrated.argmax(axis=1), logits.argmax(axis=1))
    # A minimum: a nearby temperature inside the bounds is never better.
    for other in (fitted * 0.99, fitted * 1.01):
        if MIN_TEMPERATURE <= other <= MAX_TEMPERATURE:
            assert _nll(logits, labels, fitted) <= _nll(logits, labels, other) + 1e-9


# --------------------------------------------------------------------------------------------
# apply_temperature


@settings(max_examples=100, deadline=None)
@given(logit_rows, temperatures)
def test_apply_temperature_never_changes_an_argmax(
    logits: npt.NDArray[np.float64], temperature: float
) -> None:
    probabilities = apply_temperature(logits, temperature)
    assert np.array_equal(probabilities.argmax(axis=1), logits.argmax(axis=1))
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert np.allclose(probabilities, softmax(logits / temperature, axis=1))


@settings(max_examples=50, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 6), st.integers(2, 8)),
        elements=st.floats(-1e4, 1e4, width=32),
    ).map(lambda logits: _separate_top(logits, np.float32(1.0))),
    temperatures,
)
def test_float32_logits_keep_their_argmax_at_every_temperature(
    logits: npt.NDArray[np.float32], temperature: float
) -> None:
    # What the models return: float32. Two different float32 logits stay different in
    # the float64 computation, whatever the temperature.
    probabilities = apply_temperature(logits, temperature)
    assert probabilities.dtype == np.float64
    assert np.array_equal(probabilities.argmax(axis=1), logits.argmax(axis=1))


def test_apply_temperature_sharpens_and_softens() -> None:
    logits = np.array([[2.0, 1.0, 0.0]])
    plain = apply_temperature(logits, 1.0)
    assert np.allclose(plain, softmax(logits, axis=1))
    assert apply_temperature(logits, 0.5).max() > plain.max() > apply_temperature(logits, 2).max()


def test_apply_temperature_is_stable_and_keeps_zero_probabilities() -> None:
    huge = apply_temperature(np.array([[1e4, 0.0], [-1e4, 1e4]]), 0.05)
    assert np.isfinite(huge).all() and np.allclose(huge, [[1.0, 0.0], [0.0, 1.0]])
    # The log of an averaged probability that underflowed to 0 is -inf: it stays 0.
    with_zero = apply_temperature(np.array([[0.0, -np.inf, 1.0]]), 2.0)
    assert with_zero[0, 1] == 0.0 and with_zero.sum() == pytest.approx(1.0)
    # One face as a 1-D vector, and a tensor.
    assert apply_temperature([1.0, 1.0], 3.0).tolist() == [0.5, 0.5]
    tensor = torch.tensor([[3.0, 1.0]], requires_grad=True)
    assert apply_temperature(tensor, 1.0) == pytest.approx(softmax([[3.0, 1.0]], axis=1))


@pytest.mark.parametrize("temperature", [0, -1.0, math.nan, math.inf, True, "1.0", None, 10**400])
def test_apply_temperature_refuses_a_bad_temperature(temperature: object) -> None:
    with pytest.raises(InvalidArgumentError, match=f"got {temperature!r}"):
        apply_temperature([[1.0, 0.0]], temperature)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("logits", "match"),
    [
        ([[0.0, math.nan]], "NaN or infinite"),
        ([[0.0, math.inf]], "NaN or infinite"),
        ([[-math.inf, -math.inf]], "needs a finite value"),
        ([], "one value per class"),
    ],
)
def test_apply_temperature_refuses_bad_logits(logits: list[list[float]], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        apply_temperature(logits, 1.0)


# --------------------------------------------------------------------------------------------
# the calibration error; one module for the slim install


def test_the_ece_drops_for_labels_drawn_at_the_fitted_temperature() -> None:
    logits, labels = _synthetic(0.6, 20_000, seed=7)
    before = expected_calibration_error(labels, apply_temperature(logits, 1.0))
    after = expected_calibration_error(labels, apply_temperature(logits, 0.6))
    assert after < 0.02 < before


def test_calibration_imports_neither_torch_nor_scipy() -> None:
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from emotionnet.calibration import apply_temperature, fit_temperature\n"
        "t = fit_temperature(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), [0, 1, 1])\n"
        "apply_temperature([[1.0, 0.0]], t)\n"
        "print(sorted(m for m in ('torch', 'scipy', 'sklearn') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------
# ModelConfig.temperatures


def test_the_config_knows_the_tta_modes_of_inference() -> None:
    from emotionnet.models import config as config_module

    assert config_module._TTA_MODES == TTA_MODES


def test_a_config_without_temperatures_uses_one() -> None:
    config = ModelConfig()
    assert dict(config.temperatures) == {}
    assert all(config.temperature_for(mode) == 1.0 for mode in TTA_MODES)


def test_temperatures_round_trip_through_dict_json_and_files(tmp_path: Path) -> None:
    config = ModelConfig(temperatures={"ten_crop": 1.25, "flip_crop": 0.87, "none": 1})
    assert config.temperature_for("flip_crop") == 0.87
    assert config.temperature_for("flip") == 1.0
    assert isinstance(config.temperature_for("none"), float)
    # Stored in the order of the modes, as plain JSON.
    assert list(config.to_dict()["temperatures"]) == ["none", "flip_crop", "ten_crop"]
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert ModelConfig.load(config.save(tmp_path)) == config
    # Equal configs hash equal; the mapping is read-only.
    assert hash(config) == hash(ModelConfig(temperatures=dict(config.temperatures)))
    assert config.temperatures == {"none": 1.0, "flip_crop": 0.87, "ten_crop": 1.25}
    with pytest.raises(TypeError):
        config.temperatures["flip"] = 2.0  # type: ignore[index]


def test_an_old_config_json_without_temperatures_loads(tmp_path: Path) -> None:
    data = ModelConfig().to_dict()
    del data["temperatures"]
    (tmp_path / "config.json").write_text(json.dumps({**data, "metadata": {}}))
    config, _ = read_config(tmp_path / "config.json")
    assert config == ModelConfig() and config.temperature_for("flip_crop") == 1.0


@pytest.mark.parametrize(
    ("temperatures", "match"),
    [
        ({"flop": 1.0}, "Unknown TTA mode 'flop'"),
        ({"flip": 0.0}, r"temperatures\['flip'\] must be a positive finite number, got 0.0"),
        ({"flip": -2}, "got -2"),
        ({"flip": math.nan}, "got nan"),
        ({"flip": math.inf}, "got inf"),
        ({"flip": True}, "got True"),
        ({"flip": "0.9"}, "got '0.9'"),
        ({"flip": 10**400}, "positive finite number"),
        ([("flip", 0.9)], "must be a mapping"),
    ],
)
def test_bad_temperatures_are_refused_at_construction(temperatures: object, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        ModelConfig(temperatures=temperatures)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=match):
        ModelConfig.from_dict({"temperatures": temperatures})


def test_temperature_for_refuses_an_unknown_mode() -> None:
    with pytest.raises(InvalidArgumentError, match="Unknown TTA mode 'flips'"):
        ModelConfig().temperature_for("flips")
