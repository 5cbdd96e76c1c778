"""The bundled default model: made by the Trainer from a recipe, and every number about it agrees.

Its reports, config.json, model card, the README's results table and the docs' Results page all
describe the same weights, and a fresh evaluation on PublicTest reproduces the reports.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import emotionnet
from emotionnet import FER2013, EmotionRecognizer, EvaluationReport, TrainConfig, evaluate
from emotionnet.training import History, read_config_file
from emotionnet.tta import TTA_MODES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FOLDER = Path(emotionnet.__file__).parent / "weights" / "default"
README = PROJECT_ROOT / "README.md"
REPORTS = {
    "public_test": "evaluation_public_test.json",
    "public_test + TTA (flip)": "evaluation_public_test_flip.json",
    "public_test + TTA (flip_shift)": "evaluation_public_test_flip_shift.json",
    "public_test + TTA (flip_crop)": "evaluation_public_test_flip_crop.json",
    "public_test + TTA (ten_crop)": "evaluation_public_test_ten_crop.json",
}
VIEWS = {
    "none": "single view",
    "flip": "flip TTA",
    "flip_shift": "flip+shift TTA",
    "flip_crop": "flip+crop TTA (the default)",
    "ten_crop": "ten-crop TTA",
}
# The views in the README's results table (flip_shift is reported for its calibration only).
README_VIEWS = ("none", "flip", "flip_crop", "ten_crop")


def reports() -> dict[str, EvaluationReport]:
    return {name: EvaluationReport.load_json(FOLDER / file) for name, file in REPORTS.items()}


def test_the_bundled_folder_carries_its_recipe_history_and_provenance() -> None:
    names = {path.name for path in FOLDER.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "README.md",
        "recipe.toml",
        "train_config.json",
        "history.json",
        "history.csv",
        "PROVENANCE.md",
        *REPORTS.values(),
    } <= names
    # The recipe as it ran reads as a recipe, and its [train] table is the run's TrainConfig.
    recipe = read_config_file(FOLDER / "recipe.toml")
    ran = TrainConfig.from_file(FOLDER / "train_config.json")
    assert TrainConfig.from_dict(recipe["train"]).max_epochs == ran.max_epochs
    history = History.from_json(FOLDER / "history.json")
    assert [row["epoch"] for row in history] == list(range(1, ran.max_epochs + 1))
    # Weights are stored in half precision and load strictly into the configured model.
    assert load_file(FOLDER / "model.safetensors")["fc.weight"].dtype == torch.float16
    recognizer = EmotionRecognizer.from_pretrained(device="cpu", backend="torch")
    assert recognizer.config.stem == recipe["model"]["stem"]


def test_the_card_states_recipe_epochs_hardware_and_training_time() -> None:
    card = (FOLDER / "README.md").read_text(encoding="utf-8")
    training = json.loads((FOLDER / "config.json").read_text())["metadata"]["training"]
    history = History.from_json(FOLDER / "history.json")
    best = history.best("val_accuracy")
    assert best is not None
    assert training["epochs"].startswith(f"{len(history)} trained; epoch {best['epoch']} selected")
    hours = sum(row["seconds"] for row in history) / 3600
    assert training["training time"].startswith(f"{hours:.1f} h")
    assert "recipe.toml" in training["recipe"]
    # examples/train_fer2013.py names a GPU "<name> (CUDA)" and a CPU "<name>, N CPUs, ...".
    assert "(CUDA)" in training["hardware"] or "CPUs" in training["hardware"]
    assert "examples/train_fer2013.py" in training["command"]
    assert "## Training" in card
    for key in ("recipe", "epochs", "hardware", "training time", "command"):
        assert f"| {key} | " in card


def test_reports_card_config_readme_and_results_page_agree(tmp_path: Path) -> None:
    card = (FOLDER / "README.md").read_text(encoding="utf-8")
    summaries = json.loads((FOLDER / "config.json").read_text())["metadata"]["evaluation"]
    readme = README.read_text(encoding="utf-8")
    table = readme.split("<!-- results-table:start -->")[1].split("<!-- results-table:end -->")[0]
    sys.path.insert(0, str(PROJECT_ROOT / "docs"))
    try:
        from _results import write_results
    finally:
        sys.path.remove(str(PROJECT_ROOT / "docs"))
    page = write_results(PROJECT_ROOT, tmp_path).read_text(encoding="utf-8")

    assert set(summaries) == set(REPORTS)
    for name, report in reports().items():
        assert summaries[name]["accuracy"] == report.accuracy
        assert summaries[name]["macro_f1"] == report.macro_f1
        assert f"| {name} | {report.num_samples} | {report.accuracy:.2%} |" in card
        view = VIEWS[report.tta or "none"]
        if report.tta in README_VIEWS:
            name = re.escape(f"emotionnet bundled model, one ResNet18, {view}")
            row = re.search(rf"\| {name} \| ([^|]+) \| ([^|]+) \|", table)
            assert row is not None, view
            assert row.groups() == (f"{report.accuracy:.2%}", f"{report.macro_f1:.2f}")
        assert f"``{report.tta}``" in page and f"{report.accuracy:.2%}" in page
        # Each report's section is titled by its split and views, not by its file name.
        title = f"PublicTest (validation), {view}"
        assert f"\n{title}\n{'~' * len(title)}\n" in page, title
    assert "How it was trained" in page
    assert "Evaluation public test" not in page
    # The comparison rows say the same on the README and the Results page.
    results_rst = (PROJECT_ROOT / "docs" / "results.rst").read_text(encoding="utf-8")
    for claim in ("65.42%", "65.87%", "about 72–73%"):
        assert claim in table and claim in results_rst, claim


def test_every_view_set_has_a_temperature_fitted_on_public_test_and_shown_on_the_card() -> None:
    config = EmotionRecognizer.from_pretrained(device="cpu", backend="torch").config
    summaries = json.loads((FOLDER / "config.json").read_text())["metadata"]["evaluation"]
    card = (FOLDER / "README.md").read_text(encoding="utf-8")
    assert list(config.temperatures) == list(TTA_MODES)
    assert "### Calibration" in card
    for name, report in reports().items():
        assert report.tta is not None
        temperature = config.temperature_for(report.tta)
        assert report.temperature == summaries[name]["temperature"] == temperature
        assert report.uncalibrated_nll is not None and report.nll is not None
        assert report.uncalibrated_ece is not None and report.ece is not None
        # Fitted on this split: the log-loss can only drop (the ECE, binned, may not).
        assert report.nll < report.uncalibrated_nll
        assert summaries[name]["uncalibrated_nll"] == report.uncalibrated_nll
        row = (
            f"| {name} | {temperature:.4f} | {report.uncalibrated_ece:.4f} | {report.ece:.4f} | "
            f"{report.uncalibrated_nll:.4f} | {report.nll:.4f} |"
        )
        assert row in card, row
    # Averaging views makes the model under-confident: the default view set is sharpened.
    assert config.temperature_for("flip_crop") < 1.0


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("tta", ["none", "flip"])
def test_a_fresh_evaluate_reproduces_the_bundled_reports(fer2013_root: Path, tta: str) -> None:
    name = "public_test" if tta == "none" else f"public_test + TTA ({tta})"
    recorded = reports()[name]
    recognizer = EmotionRecognizer.from_pretrained(device="cpu", backend="torch")
    fresh = evaluate(
        recognizer.model,
        FER2013(fer2013_root, "public_test"),
        tta=tta,
        temperature=recognizer.config.temperature_for(tta),
    )
    assert fresh.num_samples == recorded.num_samples == 3589
    assert fresh.confusion_matrix == recorded.confusion_matrix
    assert fresh.accuracy == pytest.approx(recorded.accuracy, abs=1e-12)
    assert fresh.temperature == recorded.temperature
    for field in ("ece", "nll", "uncalibrated_ece", "uncalibrated_nll"):
        assert getattr(fresh, field) == pytest.approx(getattr(recorded, field), abs=1e-9), field
