"""emotionnet: facial emotion recognition on FER2013 with typed PyTorch building blocks.

Example:
    >>> import emotionnet
    >>> emotionnet.EMOTIONS[:3]
    ('angry', 'disgust', 'fear')
"""

from __future__ import annotations

__version__ = "0.1.0.dev0"

from . import errors as errors
from .errors import EmotionNetError as EmotionNetError
from .labels import EMOTIONS as EMOTIONS
from .labels import NUM_CLASSES as NUM_CLASSES
from .labels import emotion_to_index as emotion_to_index
from .labels import index_to_emotion as index_to_emotion
from .preprocessing import normalize as normalize
from .preprocessing import to_face_array as to_face_array

# --- data (helper: data) ---
# isort: split
from .class_weights import compute_class_weights as compute_class_weights
from .data import FER2013 as FER2013
from .data import SPLITS as SPLITS
from .data import as_tensors as as_tensors

# --- models / training (helper: training) ---
# isort: split
from .augmentation import AugmentConfig as AugmentConfig
from .models import STEMS as STEMS
from .models import ModelConfig as ModelConfig
from .models import build_model as build_model
from .models import resnet18_emotion as resnet18_emotion
from .training import Callback as Callback
from .training import History as History
from .training import TrainConfig as TrainConfig
from .training import Trainer as Trainer

# --- metrics (helper: metrics) ---
# isort: split
from .inference import predict_logits as predict_logits
from .inference import predict_proba as predict_proba
from .metrics import EvaluationReport as EvaluationReport
from .metrics import evaluate as evaluate
from .metrics import plot_confusion_matrix as plot_confusion_matrix
from .metrics import report_from_predictions as report_from_predictions

# --- recognizer (helper: recognizer) ---
# isort: split
from .export import OnnxClassifier as OnnxClassifier
from .export import export_onnx as export_onnx
from .faces import HaarCascadeDetector as HaarCascadeDetector
from .faces import detect_faces as detect_faces
from .recognizer import EmotionRecognizer as EmotionRecognizer
from .recognizer import FaceEmotion as FaceEmotion
from .recognizer import Prediction as Prediction

# isort: split
from .batch import PathResult as PathResult
from .batch import iter_image_paths as iter_image_paths
from .batch import predict_paths as predict_paths

__all__ = [
    "EMOTIONS",
    "FER2013",
    "NUM_CLASSES",
    "SPLITS",
    "STEMS",
    "AugmentConfig",
    "Callback",
    "EmotionNetError",
    "EmotionRecognizer",
    "EvaluationReport",
    "FaceEmotion",
    "HaarCascadeDetector",
    "History",
    "ModelConfig",
    "OnnxClassifier",
    "PathResult",
    "Prediction",
    "TrainConfig",
    "Trainer",
    "__version__",
    "as_tensors",
    "build_model",
    "compute_class_weights",
    "detect_faces",
    "emotion_to_index",
    "errors",
    "evaluate",
    "export_onnx",
    "index_to_emotion",
    "iter_image_paths",
    "normalize",
    "plot_confusion_matrix",
    "predict_logits",
    "predict_paths",
    "predict_proba",
    "report_from_predictions",
    "resnet18_emotion",
    "to_face_array",
]
