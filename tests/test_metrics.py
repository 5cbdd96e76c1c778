"""Tests of emotionnet.metrics: prediction, TTA, metric values, reports."""

from __future__ import annotations

import dataclasses
import json
import math
import stat
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn import metrics as skm
from torch import nn

from emotionnet import EMOTIONS
from emotionnet.calibration import expected_calibration_error
from emotionnet.errors import (
    EmotionNetError,
    InvalidArgumentError,
    InvalidImageError,
    MalformedDataError,
    UnsupportedInputError,
)
from emotionnet.inference import predict_logits, predict_proba
from emotionnet.metrics import (
    ClassMetrics,
    EvaluationReport,
    evaluate,
    report_from_predictions,
)
from emotionnet.preprocessing import normalize
from emotionnet.tta import TTA_MODES

# --------------------------------------------------------------------------------------------
# helpers


def _linear_model(seed: int = 0, num_classes: int = 7) -> nn.Sequential:
    """A deterministic model whose logits depend on where the pixels are (not flip-invariant)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16, num_classes))


def _flip_invariant_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 7))


class Recorder(nn.Module):
    """Records what the model sees and returns constant logits."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(7))
        self.inputs: list[torch.Tensor] = []
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        self.modes.append(self.training)
        return self.weight.expand(x.shape[0], 7) + 0.0

    def single_views(self) -> list[torch.Tensor]:
        """Every image it saw, one by one (TTA views of one face come as one batch)."""
        return list(torch.cat(self.inputs).split(1))


def _images(n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 48, 48), dtype=torch.uint8, generator=generator)


@st.composite
def predictions(draw: st.DrawFn) -> tuple[int, list[int], list[int]]:
    num_classes = draw(st.integers(min_value=2, max_value=7))
    n = draw(st.integers(min_value=1, max_value=40))
    labels = st.integers(min_value=0, max_value=num_classes - 1)
    y_true = draw(st.lists(labels, min_size=n, max_size=n))
    y_pred = draw(st.lists(labels, min_size=n, max_size=n))
    return num_classes, y_true, y_pred


# --------------------------------------------------------------------------------------------
# metric values


def test_metrics_by_hand() -> None:
    # Three classes, 8 samples; every number below is worked out on paper.
    #            true: a a a b b c c c
    #       predicted: a a b b c c c a
    y_true = [0, 0, 0, 1, 1, 2, 2, 2]
    y_pred = [0, 0, 1, 1, 2, 2, 2, 0]
    report = report_from_predictions(y_true, y_pred, labels=("a", "b", "c"))
    assert report.accuracy == pytest.approx(5 / 8)
    # recalls a 2/3, b 1/2, c 2/3
    assert report.balanced_accuracy == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    # precisions a 2/3, b 1/2, c 2/3 -> F1 a 2/3, b 1/2, c 2/3
    assert report.macro_f1 == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    assert report.weighted_f1 == pytest.approx((3 * 2 / 3 + 2 * 1 / 2 + 3 * 2 / 3) / 8)
    b = report.per_class["b"]
    assert (b.precision, b.recall, b.f1, b.support) == pytest.approx((0.5, 0.5, 0.5, 2))
    assert report.confusion_matrix[2] == (1, 0, 2)  # row: true c


def test_a_class_never_predicted_has_zero_precision_and_f1() -> None:
    report = report_from_predictions([0, 1, 1], [0, 0, 0], labels=("a", "b"))
    b = report.per_class["b"]
    assert (b.precision, b.recall, b.f1) == (0.0, 0.0, 0.0)
    # a: precision 1/3, recall 1 -> F1 = 2 * (1/3) / (4/3) = 1/2
    assert report.per_class["a"].f1 == pytest.approx(0.5)
    assert report.macro_f1 == pytest.approx(0.25)


@given(predictions())
def test_metrics_equal_scikit_learn(case: tuple[int, list[int], list[int]]) -> None:
    num_classes, y_true, y_pred = case
    names = tuple(f"class{i}" for i in range(num_classes))
    report = report_from_predictions(y_true, y_pred, labels=names)
    ids = list(range(num_classes))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        balanced = skm.balanced_accuracy_score(y_true, y_pred)
    assert report.accuracy == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert report.balanced_accuracy == pytest.approx(balanced)
    for average, value in (("macro", report.macro_f1), ("weighted", report.weighted_f1)):
        expected = skm.f1_score(y_true, y_pred, labels=ids, average=average, zero_division=0)
        assert value == pytest.approx(expected)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=ids, zero_division=0
    )
    assert list(report.per_class) == list(names)
    for i, name in enumerate(names):
        assert report.per_class[name] == ClassMetrics(
            precision=pytest.approx(precision[i]),  # type: ignore[arg-type]
            recall=pytest.approx(recall[i]),  # type: ignore[arg-type]
            f1=pytest.approx(f1[i]),  # type: ignore[arg-type]
            support=int(support[i]),
        )
    counts = skm.confusion_matrix(y_true, y_pred, labels=ids)
    assert np.array_equal(np.asarray(report.confusion_matrix), counts)
    rows = counts.sum(axis=1, keepdims=True)
    expected_rows = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    assert np.allclose(np.asarray(report.confusion_matrix_normalized), expected_rows)
    assert report.num_samples == len(y_true)
    assert report.ece is None and report.nll is None


def test_hand_computed_report_with_absent_classes() -> None:
    # class 2 is predicted but never true; class 3 appears nowhere
    y_true = [0, 0, 0, 1, 1]
    y_pred = [0, 0, 2, 1, 0]
    report = report_from_predictions(y_true, y_pred, labels=("a", "b", "c", "d"))
    assert report.accuracy == pytest.approx(3 / 5)
    assert report.balanced_accuracy == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert report.per_class["a"] == ClassMetrics(2 / 3, 2 / 3, pytest.approx(2 / 3), 3)  # type: ignore[arg-type]
    assert report.per_class["b"] == ClassMetrics(1.0, 0.5, pytest.approx(2 / 3), 2)  # type: ignore[arg-type]
    assert report.per_class["c"] == ClassMetrics(0.0, 0.0, 0.0, 0)
    assert report.per_class["d"] == ClassMetrics(0.0, 0.0, 0.0, 0)
    assert report.macro_f1 == pytest.approx((2 / 3 + 2 / 3) / 4)
    assert report.weighted_f1 == pytest.approx(2 / 3)
    assert report.confusion_matrix == ((2, 0, 1, 0), (1, 1, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0))
    assert report.confusion_matrix_normalized[2] == (0.0, 0.0, 0.0, 0.0)
    assert report.confusion_matrix_normalized[1] == (0.5, 0.5, 0.0, 0.0)


def test_accepts_tensors_and_numpy() -> None:
    from_lists = report_from_predictions([0, 1, 2, 3], [0, 1, 1, 3])
    from_tensors = report_from_predictions(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 1, 3]))
    from_numpy = report_from_predictions(np.array([0, 1, 2, 3]), np.array([0, 1, 1, 3]))
    assert from_lists == from_tensors == from_numpy
    assert from_lists.labels == EMOTIONS


# --------------------------------------------------------------------------------------------
# calibration


def _reference_ece(y_true: np.ndarray, proba: np.ndarray, n_bins: int) -> float:
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for m in range(n_bins):
        low, high = edges[m], edges[m + 1]
        inside = (confidence > low) & (confidence <= high)
        if m == 0:
            inside |= confidence == 0
        if inside.any():
            gap = abs(correct[inside].mean() - confidence[inside].mean())
            total += inside.sum() / len(y_true) * gap
    return total


def test_ece_is_zero_when_perfectly_calibrated() -> None:
    # confidence 0.8, right 8 times out of 10
    proba = [[0.8, 0.2]] * 10
    y_true = [0] * 8 + [1] * 2
    assert expected_calibration_error(y_true, proba) == pytest.approx(0.0)


def test_ece_is_one_when_always_confident_and_wrong() -> None:
    proba = np.eye(3)[[0, 1, 2, 0]]
    assert expected_calibration_error([1, 2, 0, 2], proba) == pytest.approx(1.0)


def test_ece_known_value() -> None:
    # four samples at confidence 0.9, all right (gap 0.1); four at 0.6, half right (gap 0.1)
    proba = [[0.9, 0.1]] * 4 + [[0.4, 0.6]] * 4
    y_true = [0, 0, 0, 0, 1, 1, 0, 0]
    assert expected_calibration_error(y_true, proba) == pytest.approx(0.1)


@given(
    st.integers(min_value=1, max_value=30).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 3), min_size=n, max_size=n),
            st.lists(
                st.lists(st.floats(0.01, 1.0), min_size=4, max_size=4), min_size=n, max_size=n
            ),
        )
    ),
    st.integers(min_value=1, max_value=20),
)
def test_ece_matches_its_definition(case: tuple[list[int], list[list[float]]], n_bins: int) -> None:
    y_true = np.array(case[0])
    weights = np.array(case[1])
    proba = weights / weights.sum(axis=1, keepdims=True)
    value = expected_calibration_error(y_true, proba, n_bins=n_bins)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(_reference_ece(y_true, proba, n_bins), abs=1e-9)


def test_report_with_probabilities_has_ece_and_nll() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(30, 7))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_true = rng.integers(0, 7, size=30)
    report = report_from_predictions(y_true, proba.argmax(axis=1), proba)
    assert report.ece == pytest.approx(expected_calibration_error(y_true, proba))
    assert report.nll == pytest.approx(skm.log_loss(y_true, proba, labels=list(range(7))))


# --------------------------------------------------------------------------------------------
# prediction and TTA


def test_evaluate_equals_report_from_predictions() -> None:
    model = _linear_model()
    images = _images(10)
    targets = torch.tensor([0, 1, 2, 3, 4, 5, 6, 3, 3, 0])
    report = evaluate(model, (images, targets), batch_size=3)
    proba = predict_proba(model, images)
    expected = report_from_predictions(targets, proba.argmax(dim=1), proba, tta="none")
    assert report == expected
    # a FER2013-like object with .images/.targets gives the same report
    assert evaluate(model, SimpleNamespace(images=images, targets=targets)) == expected


def _scaled_model(seed: int = 0, scale: float = 6.0) -> nn.Module:
    """A linear model with large logits: over-confident, so a temperature has work to do."""
    model = _linear_model(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(scale)
    return model


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_a_temperature_changes_the_confidence_not_the_predictions(tta: str) -> None:
    model = _scaled_model()
    images = _images(40, seed=3)
    targets = torch.arange(40) % 7
    plain = evaluate(model, (images, targets), tta=tta)
    calibrated = evaluate(model, (images, targets), tta=tta, temperature=2.5)
    # Everything a prediction decides is the same.
    for field in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "per_class"):
        assert getattr(calibrated, field) == getattr(plain, field), field
    assert calibrated.confusion_matrix == plain.confusion_matrix
    # The probabilities are softmax(logits / 2.5), and the report says what they were before.
    logits = predict_logits(model, images, tta=tta).double().numpy()
    proba = np.exp(logits / 2.5) / np.exp(logits / 2.5).sum(axis=1, keepdims=True)
    assert calibrated.temperature == 2.5 and calibrated.tta == tta
    assert calibrated.ece == pytest.approx(expected_calibration_error(targets, proba))
    assert calibrated.nll == pytest.approx(skm.log_loss(targets, proba, labels=list(range(7))))
    assert (calibrated.uncalibrated_ece, calibrated.uncalibrated_nll) == (plain.ece, plain.nll)
    assert plain.temperature is plain.uncalibrated_ece is plain.uncalibrated_nll is None


def test_evaluate_fits_the_temperature_on_the_data_when_asked() -> None:
    from emotionnet.calibration import fit_temperature

    model = _scaled_model(seed=1)
    images = _images(60, seed=4)
    targets = torch.arange(60) % 7
    report = evaluate(model, (images, targets), tta="flip", temperature="fit")
    logits = predict_logits(model, images, tta="flip")
    assert report.temperature == fit_temperature(logits, targets)
    assert report.temperature is not None and report.temperature > 1.0  # over-confident
    assert report.nll is not None and report.uncalibrated_nll is not None
    assert report.nll < report.uncalibrated_nll
    assert report.accuracy == evaluate(model, (images, targets), tta="flip").accuracy


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.nan, "auto", True])
def test_evaluate_refuses_a_bad_temperature_before_predicting(temperature: object) -> None:
    model = Recorder()
    with pytest.raises(InvalidArgumentError, match="temperature must be a positive"):
        evaluate(model, (_images(2), torch.tensor([0, 1])), temperature=temperature)  # type: ignore[arg-type]
    assert model.inputs == []


def test_batch_size_does_not_change_predictions() -> None:
    model = _linear_model()
    images = _images(10)
    one_batch = predict_logits(model, images, batch_size=256)
    small_batches = predict_logits(model, images, batch_size=3)
    assert torch.allclose(one_batch, small_batches, atol=1e-6)
    direct = model(normalize(images))
    assert torch.allclose(one_batch, direct.detach(), atol=1e-6)


@pytest.mark.parametrize("tta", [False, True, *TTA_MODES])
def test_tta_output_shapes(tta: bool | str) -> None:
    images = _images(5)
    proba = predict_proba(_linear_model(), images, tta=tta, batch_size=2)
    logits = predict_logits(_linear_model(), images, tta=tta, batch_size=2)
    assert proba.shape == logits.shape == (5, 7)
    assert proba.dtype == logits.dtype == torch.float32
    assert torch.allclose(proba.sum(dim=1), torch.ones(5), atol=1e-6)
    assert torch.allclose(logits.softmax(dim=1), proba, atol=1e-6)


def test_flip_tta_of_flip_invariant_model_equals_no_tta() -> None:
    model = _flip_invariant_model()
    images = _images(6)
    plain = predict_proba(model, images)
    assert torch.allclose(predict_proba(model, images, tta="flip"), plain, atol=1e-6)
    assert torch.equal(
        predict_proba(model, images, tta=True), predict_proba(model, images, tta="flip")
    )


def test_flip_tta_averages_the_probabilities_of_image_and_mirror() -> None:
    model = _linear_model()
    images = _images(4)
    expected = (predict_proba(model, images) + predict_proba(model, images.flip(-1))) / 2
    assert torch.allclose(predict_proba(model, images, tta="flip"), expected, atol=1e-6)
    assert not torch.allclose(predict_proba(model, images), expected, atol=1e-4)


def test_tta_logits_stay_finite_for_confident_models() -> None:
    model = _linear_model()
    linear = model[2]
    assert isinstance(linear, nn.Linear)
    with torch.no_grad():
        linear.weight.mul_(1e4)
    logits = predict_logits(model, _images(4), tta="ten_crop")
    assert torch.isfinite(logits).all()


def _shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    padded = np.pad(image, 2, mode="edge")
    return padded[2 - dy : 2 - dy + 48, 2 - dx : 2 - dx + 48]


def test_flip_shift_views_are_the_documented_ones() -> None:
    recorder = Recorder()
    image = _images(1, seed=3)
    predict_proba(recorder, image, tta="flip_shift")
    views = [view[0, 0].numpy() for view in recorder.single_views()]
    assert len(views) == 10
    base = normalize(image)[0, 0].numpy()
    expected = [
        _shifted(source, dy, dx)
        for dy, dx in ((0, 0), (0, 2), (0, -2), (2, 0), (-2, 0))
        for source in (base, base[:, ::-1])
    ]
    for view, wanted in zip(views, expected, strict=True):
        assert np.allclose(view, wanted)
    # right shift by 2: the content moved right, the left edge column repeated
    assert np.allclose(views[2][:, 2:], base[:, :-2])
    assert np.allclose(views[2][:, 0], base[:, 0])


def test_ten_crop_views_are_corner_and_centre_crops_resized_back() -> None:
    recorder = Recorder()
    image = torch.zeros(1, 48, 48, dtype=torch.uint8)
    image[0, :44, :44] = 200  # exactly the top-left 44x44 crop is uniform
    predict_proba(recorder, image, tta="ten_crop")
    assert len(recorder.inputs) == 1  # one face: its ten views go through in one pass
    views = recorder.single_views()
    assert len(views) == 10
    assert all(view.shape == (1, 1, 48, 48) for view in views)
    uniform = normalize(torch.full((1, 48, 48), 200, dtype=torch.uint8))
    matches = [i for i, view in enumerate(views) if torch.allclose(view, uniform)]
    # the top-left crop of the image and the top-right crop of its mirror
    assert matches == [0, 6]


def test_ten_crop_views_are_pixel_exact_crops_and_their_probabilities_are_averaged() -> None:
    import torch.nn.functional as F

    class Probe(Recorder):
        """Records its input; logits depend on every pixel, so each view counts."""

        def __init__(self) -> None:
            super().__init__()
            self.project = nn.Linear(48 * 48, 7)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            super().forward(x)
            logits: torch.Tensor = self.project(x.flatten(1))
            return logits

    torch.manual_seed(0)
    probe = Probe()
    image = _images(1, seed=5)
    proba = predict_proba(probe, image, tta="ten_crop")
    base = normalize(image)  # 1 x 1 x 48 x 48
    corners = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]  # tl, tr, bl, br, centre (44 px crops)
    expected = [
        F.interpolate(source[..., top : top + 44, left : left + 44], size=(48, 48), mode="bilinear")
        for source in (base, base.flip(-1))
        for top, left in corners
    ]
    assert len(probe.single_views()) == 10
    for view, wanted in zip(probe.single_views(), expected, strict=True):
        assert torch.equal(view, wanted)
    # The prediction is the mean of the ten views' softmax probabilities.
    with torch.no_grad():
        mean = torch.softmax(probe.project(torch.cat(expected).flatten(1)), dim=1).mean(0)
    torch.testing.assert_close(proba[0], mean)


def test_flip_crop_views_are_the_image_its_centre_crop_and_their_mirrors() -> None:
    import torch.nn.functional as F

    recorder = Recorder()
    image = _images(1, seed=7)
    predict_proba(recorder, image, tta="flip_crop")
    base = normalize(image)
    centre = F.interpolate(base[..., 2:46, 2:46], size=(48, 48), mode="bilinear")
    mirror_centre = F.interpolate(base.flip(-1)[..., 2:46, 2:46], size=(48, 48), mode="bilinear")
    expected = [base, base.flip(-1), centre, mirror_centre]
    views = recorder.single_views()
    assert len(views) == 4
    for view, wanted in zip(views, expected, strict=True):
        assert torch.equal(view, wanted)


def test_tta_views_share_a_forward_pass_when_they_fit_the_batch_size() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7))
    images = _images(6, seed=2)
    passes: list[int] = []
    model.register_forward_hook(lambda module, args, output: passes.append(args[0].shape[0]))
    together = predict_proba(model, images, tta="ten_crop", batch_size=60)
    assert passes == [60]
    passes.clear()
    apart = predict_proba(model, images, tta="ten_crop", batch_size=8)
    assert passes == [6] * 10
    torch.testing.assert_close(together, apart)


def test_invalid_tta_is_rejected_with_the_valid_values() -> None:
    with pytest.raises(InvalidArgumentError, match="ten_crop"):
        predict_logits(_linear_model(), _images(1), tta="ten-crop")


def test_predict_restores_train_mode_per_submodule() -> None:
    recorder = Recorder()
    model = nn.Sequential(recorder, nn.Identity())
    model.train()
    model[1].eval()  # a deliberately frozen submodule keeps its own mode
    predict_logits(model, _images(2))
    assert recorder.modes == [False]
    assert model.training and recorder.training
    assert not model[1].training


def test_predict_restores_mode_when_the_model_fails() -> None:
    class Failing(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    model = Failing().train()
    with pytest.raises(RuntimeError, match="boom"):
        predict_logits(model, _images(1))
    assert model.training


def test_batches_are_moved_to_the_model_device_and_dtype() -> None:
    recorder = Recorder().double()
    logits = predict_logits(recorder, _images(5).numpy(), batch_size=2, device="cpu")
    assert [len(x) for x in recorder.inputs] == [2, 2, 1]
    assert all(x.dtype == torch.float64 and x.device.type == "cpu" for x in recorder.inputs)
    assert logits.dtype == torch.float32 and logits.device.type == "cpu"
    # an ordinary tensor, not an inference tensor: callers may change it in place
    assert not logits.is_inference()
    logits.add_(1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_gets_cuda_batches_and_returns_cpu() -> None:
    recorder = Recorder().cuda()
    logits = predict_logits(recorder, _images(3))
    assert all(x.device.type == "cuda" for x in recorder.inputs)
    assert logits.device.type == "cpu"
    model = _linear_model()
    images = _images(4)
    on_cpu = predict_proba(model, images, tta="ten_crop")
    on_gpu = predict_proba(model, images, tta="ten_crop", device="cuda")
    assert next(model.parameters()).device.type == "cuda"
    assert torch.allclose(on_cpu, on_gpu, atol=1e-4)


def test_model_without_parameters_runs_on_cpu() -> None:
    model = nn.Sequential(nn.AdaptiveAvgPool2d((1, 7)), nn.Flatten())
    assert predict_logits(model, _images(2)).shape == (2, 7)


# --------------------------------------------------------------------------------------------
# report I/O


def _report() -> EvaluationReport:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(40, 7))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return report_from_predictions(
        rng.integers(0, 7, size=40), proba.argmax(axis=1), proba, tta="flip"
    )


def test_json_round_trip(tmp_path: Path) -> None:
    report = _report()
    path = tmp_path / "report.json"
    report.save_json(path)
    assert EvaluationReport.load_json(path) == report
    data = json.loads(path.read_text())
    assert data["accuracy"] == report.accuracy and data["tta"] == "flip"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    without_proba = report_from_predictions([0, 1], [1, 1])
    assert EvaluationReport.from_dict(json.loads(json.dumps(without_proba.to_dict()))) == (
        without_proba
    )


def test_a_calibrated_report_round_trips_and_old_reports_load(tmp_path: Path) -> None:
    calibrated = evaluate(
        _scaled_model(), (_images(14), torch.arange(14) % 7), tta="flip", temperature=1.7
    )
    path = tmp_path / "report.json"
    calibrated.save_json(path)
    data = json.loads(path.read_text())
    assert data["temperature"] == 1.7
    assert data["uncalibrated_nll"] == calibrated.uncalibrated_nll
    assert EvaluationReport.load_json(path) == calibrated
    # A report written before calibration existed (no such keys) still loads.
    old = {k: v for k, v in _report().to_dict().items() if "calibrated" not in k}
    del old["temperature"]
    assert EvaluationReport.from_dict(old) == _report()


def test_a_calibrated_report_shows_ece_and_nll_before_and_after() -> None:
    report = dataclasses.replace(
        _report(), temperature=0.875, uncalibrated_ece=0.0512, uncalibrated_nll=0.9321
    )
    text = report.to_markdown()
    assert "| calibration temperature | 0.8750 |" in text
    assert "| ECE (15 bins), uncalibrated | 0.0512 |" in text
    assert "| NLL, uncalibrated | 0.9321 |" in text
    assert f"| ECE (15 bins), calibrated | {report.ece:.4f} |" in text
    assert "calibrat" not in _report().to_markdown()


def test_saved_report_is_readable_by_group_and_others(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "report.json"
    _report().save_json(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_save_json_keeps_the_old_file_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "report.json"
    path.write_text("previous")

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("emotionnet.metrics.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        _report().save_json(path)
    assert path.read_text() == "previous"
    assert list(tmp_path.iterdir()) == [path]


def test_bad_report_files_raise_clear_errors(tmp_path: Path) -> None:
    data = _report().to_dict()
    with pytest.raises(InvalidArgumentError, match="unknown"):
        EvaluationReport.from_dict({**data, "accuracyy": 1.0})
    broken = {**data, "confusion_matrix": [[1, 2]]}
    with pytest.raises(InvalidArgumentError, match="confusion_matrix"):
        EvaluationReport.from_dict(broken)
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(MalformedDataError, match=r"bad\.json"):
        EvaluationReport.load_json(path)
    path.write_text(json.dumps({"accuracy": 1.0}))
    with pytest.raises(MalformedDataError, match="missing"):
        EvaluationReport.load_json(path)


def test_markdown_lists_every_emotion() -> None:
    report = _report()
    text = report.to_markdown()
    for name in EMOTIONS:
        assert f"| {name} | " in text
    assert f"{report.accuracy:.2%}" in text
    assert "ECE" in text and "flip" in text
    assert str(report) == text


# --------------------------------------------------------------------------------------------
# bad input


def test_bad_predictions_raise_clear_errors() -> None:
    with pytest.raises(InvalidArgumentError, match="differ in length"):
        report_from_predictions([0, 1, 2], [0, 1])
    with pytest.raises(InvalidArgumentError, match=r"outside 0\.\.6"):
        report_from_predictions([0, 7], [0, 1])
    with pytest.raises(InvalidArgumentError, match="y_pred"):
        report_from_predictions([0, 1], [0, -1])
    with pytest.raises(InvalidArgumentError, match="integer"):
        report_from_predictions([0.0, 1.0], [0, 1])
    with pytest.raises(InvalidArgumentError, match="empty"):
        report_from_predictions([], [])
    with pytest.raises(InvalidArgumentError, match="softmax"):
        report_from_predictions([0], [0], [[2.0, -1.0, 0, 0, 0, 0, 0]])
    with pytest.raises(InvalidArgumentError, match=r"\(1, 7\)"):
        report_from_predictions([0], [0], [[0.5, 0.5]])


def test_bad_images_raise_clear_errors() -> None:
    model = _linear_model()
    with pytest.raises(InvalidImageError, match="uint8"):
        predict_logits(model, torch.zeros(2, 48, 48))
    with pytest.raises(InvalidImageError, match="N x H x W"):
        predict_logits(model, torch.zeros(2, 3, 48, 48, dtype=torch.uint8))
    with pytest.raises(InvalidImageError, match="empty"):
        predict_logits(model, torch.zeros(0, 48, 48, dtype=torch.uint8))
    with pytest.raises(UnsupportedInputError, match="list"):
        predict_logits(model, [[0]])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        predict_logits(model, _images(1), batch_size=0)


def test_evaluate_rejects_unlabelled_data_and_mismatched_models() -> None:
    images = _images(3)
    with pytest.raises(InvalidArgumentError, match="no label"):
        evaluate(_linear_model(), (images, torch.tensor([0, -1, -1])))
    with pytest.raises(InvalidArgumentError, match="5 logits"):
        evaluate(_linear_model(num_classes=5), (images, torch.tensor([0, 1, 2])))

    class TupleModel(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
            return (torch.zeros(x.shape[0], 7),)

    with pytest.raises(UnsupportedInputError, match="tuple"):
        evaluate(TupleModel(), (images, torch.tensor([0, 1, 2])))


def test_errors_are_emotionnet_and_builtin_errors() -> None:
    with pytest.raises(EmotionNetError):
        report_from_predictions([0], [9])
    with pytest.raises(ValueError):
        report_from_predictions([0], [9])
    with pytest.raises(TypeError):
        predict_logits(_linear_model(), "image.png")  # type: ignore[arg-type]


def test_ece_argument_checks() -> None:
    with pytest.raises(InvalidArgumentError, match="n_bins"):
        expected_calibration_error([0], [[1.0, 0.0]], n_bins=0)
    assert math.isclose(expected_calibration_error([1], [[1.0, 0.0]]), 1.0)
