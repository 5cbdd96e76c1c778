"""The public API changes only on purpose: every name a user imports is pinned here.

A name added to or removed from an ``__all__`` below, or a public method added to or removed
from :class:`~emotionnet.EmotionRecognizer`, fails this file until the list here and
``CHANGELOG.md`` say so (the kornia way of keeping a public surface deliberate).
``tests/test_docs.py`` holds every one of these names to an entry in ``docs/api.rst``.
"""

from __future__ import annotations

import importlib

import pytest

# Each module users import from, with its ``__all__`` (sorted).
PUBLIC_API: dict[str, list[str]] = {
    "emotionnet": [
        "AugmentConfig",
        "BatchScorer",
        "Callback",
        "DlibHogDetector",
        "EMOTIONS",
        "EmotionNet",
        "EmotionNetError",
        "EmotionRecognizer",
        "EvaluationReport",
        "FER2013",
        "FaceEmotion",
        "FinetuneResult",
        "HaarCascadeDetector",
        "History",
        "LabelledFolder",
        "ModelConfig",
        "NUM_CLASSES",
        "OnnxClassifier",
        "OnnxModel",
        "PathResult",
        "Prediction",
        "SPLITS",
        "STEMS",
        "TrainConfig",
        "Trainer",
        "__version__",
        "as_tensors",
        "build_model",
        "compute_class_weights",
        "detect_faces",
        "distillation_loss",
        "emotion_to_index",
        "errors",
        "evaluate",
        "export_onnx",
        "finetune",
        "index_to_emotion",
        "iter_image_paths",
        "normalize",
        "plot_confusion_matrix",
        "precompute_teacher_targets",
        "predict_logits",
        "predict_paths",
        "predict_proba",
        "report_from_predictions",
        "to_face_array",
    ],
    "emotionnet.batch": ["IMAGE_SUFFIXES", "PathResult", "iter_image_paths", "predict_paths"],
    "emotionnet.calibration": [
        "ECE_BINS",
        "MAX_TEMPERATURE",
        "MIN_TEMPERATURE",
        "apply_temperature",
        "expected_calibration_error",
        "fit_temperature",
    ],
    "emotionnet.data": [
        "FER2013",
        "IMAGE_EXTENSIONS",
        "LabelledFolder",
        "SOURCES",
        "SPLITS",
        "as_tensors",
        "default_cache_dir",
        "folder_labels",
        "main",
    ],
    "emotionnet.errors": [
        "CheckpointError",
        "CorruptImageError",
        "DatasetNotFoundError",
        "EmotionNetError",
        "ImageNotFoundError",
        "InvalidArgumentError",
        "InvalidImageError",
        "MalformedDataError",
        "MissingDependencyError",
        "MissingLabelsError",
        "ModelLoadError",
        "NonFiniteLossError",
        "NotAFaceCropWarning",
        "SplitNotAvailableError",
        "UnknownEmotionError",
        "UnsupportedInputError",
        "WeightsNotFoundError",
    ],
    "emotionnet.faces": [
        "Box",
        "DEFAULT_DETECTOR",
        "DEFAULT_MARGIN",
        "DETECTORS",
        "DlibHogDetector",
        "FaceDetection",
        "FaceDetector",
        "HaarCascadeDetector",
        "MAX_DETECTION_SIDE",
        "crop_face",
        "detect_faces",
        "get_detector",
    ],
    "emotionnet.images": [
        "ACCEPTED_FORMATS",
        "ImageInput",
        "MAX_IMAGE_PIXELS",
        "MAX_WORKING_SIDE",
        "load_image",
        "original_size",
        "to_face_batch",
        "unbatch",
    ],
    "emotionnet.labels": [
        "EMOTIONS",
        "EMOTION_ALIASES",
        "NUM_CLASSES",
        "emotion_to_index",
        "index_to_emotion",
    ],
    "emotionnet.metrics": [
        "ClassMetrics",
        "EvaluationReport",
        "evaluate",
        "plot_confusion_matrix",
        "report_from_predictions",
    ],
    "emotionnet.models": [
        "ARCHITECTURES",
        "EmotionNet",
        "ModelConfig",
        "STEMS",
        "build_model",
        "load_weights",
        "read_state_dict",
        "replace_head",
    ],
    "emotionnet.models.hub": [
        "CONFIG_NAME",
        "MODEL_CARD_NAME",
        "ModelFiles",
        "ONNX_NAME",
        "WEIGHTS_NAME",
        "bundled_model_dir",
        "read_config",
        "resolve_model_files",
        "weights_sha256",
    ],
    "emotionnet.models.onnx": ["DEFAULT_OPSET", "OnnxClassifier", "export_onnx", "onnx_bytes"],
    "emotionnet.preprocessing": [
        "FER2013_MEAN",
        "FER2013_STD",
        "IMAGE_SIZE",
        "as_uint8_array",
        "as_uint8_batch",
        "normalize",
        "pixels_to_uint8",
        "to_face_array",
        "to_grayscale",
    ],
    "emotionnet.recognizer": [
        "BACKENDS",
        "DEFAULT_TTA",
        "EmotionRecognizer",
        "FaceEmotion",
        "Prediction",
    ],
    "emotionnet.runtime": [
        "CONFIG_METADATA_KEY",
        "INT8_ONNX_NAME",
        "MAX_ONNX_BYTES",
        "ONNX_NAME",
        "OnnxModel",
        "PRECISIONS",
        "PRECISION_METADATA_KEY",
        "WEIGHTS_SHA256_METADATA_KEY",
        "check_threads",
        "default_threads",
        "softmax",
    ],
    "emotionnet.scoring": ["BatchScorer", "FACE_COLUMNS", "INPUT_COLUMNS", "RESULT_COLUMNS"],
    "emotionnet.training": [
        "AMP_MODES",
        "BEST_WEIGHTS",
        "BestWeights",
        "Callback",
        "DISTILL_MODES",
        "EarlyStopping",
        "FinetuneResult",
        "HISTORY_COLUMNS",
        "History",
        "LAST_CHECKPOINT",
        "LOCK_FILE",
        "MONITORS",
        "ONE_CLASS_WARNING_SHARE",
        "OPTIMIZERS",
        "SCHEDULES",
        "TEACHER_TARGETS",
        "TrainConfig",
        "Trainer",
        "bf16_supported",
        "distillation_loss",
        "finetune",
        "free_cores",
        "load_checkpoint",
        "precompute_teacher_targets",
        "read_config_file",
    ],
    "emotionnet.tta": [
        "TEN_CROP_SIZE",
        "TTA_MODES",
        "TTA_SHIFT",
        "average_log_softmax",
        "crop_side",
        "resolve_tta",
        "tta_views",
    ],
    "emotionnet.video": [
        "FaceTrack",
        "FrameResult",
        "VIDEO_MAX_FACES",
        "VideoSummary",
        "analyze_video",
        "annotate_frame",
        "box_iou",
        "summarize_video",
    ],
}

# The public methods and properties of EmotionRecognizer.
RECOGNIZER_API: list[str] = [
    "backend",
    "evaluate",
    "from_pretrained",
    "from_state_dict",
    "labels",
    "model",
    "precision",
    "predict",
    "predict_faces",
    "push_to_hub",
    "save_pretrained",
]

_HOW_TO_FIX = (
    "If the change is deliberate, update the list in tests/test_public_api.py and say it in "
    "CHANGELOG.md (Added, or Deprecated/Removed for a name users may import), and document a "
    "new name in docs/api.rst."
)


def _check_surface(where: str, actual: set[str], expected: list[str]) -> None:
    assert expected == sorted(expected), f"keep the pinned list for {where} sorted"
    added = sorted(actual - set(expected))
    removed = sorted(set(expected) - actual)
    assert not added and not removed, (
        f"the public API of {where} changed: added {added}, removed {removed}. {_HOW_TO_FIX}"
    )


@pytest.mark.parametrize("module_name", sorted(PUBLIC_API))
def test_public_names_are_pinned(module_name: str) -> None:
    module = importlib.import_module(module_name)
    _check_surface(module_name, set(module.__all__), PUBLIC_API[module_name])


@pytest.mark.parametrize("module_name", sorted(PUBLIC_API))
def test_every_pinned_name_resolves(module_name: str) -> None:
    """Lazy modules (PEP 562) resolve each name on first use; a typo there fails here."""
    module = importlib.import_module(module_name)
    unresolved = [name for name in module.__all__ if not hasattr(module, name)]
    assert not unresolved, f"{module_name}.__all__ lists names that do not import: {unresolved}"


def test_recognizer_methods_are_pinned() -> None:
    from emotionnet.recognizer import EmotionRecognizer

    public = {name for name in dir(EmotionRecognizer) if not name.startswith("_")}
    _check_surface("EmotionRecognizer", public, RECOGNIZER_API)
