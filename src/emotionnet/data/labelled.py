r"""Your own faces under your own labels: ``<root>/<label>/<image>``, any label set.

:class:`LabelledFolder` reads a folder holding one sub-folder per label, the sub-folder names
being the labels (``happy/``, ``sad/``, ``contempt/``, ``positive/``...), decodes every image
with the one preprocessing rule of :meth:`~emotionnet.EmotionRecognizer.predict`
(:func:`~emotionnet.images.load_image`, then :func:`~emotionnet.to_face_array` to the
model's input size) and keeps the result in memory as ``uint8`` tensors, ready for the
:class:`~emotionnet.Trainer`, :func:`~emotionnet.evaluate` and :func:`~emotionnet.finetune`.

**Label order** (the class index of each label, documented because a model's outputs follow
it): when every folder names a FER2013 emotion (any case, or an alias such as
``Happiness``), the labels are those canonical names in the canonical FER2013 order of
:data:`~emotionnet.EMOTIONS`; otherwise they are the folder names as they are (stripped of
surrounding white space), sorted (:func:`folder_labels`).

:meth:`LabelledFolder.split` makes a seeded, stratified validation split; with ``groups``
(for example a subject id parsed from each file name by ``group_pattern``) no group is in
both parts.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from emotionnet.data import LabelledFolder
    >>> root = tempfile.TemporaryDirectory()
    >>> for label in ("positive", "negative"):
    ...     Path(root.name, label).mkdir()
    ...     for i in range(4):
    ...         photo = Image.new("RGB", (64, 80), (40 * i, 90, 200))
    ...         photo.save(f"{root.name}/{label}/s{i}_a.png")
    >>> data = LabelledFolder(root.name, group_pattern=r"s(\d+)_")
    >>> data.labels, data.images.shape, data.targets.tolist()
    (('negative', 'positive'), torch.Size([8, 48, 48]), [0, 0, 0, 0, 1, 1, 1, 1])
    >>> train, val = data.split(0.25, seed=0)
    >>> len(train), len(val)
    (6, 2)
    >>> root.cleanup()
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset

from .._checks import check_int
from ..errors import DatasetNotFoundError, InvalidArgumentError, UnknownEmotionError
from ..images import ACCEPTED_FORMATS, load_image
from ..labels import EMOTIONS, emotion_to_index
from ..preprocessing import IMAGE_SIZE, to_face_array, to_grayscale

__all__ = ["LabelledFolder", "folder_labels"]

logger = logging.getLogger("emotionnet.data")  # one logger for the package

IMAGE_SUFFIXES: Final[frozenset[str]] = frozenset(
    suffix for suffix, name in Image.registered_extensions().items() if name in ACCEPTED_FORMATS
)
"""File-name suffixes read as images (those of the formats that
:func:`~emotionnet.images.load_image` decodes), any case; other files in a label folder are
ignored with a warning."""

_JUNK: Final[frozenset[str]] = frozenset({"thumbs.db", "desktop.ini", "__macosx"})
# A label is a name people read in predictions, reports and file names: a letter or digit
# first, then letters, digits, spaces and a few separators, at most 64 characters.
_LABEL_NAME: Final[re.Pattern[str]] = re.compile(r"[^\W_][\w .+'-]{0,63}")
_MAX_LISTED: Final[int] = 5


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in _JUNK


def _check_name(folder: str, root: Path) -> str:
    name = folder.strip()
    if not _LABEL_NAME.fullmatch(name):
        raise InvalidArgumentError(
            f"The folder {str(root / folder)!r} cannot be a label: {folder!r} must start with "
            "a letter or digit and hold only letters, digits, spaces and . + ' - (at most 64 "
            "characters). Rename the folder, or move it out of the data folder."
        )
    return name


def _emotion(name: str) -> str | None:
    try:
        return EMOTIONS[emotion_to_index(name)]
    except UnknownEmotionError:
        return None


def _folder_label_map(folders: Sequence[str], root: Path) -> dict[str, str]:
    """Each folder's label: canonical emotion names when all are emotions, else the names."""
    names = {folder: _check_name(folder, root) for folder in folders}
    emotions = {folder: _emotion(name) for folder, name in names.items()}
    mapping: dict[str, str] = {}
    if all(emotions.values()):
        mapping = {folder: str(emotion) for folder, emotion in emotions.items()}
    else:
        mapping = names
    seen: dict[str, str] = {}
    for folder, label in mapping.items():
        if label in seen:
            raise InvalidArgumentError(
                f"The folders {seen[label]!r} and {folder!r} of {str(root)!r} both stand for "
                f"the label {label!r}; merge them into one folder."
            )
        seen[label] = folder
    return mapping


def folder_labels(names: Sequence[str]) -> tuple[str, ...]:
    """Return the labels of label-folder names, in the documented order.

    When every name is a FER2013 emotion (any case, or an alias of
    :data:`~emotionnet.labels.EMOTION_ALIASES` such as ``Happiness``), the labels are the
    canonical names in :data:`~emotionnet.EMOTIONS` order. Otherwise they are the names as
    they are (stripped of surrounding white space), sorted.

    Args:
        names: The folder names.

    Returns:
        The labels, position = class index.

    Raises:
        InvalidArgumentError: If a name is not a valid label (a letter or digit first, then
            letters, digits, spaces and ``. + ' -``, at most 64 characters), or two folders
            stand for the same label (``happy`` and ``Happiness``).

    Example:
        >>> folder_labels(["Sad", "happiness", "neutral"])
        ('happy', 'sad', 'neutral')
        >>> folder_labels(["sad", "happy", "contempt"])
        ('contempt', 'happy', 'sad')
    """
    labels = set(_folder_label_map(list(names), Path(".")).values())
    if labels <= set(EMOTIONS):
        return tuple(e for e in EMOTIONS if e in labels)
    return tuple(sorted(labels))


class LabelledFolder(Dataset[tuple[Any, int]]):
    r"""A labelled image folder, ``<root>/<label>/<image>``, decoded into memory.

    Images of any size, mode and accepted format (PNG, JPEG, WebP, ...) go through the same
    rule as :meth:`~emotionnet.EmotionRecognizer.predict`: 48x48 grayscale face crops pass
    unchanged, larger face crops are resized as a whole. With ``faces=True`` the largest face
    in each image is detected and cropped as
    :meth:`~emotionnet.EmotionRecognizer.predict_faces` crops it (needs ``emotionnet[face]``
    or ``emotionnet[dlib]``); images without a face are skipped and listed in
    :attr:`no_face`. Images that cannot be read are skipped and listed in
    :attr:`skipped`; both are logged (``emotionnet.data`` logger) with their count.
    Hidden files and folders (``.name``), ``Thumbs.db`` and ``__MACOSX`` are ignored.

    Args:
        root: The folder holding one sub-folder per label.
        labels: The labels and their order, e.g. those of the training folder when reading
            a validation folder; every folder must be one of them (a label may lack a
            folder). ``None``: the folder names, in the order of :func:`folder_labels`.
        size: Side of the square images, the model's ``input_size`` (48).
        faces: Detect the largest face in each image and crop it.
        detector: The face detector with ``faces=True`` (a name or a callable, see
            :func:`~emotionnet.detect_faces`); ``None``: the default one.
        group_pattern: A regular expression searched in each file name (not the folder);
            its first group (or the whole match) is the image's group, for example
            ``r"^(S\d+)_"`` for a subject id. :meth:`split` keeps each group on one side.
        transform: Applied to the PIL image :meth:`__getitem__` returns.

    Attributes:
        images: ``uint8`` tensor ``N x size x size``.
        targets: ``int64`` tensor ``N``, indices into :attr:`labels`.
        labels: The label names, position = class index.
        files: Each image's path relative to ``root`` (posix), in the order of
            :attr:`images`: by label, then by file name.
        groups: Each image's group, or ``None`` without ``group_pattern``.
        skipped: ``(file, reason)`` of the images that could not be read.
        no_face: The files in which ``faces=True`` found no face.

    Raises:
        DatasetNotFoundError: If ``root`` is not a folder.
        InvalidArgumentError: If there are fewer than two label folders, a label folder holds
            no readable image (or no face), a folder name is not a valid label (or not one of
            ``labels``), or a file name does not match ``group_pattern``.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> root = tempfile.TemporaryDirectory()
        >>> for label in ("Happy", "sad"):
        ...     Path(root.name, label).mkdir()
        ...     Image.new("L", (48, 48), 128).save(f"{root.name}/{label}/a.png")
        >>> _ = Path(root.name, "sad", "b.png").write_bytes(b"not an image")
        >>> data = LabelledFolder(root.name)
        >>> data.labels, len(data), [file for file, _ in data.skipped]
        (('happy', 'sad'), 2, ['sad/b.png'])
        >>> image, label = data[1]
        >>> image.size, label
        ((48, 48), 1)
        >>> root.cleanup()
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        labels: Sequence[str] | None = None,
        size: int = IMAGE_SIZE,
        faces: bool = False,
        detector: Any = None,
        group_pattern: str | re.Pattern[str] | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        self.root = Path(root)
        self.size = check_int("size", size, minimum=8, maximum=1024, hint="the model input size")
        self.faces = bool(faces)
        self.transform = transform
        pattern = _compile(group_pattern)
        if not self.root.is_dir():
            raise DatasetNotFoundError(
                f"No data folder at {str(self.root)!r}; pass a folder holding one sub-folder "
                "per label (<folder>/<label>/<image>)."
            )
        folders = self._label_folders()
        if labels is None:
            mapping = _folder_label_map(list(folders), self.root)
            self.labels = folder_labels(list(folders))
            if len(self.labels) < 2:
                found = f"only {list(folders)}" if folders else "none"
                raise InvalidArgumentError(
                    f"{str(self.root)!r} holds {found} as label folders; a classifier needs at "
                    "least two labels. Add a folder per label (<folder>/<label>/<image>)."
                )
        else:
            self.labels = _check_given_labels(labels)
            mapping = {}
            for folder in folders:
                name = _check_name(folder, self.root)
                emotion = _emotion(name)
                as_emotion = emotion in self.labels and name not in self.labels
                mapping[folder] = emotion if as_emotion and emotion is not None else name
        index = {label: i for i, label in enumerate(self.labels)}
        listed: list[tuple[str, int]] = []
        for folder, files in folders.items():
            label = mapping[folder]
            if label not in index:
                raise InvalidArgumentError(
                    f"The folder {str(self.root / folder)!r} is not one of the labels "
                    f"{list(self.labels)}; rename or remove it (a validation folder must use "
                    "the training folder's labels)."
                )
            if not files:
                raise InvalidArgumentError(
                    f"The label folder {str(self.root / folder)!r} holds no image; add images "
                    f"({', '.join(sorted(IMAGE_SUFFIXES)[:6])}, ...) or remove the folder."
                )
            listed += [(f"{folder}/{name}", index[label]) for name in files]
        listed.sort(key=lambda item: (item[1], item[0]))  # by label, then by file
        self.groups: tuple[str, ...] | None = None
        if pattern is not None:
            self.groups = tuple(_group(pattern, file) for file, _ in listed)
        self._decode(listed, detector)

    def _label_folders(self) -> dict[str, list[str]]:
        folders: dict[str, list[str]] = {}
        ignored: list[str] = []
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if _is_junk(entry.name):
                continue
            if not entry.is_dir():
                ignored.append(entry.name)
                continue
            files = folders.setdefault(entry.name, [])
            for file in sorted(os.scandir(entry.path), key=lambda e: e.name):
                if _is_junk(file.name):
                    continue
                if os.path.splitext(file.name)[1].lower() in IMAGE_SUFFIXES and not _is_dir(file):
                    files.append(file.name)
                else:
                    ignored.append(f"{entry.name}/{file.name}")
        if ignored:
            logger.warning(
                "Ignored %d entries of %s that are not images in a label folder (%s%s).",
                len(ignored),
                self.root,
                ", ".join(ignored[:_MAX_LISTED]),
                ", ..." if len(ignored) > _MAX_LISTED else "",
            )
        return folders

    def _decode(self, listed: list[tuple[str, int]], detector: Any) -> None:
        find = _face_finder(detector) if self.faces else None
        logger.info(
            "reading %d images of %d labels from %s%s",
            len(listed),
            len(self.labels),
            self.root,
            " (detecting faces)" if find is not None else "",
        )
        arrays: list[np.ndarray[Any, np.dtype[np.uint8]]] = []
        targets: list[int] = []
        keep: list[int] = []
        self.skipped: list[tuple[str, str]] = []
        self.no_face: list[str] = []
        for position, (file, target) in enumerate(listed):
            try:
                image = load_image(self.root / file)
                if find is not None:
                    face = find(image)
                    if face is None:
                        self.no_face.append(file)
                        continue
                    image = face
                arrays.append(to_face_array(image, self.size))
            except Exception as error:  # any unreadable file is reported by name and skipped
                self.skipped.append((file, f"{type(error).__name__}: {error}"))
                continue
            targets.append(target)
            keep.append(position)
        self._report(len(listed))
        self.files = [listed[i][0] for i in keep]
        if self.groups is not None:
            self.groups = tuple(self.groups[i] for i in keep)
        shape = (0, self.size, self.size)
        self.images = torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(shape).byte()
        self.targets = torch.tensor(targets, dtype=torch.int64)
        counts = self.class_counts()
        present = {listed[i][1] for i in range(len(listed))}
        empty = [self.labels[i] for i in sorted(present) if counts[i] == 0]
        if empty:
            why = "has a face" if self.faces else "could be read"
            raise InvalidArgumentError(
                f"No image in the label folder(s) {empty} of {str(self.root)!r} {why} (see the "
                "warnings above); add readable face images or remove the folder."
            )

    def _report(self, total: int) -> None:
        if self.skipped:
            logger.warning(
                "Skipped %d of %d images in %s that cannot be read: %s%s",
                len(self.skipped),
                total,
                self.root,
                "; ".join(f"{file} ({why})" for file, why in self.skipped[:_MAX_LISTED]),
                "; ..." if len(self.skipped) > _MAX_LISTED else "",
            )
        if self.no_face:
            logger.warning(
                "Skipped %d of %d images in %s with no face found: %s%s",
                len(self.no_face),
                total,
                self.root,
                ", ".join(self.no_face[:_MAX_LISTED]),
                ", ..." if len(self.no_face) > _MAX_LISTED else "",
            )

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image: Any = Image.fromarray(self.images[index].numpy(), mode="L")
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def extra_repr(self) -> str:
        """The lines :func:`repr` adds after the class name."""
        return f"Root location: {self.root}\nLabels: {', '.join(self.labels)}"

    def __repr__(self) -> str:
        lines = [f"Number of datapoints: {len(self)}", *self.extra_repr().splitlines()]
        return "\n".join([f"Dataset {type(self).__name__}"] + ["    " + line for line in lines])

    def class_counts(self) -> torch.Tensor:
        """Return the number of images per label, in :attr:`labels` order."""
        return torch.bincount(self.targets, minlength=len(self.labels))

    def split(
        self, val_fraction: float = 0.2, *, seed: int = 0
    ) -> tuple[Subset[tuple[Any, int]], Subset[tuple[Any, int]]]:
        r"""Split into training and validation parts, stratified by label and seeded.

        Without groups, ``round(val_fraction * n)`` of the ``n`` images of each label, at
        least one and never all, chosen at random, are the validation part. With :attr:`groups`,
        scikit-learn's ``StratifiedGroupKFold`` with ``round(1 / val_fraction)`` folds keeps
        every group on one side and the labels as balanced as the groups allow; the first
        fold is the validation part, so its share is about ``val_fraction``.

        Args:
            val_fraction: Share of the images for validation, in ``(0, 0.5]``.
            seed: Seed of the split: the same seed, the same split.

        Returns:
            ``(train, val)`` :class:`~torch.utils.data.Subset`\ s of this data set (which
            :func:`~emotionnet.as_tensors` reads without decoding).

        Raises:
            InvalidArgumentError: If ``val_fraction`` is out of range, a label has fewer
                than two images, or there are fewer groups than folds. (A label that the
                groups leave out of one part is logged as a warning.)
        """
        from sklearn.model_selection import StratifiedGroupKFold

        fraction = _check_fraction(val_fraction)
        seed = check_int("seed", seed, minimum=0, maximum=2**32 - 1)
        targets = self.targets.numpy()
        counts = np.bincount(targets, minlength=len(self.labels))
        few = [f"{self.labels[i]} ({int(c)})" for i, c in enumerate(counts) if 0 < c < 2]
        if few:
            raise InvalidArgumentError(
                f"The label(s) {', '.join(few)} have fewer than 2 images: a validation split "
                "needs at least one image of each label on each side. Add images, or pass a "
                "separate validation folder (--val DIR)."
            )
        positions = np.arange(len(targets))
        if self.groups is None:
            # Per label, round(fraction * count) images, at least one and never all: on a
            # small, unbalanced folder StratifiedShuffleSplit may leave a label out of one side.
            generator = np.random.default_rng(seed)
            val_parts = []
            for label, count in enumerate(counts.tolist()):
                if count:
                    members = np.flatnonzero(targets == label)
                    take = min(max(1, round(fraction * count)), count - 1)
                    val_parts.append(generator.choice(members, size=take, replace=False))
            val_index = np.concatenate(val_parts)
            train_index = np.setdiff1d(positions, val_index)
        else:
            groups = np.asarray(self.groups)
            folds = max(2, round(1 / fraction))
            distinct = len(set(self.groups))
            if distinct < folds:
                raise InvalidArgumentError(
                    f"group_pattern found {distinct} group(s), too few to hold out about "
                    f"{fraction:.0%} of them for validation (needs at least {folds}); check "
                    "the pattern, or raise val_fraction."
                )
            grouped = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
            train_index, val_index = next(grouped.split(positions, targets, groups))
        present = set(np.flatnonzero(counts).tolist())
        for part, index, consequence in (
            ("validation", val_index, "its metrics cannot judge them"),
            ("training", train_index, "the model will not learn them"),
        ):
            missing = sorted(present - set(targets[index].tolist()))
            if missing:  # possible with groups: a label seen in too few groups
                logger.warning(
                    "The %s part of the split holds no image of %s: %s. Add images of other "
                    "groups, or pass a separate validation folder.",
                    part,
                    [self.labels[i] for i in missing],
                    consequence,
                )
        return (
            Subset(self, sorted(int(i) for i in train_index)),
            Subset(self, sorted(int(i) for i in val_index)),
        )


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _compile(pattern: str | re.Pattern[str] | None) -> re.Pattern[str] | None:
    if pattern is None or isinstance(pattern, re.Pattern):
        return pattern
    if not isinstance(pattern, str):
        raise InvalidArgumentError(
            f"group_pattern must be a regular expression (str), got {type(pattern).__name__}."
        )
    try:
        return re.compile(pattern)
    except re.error as error:
        raise InvalidArgumentError(
            f"group_pattern {pattern!r} is not a valid regular expression ({error})."
        ) from None


def _group(pattern: re.Pattern[str], file: str) -> str:
    name = file.rsplit("/", 1)[-1]
    match = pattern.search(name)
    if match is None:
        raise InvalidArgumentError(
            f"The file name {name!r} ({file}) does not match group_pattern "
            f"{pattern.pattern!r}; every file name must hold its group (e.g. a subject id). "
            "Fix the pattern or rename the file."
        )
    return match.group(1) if pattern.groups else match.group(0)


def _check_given_labels(labels: Sequence[str]) -> tuple[str, ...]:
    if isinstance(labels, str) or not all(isinstance(label, str) for label in labels):
        raise InvalidArgumentError(f"labels must be a sequence of names, got {labels!r}.")
    names = tuple(labels)
    if len(names) < 2 or len(set(names)) != len(names):
        raise InvalidArgumentError(f"labels must be at least two distinct names, got {names}.")
    return names


def _check_fraction(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (0.0 < float(value) <= 0.5)
    ):
        raise InvalidArgumentError(
            f"The validation fraction must be a number in (0, 0.5], got {value!r}; e.g. 0.2 "
            "holds out a fifth of the images."
        )
    return float(value)


def _face_finder(detector: Any) -> Callable[[Image.Image], Image.Image | None]:
    """The largest face of a photo, cropped as ``predict_faces`` crops it."""
    from ..faces import DEFAULT_MARGIN, crop_face, detect_faces, get_detector

    chosen = get_detector(detector)  # a missing detector library fails here, at once

    def find(photo: Image.Image) -> Image.Image | None:
        gray = to_grayscale(photo)
        boxes = detect_faces(gray, detector=chosen, max_faces=1)
        return crop_face(gray, boxes[0], margin=DEFAULT_MARGIN) if boxes else None

    return find
