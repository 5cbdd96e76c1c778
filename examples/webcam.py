"""Live emotions from a webcam or a video file, smoothed over frames.

    python examples/webcam.py                                  # the default camera
    python examples/webcam.py --video clip.mp4 --output out.mp4
    python examples/webcam.py --show                           # a live window

A thin use of :func:`emotionnet.video.analyze_video`: each frame goes through face detection
and the emotion model; faces are followed from frame to frame by the overlap of their boxes,
and each keeps a moving average of its probabilities (``--smoothing``: the weight of its
history), because one frame's prediction flickers with a blink or a half-turned head. The same
analysis without a window is ``emotionnet video FILE`` (CSV, JSON Lines or JSON out).

Needs OpenCV (``pip install "emotionnet[face]"``). ``--show`` needs an OpenCV build with a GUI
(``pip install opencv-python`` instead of the headless package); ``--output`` works with both.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import cv2

from emotionnet import EmotionRecognizer
from emotionnet.video import analyze_video, annotate_frame


class RememberingCapture:
    """A ``cv2.VideoCapture`` that keeps the last frame it read, to draw on and show it."""

    def __init__(self, capture: Any) -> None:
        self.capture = capture
        self.frame: Any = None

    def read(self) -> tuple[bool, Any]:
        ok, self.frame = self.capture.read()
        return ok, self.frame

    def __getattr__(self, name: str) -> Any:  # grab, get, isOpened, release
        return getattr(self.capture, name)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--camera", type=int, default=0, help="camera index (default: 0)")
    source.add_argument("--video", type=Path, help="read this video file instead of a camera")
    parser.add_argument("--output", type=Path, help="write the annotated video here (.mp4/.avi)")
    parser.add_argument("--show", action="store_true", help="show the annotated frames live")
    parser.add_argument(
        "--smoothing", type=float, default=0.7, help="weight of a face's history, 0 <= s < 1"
    )
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many")
    parser.add_argument("--model", default=None, help="Hub id or local folder (default: bundled)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: automatic)")
    args = parser.parse_args(argv)
    if not 0 <= args.smoothing < 1:
        parser.error(f"--smoothing must be in [0, 1), got {args.smoothing}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    recognizer = EmotionRecognizer.from_pretrained(args.model, device=args.device)
    capture = RememberingCapture(cv2.VideoCapture(str(args.video) if args.video else args.camera))
    if not capture.isOpened():
        what = f"video file {args.video}" if args.video else f"camera {args.camera}"
        raise SystemExit(f"Could not open {what}; check the path or try another --camera index.")
    frames = 0
    window = False
    try:
        for result in analyze_video(
            capture,
            recognizer,
            smoothing=args.smoothing,
            max_frames=args.max_frames,
            annotate=args.output,
        ):
            frames += 1
            faces = ", ".join(
                f"{face.prediction.label} {face.prediction.score:.0%}" for face in result.faces
            )
            print(f"frame {result.index + 1}: {faces or 'no face'}")
            if args.show:
                try:
                    cv2.imshow("emotionnet (q to quit)", annotate_frame(capture.frame, result))
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
        if window:
            cv2.destroyAllWindows()
    written = f", annotated video: {args.output}" if args.output and frames else ""
    print(f"{frames} frame(s) processed{written}")


if __name__ == "__main__":
    main()
