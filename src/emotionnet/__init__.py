"""emotionnet: facial emotion recognition on FER2013 with typed PyTorch building blocks.

The public API is importable from here (``from emotionnet import EmotionRecognizer``). Names
are loaded on first use (PEP 562), so ``import emotionnet`` never imports torch: prediction
(:class:`EmotionRecognizer`, :class:`OnnxModel`) runs on numpy and onnxruntime alone, and
torch is imported only by what needs it (training, evaluation on FER2013, the torch backend,
export), which says which extra to install when it is missing.

Example:
    >>> import emotionnet
    >>> emotionnet.EMOTIONS[:3]
    ('angry', 'disgust', 'fear')
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

if TYPE_CHECKING:
    from . import errors as errors
    from .augmentation import AugmentConfig as AugmentConfig
    from .batch import PathResult as PathResult
    from .batch import iter_image_paths as iter_image_paths
    from .batch import predict_paths as predict_paths
    from .class_weights import compute_class_weights as compute_class_weights
    from .data import FER2013 as FER2013
    from .data import SPLITS as SPLITS
    from .data import LabelledFolder as LabelledFolder
    from .data import as_tensors as as_tensors
    from .errors import EmotionNetError as EmotionNetError
    from .faces import DlibHogDetector as DlibHogDetector
    from .faces import HaarCascadeDetector as HaarCascadeDetector
    from .faces import detect_faces as detect_faces
    from .inference import predict_logits as predict_logits
    from .inference import predict_proba as predict_proba
    from .labels import EMOTIONS as EMOTIONS
    from .labels import NUM_CLASSES as NUM_CLASSES
    from .labels import emotion_to_index as emotion_to_index
    from .labels import index_to_emotion as index_to_emotion
    from .metrics import EvaluationReport as EvaluationReport
    from .metrics import evaluate as evaluate
    from .metrics import plot_confusion_matrix as plot_confusion_matrix
    from .metrics import report_from_predictions as report_from_predictions
    from .models import STEMS as STEMS
    from .models import EmotionNet as EmotionNet
    from .models import ModelConfig as ModelConfig
    from .models import build_model as build_model
    from .models.onnx import OnnxClassifier as OnnxClassifier
    from .models.onnx import export_onnx as export_onnx
    from .preprocessing import normalize as normalize
    from .preprocessing import to_face_array as to_face_array
    from .recognizer import EmotionRecognizer as EmotionRecognizer
    from .recognizer import FaceEmotion as FaceEmotion
    from .recognizer import Prediction as Prediction
    from .runtime import OnnxModel as OnnxModel
    from .scoring import BatchScorer as BatchScorer
    from .training import Callback as Callback
    from .training import FinetuneResult as FinetuneResult
    from .training import History as History
    from .training import TrainConfig as TrainConfig
    from .training import Trainer as Trainer
    from .training import distillation_loss as distillation_loss
    from .training import finetune as finetune
    from .training import precompute_teacher_targets as precompute_teacher_targets

# Public name -> the submodule that defines it.
_LAZY: dict[str, str] = {
    "as_tensors": "data",
    "AugmentConfig": "augmentation",
    "BatchScorer": "scoring",
    "build_model": "models",
    "Callback": "training",
    "compute_class_weights": "class_weights",
    "detect_faces": "faces",
    "distillation_loss": "training",
    "DlibHogDetector": "faces",
    "emotion_to_index": "labels",
    "EmotionNetError": "errors",
    "EmotionRecognizer": "recognizer",
    "EMOTIONS": "labels",
    "evaluate": "metrics",
    "EvaluationReport": "metrics",
    "export_onnx": "models.onnx",
    "FaceEmotion": "recognizer",
    "FER2013": "data",
    "finetune": "training",
    "FinetuneResult": "training",
    "HaarCascadeDetector": "faces",
    "History": "training",
    "index_to_emotion": "labels",
    "iter_image_paths": "batch",
    "LabelledFolder": "data",
    "ModelConfig": "models",
    "normalize": "preprocessing",
    "NUM_CLASSES": "labels",
    "OnnxClassifier": "models.onnx",
    "OnnxModel": "runtime",
    "PathResult": "batch",
    "plot_confusion_matrix": "metrics",
    "predict_logits": "inference",
    "predict_paths": "batch",
    "predict_proba": "inference",
    "precompute_teacher_targets": "training",
    "Prediction": "recognizer",
    "report_from_predictions": "metrics",
    "SPLITS": "data",
    "STEMS": "models",
    "EmotionNet": "models",
    "to_face_array": "preprocessing",
    "TrainConfig": "training",
    "Trainer": "training",
}

__all__ = [
    "EMOTIONS",
    "FER2013",
    "NUM_CLASSES",
    "SPLITS",
    "STEMS",
    "AugmentConfig",
    "BatchScorer",
    "Callback",
    "DlibHogDetector",
    "EmotionNet",
    "EmotionNetError",
    "EmotionRecognizer",
    "EvaluationReport",
    "FaceEmotion",
    "FinetuneResult",
    "HaarCascadeDetector",
    "History",
    "LabelledFolder",
    "ModelConfig",
    "OnnxClassifier",
    "OnnxModel",
    "PathResult",
    "Prediction",
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
]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use (PEP 562)."""
    if name == "errors":
        return importlib.import_module(f"{__name__}.errors")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
