"""scripts/package_default_model.py: how its check of a run's reports counts changed predictions.

The script refuses to bundle weights whose fresh evaluation disagrees with the run's own
reports; ``--max-changed`` admits the few faces that a GPU's convolutions move against the CPU.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emotionnet.metrics import report_from_predictions

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "package_default_model.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("package_default_model", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_equal_reports_move_nothing(script: ModuleType) -> None:
    y = [0, 1, 2, 3, 4, 5, 6, 3]
    report = report_from_predictions(y, y)
    assert script.moved_predictions(report, report_from_predictions(y, y)) == 0


def test_other_faces_are_not_comparable(script: ModuleType) -> None:
    assert (
        script.moved_predictions(
            report_from_predictions([0, 1], [0, 1]), report_from_predictions([0, 1, 2], [0, 1, 2])
        )
        is None
    )


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=60
    ),
)
def test_moved_predictions_is_a_lower_bound_and_sees_one_moved_face(
    script: ModuleType, faces: list[tuple[int, int, int]]
) -> None:
    """Half the matrices' distance never exceeds the faces whose prediction changed."""
    y_true = np.array([t for t, _, _ in faces])
    before = np.array([p for _, p, _ in faces])
    after = np.array([q for _, _, q in faces])
    moved = script.moved_predictions(
        report_from_predictions(y_true, after), report_from_predictions(y_true, before)
    )
    assert moved is not None and 0 <= moved <= int((before != after).sum())
    if (before != after).sum() == 1:  # one moved face is always seen
        assert moved == 1


# --------------------------------------------------------------------------------------------
# calibration: a temperature per view set, fitted on PublicTest and stored in config.json


def _packaged_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A packaged-looking model folder (random ResNet18, its reports) and a tiny FER2013 CSV."""
    import torch

    from emotionnet import FER2013, EmotionRecognizer
    from emotionnet.models import ModelConfig, build_model

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    rows = ["emotion,pixels,Usage"]
    for index in range(28):
        pixels = " ".join(str(v) for v in rng.integers(0, 256, 48 * 48))
        rows.append(f"{index % 7},{pixels},{'PublicTest' if index < 21 else 'Training'}")
    (data / "fer2013.csv").write_text("\n".join(rows) + "\n")

    torch.manual_seed(0)
    config = ModelConfig(stem="imagenet")
    recognizer = EmotionRecognizer(build_model(config), config, device="cpu")
    folder = tmp_path / "model"
    recognizer.save_pretrained(folder, name="tiny-release")
    (folder / "recipe.toml").write_text("[train]\nmax_epochs = 1\n")
    split = FER2013(data, "public_test")
    for tta, file in (
        ("none", "evaluation_public_test.json"),
        ("flip", "evaluation_public_test_flip.json"),
    ):
        recognizer.evaluate(split, tta=tta).save_json(folder / file)
    return folder, data


def test_recalibrate_fits_stores_and_reports_a_temperature_per_view_set(
    script: ModuleType, tmp_path: Path
) -> None:
    import json

    from emotionnet import FER2013, EmotionRecognizer, EvaluationReport
    from emotionnet.calibration import fit_temperature
    from emotionnet.inference import predict_logits

    folder, data = _packaged_folder(tmp_path)
    weights = (folder / "model.safetensors").read_bytes()
    before = {
        tta: EvaluationReport.load_json(folder / script.report_file("public_test", tta))
        for tta in ("none", "flip")
    }
    script.recalibrate(folder, data, ["none", "flip", "flip_crop"], 0)

    assert (folder / "model.safetensors").read_bytes() == weights  # never written
    recognizer = EmotionRecognizer.from_pretrained(folder, device="cpu", backend="torch")
    images, targets = FER2013(data, "public_test").images, FER2013(data, "public_test").targets
    assert list(recognizer.config.temperatures) == ["none", "flip", "flip_crop"]
    for tta in ("none", "flip", "flip_crop"):
        logits = predict_logits(recognizer.model, images, tta=tta, mean=recognizer.config.mean)
        expected = fit_temperature(logits, targets)
        assert recognizer.config.temperature_for(tta) == expected
        report = EvaluationReport.load_json(folder / script.report_file("public_test", tta))
        assert report.temperature == expected and report.uncalibrated_nll is not None
        if tta in before:  # the same predictions as the reports it had
            assert report.confusion_matrix == before[tta].confusion_matrix
            assert report.uncalibrated_ece == pytest.approx(before[tta].ece)
    summaries = json.loads((folder / "config.json").read_text())["metadata"]["evaluation"]
    assert summaries["public_test + TTA (flip)"][
        "temperature"
    ] == recognizer.config.temperature_for("flip")
    card = (folder / "README.md").read_text()
    assert "\n# tiny-release\n" in card  # the title it had
    assert "### Calibration" in card and "| calibration temperatures | none " in card
    flip = summaries["public_test + TTA (flip)"]
    assert (
        f"| public_test + TTA (flip) | {flip['temperature']:.4f} | "
        f"{flip['uncalibrated_ece']:.4f} | {flip['ece']:.4f} | "
        f"{flip['uncalibrated_nll']:.4f} | {flip['nll']:.4f} |"
    ) in card


def test_recalibrate_writes_nothing_when_the_predictions_disagree(
    script: ModuleType, tmp_path: Path
) -> None:
    folder, data = _packaged_folder(tmp_path)
    report_path = folder / "evaluation_public_test_flip.json"
    text = report_path.read_text()
    import json

    moved = json.loads(text)
    first, second = moved["confusion_matrix"][0][:2]
    moved["confusion_matrix"][0][:2] = [first + 1, second - 1] if second else [first - 1, 1]
    report_path.write_text(json.dumps(moved))
    config = (folder / "config.json").read_text()
    with pytest.raises(SystemExit, match="disagree; nothing was written"):
        script.recalibrate(folder, data, ["none", "flip"], 0)
    assert (folder / "config.json").read_text() == config
