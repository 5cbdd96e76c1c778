"""The :class:`FER2013` data set: a split of whichever on-disk form is under a root, cached.

See :mod:`emotionnet.data` for the forms, the splits and the cache.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from .._checks import check_choice
from ..errors import (
    MissingLabelsError,
)
from ..labels import EMOTIONS, NUM_CLASSES
from .cache import _cache_file, _read_cache, _write_cache, default_cache_dir
from .layout import SOURCES, SPLITS, _check_md5, _check_workers, _locate, _Problems
from .sources import _plan, _verify_md5

__all__ = ["FER2013"]

logger = logging.getLogger("emotionnet.data")  # one logger for the package

# --------------------------------------------------------------------------------------------
# The dataset


class FER2013(Dataset[tuple[Any, Any]]):
    """The FER2013 facial-expression data set, from any of its common on-disk forms.

    Like :class:`torchvision.datasets.FER2013`, an item is ``(PIL image, label)``: a 48x48
    grayscale (mode ``"L"``) image and its class index in :data:`~emotionnet.labels.EMOTIONS`
    (``0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral``). The whole split
    is also decoded up front into :attr:`images` and :attr:`targets`, for pipelines that
    batch and augment on the GPU (see :func:`as_tensors`).

    **Sources.** Under ``root`` or ``root/fer2013``, ``source="auto"`` takes the first of
    :data:`SOURCES` it finds: ``fer2013.csv``, ``icml_face_data.csv``, the Kaggle image
    folders, the Kaggle challenge's ``train.csv``/``test.csv``. In the image folders, labels
    come from the emotion folder names (any case, aliases such as ``Happiness`` accepted),
    never from a folder's alphabetical position; images that are not 48x48 grayscale go
    through :func:`~emotionnet.preprocessing.to_face_array`, the one resize rule; hidden files,
    ``Thumbs.db`` and ``desktop.ini`` are skipped and other non-image files are logged and
    skipped.

    **Splits.** ``train``, ``public_test`` and ``private_test`` are the FER2013 usages
    (the ``Usage`` column, or the ``Training_``/``PublicTest_``/``PrivateTest_`` file-name
    prefixes in the folders); ``test`` is every test image the source holds, public ones first.
    The standard protocol: train on ``train``, select models and settings on ``public_test``,
    report ``private_test`` once at the end. The challenge's ``test.csv`` has no labels and
    does not say which rows are public or private, so that source holds ``train`` and an
    unlabeled ``test`` (targets ``-1``, items ``(image, None)`` as in torchvision).

    **Order.** Deterministic: CSV row order, or sorted relative paths in the folders.

    **Speed.** Image files are decoded by ``num_workers`` processes, CSV pixels by whole-array
    numpy parsing. With ``cache=True`` the decoded split is saved to a safetensors file in
    ``cache_dir`` (default :func:`default_cache_dir`); the next load of the same split reads
    that file instead. The file is keyed by the source's fingerprint (every image's relative
    path, size and modification time, or the CSV file's size and modification time), the
    split, ``on_error`` and a format version, so any change to the source rebuilds it. It is
    written atomically; an unreadable cache file is logged and rebuilt, never trusted.

    Args:
        root: Folder holding the data set (or a ``fer2013`` sub-folder holding it).
        split: One of :data:`SPLITS`.
        transform: Applied to the PIL image of each item, as in torchvision.
        target_transform: Applied to each label (not to the ``None`` of unlabeled items).
        source: ``"auto"`` or one of :data:`SOURCES`.
        cache: Read and write the on-disk cache.
        cache_dir: Folder of the cache files (default :func:`default_cache_dir`).
        md5: Optional MD5 hex digest of the CSV file the split is read from (``train.csv`` or
            ``test.csv`` for the challenge files), checked on every load. The folder layout
            has no single file to hash: the check is skipped there with a logged warning.
        on_error: ``"raise"`` stops at the first malformed row or undecodable image;
            ``"skip"`` leaves it out, logs it and lists it in :attr:`skipped`.
        num_workers: Processes that decode image files; ``None`` uses every available CPU
            core, ``0`` or ``1`` decodes in this process.

    Attributes:
        images: ``uint8`` tensor ``N x 48 x 48``.
        targets: ``int64`` tensor ``N``; ``-1`` where the source has no labels.
        classes: The class names, :data:`~emotionnet.labels.EMOTIONS`.
        split: The split name.
        source: Which of :data:`SOURCES` was read.
        source_path: The folder the source was found in.
        skipped: One line per item left out with ``on_error="skip"`` (file or CSV line, and
            what was wrong).
        cache_file: The cache file used, or ``None`` with ``cache=False``.

    Raises:
        InvalidArgumentError: If an argument has an unknown value.
        DatasetNotFoundError: If no (or not the requested) source is under ``root``.
        SplitNotAvailableError: If the source does not hold ``split``; the message lists the
            splits it holds.
        UnknownEmotionError: If a folder in ``train/`` or ``test/`` is not an emotion name.
        MalformedDataError: If a CSV file lacks a column, or a row has the wrong number of
            fields or pixels, a non-integer or out-of-range pixel, an unknown emotion code or
            an unknown Usage (the message gives the line number); or the md5 does not match.
        CorruptImageError: If an image file cannot be decoded (the message names it).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> tmp = tempfile.TemporaryDirectory()
        >>> for name, shade in [("Training_0.png", 0), ("Training_1.png", 255)]:
        ...     folder = Path(tmp.name, "train", "Neutral")
        ...     folder.mkdir(parents=True, exist_ok=True)
        ...     Image.new("L", (48, 48), shade).save(folder / name)
        >>> data = FER2013(tmp.name, cache_dir=Path(tmp.name, "cache"))
        >>> data
        Dataset FER2013
            Number of datapoints: 2
            Root location: ...
            Split: train
            Source: folders
        >>> data.targets.tolist(), data.class_counts().tolist()
        ([6, 6], [0, 0, 0, 0, 0, 0, 2])
        >>> FER2013(tmp.name, "private_test", cache=False)
        Traceback (most recent call last):
            ...
        emotionnet.errors.SplitNotAvailableError: Split 'private_test' is not in the image ...
        >>> tmp.cleanup()
    """

    classes: tuple[str, ...] = EMOTIONS

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        *,
        transform: Callable[[Image.Image], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        source: str = "auto",
        cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        md5: str | None = None,
        on_error: str = "raise",
        num_workers: int | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        self.split = check_choice("split", split, SPLITS)
        check_choice("source", source, ("auto", *SOURCES))
        self.on_error = check_choice("on_error", on_error, ("raise", "skip"))
        expected_md5 = _check_md5(md5)
        workers = _check_workers(num_workers)
        self.transform = transform
        self.target_transform = target_transform

        located = _locate(self.root, source)
        self.source: str = located.kind
        self.source_path: Path = located.directory
        plan = _plan(located, self.split)
        if expected_md5 is not None:
            _verify_md5(plan.checksum_file, expected_md5)

        self.cache_file: Path | None = None
        cached = None
        if cache:
            folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
            self.cache_file = _cache_file(folder, located, self.split, self.on_error)
            cached = _read_cache(self.cache_file, plan.fingerprint)
        if cached is None:
            problems = _Problems(self.on_error)
            started = time.perf_counter()
            images, targets = plan.load(problems, workers)
            skipped = problems.skipped
            logger.info(
                "Decoded %d images of FER2013 %s from %s in %.1f s.",
                len(images),
                self.split,
                self.source_path,
                time.perf_counter() - started,
            )
            if self.cache_file is not None:
                _write_cache(self.cache_file, images, targets, plan.fingerprint, skipped)
        else:
            images, targets, skipped = cached
            logger.debug("Loaded FER2013 %s from the cache %s.", self.split, self.cache_file)
            if skipped:
                logger.warning(
                    "%d items of FER2013 %s were skipped as malformed (from the cache); see "
                    "dataset.skipped.",
                    len(skipped),
                    self.split,
                )
        if len(images) == 0:
            logger.warning("FER2013 %s from %s has no images.", self.split, self.source_path)
        self.images: torch.Tensor = torch.from_numpy(images)
        self.targets: torch.Tensor = torch.from_numpy(targets)
        self.skipped: list[str] = skipped

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        """Return ``(image, target)``: a PIL ``"L"`` image and an int (``None`` if unlabeled).

        Both pass through ``transform`` / ``target_transform`` when given.
        """
        image: Any = Image.fromarray(self.images[index].numpy())
        label = int(self.targets[index])
        target: Any = label if label >= 0 else None
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None and target is not None:
            target = self.target_transform(target)
        return image, target

    def class_counts(self) -> torch.Tensor:
        r"""Return the number of images of each class.

        Returns:
            An ``int64`` tensor of shape ``(7,)``, in :data:`~emotionnet.labels.EMOTIONS` order.

        Raises:
            MissingLabelsError: If the split has unlabeled images (the challenge's test.csv).

        Example:
            >>> import tempfile
            >>> from pathlib import Path
            >>> tmp = tempfile.TemporaryDirectory()
            >>> face = " ".join(["9"] * 48 * 48)
            >>> _ = Path(tmp.name, "train.csv").write_text(f"emotion,pixels\n5,{face}\n5,{face}\n")
            >>> FER2013(tmp.name, cache=False).class_counts()
            tensor([0, 0, 0, 0, 0, 2, 0])
            >>> tmp.cleanup()
        """
        unlabeled = int((self.targets < 0).sum())
        if unlabeled:
            raise MissingLabelsError(
                f"{unlabeled} of the {len(self)} images of split {self.split!r} "
                f"({self.source} in {str(self.source_path)!r}) have no label, so there are no "
                "class counts. The challenge's test.csv is unlabeled: count classes on 'train', "
                "or use fer2013.csv / icml_face_data.csv, which label every split."
            )
        return torch.bincount(self.targets, minlength=NUM_CLASSES)

    def extra_repr(self) -> str:
        """Return the dataset-specific lines of ``repr``, as torchvision's ``extra_repr``."""
        lines = [f"Split: {self.split}", f"Source: {self.source}"]
        if self.skipped:
            lines.append(f"Skipped: {len(self.skipped)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        body = [f"Number of datapoints: {len(self)}", f"Root location: {self.root}"]
        body += self.extra_repr().splitlines()
        if self.transform is not None:
            body += f"Transform: {self.transform!r}".splitlines()
        if self.target_transform is not None:
            body += f"Target transform: {self.target_transform!r}".splitlines()
        return "\n".join([f"Dataset {type(self).__name__}"] + ["    " + line for line in body])
