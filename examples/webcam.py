"""Live emotions from a webcam or a video file, smoothed over frames.

    python examples/webcam.py                                  # the default camera
    python examples/webcam.py --video clip.mp4 --output out.mp4
    python examples/webcam.py --show                           # a live window

Each frame goes through face detection and the emotion model. A single frame's prediction
flickers (a blink, a half-turned head), so each face keeps an exponential moving average of its
probabilities over the frames it appears in: ``smoothed = a * new + (1 - a) * smoothed``, with
``a`` set by ``--smoothing``. Faces are followed from frame to frame by the overlap of their
boxes.

Needs OpenCV (``pip install "emotionnet[face]"``). ``--show`` needs an OpenCV build with a GUI
(``pip install opencv-python`` instead of the headless package); ``--output`` works with both.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emotionnet import EMOTIONS, EmotionRecognizer


@dataclass
class Track:
    """A face followed over frames, with its smoothed probabilities."""

    box: tuple[int, int, int, int]
    probabilities: np.ndarray
    missed: int = 0


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    return inter / float(aw * ah + bw * bh - inter) if inter else 0.0


class Smoother:
    """Exponential smoothing of each face's probabilities across frames."""

    def __init__(self, alpha: float, min_iou: float = 0.3, max_missed: int = 5) -> None:
        self.alpha = alpha
        self.min_iou = min_iou
        self.max_missed = max_missed
        self.tracks: list[Track] = []

    def update(self, detections: list[tuple[tuple[int, int, int, int], np.ndarray]]) -> list[Track]:
        """Match this frame's faces to the tracks, blend their probabilities, return them."""
        unmatched = list(self.tracks)
        current: list[Track] = []
        for box, probabilities in detections:
            best = max(unmatched, key=lambda t: iou(t.box, box), default=None)
            if best is not None and iou(best.box, box) >= self.min_iou:
                unmatched.remove(best)
                best.box = box
                best.probabilities = (
                    self.alpha * probabilities + (1 - self.alpha) * best.probabilities
                )
                best.missed = 0
                current.append(best)
            else:  # a face we have not seen: start from this frame's prediction
                current.append(Track(box, probabilities))
        # Keep briefly lost faces (a missed detection) so their history survives a frame or two.
        for track in unmatched:
            track.missed += 1
        self.tracks = current + [t for t in unmatched if t.missed <= self.max_missed]
        return current


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--camera", type=int, default=0, help="camera index (default: 0)")
    source.add_argument("--video", type=Path, help="read this video file instead of a camera")
    parser.add_argument("--output", type=Path, help="write the annotated video here (.mp4/.avi)")
    parser.add_argument("--show", action="store_true", help="show the annotated frames live")
    parser.add_argument(
        "--smoothing", type=float, default=0.3, help="weight of the newest frame, 0 < a <= 1"
    )
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many")
    parser.add_argument("--model", default=None, help="Hub id or local folder (default: bundled)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: automatic)")
    args = parser.parse_args(argv)
    if not 0 < args.smoothing <= 1:
        parser.error(f"--smoothing must be in (0, 1], got {args.smoothing}")
    return args


def draw(frame: np.ndarray, tracks: list[Track]) -> None:
    """Box and label each face on the BGR frame, in place."""
    for track in tracks:
        x, y, w, h = track.box
        index = int(track.probabilities.argmax())
        text = f"{EMOTIONS[index]} {track.probabilities[index]:.0%}"
        cv2.rectangle(frame, (x, y), (x + w, y + h), (64, 64, 255), 2)
        cv2.putText(
            frame, text, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (64, 64, 255), 2
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    recognizer = EmotionRecognizer.from_pretrained(args.model, device=args.device)

    capture = cv2.VideoCapture(str(args.video) if args.video else args.camera)
    if not capture.isOpened():
        what = f"video file {args.video}" if args.video else f"camera {args.camera}"
        raise SystemExit(f"Could not open {what}; check the path or try another --camera index.")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0

    smoother = Smoother(args.smoothing)
    writer = None
    window = False
    frames = 0
    try:
        while args.max_frames is None or frames < args.max_frames:
            ok, frame = capture.read()
            if not ok:  # end of the video, or the camera went away
                break
            frames += 1
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)  # OpenCV frames are BGR
            faces = recognizer.predict(rgb, faces=True)
            detections = [
                (face.box, np.array([face.prediction.probabilities[e] for e in EMOTIONS]))
                for face in faces
            ]
            tracks = smoother.update(detections)
            summary = ", ".join(
                f"{EMOTIONS[int(t.probabilities.argmax())]} {t.probabilities.max():.0%}"
                for t in tracks
            )
            print(f"frame {frames}: {summary or 'no face'}")

            if args.output or args.show:
                draw(frame, tracks)
            if args.output:
                if writer is None:
                    fourcc = "MJPG" if args.output.suffix.lower() == ".avi" else "mp4v"
                    height, width = frame.shape[:2]
                    writer = cv2.VideoWriter(
                        str(args.output), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height)
                    )
                writer.write(frame)
            if args.show:
                try:
                    cv2.imshow("emotionnet (q to quit)", frame)
                except cv2.error:
                    raise SystemExit(
                        "This OpenCV has no GUI (opencv-python-headless). Install opencv-python "
                        "for --show, or write the annotated video with --output."
                    ) from None
                window = True
                if cv2.waitKey(1) & 0xFF == ord("q"):
                    break
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if window:
            cv2.destroyAllWindows()
    print(f"{frames} frame(s) processed" + (f", annotated video: {args.output}" if writer else ""))


if __name__ == "__main__":
    main()
