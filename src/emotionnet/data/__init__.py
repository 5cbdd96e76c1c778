r"""The FER2013 data set in every common on-disk form, and a uniform way to get tensors out.

:class:`FER2013` reads whichever of these it finds under ``root`` (or ``root/fer2013``):

========================  ===========================================================
``source``                on disk
========================  ===========================================================
``"fer2013_csv"``         ``fer2013.csv`` with columns ``emotion,pixels,Usage``
``"icml_csv"``            ``icml_face_data.csv`` (``emotion, Usage, pixels``; the names
                          have leading spaces, which are ignored)
``"folders"``             the Kaggle image folders ``train/<emotion>/*.png``,
                          ``test/<emotion>/PublicTest_*.jpg`` ...
``"challenge_csv"``       the Kaggle challenge files ``train.csv`` (``emotion,pixels``)
                          and ``test.csv`` (``pixels``, no labels)
========================  ===========================================================

With ``source="auto"`` the first one present in that order is used: the CSV files are the
original, lossless data and hold all three usages, the image folders are a re-encoding, and the
challenge files lack the test labels. Pass ``source=`` to pick one explicitly.

Splits (:data:`SPLITS`): ``train``, ``public_test`` and ``private_test`` are the three FER2013
usages (``Training``, ``PublicTest``, ``PrivateTest``); ``test`` is every test image the source
holds, public ones first, then private ones. The standard protocol trains on ``train``, selects
models and hyper-parameters on ``public_test`` and reports ``private_test`` once, at the end.

Decoded images are cached on disk (see :class:`FER2013`), so the second load of a split takes a
fraction of a second; any change to the source files rebuilds the cache.

Layout: :mod:`~emotionnet.data.fer2013` (the data set), :mod:`~emotionnet.data.layout`
(finding the form under a root), :mod:`~emotionnet.data.csvfiles` and
:mod:`~emotionnet.data.folders` (the readers), :mod:`~emotionnet.data.sources` (what a split
reads, its fingerprint), :mod:`~emotionnet.data.cache`, :mod:`~emotionnet.data.tensors`
(:func:`as_tensors`) and :mod:`~emotionnet.data.cli`; :mod:`~emotionnet.data.labelled`
(:class:`LabelledFolder`) reads your own images under any label set.

Run ``python -m emotionnet.data ROOT`` to print the images per split and class of the data
under ``ROOT``.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from emotionnet.data import FER2013
    >>> tmp = tempfile.TemporaryDirectory()
    >>> face = " ".join(["128"] * 48 * 48)
    >>> rows = [f"3,{face},Training", f"6,{face},Training", f"0,{face},PublicTest"]
    >>> _ = Path(tmp.name, "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows))
    >>> train = FER2013(tmp.name, "train", cache=False)
    >>> len(train), train.images.shape, train.targets.tolist()
    (2, torch.Size([2, 48, 48]), [3, 6])
    >>> image, label = train[1]
    >>> image.mode, image.size, label
    ('L', (48, 48), 6)
    >>> FER2013(tmp.name, "public_test", cache=False).class_counts().tolist()
    [1, 0, 0, 0, 0, 0, 0]
    >>> tmp.cleanup()
"""

from __future__ import annotations

from .cache import default_cache_dir
from .cli import main
from .fer2013 import FER2013
from .labelled import LabelledFolder, folder_labels
from .layout import IMAGE_EXTENSIONS, SOURCES, SPLITS
from .tensors import as_tensors

__all__ = [
    "FER2013",
    "IMAGE_EXTENSIONS",
    "SOURCES",
    "SPLITS",
    "LabelledFolder",
    "as_tensors",
    "default_cache_dir",
    "folder_labels",
    "main",
]
