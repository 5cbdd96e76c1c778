"""Package a model folder written by the Trainer as the bundled default model.

The input is a folder that ``examples/train_fer2013.py`` (the library's ``Trainer``, run from a
recipe file) wrote: ``model.safetensors``, ``config.json``, ``recipe.toml`` (the recipe as it
ran), ``train_config.json``, ``history.json``/``history.csv`` and its evaluation reports;
optionally ``PROVENANCE.md``. Nothing else is accepted: every bundled model is made by the
Trainer from a recipe file, and the recipe travels with the weights.

The script

1. loads the folder with ``EmotionRecognizer.from_pretrained`` (strict) and evaluates exactly
   those weights on PublicTest with the library's ``evaluate``, for every TTA mode asked
   (default: ``none``, ``flip``, ``flip_crop`` and ``ten_crop``) and every mode calibrated
   (default: all five), and checks that the predictions equal the folder's own reports (it
   stops if they do not);
2. fits one calibration temperature per TTA mode on PublicTest
   (``evaluate(..., temperature="fit")``), stored as ``temperatures`` in ``config.json``: the
   reports' ECE and NLL are those of the calibrated probabilities, and they record the
   uncalibrated ones too (a temperature never changes a prediction);
3. writes the bundled folder (``src/emotionnet/weights/default``): the same weights (checked
   tensor for tensor), ``config.json`` and a model card that state the recipe, the epochs,
   the hardware, the training time, the command and the calibration, the fresh reports
   (``evaluation_public_test[_<tta>].json``), the recipe, the training config, the history and
   the provenance; files of an earlier bundled model are removed;
4. redraws ``docs/_static/confusion_matrix_public_test.png`` and the README's results table.
   The docs' Results page is generated from the same files on every docs build.

``--recalibrate`` does step 2 for a folder already packaged (the bundled model itself): it
re-evaluates it, checks the predictions against its reports, and rewrites only its
``config.json``, its card and its reports; the weights, the README and the figure stay.

Usage::

    python scripts/package_default_model.py ../shared/models/emotionnet-resnet18-middle-cpu40 \\
        --data ../shared/data/fer2013 \\
        --hardware "2-core AMD EPYC (Zen 5) CPU, 24 GiB, no GPU" \\
        --command "python examples/train_fer2013.py --config recipe.toml --data ..."

    python scripts/package_default_model.py src/emotionnet/weights/default --recalibrate \\
        --data ../shared/data/fer2013

``--hardware`` and ``--command`` are needed only when the folder's ``config.json`` does not
already record them (``examples/train_fer2013.py`` records both).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

import emotionnet
from emotionnet import FER2013, EmotionRecognizer, EvaluationReport
from emotionnet.metrics import evaluate, plot_confusion_matrix
from emotionnet.models import ModelConfig
from emotionnet.models.quantize import quantize_folder
from emotionnet.recipe import Recipe
from emotionnet.recognizer import DEFAULT_TTA
from emotionnet.training import TrainConfig, read_config_file
from emotionnet.tta import TTA_MODES

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "src" / "emotionnet" / "weights" / "default"
COMMITTED_RECIPE = ROOT / "configs" / "fer2013_resnet18.toml"
README = ROOT / "README.md"
FIGURE = ROOT / "docs" / "_static" / "confusion_matrix_public_test.png"
REQUIRED = ("model.safetensors", "config.json", "recipe.toml", "train_config.json", "history.json")
# Settings that say where a run wrote its files, not how it trained.
UNRECORDED = frozenset({"checkpoint_dir", "progress"})
CARRIED = ("recipe.toml", "train_config.json", "history.json", "history.csv", "PROVENANCE.md")
TTA_NAMES = {
    "none": "single view",
    "flip": "flip TTA",
    "flip_shift": "flip+shift TTA",
    "flip_crop": "flip+crop TTA",
    "ten_crop": "ten-crop TTA",
}


def report_name(split: str, tta: str) -> str:
    """The key of a report in config.json and the card, as examples/train_fer2013.py names it."""
    return split if tta == "none" else f"{split} + TTA ({tta})"


def report_file(split: str, tta: str) -> str:
    return f"evaluation_{split}.json" if tta == "none" else f"evaluation_{split}_{tta}.json"


def recipe_overrides(folder: Path) -> str:
    """The training settings in which the run differed from the committed recipe.

    Compared on the effective settings (``train_config.json``), so overrides given on the
    command line count as well as those in the recipe file.
    """
    committed = TrainConfig.from_dict(read_config_file(COMMITTED_RECIPE).get("train", {}))
    expected = committed.to_dict()
    ran = json.loads((folder / "train_config.json").read_text())
    changed = [
        f"{key} = {json.dumps(ran.get(key))} (committed: {json.dumps(expected.get(key))})"
        for key in sorted(set(ran) | set(expected))
        if key not in UNRECORDED and ran.get(key) != expected.get(key)
    ]
    return "; ".join(changed) if changed else "none"


def training_facts(
    folder: Path, metadata: dict[str, Any], hardware: str | None, command: str | None
) -> tuple[dict[str, Any], str]:
    """The card's Training table, and the one-line description under its title."""
    history = json.loads((folder / "history.json").read_text())
    train_config = json.loads((folder / "train_config.json").read_text())
    recorded = dict(metadata.get("training") or {})
    hardware = hardware or recorded.get("hardware")
    command = command or recorded.get("command")
    if not hardware or not command:
        sys.exit(
            f"{folder}/config.json does not record the hardware and the command of the run; "
            "pass --hardware and --command (see PROVENANCE.md of the folder)."
        )
    monitor = train_config.get("monitor", "val_accuracy")
    best = max(history, key=lambda row: row.get(monitor) or float("-inf"))
    seconds = sum(row["seconds"] for row in history)
    speed = statistics.median(row["images_per_sec"] for row in history)
    description = (
        "The model that `EmotionRecognizer.from_pretrained()` loads by default. Trained by "
        "emotionnet's own Trainer from the committed recipe (`recipe.toml` here), "
        f"{len(history)} epochs on {hardware.split(';')[0]}, in {seconds / 3600:.1f} h."
    )
    facts = {
        "made by": "emotionnet's Trainer, examples/train_fer2013.py",
        "recipe": "configs/fer2013_resnet18.toml, as run: recipe.toml in this folder",
        "changed from the committed recipe": recipe_overrides(folder),
        "epochs": f"{len(history)} trained; epoch {best['epoch']} selected by {monitor} on "
        "PublicTest",
        "hardware": hardware,
        "training time": f"{seconds / 3600:.1f} h ({seconds:,.0f} s, validation included), "
        f"median {speed:.0f} images/s",
        "command": command,
        "data": "FER2013 Training (28,709 faces) to train, PublicTest (3,589) to select",
    }
    if recorded.get("init"):  # a warm restart: the weights it started from
        facts["started from"] = recorded["init"]
        description += " It continued from earlier weights (see *started from*)."
    return facts, description


def moved_predictions(fresh: EvaluationReport, recorded: EvaluationReport) -> int | None:
    """How many predictions at least differ between two reports of the same faces.

    ``None`` when they do not count the same faces. Each moved prediction takes one count from
    a cell of its true class's row and adds one to another, so half the cell-wise distance
    between the confusion matrices is a lower bound (0 exactly when the matrices are equal).
    """
    if fresh.num_samples != recorded.num_samples:
        return None
    cells = zip(
        (c for row in fresh.confusion_matrix for c in row),
        (c for row in recorded.confusion_matrix for c in row),
        strict=True,
    )
    return sum(abs(a - b) for a, b in cells) // 2


def update_readme_results(reports: dict[str, EvaluationReport], note: str) -> None:
    """Rewrite the README's results table (between its marker comments) from the reports."""
    start, end = "<!-- results-table:start -->", "<!-- results-table:end -->"
    rows = [
        "| model | FER2013 accuracy | macro-F1 | evaluated on |",
        "|---|---:|---:|---|",
    ]
    for report in reports.values():
        view = TTA_NAMES.get(report.tta or "none", str(report.tta))
        if report.tta == DEFAULT_TTA:
            view += " (the default)"
        rows.append(
            f"| emotionnet bundled model, one ResNet18, {view} | {report.accuracy:.2%} | "
            f"{report.macro_f1:.2f} | PublicTest (validation) |"
        )
    rows += [
        "| the original project this replaces (ResNet18 transfer learning) | 65.42% | 0.64 "
        "| FER2013 test |",
        "| the `fer` package | 65.87% | — | PrivateTest |",
        "| published single networks, no extra data | about 72–73% | — | PrivateTest |",
    ]
    block = "\n".join(rows) + (f"\n\n{note}" if note else "")
    text = README.read_text(encoding="utf-8")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    README.write_text(f"{head}{start}\n{block}\n{end}{tail}", encoding="utf-8")


def calibrated_reports(
    source: EmotionRecognizer,
    data: FER2013,
    split: str,
    modes: list[str],
    recorded_folder: Path,
    max_changed: int,
) -> dict[str, EvaluationReport]:
    """Evaluate each mode with a temperature fitted on ``data``, checked against the folder.

    Stops when a mode's predictions differ from the folder's own report of it by more than
    ``max_changed`` faces.
    """
    reports: dict[str, EvaluationReport] = {}
    for tta in modes:
        report = evaluate(
            source.model,
            data,
            tta=tta,
            mean=source.config.mean,
            std=source.config.std,
            labels=source.config.labels,
            temperature="fit",
        )
        recorded = recorded_folder / report_file(split, tta)
        agreement = ""
        if recorded.is_file():
            their = EvaluationReport.load_json(recorded)
            moved = moved_predictions(report, their)
            if moved is None or moved > max_changed:
                sys.exit(
                    f"evaluate gives {report.accuracy:.4%} with tta={tta!r}, but {recorded} says "
                    f"{their.accuracy:.4%} ("
                    + ("other faces" if moved is None else f"at least {moved} predictions moved")
                    + f", --max-changed {max_changed}): the folder's weights and reports "
                    "disagree; nothing was written."
                )
            agreement = (
                " (equals the folder's report)"
                if moved == 0
                else f" (the folder's report: {their.accuracy:.4%}; {moved} moved)"
            )
        print(
            f"{split}, tta={tta}: accuracy {report.accuracy:.4%}, macro-F1 "
            f"{report.macro_f1:.4f}{agreement}; temperature {report.temperature:.4f}: ECE "
            f"{report.uncalibrated_ece:.4f} -> {report.ece:.4f}, NLL "
            f"{report.uncalibrated_nll:.4f} -> {report.nll:.4f}"
        )
        reports[tta] = report
    return reports


def calibrated_config(config: ModelConfig, reports: dict[str, EvaluationReport]) -> ModelConfig:
    """The config with the temperature of every calibrated report."""
    temperatures = {
        tta: report.temperature for tta, report in reports.items() if report.temperature is not None
    }
    return dataclasses.replace(config, temperatures={**config.temperatures, **temperatures})


def card_title(folder: Path) -> str:
    """The title of a packaged folder's card (its first Markdown heading)."""
    card = folder / "README.md"
    lines = card.read_text(encoding="utf-8").splitlines() if card.is_file() else []
    return next((line[2:].strip() for line in lines if line.startswith("# ")), folder.name)


def recalibrate(folder: Path, data_root: Path, modes: list[str], max_changed: int) -> None:
    """Fit and store the temperatures of an already packaged folder, in place.

    Its weights are read, never written: the new ``config.json`` and card are written to a
    temporary folder first and only those two files are copied back, with the reports.
    """
    recipe = Recipe.from_file(folder / "recipe.toml")
    split = recipe.val_split
    source = EmotionRecognizer.from_pretrained(folder, device="cpu", backend="torch")
    reports = calibrated_reports(
        source, FER2013(data_root, split), split, modes, folder, max_changed
    )
    metadata = {k: v for k, v in source.metadata.items() if k != "emotionnet_version"}
    # Reports of modes this run did not evaluate stay as they were.
    evaluation: dict[str, Any] = dict(metadata.pop("evaluation", None) or {})
    evaluation.update({report_name(split, tta): report for tta, report in reports.items()})
    config = calibrated_config(source.config, reports)
    with tempfile.TemporaryDirectory() as scratch:
        EmotionRecognizer(
            source.model, config, device="cpu", backend="torch", metadata=metadata
        ).save_pretrained(scratch, evaluation=evaluation, name=card_title(folder))
        for name in ("config.json", "README.md"):
            shutil.copyfile(Path(scratch) / name, folder / name)
    for tta, report in reports.items():
        report.save_json(folder / report_file(split, tta))
    print(f"recalibrated: {folder} (temperatures {dict(config.temperatures)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="model folder written by the Trainer")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/fer2013")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--tta", nargs="+", default=["none", "flip", "flip_crop", "ten_crop"], choices=TTA_MODES
    )
    parser.add_argument(
        "--calibrate",
        nargs="*",
        default=list(TTA_MODES),
        choices=TTA_MODES,
        help="TTA modes whose temperature is fitted on PublicTest and stored (default: all); "
        "their reports are written too",
    )
    parser.add_argument(
        "--recalibrate",
        action="store_true",
        help="only fit and store the temperatures of FOLDER, an already packaged model "
        "(config.json, card and reports rewritten in place; weights untouched)",
    )
    parser.add_argument(
        "--figure-tta",
        default="none",
        choices=TTA_MODES,
        help="the report drawn as the confusion-matrix picture",
    )
    parser.add_argument("--hardware", help="what it was trained on (if config.json lacks it)")
    parser.add_argument("--command", help="the command that trained it (if config.json lacks it)")
    parser.add_argument("--readme-note", default="", help="paragraph under the README table")
    parser.add_argument(
        "--max-changed",
        type=int,
        default=0,
        help="predictions that may differ from the folder's own reports (default 0: the same "
        "numbers exactly). For a run evaluated on a GPU: its convolutions (TF32 on recent "
        "NVIDIA GPUs) can move a face or two against this script's CPU evaluation",
    )
    args = parser.parse_args()
    if args.max_changed < 0:
        parser.error(f"--max-changed must be 0 or more, got {args.max_changed}")
    # Every mode reported is calibrated too, in the library's order of modes.
    modes = [m for m in TTA_MODES if m in set(args.tta) | set(args.calibrate)]
    if args.recalibrate:
        recalibrate(args.folder, args.data, modes, args.max_changed)
        return

    missing = [name for name in REQUIRED if not (args.folder / name).is_file()]
    if missing:
        sys.exit(
            f"{args.folder} lacks {missing}: only model folders written by the Trainer from a "
            "recipe file (examples/train_fer2013.py) can be bundled."
        )
    recipe = Recipe.from_file(args.folder / "recipe.toml")  # the one reading of a recipe
    split = recipe.val_split
    source = EmotionRecognizer.from_pretrained(args.folder, device="cpu", backend="torch")
    facts, description = training_facts(args.folder, source.metadata, args.hardware, args.command)

    data = FER2013(args.data, split)
    by_mode = calibrated_reports(source, data, split, modes, args.folder, args.max_changed)
    reports = {report_name(split, tta): report for tta, report in by_mode.items()}

    # A fresh folder: nothing of an earlier bundled model stays behind.
    if args.out.exists():
        shutil.rmtree(args.out)
    metadata = {k: v for k, v in source.metadata.items() if k != "emotionnet_version"}
    metadata["description"] = description
    metadata["training"] = facts
    EmotionRecognizer(
        source.model,
        calibrated_config(source.config, by_mode),
        device="cpu",
        backend="torch",
        metadata=metadata,
    ).save_pretrained(
        args.out,
        evaluation=reports,
        dtype=recipe.dtype,  # one of recipe.RELEASE_DTYPES
        name=args.folder.name,
    )
    for name in CARRIED:
        if (args.folder / name).is_file():
            shutil.copyfile(args.folder / name, args.out / name)
    for tta, report in by_mode.items():
        report.save_json(args.out / report_file(split, tta))
    # The int8 graph the recognizer runs by default, calibrated on training faces (never on
    # the split that selects and reports): 1,000 of them, drawn with a fixed seed.
    train = FER2013(args.data, recipe.train_split).images.numpy()
    picked = np.random.default_rng(0).choice(len(train), min(1000, len(train)), replace=False)
    quantize_folder(args.out, train[np.sort(picked)])

    # The shipped tensors are the trained ones, bit for bit.
    shipped, trained = (
        load_file(args.out / "model.safetensors"),
        load_file(args.folder / "model.safetensors"),
    )
    if shipped.keys() != trained.keys() or not all(
        torch.equal(shipped[k], trained[k]) for k in trained
    ):
        sys.exit(f"The weights written to {args.out} differ from {args.folder}'s.")

    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    figure_report = reports[report_name(split, args.figure_tta)]
    plot_confusion_matrix(figure_report, FIGURE, title=f"PublicTest, {TTA_NAMES[args.figure_tta]}")
    update_readme_results({k: r for k, r in reports.items() if r.tta in args.tta}, args.readme_note)
    print(f"bundled model: {args.out} (emotionnet {emotionnet.__version__})")


if __name__ == "__main__":
    main()
