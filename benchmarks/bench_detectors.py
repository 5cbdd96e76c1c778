"""Face detectors compared: recall, false positives and time on composed scenes.

Each scene is a 640x480 picture with 1 to 4 FER2013 PublicTest faces pasted on it (upscaled
from 48 px to 64..200 px, bicubic, with a soft edge), on one of four kinds of background:
random noise, a colour gradient, a texture (blurred noise, stripes and random shapes) or the
example photo ``examples/images/astronaut.jpg`` scaled up 2-3.5x (its own face, when the crop
holds it, is a face to find too; a partly cut one is neither a hit nor a false positive). The
two example photos are scenes as well. A detection is a hit when its box overlaps a face's
pasted square with IoU >= 0.4 (each face matched once, most confident detection first);
every other detection is a false positive.

Printed per detector: recall, false positives per scene, precision, ms per scene (the whole
``detect_faces`` call, one thread) and the emotion accuracy of the FER2013 faces it found
(cropped as ``predict_faces`` crops them; each detector finds different faces); then
recall by face size, by background, and at several ``min_confidence`` values, so a threshold
can be chosen by numbers.

    python benchmarks/bench_detectors.py                  # 160 scenes, about 3 minutes
    python benchmarks/bench_detectors.py --scenes 400 --detectors haar dlib
    python benchmarks/bench_detectors.py --sizes 32 80 --no-accuracy   # small faces
    python benchmarks/bench_detectors.py --detectors dlib-t0 --no-accuracy   # dlib's threshold

Results (default settings: 162 scenes, 428 faces, seed 0; a 2-core machine shared with other
jobs, so the times are rough; the dlib rows' other columns were remeasured at the default
threshold of 0.08, their times are from the same run as haar's):

=========  ======  ============  =========  ============  ================
detector   recall  FP per scene  precision  ms per scene  emotion accuracy
=========  ======  ============  =========  ============  ================
haar        0.678         0.154      0.921           286             0.676
haar-alt2   0.668         0.049      0.973           345             0.675
dlib        0.685         0.012      0.993           198             0.698
dlib-up0    0.598         0.012      0.992            38             0.711
=========  ======  ============  =========  ============  ================

* ``dlib`` (:class:`~emotionnet.faces.DlibHogDetector`, ``upsample=1``) finds as many faces
  as ``haar`` (:class:`~emotionnet.faces.HaarCascadeDetector`, OpenCV's default cascade) with
  a twelfth of the false positives, and is not slower. Faces of 32-80 px (``--sizes 32 80``,
  60 scenes): haar 0.604 / 0.226, dlib 0.577 / 0.032.
* ``dlib-up0`` (``upsample=0``) is 5x faster but misses faces under about 80 px (recall 0.48
  below 100 px against dlib's 0.71; 0.13 at 32-80 px).
* dlib's default ``threshold`` of 0.08 (``dlib-t0``: 0, dlib's own operating point) drops
  the name badge dlib boxes at 0.04 on the example photo. ``dlib-t0`` finds 0.724 of the
  faces with 0.025 FP per scene (seed 1: 0.724 / 0.031; 32-80 px: 0.597 / 0.065); at 0.05,
  0.08, 0.1 it keeps 96.5%, 94.5%, 93.2% of those faces, each removing 2 of its 4 false
  positives (0.005 and the badge's 0.044; the others score 0.31 and 0.81). Badge-like boxes
  score up to 0.07 on the example photo scaled 0.8-3x, hence 0.08 rather than 0.05.
* ``haar-alt2`` (OpenCV's ``haarcascade_frontalface_alt2.xml``) has a third of ``haar``'s false
  positives, but its last-stage weight is useless as a confidence (every box scores about 56).
* Confidence: ``haar`` hits have a median weight of 5.96 (false positives 3.49);
  ``min_confidence=3`` keeps recall 0.629 at 0.086 FP per scene. ``dlib`` hits score a median
  0.89 (false positives 0.56); ``min_confidence=0.25`` keeps 0.600 at 0.012.
* ``dlib-raw`` (dlib's own rectangles, 0.83 of the FER2013 crop and centred lower) on seed 1,
  threshold 0: 0.707 recall, 0.074 FP per scene at IoU >= 0.4 against 0.724 / 0.031 for the
  reframed boxes; emotion accuracy 0.635 against 0.620 (the difference is within noise).

So the default detector (``emotionnet.faces.DEFAULT_DETECTOR``) is ``"auto"``: dlib's HOG
detector when the ``dlib`` extra is installed, else the Haar cascade (the ``face`` extra).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from emotionnet import FER2013, EmotionRecognizer
from emotionnet.faces import (
    DlibHogDetector,
    FaceDetection,
    HaarCascadeDetector,
    crop_face,
    detect_faces,
)
from emotionnet.video import box_iou

Box = tuple[int, int, int, int]
ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "examples" / "images" / "astronaut.jpg"
FACE_PHOTO = ROOT / "examples" / "images" / "astronaut_face.jpg"
# The astronaut's face, annotated by hand in the FER2013 framing (forehead to chin).
PHOTO_FACE: Box = (108, 40, 64, 64)  # in astronaut.jpg (320x320)
FACE_PHOTO_FACE: Box = (22, 24, 100, 100)  # in astronaut_face.jpg (140x140)
WIDTH, HEIGHT = 640, 480
KINDS = ("noise", "gradient", "texture", "photo")
THRESHOLDS: dict[str, tuple[float, ...]] = {
    "haar": (1.0, 2.0, 3.0, 4.0),
    "dlib": (0.05, 0.08, 0.1, 0.25, 0.5),
}


@dataclass
class Scene:
    kind: str
    image: Image.Image
    faces: list[Box]
    ignore: list[Box] = field(default_factory=list)
    labels: list[int | None] = field(default_factory=list)  # FER2013 label of each face


def _background(kind: str, rng: np.random.Generator) -> tuple[Image.Image, list[Box], list[Box]]:
    """A background and the real faces on it (to find; to ignore)."""
    if kind == "noise":
        lo = int(rng.integers(0, 128))
        hi = int(rng.integers(lo + 32, 256))
        channels = 3 if rng.random() < 0.5 else 1
        pixels = rng.integers(lo, hi, (HEIGHT, WIDTH, channels), dtype=np.uint8)
        return (
            Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).convert("RGB"),
            [],
            [],
        )
    if kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
        t = xx * math.cos(angle) + yy * math.sin(angle)
        t = (t - t.min()) / (t.max() - t.min())
        start, end = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        pixels = start + t[..., None] * (end - start) + rng.normal(0, 4, (HEIGHT, WIDTH, 3))
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), [], []
    if kind == "texture":
        noise = rng.integers(0, 256, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8)
        image = Image.fromarray(noise).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
        yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
        period, angle = rng.uniform(6, 40), rng.uniform(0, math.pi)
        stripes = 40 * np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period)
        pixels = np.asarray(image, dtype=np.float64) + stripes[..., None]
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(10, 40))):
            x0, y0 = int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT))
            x1, y1 = x0 + int(rng.integers(5, 120)), y0 + int(rng.integers(5, 120))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            shape = rng.integers(0, 3)
            if shape == 0:
                draw.rectangle((x0, y0, x1, y1), fill=colour)
            elif shape == 1:
                draw.ellipse((x0, y0, x1, y1), fill=colour)
            else:
                draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 6)))
        return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5))), [], []
    # photo: the example photo scaled up, a random 640x480 crop of it
    photo = Image.open(PHOTO).convert("RGB")
    scale = rng.uniform(2.0, 3.5)
    side = round(photo.width * scale)
    big = photo.resize((side, side), Image.Resampling.BICUBIC)
    left, top = int(rng.integers(0, side - WIDTH + 1)), int(rng.integers(0, side - HEIGHT + 1))
    image = big.crop((left, top, left + WIDTH, top + HEIGHT))
    x, y, w, h = (round(v * scale) for v in PHOTO_FACE)
    face = (x - left, y - top, w, h)
    inside = _overlap_area(face, (0, 0, WIDTH, HEIGHT)) / (w * h)
    if inside >= 0.9:
        return image, [_clip(face)], []
    return image, [], ([face] if inside > 0 else [])


def _overlap_area(a: Box, b: Box) -> int:
    w = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return w * h


def _clip(box: Box) -> Box:
    x0, y0 = max(box[0], 0), max(box[1], 0)
    x1, y1 = min(box[0] + box[2], WIDTH), min(box[1] + box[3], HEIGHT)
    return (x0, y0, x1 - x0, y1 - y0)


def _soft_mask(size: int) -> Image.Image:
    """Opaque square with a feathered edge, so the paste seam is not a strong edge."""
    feather = max(2, round(size * 0.06))
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rectangle((feather, feather, size - feather, size - feather), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(feather / 2))


def make_scenes(
    faces: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    count: int,
    *,
    seed: int,
    sizes: tuple[int, int],
) -> list[Scene]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(faces))
    used = 0
    scenes = []
    for number in range(count):
        kind = KINDS[number % len(KINDS)]
        image, real, ignore = _background(kind, rng)
        taken = [*real, *ignore]
        placed: list[Box] = []
        placed_labels: list[int | None] = []
        for _ in range(int(rng.integers(1, 5))):
            size = round(math.exp(rng.uniform(math.log(sizes[0]), math.log(sizes[1]))))
            for _attempt in range(50):
                x = int(rng.integers(0, WIDTH - size + 1))
                y = int(rng.integers(0, HEIGHT - size + 1))
                box = (x, y, size, size)
                grown = (x - size // 4, y - size // 4, size * 3 // 2, size * 3 // 2)
                if all(_overlap_area(grown, other) == 0 for other in taken):
                    break
            else:
                continue  # no room left for a face this size
            face = Image.fromarray(faces[order[used % len(order)]])
            placed_labels.append(int(labels[order[used % len(order)]]))
            used += 1
            image.paste(
                face.resize((size, size), Image.Resampling.BICUBIC).convert("RGB"),
                (x, y),
                _soft_mask(size),
            )
            placed.append(box)
            taken.append(box)
        scenes.append(
            Scene(kind, image, [*real, *placed], ignore, [None] * len(real) + placed_labels)
        )
    whole = Image.open(PHOTO).convert("RGB")
    scenes.append(Scene("example", whole, [PHOTO_FACE], labels=[None]))
    face_photo = Image.open(FACE_PHOTO).convert("RGB")
    scenes.append(Scene("example", face_photo, [FACE_PHOTO_FACE], labels=[None]))
    return scenes


@dataclass
class Outcome:
    """Every detection of a detector on every scene, marked hit or false positive."""

    faces: int = 0
    scenes: int = 0
    seconds: list[float] = field(default_factory=list)
    hits: list[float | None] = field(default_factory=list)  # confidences of hits
    false: list[float | None] = field(default_factory=list)  # ... of false positives
    per_kind: dict[str, list[int]] = field(default_factory=dict)  # kind: [hits, faces, fp]
    per_size: dict[int, list[int]] = field(default_factory=dict)  # bucket: [hits, faces]
    crops: list[Image.Image] = field(default_factory=list)  # hits on FER2013 faces ...
    labels: list[int] = field(default_factory=list)  # ... and their labels


def match(
    found: Sequence[FaceDetection], scene: Scene, iou: float
) -> tuple[list[tuple[FaceDetection, int]], list[float | None]]:
    """The hits (detection, index of the face) and the confidences of false positives."""
    ranked = sorted(found, key=lambda f: -(f.confidence if f.confidence is not None else 0.0))
    free = list(range(len(scene.faces)))
    hits: list[tuple[FaceDetection, int]] = []
    false: list[float | None] = []
    for face in ranked:
        best = max(free, key=lambda i: box_iou(face.box, scene.faces[i]), default=None)
        if best is not None and box_iou(face.box, scene.faces[best]) >= iou:
            free.remove(best)
            hits.append((face, best))
        elif any(box_iou(face.box, other) >= iou for other in scene.ignore):
            continue
        else:
            false.append(face.confidence)
    return hits, false


SIZE_BUCKETS = (100, 150)  # recall is also given for faces < 100, 100-149 and >= 150 px


def _bucket(side: int) -> int:
    return sum(side >= edge for edge in SIZE_BUCKETS)


def run(name: str, detector: Callable[[Any], Any], scenes: list[Scene], iou: float) -> Outcome:
    outcome = Outcome()
    detect_faces(scenes[0].image, detector=detector)  # warm up (lazy imports, allocations)
    for scene in scenes:
        start = time.perf_counter()
        found = detect_faces(scene.image, detector=detector, with_confidence=True)
        outcome.seconds.append(time.perf_counter() - start)
        hits, false = match(found, scene, iou)
        outcome.hits.extend(face.confidence for face, _ in hits)
        outcome.false.extend(false)
        outcome.faces += len(scene.faces)
        outcome.scenes += 1
        tally = outcome.per_kind.setdefault(scene.kind, [0, 0, 0])
        tally[0] += len(hits)
        tally[1] += len(scene.faces)
        tally[2] += len(false)
        for index, truth in enumerate(scene.faces):
            by_size = outcome.per_size.setdefault(_bucket(truth[2]), [0, 0])
            by_size[0] += any(i == index for _, i in hits)
            by_size[1] += 1
        for face, index in hits:
            label = scene.labels[index]
            if label is not None:  # the crop predict_faces classifies
                outcome.crops.append(crop_face(scene.image, face.box))
                outcome.labels.append(label)
    return outcome


def _at(scores: list[float | None], threshold: float | None) -> int:
    if threshold is None:
        return len(scores)
    return sum(1 for s in scores if s is None or s >= threshold)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule]
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append(rule)
    lines.append(rule)
    return "\n".join(lines)


def detectors(names: Sequence[str]) -> dict[str, Callable[[Any], Any]]:
    made: dict[str, Callable[[Any], Any]] = {}
    for name in names:
        try:
            if name == "haar":
                made[name] = HaarCascadeDetector()
            elif name == "haar-n3":
                made[name] = HaarCascadeDetector(min_neighbors=3)
            elif name == "haar-alt2":
                made[name] = HaarCascadeDetector(cascade="haarcascade_frontalface_alt2.xml")
            elif name == "dlib":
                made[name] = DlibHogDetector()
            elif name == "dlib-t0":
                made[name] = DlibHogDetector(threshold=0.0)
            elif name == "dlib-up0":
                made[name] = DlibHogDetector(upsample=0)
            elif name == "dlib-raw":
                made[name] = DlibHogDetector(reframe=False)
            else:
                raise SystemExit(f"unknown detector {name!r}")
        except ImportError as error:  # an extra that is not installed
            print(f"skipping {name}: {error}", file=sys.stderr)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("EMOTIONNET_FER2013", "../shared/data/fer2013")),
    )
    parser.add_argument("--scenes", type=int, default=160, help="composed scenes (160)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iou", type=float, default=0.4, help="IoU of a hit (0.4)")
    parser.add_argument("--sizes", type=int, nargs=2, default=(64, 200), metavar=("MIN", "MAX"))
    parser.add_argument(
        "--detectors",
        nargs="+",
        default=["haar", "haar-alt2", "dlib", "dlib-up0"],
        help="haar, haar-n3 (min_neighbors=3), haar-alt2 (OpenCV's alt2 cascade), dlib, "
        "dlib-t0 (threshold=0, dlib's own operating point), dlib-up0 (upsample=0), dlib-raw "
        "(dlib's own rectangles) (default: haar haar-alt2 dlib dlib-up0)",
    )
    parser.add_argument("--threads", type=int, default=1, help="OpenCV and PyTorch threads (1)")
    parser.add_argument(
        "--no-accuracy",
        action="store_true",
        help="skip the emotion accuracy of the faces found (the bundled model, default TTA)",
    )
    args = parser.parse_args()

    try:
        import cv2

        cv2.setNumThreads(args.threads)
    except ImportError:
        pass
    data = FER2013(args.data, split="public_test")
    faces, labels = data.images.numpy(), data.targets.numpy()
    scenes = make_scenes(faces, labels, args.scenes, seed=args.seed, sizes=tuple(args.sizes))
    total = sum(len(s.faces) for s in scenes)
    print(
        f"{len(scenes)} scenes ({args.scenes} composed + 2 example photos), {total} faces, "
        f"sizes {args.sizes[0]}-{args.sizes[1]} px, IoU >= {args.iou}, seed {args.seed}\n"
    )

    outcomes = {
        name: run(name, detector, scenes, args.iou)
        for name, detector in detectors(args.detectors).items()
    }
    accuracy: dict[str, str] = {}
    if not args.no_accuracy:
        import torch

        torch.set_num_threads(args.threads)
        recognizer = EmotionRecognizer.from_pretrained(device="cpu")
        for name, o in outcomes.items():
            predicted = [p.index for p in recognizer.predict(o.crops)] if o.crops else []
            right = sum(p == label for p, label in zip(predicted, o.labels, strict=True))
            accuracy[name] = f"{right / max(len(predicted), 1):.3f}"
    rows = [["detector", "recall", "FP per scene", "precision", "ms per scene"]]
    if accuracy:
        rows[0].append("emotion accuracy")
    for name, o in outcomes.items():
        found = len(o.hits) + len(o.false)
        rows.append(
            [
                name,
                f"{len(o.hits) / o.faces:.3f}",
                f"{len(o.false) / o.scenes:.3f}",
                f"{len(o.hits) / found:.3f}" if found else "-",
                f"{1000 * statistics.mean(o.seconds):.0f}",
                *([accuracy[name]] if accuracy else []),
            ]
        )
    print(_table(rows))
    if accuracy:
        print(
            "(emotion accuracy: of the FER2013 faces found, cropped as predict_faces "
            "crops them; the faces differ per detector)"
        )

    print("\nrecall by face size:\n")
    rows = [["detector", "< 100 px", "100-149 px", ">= 150 px"]]
    for name, o in outcomes.items():
        cells = []
        for bucket in range(len(SIZE_BUCKETS) + 1):
            hits, count = o.per_size.get(bucket, [0, 0])
            cells.append(f"{hits / max(count, 1):.3f}")
        rows.append([name, *cells])
    print(_table(rows))

    print("\nrecall / false positives per scene, by background:\n")
    kinds = [*KINDS, "example"]
    rows = [["detector", *kinds]]
    for name, o in outcomes.items():
        cells = []
        for kind in kinds:
            hits, count, false = o.per_kind.get(kind, [0, 0, 0])
            scenes_of_kind = sum(1 for s in scenes if s.kind == kind)
            cells.append(f"{hits / max(count, 1):.2f} / {false / max(scenes_of_kind, 1):.2f}")
        rows.append([name, *cells])
    print(_table(rows))

    print("\nwith min_confidence (recall / false positives per scene):\n")
    for name, o in outcomes.items():
        family = "dlib" if name.startswith("dlib") else "haar"
        thresholds: list[float | None] = [None, *THRESHOLDS[family]]
        rows = [["detector", *("none" if t is None else f">= {t:g}" for t in thresholds)]]
        rows.append(
            [
                name,
                *(
                    f"{_at(o.hits, t) / o.faces:.3f} / {_at(o.false, t) / o.scenes:.3f}"
                    for t in thresholds
                ),
            ]
        )
        print(_table(rows))
        hit_scores = sorted(s for s in o.hits if s is not None)
        false_scores = sorted(s for s in o.false if s is not None)
        if hit_scores and false_scores:
            print(
                f"  confidence of hits: median {statistics.median(hit_scores):.2f}, "
                f"10th percentile {np.percentile(hit_scores, 10):.2f}; "
                f"of false positives: median {statistics.median(false_scores):.2f}, "
                f"90th percentile {np.percentile(false_scores, 90):.2f}"
            )
        print()


if __name__ == "__main__":
    main()
