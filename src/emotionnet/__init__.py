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
# --- models / training (helper: training) ---
# --- metrics (helper: metrics) ---
# --- recognizer (helper: recognizer) ---

__all__ = [
    "EMOTIONS",
    "NUM_CLASSES",
    "EmotionNetError",
    "__version__",
    "emotion_to_index",
    "errors",
    "index_to_emotion",
    "normalize",
    "to_face_array",
]
