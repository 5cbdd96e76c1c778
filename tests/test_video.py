"""Videos: frames with timestamps, faces tracked and smoothed, a summary, the CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotionnet import EmotionRecognizer
from emotionnet.cli import main
from emotionnet.errors import ImageNotFoundError, InvalidArgumentError, MalformedDataError

cv2 = pytest.importorskip("cv2")
from emotionnet.video import analyze_video, box_iou, summarize_video  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FACE = ROOT / "examples" / "images" / "astronaut_face.jpg"
FPS = 10.0
FRAMES = 12


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-frame, 10 fps clip: the example face moving slowly over a grey background."""
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    face = np.asarray(Image.open(FACE).convert("RGB").resize((120, 120)))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (320, 240))
    for index in range(FRAMES):
        frame = np.full((240, 320, 3), 110, dtype=np.uint8)
        x = 40 + 4 * index
        frame[60:180, x : x + 120] = face[..., ::-1]  # OpenCV writes BGR
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def recognizer(model_dir: Path) -> EmotionRecognizer:
    return EmotionRecognizer.from_pretrained(model_dir, device="cpu", backend="torch", tta="none")


def test_frames_have_indices_timestamps_and_one_tracked_face(
    clip: Path, recognizer: EmotionRecognizer
) -> None:
    frames = list(analyze_video(clip, recognizer, every=3))
    assert [(f.index, f.timestamp) for f in frames] == [(i, i / FPS) for i in (0, 3, 6, 9)]
    assert all(len(f.faces) == 1 for f in frames)
    assert {f.faces[0].track for f in frames} == {0}
    xs = [f.faces[0].box[0] for f in frames]
    assert xs == sorted(xs) and xs[-1] > xs[0]  # the box follows the moving face


def test_fps_picks_the_frame_step(clip: Path, recognizer: EmotionRecognizer) -> None:
    frames = list(analyze_video(clip, recognizer, fps=5, max_frames=3))
    assert [f.index for f in frames] == [0, 2, 4]


def test_smoothing_is_a_moving_average_of_the_frames(
    clip: Path, recognizer: EmotionRecognizer
) -> None:
    raw = list(analyze_video(clip, recognizer, every=4))
    smooth = list(analyze_video(clip, recognizer, every=4, smoothing=0.5))
    labels = recognizer.labels
    expected = np.array([raw[0].faces[0].prediction.probabilities[n] for n in labels])
    for r, s in zip(raw, smooth, strict=True):
        new = np.array([r.faces[0].prediction.probabilities[n] for n in labels])
        expected = new if r is raw[0] else 0.5 * expected + 0.5 * new
        got = np.array([s.faces[0].prediction.probabilities[n] for n in labels])
        np.testing.assert_allclose(got, expected, atol=1e-9)


def test_summary_shares(clip: Path, recognizer: EmotionRecognizer) -> None:
    frames = list(analyze_video(clip, recognizer, every=2))
    summary = summarize_video(frames)
    assert summary.frames == 6 and summary.frames_with_faces == 6 and summary.tracks == 1
    assert summary.duration == pytest.approx(1.0)
    assert sum(summary.emotion_share.values()) == pytest.approx(1.0)
    top = max(summary.emotion_share, key=summary.emotion_share.__getitem__)
    assert summary.emotion_share[top] == pytest.approx(
        sum(f.faces[0].prediction.label == top for f in frames) / 6
    )


def test_an_open_capture_is_read_and_left_open(clip: Path, recognizer: EmotionRecognizer) -> None:
    capture = cv2.VideoCapture(str(clip))
    frames = list(analyze_video(capture, recognizer, max_frames=2))
    assert [f.index for f in frames] == [0, 1] and capture.isOpened()
    capture.release()


def test_bad_sources_and_options(tmp_path: Path, clip: Path) -> None:
    with pytest.raises(ImageNotFoundError, match="No video file"):
        next(analyze_video(tmp_path / "missing.mp4"))
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    with pytest.raises(MalformedDataError, match="not in a video container"):
        next(analyze_video(not_video))
    header_only = tmp_path / "header.avi"  # a container's magic, then nothing OpenCV reads
    header_only.write_bytes(b"RIFF\0\0\0\0AVI LIST" + b"\0" * 64)
    with pytest.raises(MalformedDataError, match="cannot read"):
        next(analyze_video(header_only))
    for options in ({"every": 0}, {"fps": -1.0}, {"every": 2, "fps": 5.0}, {"smoothing": 1.0}):
        with pytest.raises(InvalidArgumentError):
            next(analyze_video(clip, **options))  # type: ignore[arg-type]


def test_box_iou() -> None:
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


def test_cli_csv_rows_per_frame_and_annotated_video(
    clip: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    annotated = tmp_path / "annotated.avi"
    argv = ["video", str(clip), "--every", "2", "--model", str(model_dir), "--tta", "none"]
    assert main([*argv, "--annotate", str(annotated)]) == 0
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["frame"], r["time"]) for r in rows] == [
        (str(i), f"{i / FPS:.3f}") for i in range(0, FRAMES, 2)
    ]
    assert all(r["track"] == "0" and r["emotion"] for r in rows)
    assert "6 frames analysed" in err
    capture = cv2.VideoCapture(str(annotated))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == 6


def test_cli_json_has_frames_and_summary(
    clip: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["video", str(clip), "--fps", "2.5", "--format", "json", "--model", str(model_dir)]
    assert main([*argv, "--quiet"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert [f["frame"] for f in result["frames"]] == [0, 4, 8] and err == ""
    assert result["summary"]["frames"] == 3


def test_cli_missing_video_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["video", "missing.mp4"]) == 2
    assert capsys.readouterr().err.startswith("error: No video file at 'missing.mp4'")


def test_face_filters_pass_through_to_the_recognizer(
    clip: Path, recognizer: EmotionRecognizer
) -> None:
    scored = EmotionRecognizer(
        recognizer.model,
        recognizer.config,
        device="cpu",
        tta="none",
        face_detector=lambda gray: [
            (10, 10, 100, 100, 0.3),
            (150, 20, 60, 60, 2.0),
            (250, 30, 30, 30, 5.0),
        ],
    )
    frames = list(analyze_video(clip, scored, max_frames=2))
    assert [[(f.box, f.confidence) for f in frame.faces] for frame in frames] == [
        [((10, 10, 100, 100), 0.3), ((150, 20, 60, 60), 2.0), ((250, 30, 30, 30), 5.0)]
    ] * 2
    assert frames[0].to_dict()["faces"][0]["confidence"] == 0.3
    filtered = list(analyze_video(clip, scored, max_frames=2, min_face_confidence=1.0, max_faces=1))
    assert [[f.box for f in frame.faces] for frame in filtered] == [[(150, 20, 60, 60)]] * 2
    sized = list(analyze_video(clip, scored, max_frames=1, min_face_size=80))
    assert [f.box for f in sized[0].faces] == [(10, 10, 100, 100)]


@pytest.mark.parametrize(
    "options",
    [{"min_face_size": -1}, {"min_face_confidence": float("nan")}, {"max_faces": 0}],
)
def test_bad_face_filters_are_refused(clip: Path, options: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError, match=next(iter(options))):
        next(analyze_video(clip, **options))  # type: ignore[arg-type]
