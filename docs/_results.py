"""Generate the Results page's numbers and pictures from the committed evaluation reports.

``conf.py`` calls :func:`write_results` on every build, so the Results page always shows what
the evaluation reports committed next to the release weights say, never hand-copied numbers.
It writes ``docs/_generated/results.rst`` (included by ``results.rst``) and one confusion-matrix
PNG per report. Without a report it writes a clearly marked placeholder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

# The bundled model's folder: its evaluation reports (EvaluationReport.save_json output) and the
# training facts that scripts/package_default_model.py records in its config.json.
MODEL_DIR = Path("src/emotionnet/weights/default")
REPORT_GLOBS = (
    "src/emotionnet/weights/**/*evaluation*.json",
    "src/emotionnet/weights/**/*report*.json",
)


def _find_reports(root: Path) -> list[Path]:
    found: set[Path] = set()
    for pattern in REPORT_GLOBS:
        found.update(path for path in root.glob(pattern) if path.is_file())
    return sorted(found)


# evaluation_<split>[_<tta>].json, as examples/train_fer2013.py and the packaging script name them.
_REPORT_NAME = re.compile(
    r"^evaluation_(?P<split>train|public_test|private_test|test)(?:_(?P<tta>[a-z_]+))?$"
)
_SPLIT_TITLES = {
    "train": "Training",
    "public_test": "PublicTest (validation)",
    "private_test": "PrivateTest",
    "test": "FER2013 test",
}
_TTA_TITLES = {
    "none": "single view",
    "flip": "flip TTA",
    "flip_shift": "flip+shift TTA",
    "flip_crop": "flip+crop TTA",
    "ten_crop": "ten-crop TTA",
}


def _title(path: Path, tta: str | None) -> str:
    """``PublicTest (validation), flip+crop TTA (the default)`` for a report's section."""
    from emotionnet.recognizer import DEFAULT_TTA

    match = _REPORT_NAME.match(path.stem)
    if match is None:  # a report named otherwise: its file name, as words
        words = re.sub(r"[_\-.]+", " ", path.stem).strip()
        return words[:1].upper() + words[1:]
    mode = tta or match["tta"] or "none"
    views = _TTA_TITLES.get(mode, f"{mode} TTA")
    default = " (the default)" if mode == DEFAULT_TTA else ""
    return f"{_SPLIT_TITLES[match['split']]}, {views}{default}"


def _table(header: list[str], rows: list[list[str]], widths: str) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return [*lines, ""]


def _report_section(root: Path, path: Path, out: Path) -> list[str]:
    from emotionnet.metrics import EvaluationReport, plot_confusion_matrix

    report = EvaluationReport.load_json(path)
    picture = out / f"confusion_matrix_{path.stem}.png"
    plot_confusion_matrix(report, picture, normalize=True)
    title = _title(path, report.tta)
    tta = report.tta if report.tta is not None else "not recorded"
    headline = [
        ["accuracy", f"{report.accuracy:.2%}"],
        ["balanced accuracy", f"{report.balanced_accuracy:.2%}"],
        ["macro F1", f"{report.macro_f1:.4f}"],
        ["weighted F1", f"{report.weighted_f1:.4f}"],
    ]
    calibrated = "" if report.temperature is None else ", calibrated"
    if report.ece is not None:
        headline.append([f"expected calibration error{calibrated}", f"{report.ece:.4f}"])
    if report.nll is not None:
        headline.append([f"negative log-likelihood{calibrated}", f"{report.nll:.4f}"])
    if report.temperature is not None:
        headline.append(
            ["calibration temperature (fitted on this split)", f"{report.temperature:.4f}"]
        )
        if report.uncalibrated_ece is not None:
            headline.append(
                ["expected calibration error, uncalibrated", f"{report.uncalibrated_ece:.4f}"]
            )
        if report.uncalibrated_nll is not None:
            headline.append(
                ["negative log-likelihood, uncalibrated", f"{report.uncalibrated_nll:.4f}"]
            )
    per_class = [
        [name, f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}", str(m.support)]
        for name, m in report.per_class.items()
    ]
    relative = path.relative_to(root).as_posix()
    return [
        title,
        "~" * len(title),  # under results.rst's "The release model" section
        "",
        f"{report.num_samples:,} images, test-time augmentation: ``{tta}``. "
        f"Source: ``{relative}``.",
        "",
        *_table(["metric", "value"], headline, "3 2"),
        *_table(["class", "precision", "recall", "F1", "support"], per_class, "3 2 2 2 2"),
        f".. figure:: /_generated/{picture.name}",
        f"   :alt: Row-normalised confusion matrix, {title}",
        "   :width: 520px",
        "",
        "   Row-normalised confusion matrix: row = true class, column = predicted class;",
        "   the diagonal is each class's recall.",
        "",
    ]


def _training_section(root: Path) -> list[str]:
    config = root / MODEL_DIR / "config.json"
    if not config.is_file():
        return []
    training = json.loads(config.read_text(encoding="utf-8")).get("metadata", {}).get("training")
    if not training:
        return []
    rows = [[key, str(value).replace("|", "/")] for key, value in training.items()]
    return [
        "How it was trained",
        "~~~~~~~~~~~~~~~~~~",
        "",
        f"From ``{(MODEL_DIR / 'config.json').as_posix()}``:",
        "",
        *_table(["fact", "value"], rows, "2 5"),
    ]


def write_results(root: Path, out: Path) -> Path:
    """Write ``out/results.rst`` (and its pictures) from the reports found under ``root``.

    Args:
        root: The project root.
        out: The folder to write into (created if needed).

    Returns:
        The path of the generated reStructuredText file.
    """
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("confusion_matrix_*.png"):
        stale.unlink()
    reports = _find_reports(root)
    lines: list[str] = []
    if not reports:
        lines += [
            ".. admonition:: Placeholder: no evaluation report committed yet",
            "   :class: warning",
            "",
            "   The numbers of the release model appear here once its evaluation report",
            "   (``EvaluationReport.save_json`` output) is committed next to the release",
            "   weights under ``src/emotionnet/weights/``.",
            "",
        ]
    lines += _training_section(root)
    for path in reports:
        lines += _report_section(root, path, out)
    target = out / "results.rst"
    text = "\n".join(lines) + "\n"
    # Rewriting an unchanged file would make Sphinx rebuild the page every time.
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
    return target
