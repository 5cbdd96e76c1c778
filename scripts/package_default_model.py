"""Package trained weights as the bundled default model, with its evaluation.

Takes a plain state dict (``.pt``/``.pth``/``.safetensors``) of a ResNet18 emotion model,
stores it in half precision where ``EmotionRecognizer.from_pretrained()`` finds it, then
reloads exactly what was written and evaluates it on PublicTest without and with flip
test-time augmentation. Writes, next to the weights:

- ``evaluation_public_test.json`` and ``evaluation_public_test_tta_flip.json``
  (:class:`emotionnet.EvaluationReport`), whose numbers the model card and the docs show;
- the confusion-matrix picture ``docs/_static/confusion_matrix_public_test.png``.

Usage::

    python scripts/package_default_model.py runs/stopgap/best.pt --stem middle \
        --data ../shared/data/fer2013 --note "trained on CPU as a stop-gap"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import emotionnet
from emotionnet import FER2013, EmotionRecognizer, EvaluationReport, ModelConfig
from emotionnet.metrics import plot_confusion_matrix

DEFAULT_OUT = Path(emotionnet.__file__).parent / "weights" / "default"


README = Path("README.md")


def update_readme_results(reports: dict[str, EvaluationReport], note: str) -> None:
    """Rewrite the README's results table (between its marker comments) from the reports."""
    start, end = "<!-- results-table:start -->", "<!-- results-table:end -->"
    rows = [
        "| model | FER2013 accuracy | macro-F1 | evaluated on |",
        "|---|---:|---:|---|",
    ]
    for report in reports.values():
        tta = " (flip TTA)" if report.tta not in (None, "none") else ""
        rows.append(
            f"| emotionnet bundled model, one ResNet18{tta} | {report.accuracy:.2%} | "
            f"{report.macro_f1:.2f} | PublicTest (validation) |"
        )
    rows += [
        "| the original project this replaces (ResNet18 transfer learning) | 65.42% | 0.64 "
        "| FER2013 test |",
        "| published single networks, no extra data | about 73–74% | — | PrivateTest |",
    ]
    block = "\n".join(rows) + (f"\n\n{note}" if note else "")
    text = README.read_text(encoding="utf-8")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    README.write_text(f"{head}{start}\n{block}\n{end}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, help="state dict of the trained model")
    parser.add_argument("--stem", default="middle", choices=emotionnet.STEMS)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fer2013"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--figure", type=Path, default=Path("docs/_static/confusion_matrix_public_test.png")
    )
    parser.add_argument("--note", default="", help="how the weights were trained (model card)")
    parser.add_argument("--readme-note", default="", help="paragraph under the README table")
    parser.add_argument(
        "--training-log", type=Path, help="JSON log of the run, copied as training_log.json"
    )
    args = parser.parse_args()

    config = ModelConfig(stem=args.stem)
    recognizer = EmotionRecognizer.from_state_dict(
        args.weights, config=config, device="cpu", backend="torch"
    )
    recognizer.metadata["description"] = args.note
    recognizer.save_pretrained(args.out, dtype="float16")

    # Evaluate what was written (fp16 weights upcast on load), not the float32 originals.
    shipped = EmotionRecognizer.from_pretrained(args.out, device="cpu", backend="torch")
    public_test = FER2013(args.data, "public_test")
    reports = {
        "public_test": shipped.evaluate(public_test),
        "public_test + flip TTA": shipped.evaluate(public_test, tta="flip"),
    }
    reports["public_test"].save_json(args.out / "evaluation_public_test.json")
    reports["public_test + flip TTA"].save_json(args.out / "evaluation_public_test_tta_flip.json")
    shipped.metadata["description"] = args.note
    shipped.save_pretrained(args.out, evaluation=reports, dtype="float16")
    if args.training_log:
        (args.out / "training_log.json").write_text(args.training_log.read_text())
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    plot_confusion_matrix(
        reports["public_test + flip TTA"], args.figure, title="PublicTest, flip TTA"
    )
    update_readme_results(reports, args.readme_note)
    for name, report in reports.items():
        print(f"{name}: accuracy {report.accuracy:.4f}, macro-F1 {report.macro_f1:.4f}")
    print(json.dumps({k: round(v.accuracy, 4) for k, v in reports.items()}))


if __name__ == "__main__":
    main()
