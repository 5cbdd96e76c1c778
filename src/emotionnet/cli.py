r"""The ``emotionnet`` command (also ``python -m emotionnet``).

.. code-block:: text

    emotionnet predict PATH... [--recursive] [--faces] [--format table|json|jsonl|csv]
                       [--output FILE] [--quiet] [--model NAME_OR_DIR] [--device DEV] [--tta]
                       [--detector auto|haar|dlib] [--min-face-size PX]
                       [--min-confidence C] [--max-faces N]
    emotionnet evaluate --data DIR [--split public_test] [--model ...] [--tta] [--json] [--plot PNG]
    emotionnet train --config FILE [--data DIR] [--output DIR] [--resume]
    emotionnet finetune DATA_DIR --output OUT_DIR [--init default|MODEL] [--epochs N]
                        [--val-split F | --val DIR] [--seed S] [--overwrite] [--faces]
                        [--group-pattern REGEX]
    emotionnet video FILE [--every N | --fps R] [--smoothing S] [--format csv|jsonl|json]
                     [--output FILE] [--annotate OUT.mp4] [--detector auto|haar|dlib]
                     [--min-face-size PX] [--min-confidence C] [--max-faces N]
    emotionnet export --onnx OUT [--model NAME_OR_DIR]

Results are printed as a table, or as JSON with ``--json`` (always valid JSON: RFC 8259,
no ``NaN``). ``--output FILE`` (and ``--annotate``, ``--onnx``) is written to a temporary file
next to FILE and renamed over it at the end, so an error or an interrupt leaves the previous
FILE as it was; an output that is one of the command's inputs (the same file, also through a
link) is refused before anything is written. File names are shown exactly in JSON; in tables
and CSV, bytes that are not UTF-8 are written as ``\xNN`` and control characters as
``\xNN``/``\uNNNN`` escapes, and a CSV cell that a spreadsheet would run as a formula
(``=``, ``+``, ``-``, ``@``) gets a leading ``'``. When the reader of the output goes away
(``emotionnet predict ... | head -1``) the command stops quietly with status 141, as a
process ended by ``SIGPIPE``.

``predict`` carries on past an image it cannot read or predict: the image gets an error
record (``{"image": ..., "error": ..., "error_type": ...}``, a table row, and an
``error: ...`` line on stderr), the others are reported, and the exit status is 1. Any
other error emotionnet raises on purpose (a model not in the cache while offline, a bad
option value...) is printed as one line ``error: ...`` and the command exits with status 2.
``train`` and ``finetune`` log one line per epoch on stderr (losses, validation accuracy and
macro-F1, LR, images/s), with or without a terminal.

Example:
    >>> main(["predict", "no-such-file.jpg"])  # doctest: +SKIP
    error: No image file at 'no-such-file.jpg'; check the path.
    2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import unicodedata
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from .errors import EmotionNetError, InvalidArgumentError

__all__ = ["build_parser", "main"]

EXIT_ERROR: Final[int] = 2
EXIT_BROKEN_PIPE: Final[int] = 141  # 128 + SIGPIPE, what the shell reports for `cat | head`
_TTA_CHOICES: Final[tuple[str, ...]] = ("none", "flip", "flip_shift", "flip_crop", "ten_crop")
# emotionnet.faces.DETECTORS, spelled out so that --help does not import numpy and PIL.
_DETECTOR_CHOICES: Final[tuple[str, ...]] = ("auto", "haar", "dlib")


def _default_data() -> str:
    return os.environ.get("EMOTIONNET_FER2013", "data/fer2013")


def _add_model_options(parser: argparse.ArgumentParser, *, backend: bool = True) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        metavar="NAME_OR_DIR",
        help="a folder written by save_pretrained or `emotionnet train`, a Hub repo id "
        "'org/name', or an .onnx file written by `emotionnet export` (default: the bundled "
        "model)",
    )
    group.add_argument("--revision", help="Hub branch, tag or commit to pin")
    group.add_argument(
        "--device",
        help="cpu, cuda, cuda:1, mps (default: the CPU with the model's model.onnx; CUDA and "
        "mps run PyTorch, the torch extra)",
    )
    group.add_argument(
        "--threads",
        type=_whole(1),
        metavar="N",
        help="threads of one forward pass (default: OMP_NUM_THREADS, else one per physical "
        "core); with several processes on one machine give each cores / processes",
    )
    if backend:
        group.add_argument(
            "--backend",
            choices=("auto", "torch", "onnx"),
            default="auto",
            help="onnxruntime on the model's model.onnx, eager PyTorch (the torch extra), or "
            "auto: onnxruntime on the CPU (default)",
        )
        group.add_argument(
            "--precision",
            choices=("auto", "float32", "int8"),
            default="auto",
            help="int8: the model's model.int8.onnx, a quantized copy, about 4x faster on the "
            "CPU; float32: its model.onnx, PyTorch's probabilities exactly; auto (default): "
            "int8 where the model ships one (the bundled model does), else float32",
        )


def _whole(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _positive(text: str) -> float:
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _add_face_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("face detection")
    group.add_argument(
        "--detector",
        choices=_DETECTOR_CHOICES,
        help="face detector: haar (OpenCV, emotionnet[face]), dlib (dlib's HOG detector, "
        "emotionnet[dlib]; fewer false positives), or auto: dlib when installed, else haar "
        "(default)",
    )
    group.add_argument(
        "--min-face-size",
        type=_whole(0),
        metavar="PX",
        help="ignore faces smaller than PX pixels (width or height)",
    )
    group.add_argument(
        "--min-confidence",
        type=_finite,
        metavar="C",
        help="ignore faces the detector is less sure of, on its own scale (haar: its last "
        "stage's weight, e.g. 2; dlib: its score, e.g. 0.5); see the docs' numbers",
    )
    group.add_argument(
        "--max-faces",
        type=_whole(1),
        metavar="N",
        help="keep at most N faces per image (or frame; video: 32 by default), the largest",
    )


def _face_options_given(args: argparse.Namespace) -> list[str]:
    names = ("detector", "min_face_size", "min_confidence", "max_faces")
    return ["--" + name.replace("_", "-") for name in names if getattr(args, name) is not None]


def _apply_face_options(recognizer: Any, args: argparse.Namespace) -> None:
    """Set the face-detection options given on the command line on the recognizer."""
    from .faces import get_detector

    if args.detector is not None:
        get_detector(args.detector)  # a detector that is not installed: say so before any work
        recognizer.face_detector = args.detector
    if args.min_face_size is not None:
        recognizer.min_face_size = args.min_face_size
    if args.min_confidence is not None:
        recognizer.min_face_confidence = args.min_confidence
    if args.max_faces is not None:
        recognizer.max_faces = args.max_faces


def _add_tta_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tta",
        nargs="?",
        const="flip",
        default=None,
        choices=_TTA_CHOICES,
        help="test-time augmentation; --tta alone means 'flip' (default: the recognizer's, "
        "'flip_crop': the face, its centre crop and both mirrored; 'none' is the fastest)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``emotionnet`` command.

    Returns:
        The parser, with one sub-command per task.

    Example:
        >>> args = build_parser().parse_args(["predict", "a.jpg", "--tta"])
        >>> args.command, args.images, args.tta
        ('predict', ['a.jpg'], 'flip')
    """
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="emotionnet",
        description="Facial emotion recognition on FER2013: predict, evaluate, train, export.",
    )
    parser.add_argument("--version", action="version", version=f"emotionnet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = commands.add_parser(
        "predict",
        help="predict the emotion of face images (or of the faces in photos)",
        description="Predict the emotion of each image, taken as one face; with --faces, "
        "find the faces in each photo first.",
    )
    predict.add_argument(
        "images",
        nargs="+",
        metavar="PATH",
        help="image files and folders (the images in a folder; other files are skipped)",
    )
    predict.add_argument(
        "--recursive", "-r", action="store_true", help="also look in sub-folders of folders"
    )
    predict.add_argument(
        "--faces", action="store_true", help="detect faces in the photos (needs emotionnet[face])"
    )
    predict.add_argument(
        "--format",
        choices=_FORMATS,
        default="table",
        help="table (default), json (one list), jsonl (one object per line, streamed) or csv "
        "(one row per image, or per face with --faces: box and every probability)",
    )
    predict.add_argument("--json", action="store_true", help="same as --format json")
    predict.add_argument("--output", "-o", metavar="FILE", help="write the results to FILE")
    predict.add_argument(
        "--quiet", "-q", action="store_true", help="no progress bar (it shows only on a terminal)"
    )
    predict.add_argument("--top", type=int, default=3, metavar="K", help="labels shown (3)")
    predict.add_argument("--batch-size", type=int, default=64, help="faces per forward pass")
    _add_tta_option(predict)
    _add_face_options(predict)
    _add_model_options(predict)

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a model on a FER2013 split",
        description="Evaluate a model on a labelled FER2013 split and print the report.",
    )
    evaluate.add_argument(
        "--data",
        default=_default_data(),
        metavar="DIR",
        help="FER2013 in any supported layout (default: $EMOTIONNET_FER2013 or data/fer2013)",
    )
    evaluate.add_argument("--split", default="public_test", help="split (default: public_test)")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    evaluate.add_argument("--plot", metavar="PNG", help="also draw the confusion matrix")
    evaluate.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    _add_tta_option(evaluate)
    _add_model_options(evaluate)

    train = commands.add_parser(
        "train",
        help="train a model from a recipe (JSON or TOML)",
        description="Train a model from a recipe file: either a TrainConfig table, or a recipe "
        "with [data], [model], [train] and [release] tables (see configs/). The output "
        "folder is a model folder that --model accepts.",
    )
    train.add_argument("--config", required=True, metavar="FILE", help="recipe (.toml/.json)")
    train.add_argument(
        "--data", default=_default_data(), metavar="DIR", help="FER2013 (as for evaluate)"
    )
    train.add_argument("--output", metavar="DIR", help="output folder (default: runs/<recipe>)")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    train.add_argument(
        "--epochs",
        type=int,
        help="override the number of epochs (with --resume, only for the plateau and constant "
        "schedules: cosine and one-cycle span the original run)",
    )
    train.add_argument("--device", help="override the training device")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")

    finetune = commands.add_parser(
        "finetune",
        help="fine-tune a model on your own labelled folder (any labels)",
        description="Fine-tune a model on DATA_DIR, which holds one folder of images per "
        "label (the folder names are the labels), and save it in OUT_DIR as a model folder "
        "that --model accepts: the head first, then all layers, early stopping on a "
        "validation split. Prints progress and the validation accuracy.",
    )
    finetune.add_argument("data", metavar="DATA_DIR", help="one sub-folder of images per label")
    finetune.add_argument("--output", "-o", required=True, metavar="OUT_DIR", help="model folder")
    finetune.add_argument(
        "--init",
        default="default",
        metavar="default|MODEL",
        help="model to start from: the bundled one (default), a model folder or a Hub repo id",
    )
    finetune.add_argument(
        "--epochs", type=_whole(1), metavar="N", help="epochs (default: from the data size)"
    )
    held_out = finetune.add_mutually_exclusive_group()
    held_out.add_argument(
        "--val-split",
        type=_finite,
        default=0.2,
        metavar="F",
        help="share of DATA_DIR held out for validation, stratified (0.2)",
    )
    held_out.add_argument("--val", metavar="DIR", help="a separate validation folder")
    finetune.add_argument("--seed", type=_whole(0), default=0, metavar="S", help="seed (0)")
    finetune.add_argument(
        "--group-pattern",
        metavar="REGEX",
        help="its first group in each file name is a group (e.g. a subject id) kept on one "
        "side of the split",
    )
    finetune.add_argument(
        "--faces", action="store_true", help="crop the largest face of each image first"
    )
    finetune.add_argument(
        "--overwrite", action="store_true", help="write into an OUT_DIR that is not empty"
    )
    finetune.add_argument("--device", default="auto", help="training device (auto)")
    finetune.add_argument("--no-progress", action="store_true", help="no progress bars")

    video = commands.add_parser(
        "video",
        help="emotions of the faces in a video, frame by frame (needs emotionnet[face])",
        description="Find the faces in a video's frames and predict their emotions: one "
        "record per face per analysed frame (frame number, time in seconds, track, box, "
        "probabilities), then a summary (the share of each emotion over time).",
    )
    video.add_argument("video", metavar="FILE", help="a video file OpenCV can read")
    rate = video.add_mutually_exclusive_group()
    rate.add_argument("--every", type=_whole(1), metavar="N", help="analyse every N-th frame (1)")
    rate.add_argument("--fps", type=_positive, metavar="R", help="analyse about R frames a second")
    video.add_argument(
        "--smoothing",
        type=_finite,
        default=0.0,
        metavar="S",
        help="weight of a face's history in its probabilities, 0 <= S < 1 (0: none)",
    )
    video.add_argument(
        "--max-frames", type=_whole(1), metavar="N", help="stop after N analysed frames"
    )
    video.add_argument(
        "--format",
        choices=("csv", "jsonl", "json"),
        default="csv",
        help="csv (one row per face per frame; default), jsonl (one frame per line) or json "
        "(frames and summary)",
    )
    video.add_argument("--output", "-o", metavar="FILE", help="write the results to FILE")
    video.add_argument(
        "--annotate", metavar="OUT", help="also write the frames with boxes and labels (.mp4/.avi)"
    )
    video.add_argument("--quiet", "-q", action="store_true", help="no summary on stderr")
    _add_tta_option(video)
    _add_face_options(video)
    _add_model_options(video)

    export = commands.add_parser(
        "export",
        help="export a model to ONNX",
        description="Export the classifier to ONNX (normalised float input batch x 1 x 48 x 48, "
        "logits output, dynamic batch axis; needs emotionnet[onnx]).",
    )
    export.add_argument("--onnx", required=True, metavar="OUT", help="the .onnx file to write")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset (17)")
    _add_model_options(export, backend=False)
    return parser


def _load(args: argparse.Namespace) -> Any:
    from .recognizer import EmotionRecognizer

    return EmotionRecognizer.from_pretrained(
        args.model,
        revision=args.revision,
        device=args.device,
        backend=getattr(args, "backend", "torch"),  # export: the PyTorch model is exported
        num_threads=args.threads,
        precision=getattr(args, "precision", "auto"),
    )


def _format_top(prediction: Any, k: int) -> str:
    return ", ".join(f"{label} {p:.2f}" for label, p in prediction.top_k(k))


def _decoded(text: str) -> str:
    r"""``text`` with the undecodable bytes of a file name (surrogate escapes) as ``\xNN``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate that no file name decodes to
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
        return raw.decode("utf-8", "backslashreplace")
    return text


_UNSHOWN: Final[frozenset[str]] = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _shown(text: str) -> str:
    r"""Text safe for a terminal.

    Control and format characters (ESC, bidi overrides, line separators) become ``\xNN`` or
    ``\uNNNN``, the undecodable bytes of a file name ``\xNN``.
    """
    text = _decoded(text)
    if text.isprintable():
        return text
    return "".join(
        _escape(char) if unicodedata.category(char) in _UNSHOWN else char for char in text
    )


_FORMULA_START: Final[str] = "=+-@\t\r"


def _csv_text(text: str) -> str:
    """A CSV text cell: shown as for the terminal, and never a live spreadsheet formula.

    A cell starting with ``=``, ``+``, ``-`` or ``@`` (also after leading spaces), a tab or
    a carriage return gets a leading ``'`` (OWASP's advice against CSV injection).
    """
    cell = _shown(text)
    if cell[:1] in _FORMULA_START or cell.lstrip()[:1] in _FORMULA_START:
        return "'" + cell
    return cell


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    rows = [[_shown(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        out.write("\n")


@contextlib.contextmanager
def _results_file(path: str | None, out: TextIO) -> Iterator[TextIO]:
    """Where a command writes its results: ``--output FILE`` or ``out``.

    FILE is written atomically (a temporary file renamed over it when the block ends
    without an error; see :func:`emotionnet._atomic.atomic_open`), through a symbolic link
    to its target. A FILE that is not a regular file (``/dev/stdout``, a named pipe) is
    written directly.
    """
    if path is None:
        yield out
        return
    import io
    import stat

    from ._atomic import atomic_open

    try:
        special = not stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        special = False
    if special:
        with open(path, "w", encoding="utf-8", newline="") as device:
            yield device
        return
    resolved = os.path.realpath(path)
    folder = os.path.dirname(resolved)
    if not os.path.isdir(folder):
        raise InvalidArgumentError(
            f"Cannot write the results to {path!r}: the folder {folder!r} does not exist. "
            "Create it, or name a file in an existing folder."
        )
    with atomic_open(resolved) as handle:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="", write_through=True)
        try:
            yield text
            text.flush()
        finally:
            text.detach()  # the binary handle is closed (and renamed) by atomic_open


# The files of a model folder that a command may read: the config, the weights, and the
# ONNX graph saved next to them (which the onnxruntime backend runs).
_MODEL_FILES: Final[tuple[str, ...]] = ("config.json", "model.safetensors", "model.onnx")


def _model_inputs(args: argparse.Namespace, names: Sequence[str] = _MODEL_FILES) -> list[str]:
    """The model files a command reads (for :func:`_check_outputs`), found without loading.

    The bundled model's files, a local folder's (``names``), an ``.onnx`` file, or the Hub
    cache's copies of a repository's files.
    """
    model = getattr(args, "model", None)
    if model is None:
        import importlib.resources

        folder = str(
            importlib.resources.files("emotionnet").joinpath("weights").joinpath("default")
        )
        return [os.path.join(folder, name) for name in names]
    path = os.path.expanduser(model)
    if os.path.isdir(path):
        return [os.path.join(path, name) for name in names]
    if os.path.exists(path):
        return [path]
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = [try_to_load_from_cache(model, name, revision=args.revision) for name in names]
    except Exception:  # not a repo id, no hub library: nothing cached to protect
        return []
    return [file for file in cached if isinstance(file, str)]


def _check_outputs(
    args: argparse.Namespace,
    outputs: Mapping[str, str | None],
    inputs: Sequence[str] = (),
    *,
    input_folders: Sequence[str] = (),
    model_files: Sequence[str] = _MODEL_FILES,
) -> None:
    """Refuse outputs that are inputs (the model's files included) before anything is written."""
    from ._io import check_outputs

    if any(path is not None for path in outputs.values()):
        model = _model_inputs(args, model_files)
        check_outputs(outputs, [*inputs, *model], input_folders=input_folders)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def _dumps(value: Any, indent: int | None = 2) -> str:
    """JSON that every parser reads (RFC 8259): a non-finite number is written as null."""
    return json.dumps(_json_safe(value), indent=indent, allow_nan=False) + "\n"


def _error_text(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


_FORMATS: Final[tuple[str, ...]] = ("table", "json", "jsonl", "csv")


def _prediction_cells(prediction: Any, labels: Sequence[str]) -> list[object]:
    """The CSV cells of a prediction: emotion, score, then one probability per label."""
    probabilities = [f"{prediction.probabilities[label]:.6f}" for label in labels]
    return [_csv_text(prediction.label), f"{prediction.score:.6f}", *probabilities]


def _face_cells(face: Any, labels: Sequence[str]) -> list[object]:
    """The CSV cells of a face (predict --faces and video): box, confidence, prediction."""
    confidence = "" if face.confidence is None else f"{face.confidence:.6f}"
    return [*face.box, confidence, *_prediction_cells(face.prediction, labels)]


def _csv_rows(result: Any, labels: Sequence[str], faces: bool) -> list[list[object]]:
    """CSV rows of one path: one per image, or one per face (none found: one empty row)."""
    empty = [""] * (8 + len(labels))  # face, x, y, w, h, confidence, emotion, score, p_*
    path = _csv_text(result.path)
    if result.error is not None:
        return [[path, *empty, _csv_text(result.to_dict()["error"])]]
    if not faces:
        return [[path, *[""] * 6, *_prediction_cells(result.prediction, labels), ""]]
    if not result.faces:
        return [[path, *empty, ""]]
    return [
        [path, number, *_face_cells(face, labels), ""] for number, face in enumerate(result.faces)
    ]


def _predict(args: argparse.Namespace, out: TextIO) -> int:
    from .batch import iter_image_paths, predict_paths

    fmt = "json" if args.json else args.format
    given = _face_options_given(args)
    if given and not args.faces:
        raise InvalidArgumentError(
            f"{', '.join(given)} only apply to detected faces; add --faces to find the faces "
            "in each photo (without it each image is taken as one face)."
        )
    skipped: list[str] = []
    paths = list(iter_image_paths(args.images, recursive=args.recursive, skipped=skipped))
    if skipped:
        sys.stderr.write(
            f"note: skipped {len(skipped)} non-image file(s) in the folders given "
            f"(e.g. {_shown(skipped[0])})\n"
        )
    if not paths:
        raise InvalidArgumentError(
            "No image files to predict: the folders given hold none (images are "
            "recognised by their suffix: .jpg, .png, .webp, ...). Pass image files, or "
            "--recursive to look inside sub-folders."
        )
    _check_outputs(args, {"--output": args.output}, paths)
    recognizer = _load(args)
    _apply_face_options(recognizer, args)
    labels = tuple(recognizer.labels)
    k = min(max(args.top, 1), len(labels))
    show = not args.quiet and sys.stderr.isatty() and len(paths) > 1
    failed = 0
    records: list[dict[str, Any]] = []
    rows: list[list[str]] = (
        [["image", "face (x,y,w,h)", "emotion", "score", f"top {k}"]]
        if args.faces
        else [["image", "emotion", "score", f"top {k}"]]
    )
    with _results_file(args.output, out) as target:
        writer = None
        if fmt == "csv":
            import csv

            writer = csv.writer(target)
            writer.writerow(
                ["image", "face", "x", "y", "w", "h", "confidence", "emotion", "score"]
                + [_csv_text(f"p_{label}") for label in labels]
                + ["error"]
            )
        results = _noting_photos(
            predict_paths(
                recognizer, paths, faces=args.faces, batch_size=args.batch_size, tta=args.tta
            )
        )
        for result in _progress(results, total=len(paths), show=show):
            if not result.ok:
                failed += 1
                _note(f"error: {_shown(result.to_dict()['error'])}")
            if writer is not None:
                writer.writerows(_csv_rows(result, labels, args.faces))
            elif fmt == "jsonl":
                target.write(_dumps(result.to_dict(), indent=None))
            elif fmt == "json":
                records.append(result.to_dict())
            else:
                rows.extend(_table_rows(result, k, args.faces))
        if fmt == "json":
            target.write(_dumps(records))
        elif fmt == "table":
            _table(rows, target)
    if args.output:
        sys.stderr.write(f"wrote {len(paths)} result(s) to {_shown(args.output)}\n")
    return 1 if failed else 0


def _progress(items: Iterator[Any], *, total: int, show: bool) -> Iterator[Any]:
    """A tqdm bar on stderr when ``show``; tqdm is imported only then (a cold start saves it)."""
    if not show:
        return items
    from tqdm.auto import tqdm

    return iter(tqdm(items, total=total, file=sys.stderr, unit="image"))


def _note(text: str) -> None:
    """A line on stderr, above the progress bar when one is shown."""
    bar = sys.modules.get("tqdm")
    if bar is not None:
        bar.tqdm.write(text, file=sys.stderr)
    else:
        sys.stderr.write(text + "\n")


def _noting_photos(results: Iterator[Any]) -> Iterator[Any]:
    """Pass the results on; a NotAFaceCropWarning becomes a ``note:`` line on stderr.

    The note is in the command line's words (``--faces``); other warnings are shown as usual.
    """
    from .errors import NotAFaceCropWarning

    while True:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", NotAFaceCropWarning)
            try:
                result = next(results)
            except StopIteration:
                return
        for warning in caught:
            message = warning.message
            if isinstance(message, NotAFaceCropWarning) and message.box and message.image_size:
                x, y, w, h = message.box
                width, height = message.image_size
                source = _shown(str(message.source))
                _note(
                    f"note: {source} looks like a photo, not a face crop: it holds a "
                    f"face of about {w}x{h} px at ({x}, {y}) in its {width}x{height} px, and "
                    "was scored whole, as one face. Add --faces to find and crop the faces "
                    "first."
                )
            else:
                warnings.showwarning(
                    message, warning.category, warning.filename, warning.lineno, warning.file
                )
        yield result


def _table_rows(result: Any, k: int, faces: bool) -> list[list[str]]:
    if not result.ok:
        message = result.to_dict()["error"]
        return [[result.path, *(["-"] if faces else []), "error", "-", message]]
    if not faces:
        p = result.prediction
        return [[result.path, p.label, f"{p.score:.2f}", _format_top(p, k)]]
    if not result.faces:
        return [[result.path, "no face found", "-", "-", "-"]]
    rows = []
    for face in result.faces:
        p = face.prediction
        box = ",".join(str(v) for v in face.box)
        rows.append([result.path, box, p.label, f"{p.score:.2f}", _format_top(p, k)])
    return rows


def _evaluate(args: argparse.Namespace, out: TextIO) -> int:
    from ._optional import require

    require("torch", "`emotionnet evaluate` (it reads FER2013 with PyTorch)")
    from .data import FER2013

    _check_outputs(args, {"--plot": args.plot}, input_folders=[args.data])
    recognizer = _load(args)
    dataset = FER2013(args.data, split=args.split)
    report = recognizer.evaluate(
        dataset, batch_size=args.batch_size, tta=args.tta, progress=sys.stderr.isatty()
    )
    if args.plot:
        from .metrics import plot_confusion_matrix

        plot_confusion_matrix(report, args.plot)
    if args.json:
        out.write(_dumps(report.to_dict()))
    else:
        out.write(
            f"{_shown(str(recognizer.source))} on {_shown(args.split)} ({_shown(args.data)})\n\n"
        )
        out.write(report.to_markdown())
        if args.plot:
            out.write(f"\nconfusion matrix: {_shown(args.plot)}\n")
    return 0


def _train(args: argparse.Namespace, out: TextIO) -> int:
    from ._optional import require

    require("torch", "`emotionnet train`")
    from .data import FER2013
    from .recipe import Recipe, train_recipe

    config_path = Path(args.config)
    if not config_path.is_file():
        raise InvalidArgumentError(f"No recipe file at {args.config!r}; check the path.")
    output = Path(args.output) if args.output else Path("runs") / config_path.stem
    recipe = Recipe.from_file(config_path).with_train(
        checkpoint_dir=str(output / "checkpoints"),
        progress=not args.no_progress and sys.stderr.isatty(),
        max_epochs=args.epochs,
        device=args.device,
    )
    train_set = FER2013(args.data, split=recipe.train_split)
    val_set = FER2013(args.data, split=recipe.val_split)
    history, reports = train_recipe(recipe, train_set, val_set, output, resume=args.resume)
    if not reports:  # under torchrun, rank 0 evaluates and saves
        return 0
    best = history.best(recipe.train.monitor)
    out.write(f"trained {len(history)} epochs; best: {best}\n")
    rows = [["data", "accuracy", "macro F1"]]
    rows += [[n, f"{r.accuracy:.2%}", f"{r.macro_f1:.4f}"] for n, r in reports.items()]
    _table(rows, out)
    shown = _shown(str(output))
    out.write(f"model folder: {shown} (emotionnet predict --model {shown} IMAGE)\n")
    return 0


def _finetune(args: argparse.Namespace, out: TextIO) -> int:
    from .training.finetune import finetune

    result = finetune(
        args.data,
        args.output,
        init=args.init,
        epochs=args.epochs,
        val=args.val,
        val_split=args.val_split,
        seed=args.seed,
        faces=args.faces,
        group_pattern=args.group_pattern,
        overwrite=args.overwrite,
        device=args.device,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    report = result.report
    if result.skipped:
        out.write(f"skipped {len(result.skipped)} image(s): see finetune.json\n")
    out.write(
        f"fine-tuned {len(result.history)} epochs on {result.train_size} images "
        f"({', '.join(result.labels)}) in {result.seconds:.0f} s; epoch {result.best_epoch} "
        "kept\n"
    )
    out.write(
        f"validation accuracy: {report.accuracy:.2%} (macro F1 {report.macro_f1:.4f}, "
        f"{result.val_size} images)\n"
    )
    out.write(f"model folder: {result.folder} (emotionnet predict --model {result.folder} IMAGE)\n")
    return 0


def _video(args: argparse.Namespace, out: TextIO) -> int:
    from .video import analyze_video, summarize_video

    _check_outputs(args, {"--output": args.output, "--annotate": args.annotate}, [args.video])
    recognizer = _load(args)
    _apply_face_options(recognizer, args)
    labels = tuple(recognizer.labels)
    frames = analyze_video(
        args.video,
        recognizer,
        every=args.every,
        fps=args.fps,
        smoothing=args.smoothing,
        max_frames=args.max_frames,
        tta=args.tta,
        annotate=args.annotate,
    )
    kept: list[Any] = []  # the frames, for --format json only: csv/jsonl are streamed
    with _results_file(args.output, out) as target:
        writer = None
        if args.format == "csv":
            import csv

            writer = csv.writer(target)
            writer.writerow(
                ["frame", "time", "track", "x", "y", "w", "h", "confidence", "emotion", "score"]
                + [_csv_text(f"p_{label}") for label in labels]
            )

        def written(frames: Any) -> Iterator[Any]:
            for frame in frames:
                if args.format == "json":
                    kept.append(frame)
                elif writer is not None:
                    time = f"{frame.timestamp:.3f}"
                    if not frame.faces:
                        writer.writerow([frame.index, time] + [""] * (8 + len(labels)))
                    for face in frame.faces:
                        cells = _face_cells(face, labels)
                        writer.writerow([frame.index, time, face.track, *cells])
                else:
                    target.write(_dumps(frame.to_dict(), indent=None))
                yield frame

        summary = summarize_video(written(frames))
        if args.format == "json":
            target.write(
                _dumps({"frames": [f.to_dict() for f in kept], "summary": summary.to_dict()})
            )
    if not args.quiet:
        shares = ", ".join(
            f"{label} {share:.0%}"
            for label, share in sorted(summary.emotion_share.items(), key=lambda kv: -kv[1])
            if share > 0
        )
        sys.stderr.write(
            f"{summary.frames} frames analysed ({summary.duration:.1f} s), "
            f"{summary.frames_with_faces} with faces, {summary.tracks} face track(s)"
            f"{': ' + shares if shares else ''}\n"
        )
    return 0


def _export(args: argparse.Namespace, out: TextIO) -> int:
    from ._optional import require

    require("torch", "`emotionnet export` (it exports the PyTorch weights)")
    from .models.onnx import export_onnx

    if args.model and args.model.lower().endswith(".onnx"):
        raise InvalidArgumentError(
            f"--model {args.model} is already an ONNX graph: it has no PyTorch weights to "
            "export again. Use (or copy) that file, or pass --model the model folder it was "
            "exported from."
        )
    if not args.onnx.lower().endswith(".onnx"):
        raise InvalidArgumentError(
            f"--onnx {args.onnx!r} does not end with .onnx; name the graph file NAME.onnx "
            "(a name without it may be another file, such as the model's own weights)."
        )
    # The export reads the config and the PyTorch weights; a model.onnx next to them is what
    # it may rewrite.
    _check_outputs(args, {"--onnx": args.onnx}, model_files=("config.json", "model.safetensors"))
    recognizer = _load(args)
    path = export_onnx(recognizer.model, args.onnx, config=recognizer.config, opset=args.opset)
    out.write(
        f"wrote {_shown(str(path))} ({path.stat().st_size / 1e6:.1f} MB, opset {args.opset})\n"
    )
    return 0


def _check_device(args: argparse.Namespace) -> None:
    """Refuse a ``--device`` this machine lacks before any work, in the command line's words."""
    value = getattr(args, "device", None)
    if (
        value is None
        or value == "cpu"
        or (args.command in ("train", "finetune") and value == "auto")
    ):
        return
    from ._checks import resolve_device

    resolve_device(
        value,
        given=f"--device {value}",
        fix="pass --device cpu, or leave --device out (CUDA when available, else the CPU)",
    )


_COMMANDS: Final = {
    "predict": _predict,
    "evaluate": _evaluate,
    "train": _train,
    "finetune": _finetune,
    "export": _export,
    "video": _video,
}


def _silence_stdout() -> None:
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a non-file (tests, notebooks)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, descriptor)
    finally:
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``emotionnet`` command.

    Args:
        argv: The arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit status: 0 on success; 1 when ``predict`` could not read or predict some of
        the named images (each has an error record, the others are reported); 2 on a usage
        error or an error emotionnet reports (printed as one line ``error: ...`` on stderr,
        without a traceback); 141 (128 + ``SIGPIPE``) when the reader of the standard output
        closed it (``| head -1``), without a message.

    Example:
        >>> main(["predict", "--json", "missing.jpg"])  # doctest: +SKIP
        2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    package_logger = logging.getLogger("emotionnet")
    level = package_logger.level
    if args.command in ("train", "finetune"):
        # The per-epoch lines (losses, validation accuracy and macro-F1, LR, images/s) are the
        # training log: without a terminal (CI, nohup) there are no progress bars either.
        package_logger.setLevel(logging.INFO)
    try:
        _check_device(args)
        return _COMMANDS[args.command](args, sys.stdout)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as a process killed by SIGPIPE
        # would, and point stdout at devnull so that Python's final flush cannot fail again.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (EmotionNetError, OSError) as error:
        # OSError covers what the OS refuses (permissions, a full disk, a missing recipe).
        sys.stderr.write(f"error: {_shown(_error_text(error))}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    finally:
        package_logger.setLevel(level)
