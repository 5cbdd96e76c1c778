"""``python -m emotionnet.data ROOT``: the images per split and class of a FER2013 copy."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ..errors import (
    EmotionNetError,
    SplitNotAvailableError,
)
from ..labels import EMOTIONS
from .fer2013 import FER2013
from .layout import SOURCES, SPLITS

__all__ = ["main"]

logger = logging.getLogger("emotionnet.data")  # one logger for the package

# --------------------------------------------------------------------------------------------
# `python -m emotionnet.data ROOT`


def main(argv: Sequence[str] | None = None) -> int:
    r"""Print the images per split and class of the FER2013 data under a folder.

    This is ``python -m emotionnet.data ROOT``: it loads every split the source holds (using
    and filling the cache) and prints one table row per split.

    Args:
        argv: Command-line arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 when the data cannot be read.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> tmp = tempfile.TemporaryDirectory()
        >>> face = " ".join(["1"] * 48 * 48)
        >>> csv_text = f"emotion,pixels,Usage\n3,{face},Training\n4,{face},PublicTest\n"
        >>> _ = Path(tmp.name, "fer2013.csv").write_text(csv_text)
        >>> main([tmp.name, "--no-cache"])  # doctest: +NORMALIZE_WHITESPACE
        FER2013 (fer2013_csv) in ...
        split        images angry disgust fear happy  sad surprise neutral
        train             1     0       0    0     1    0        0       0
        public_test       1     0       0    0     0    1        0       0
        test              1     0       0    0     0    1        0       0
        not held: private_test
        0
        >>> tmp.cleanup()
    """
    parser = argparse.ArgumentParser(
        prog="python -m emotionnet.data",
        description="Print the images per split and class of the FER2013 data under ROOT.",
    )
    parser.add_argument(
        "root",
        nargs="?",
        default=os.environ.get("EMOTIONNET_FER2013"),
        help="folder holding FER2013 (default: $EMOTIONNET_FER2013)",
    )
    parser.add_argument("--source", default="auto", choices=("auto", *SOURCES))
    parser.add_argument("--cache-dir", default=None, help="cache folder (default: see docs)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write a cache")
    parser.add_argument("--on-error", default="raise", choices=("raise", "skip"))
    args = parser.parse_args(argv)
    if args.root is None:
        parser.error("pass ROOT, the folder holding FER2013, or set EMOTIONNET_FER2013")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")

    names = [f"{name:>{max(len(name), 4)}}" for name in EMOTIONS]
    lines = [f"{'split':<12} {'images':>6} " + " ".join(names)]
    missing: list[str] = []
    header = ""
    for split in SPLITS:
        try:
            data = FER2013(
                args.root,
                split,
                source=args.source,
                cache=not args.no_cache,
                cache_dir=args.cache_dir,
                on_error=args.on_error,
            )
        except SplitNotAvailableError:
            missing.append(split)
            continue
        except (EmotionNetError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        header = f"FER2013 ({data.source}) in {data.source_path}"
        row = f"{split:<12} {len(data):>6} "
        if bool((data.targets < 0).any()):
            row += "unlabeled"
        else:
            counts = data.class_counts().tolist()
            row += " ".join(f"{c:>{len(n)}}" for c, n in zip(counts, names, strict=True))
        if data.skipped:
            row += f"  ({len(data.skipped)} skipped)"
        lines.append(row)
    print(header)
    print("\n".join(lines))
    if missing:
        print(f"not held: {', '.join(missing)}")
    return 0
