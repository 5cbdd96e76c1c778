"""The seven FER2013 emotions: the single source of truth for label order and names.

FER2013 numbers its classes ``0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise,
6 neutral``. The Kaggle image-folder copy sorts its folders alphabetically, which is a
*different* order; never use a folder's position as its label, always go through
:func:`emotion_to_index`.

Example:
    >>> from emotionnet.labels import EMOTIONS, emotion_to_index, index_to_emotion
    >>> EMOTIONS[3]
    'happy'
    >>> emotion_to_index("Happiness")
    3
    >>> index_to_emotion(6)
    'neutral'
"""

from __future__ import annotations

from typing import Final

from .errors import UnknownEmotionError

__all__ = [
    "EMOTIONS",
    "EMOTION_ALIASES",
    "NUM_CLASSES",
    "emotion_to_index",
    "index_to_emotion",
]

EMOTIONS: Final[tuple[str, ...]] = (
    "angry",
    "disgust",
    "fear",
    "happy",
    "sad",
    "surprise",
    "neutral",
)
"""The seven FER2013 class names in canonical order, position = label index:
``('angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral')``."""

NUM_CLASSES: Final[int] = len(EMOTIONS)
"""The number of FER2013 classes, ``len(EMOTIONS)``: 7."""

EMOTION_ALIASES: Final[dict[str, str]] = {
    "anger": "angry",
    "mad": "angry",
    "disgusted": "disgust",
    "disgusting": "disgust",
    "contempt_disgust": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "unhappy": "sad",
    "surprised": "surprise",
    "surprize": "surprise",
    "neutrality": "neutral",
    "calm": "neutral",
}
"""Other spellings found in folder names and label files, mapped to the canonical name."""

_LOOKUP: Final[dict[str, int]] = {
    **{name: i for i, name in enumerate(EMOTIONS)},
    **{alias: EMOTIONS.index(name) for alias, name in EMOTION_ALIASES.items()},
}


def emotion_to_index(name: str) -> int:
    """Return the canonical label index of an emotion name, alias or folder name.

    Matching ignores case and surrounding white space, and accepts the aliases in
    :data:`EMOTION_ALIASES` (``"Happiness"``, ``"surprised"``, ...).

    Args:
        name: An emotion name such as ``"happy"`` or a folder name such as ``"Surprised"``.

    Returns:
        The index in :data:`EMOTIONS`.

    Raises:
        UnknownEmotionError: If ``name`` is not an emotion or a known alias.

    Example:
        >>> emotion_to_index(" SAD ")
        4
    """
    if not isinstance(name, str):
        raise UnknownEmotionError(
            f"Expected an emotion name as a string, got {type(name).__name__} {name!r}."
        )
    key = name.strip().lower()
    try:
        return _LOOKUP[key]
    except KeyError:
        raise UnknownEmotionError(
            f"Unknown emotion {name!r}. Valid names are {set(EMOTIONS)} "
            f"(aliases: {sorted(EMOTION_ALIASES)}); rename the folder or label to one of them."
        ) from None


def index_to_emotion(index: int) -> str:
    """Return the canonical emotion name of a label index.

    Args:
        index: A label in ``range(7)``.

    Returns:
        The lower-case emotion name.

    Raises:
        UnknownEmotionError: If ``index`` is not an integer in ``range(7)``.

    Example:
        >>> index_to_emotion(0)
        'angry'
    """
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < NUM_CLASSES:
        # numpy and torch integers are accepted through __index__.
        try:
            value = index.__index__()
        except (AttributeError, TypeError):
            value = -1
        if isinstance(index, bool) or not 0 <= value < NUM_CLASSES:
            raise UnknownEmotionError(
                f"Label index {index!r} is out of range: FER2013 labels are the integers "
                f"0..{NUM_CLASSES - 1} ({', '.join(f'{i} {e}' for i, e in enumerate(EMOTIONS))})."
            )
        index = value
    return EMOTIONS[index]
