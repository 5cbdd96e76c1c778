"""Never lose a user's file (issue 27): outputs that are inputs, partial writes, file names.

Each command that writes refuses an output that is one of its inputs (also through links)
before writing anything; results and annotated videos appear complete or not at all; file
names that are not UTF-8, hold control characters or look like spreadsheet formulas never
stop a batch nor reach a terminal or a spreadsheet raw; a closed pipe ends quietly.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from emotionnet._io import check_outputs
from emotionnet.cli import _csv_text, _model_inputs, _shown, build_parser, main
from emotionnet.errors import InvalidArgumentError

ROOT = Path(__file__).resolve().parent.parent
FACE = ROOT / "examples" / "images" / "astronaut_face.jpg"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "face.jpg"
    shutil.copyfile(FACE, path)
    return path


@pytest.fixture
def own_model(model_dir: Path, tmp_path: Path) -> Path:
    """A copy of the test model: a test that fails must not destroy the session's model."""
    return Path(shutil.copytree(model_dir, tmp_path / "model"))


# ---- 1. an output that is an input is refused before anything is written ----------------


def aliases(path: Path) -> dict[str, Path]:
    """Other names of ``path``: itself, through ``..``, a symbolic link, a hard link."""
    folder = path.parent
    (folder / "sub").mkdir(exist_ok=True)
    link = folder / f"link-{path.name}"
    link.symlink_to(path)
    hard = folder / f"hard-{path.name}"
    os.link(path, hard)
    return {
        "same": path,
        "dotdot": folder / "sub" / ".." / path.name,
        "symlink": link,
        "hardlink": hard,
    }


def test_predict_output_that_is_an_input_image_is_refused(
    image: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = image.read_bytes()
    for kind, alias in aliases(image).items():
        for fmt in ("csv", "json", "table"):
            argv = ["predict", str(image), "--format", fmt, "-o", str(alias)]
            code, _, err = run([*argv, "--model", str(model_dir)], capsys)
            assert code == 2, (kind, fmt, err)
            assert str(alias) in err and str(image) in err, err
            assert image.read_bytes() == before, kind
    # A folder given as input: the images inside it are inputs too.
    code, _, err = run(
        ["predict", str(image.parent), "-o", str(image), "--model", str(model_dir)], capsys
    )
    assert code == 2 and image.read_bytes() == before


def test_outputs_that_are_model_files_are_refused(
    image: Path, own_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights, config = own_model / "model.safetensors", own_model / "config.json"
    before = weights.read_bytes(), config.read_bytes()
    link = own_model.parent / "weights.onnx"
    link.symlink_to(weights)
    cases = [
        ["predict", str(image), "-o", str(weights)],
        ["predict", str(image), "--format", "json", "-o", str(config)],
        ["export", "--onnx", str(link)],
        ["evaluate", "--data", str(image.parent), "--plot", str(weights)],
    ]
    for argv in cases:
        code, _, err = run([*argv, "--model", str(own_model)], capsys)
        assert code == 2, (argv, err)
        assert "destroy" in err, err
    assert (weights.read_bytes(), config.read_bytes()) == before


def test_predict_refuses_the_model_folders_onnx_graph_but_export_may_rewrite_it(
    image: Path, own_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    graph = own_model / "model.onnx"
    graph.write_bytes(b"the graph")
    argv = ["predict", str(image), "-o", str(graph), "--model", str(own_model)]
    code, _, err = run(argv, capsys)
    assert code == 2 and "destroy" in err and graph.read_bytes() == b"the graph"
    pytest.importorskip("onnx")
    code, _, err = run(["export", "--onnx", str(graph), "--model", str(own_model)], capsys)
    assert code == 0, err
    assert graph.read_bytes()[:9] != b"the graph"


def test_export_refuses_a_name_without_onnx(
    own_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p.name: p.read_bytes() for p in own_model.iterdir()}
    for name in ("model.safetensors", "graph", "graph.onnx.bak"):
        code, _, err = run(
            ["export", "--onnx", str(own_model / name), "--model", str(own_model)], capsys
        )
        assert code == 2 and ".onnx" in err, err
    assert {p.name: p.read_bytes() for p in own_model.iterdir()} == before


def test_evaluate_plot_inside_the_data_folder_is_refused(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "fer2013"
    data.mkdir()
    table = data / "fer2013.csv"
    table.write_text("emotion,pixels,Usage\n")
    elsewhere = tmp_path / "table-link.csv"
    os.link(table, elsewhere)  # a hard link outside the folder is found too
    for plot in (table, elsewhere):
        code, _, err = run(
            ["evaluate", "--data", str(data), "--plot", str(plot), "--model", str(model_dir)],
            capsys,
        )
        assert code == 2 and str(data) in err, err
    assert table.read_text() == "emotion,pixels,Usage\n"


def test_the_bundled_model_files_are_inputs_of_every_command() -> None:
    args = build_parser().parse_args(["predict", "a.jpg"])
    files = [Path(p) for p in _model_inputs(args)]
    assert [p.name for p in files] == ["config.json", "model.safetensors", "model.onnx"]
    assert all(p.parent.parts[-2:] == ("weights", "default") for p in files)


def test_check_outputs_compares_outputs_with_each_other(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(InvalidArgumentError, match=r"--annotate .* and --output .* same file"):
        check_outputs({"--output": out, "--annotate": tmp_path / "sub" / ".." / "out.mp4"}, [])
    check_outputs({"--output": out, "--annotate": tmp_path / "other.mp4"}, [])
    check_outputs({"--output": None}, [out])
    # A missing input and an output that does not exist yet are never a conflict.
    check_outputs({"--output": out}, [tmp_path / "missing.jpg"])


# ---- 2. results appear whole or not at all -----------------------------------------------


def fake_predict(
    monkeypatch: pytest.MonkeyPatch,
    then: BaseException | None = None,
    labels: tuple[str, ...] = ("a", "b"),
) -> None:
    """cli._load gives a stand-in model; predict_paths yields an error record per path, or
    only the first one and then raises ``then``."""
    import emotionnet.batch
    import emotionnet.cli
    from emotionnet.batch import PathResult

    monkeypatch.setattr(
        emotionnet.cli, "_load", lambda args: SimpleNamespace(labels=labels, max_faces=None)
    )

    def predict_paths(recognizer: Any, paths: Any, **kwargs: Any) -> Any:
        for path in paths if then is None else paths[:1]:
            yield PathResult(str(path), error=OSError("unreadable"))
        if then is not None:
            raise then

    monkeypatch.setattr(emotionnet.batch, "predict_paths", predict_paths)


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "table"])
@pytest.mark.parametrize("failure", [KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_interrupted_or_failed_results_keep_the_previous_file(
    fmt: str,
    failure: BaseException,
    image: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_predict(monkeypatch, failure)
    out = tmp_path / "results.out"
    out.write_text("previous results\n")
    code, _, _ = run(["predict", str(image), str(image), "--format", fmt, "-o", str(out)], capsys)
    assert code in (2, 130)
    assert out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.jpg", "results.out"]


def test_results_through_a_link_update_its_target(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_predict(monkeypatch)
    target = tmp_path / "runs" / "latest.json"
    target.parent.mkdir()
    target.write_text("[]")
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    code, _, _ = run(["predict", str(image), "--json", "-o", str(link)], capsys)
    assert code == 1 and link.is_symlink()
    assert json.loads(target.read_text())[0]["image"] == str(image)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes as on POSIX")
def test_results_to_a_named_pipe_are_written_through_it(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading

    fake_predict(monkeypatch)
    fifo = tmp_path / "results.pipe"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    code, _, err = run(["predict", str(image), "--format", "jsonl", "-o", str(fifo)], capsys)
    reader.join(timeout=30)
    assert code == 1, err  # the stand-in model fails every image
    assert json.loads(received[0])["image"] == str(image)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # not replaced by a regular file


def test_results_in_a_missing_folder_are_a_clear_error(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_predict(monkeypatch)
    out = tmp_path / "no-such-folder" / "out.csv"
    code, _, err = run(["predict", str(image), "-o", str(out)], capsys)
    assert code == 2 and "no-such-folder' does not exist" in err and ".tmp" not in err


FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    from types import SimpleNamespace
    import cv2, numpy as np
    from emotionnet.video import analyze_video

    clip, out = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(clip, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    for _ in range(30):  # noise: every frame is a large JPEG
        writer.write(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    writer.release()
    recognizer = SimpleNamespace(
        labels=("a", "b"), max_faces=None, predict_faces=lambda *a, **k: [[]]
    )
    # A file size limit stands in for a full disk: writes past it fail with EFBIG.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))
    try:
        frames = list(analyze_video(clip, recognizer, annotate=out))
    except OSError as error:
        print("OSError:", error)
    else:
        print("wrote", len(frames), "frames")
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_annotated_video_on_a_full_disk_fails_and_keeps_the_previous_file(
    suffix: str, tmp_path: Path
) -> None:
    pytest.importorskip("cv2")
    out = tmp_path / f"annotated{suffix}"
    out.write_bytes(b"previous video")
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tmp_path / "clip.avi"), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert "OSError: The annotated video" in result.stdout, result.stdout + result.stderr
    assert "could not be written completely" in result.stdout
    assert out.read_bytes() == b"previous video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated" + suffix, "clip.avi"]


# ---- 3. file names: not UTF-8, control characters, formulas -------------------------------


def names_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Images whose names are not UTF-8, hold ESC/newlines/bidi overrides, or are formulas."""
    folder = tmp_path / "photos"
    folder.mkdir()
    names = {
        "latin1": os.fsdecode(b"caf\xe9.png"),  # surrogate-escaped: \udce9
        "escape": "red\x1b[31m.png",
        "newline": "two\nlines.png",
        "bidi": "gnp\u202e.png",
        "formula": "=HYPERLINK(1).png",
        "plus": "+cmd.png",
        "at": "@SUM(A1).png",
        "minus_space": "  -2+3.png",
        "tab": "\t=1.png",
    }
    for name in names.values():
        Image.new("L", (48, 48), 100).save(os.path.join(os.fsencode(folder), os.fsencode(name)))
    return folder, names


def test_names_that_are_not_utf8_or_formulas_in_csv_and_table(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, names = names_folder(tmp_path)
    out = tmp_path / "out.csv"
    argv = ["predict", str(folder), "--model", str(model_dir), "--tta", "none"]
    code, _, err = run([*argv, "--format", "csv", "-o", str(out)], capsys)
    assert code == 0, err
    with open(out, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    cells = {row[0] for row in rows[1:]}
    assert len(cells) == len(names)
    shown = {Path(cell.lstrip("'")).name for cell in cells}
    assert "caf\\xe9.png" in shown and "red\\x1b[31m.png" in shown and "gnp\\u202e.png" in shown
    for cell in cells:
        assert "\x1b" not in cell and "\n" not in cell and "\u202e" not in cell
    # Every path is absolute here (it starts with "/"), so the formula is later in the cell;
    # as a bare name (predict run inside the folder) it would be first: see the unit test.
    code, out_text, err = run([*argv, "--format", "table"], capsys)
    assert code == 0, err
    assert "\x1b" not in out_text and "\u202e" not in out_text
    assert "caf\\xe9.png" in out_text and "two\\x0alines.png" in out_text
    assert len(out_text.strip().splitlines()) == 1 + len(names)


def test_json_keeps_names_exact(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, names = names_folder(tmp_path)
    out = tmp_path / "out.json"
    argv = ["predict", str(folder), "--model", str(model_dir), "--tta", "none", "--json"]
    code, _, err = run([*argv, "-o", str(out)], capsys)
    assert code == 0, err
    found = {Path(record["image"]).name for record in json.loads(out.read_text())}
    assert found == set(names.values())


def test_formula_names_are_neutralised_relative_to_the_folder(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    folder, names = names_folder(tmp_path)
    monkeypatch.chdir(folder)
    formulas = [names[k] for k in ("formula", "plus", "at", "minus_space", "tab")]
    code, out, err = run(
        ["predict", *formulas, "--model", str(model_dir), "--tta", "none", "--format", "csv"],
        capsys,
    )
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))[1:]
    assert [row[0] for row in rows] == [
        "'=HYPERLINK(1).png",
        "'+cmd.png",
        "'@SUM(A1).png",
        "'  -2+3.png",
        "\\x09=1.png",  # the tab is shown escaped: a backslash never starts a formula
    ]
    assert all(row[7] and row[7][0] not in "=+-@" for row in rows)  # the emotion cell


@given(st.text())
def test_csv_cells_are_never_formulas_and_terminal_text_never_raw(text: str) -> None:
    cell = _csv_text(text)
    assert cell.lstrip()[:1] not in ("=", "+", "-", "@")
    assert cell[:1] not in ("\t", "\r")
    assert cell in (_shown(text), "'" + _shown(text))
    shown = _shown(text)
    shown.encode("utf-8")  # never a surrogate
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in shown)


def test_shown_writes_undecodable_bytes_as_hex() -> None:
    assert _shown(os.fsdecode(b"a\xff\xfe.png")) == "a\\xff\\xfe.png"
    assert _shown("é ok.png") == "é ok.png"
    assert _shown("a\u2028b") == "a\\u2028b"


# ---- 4. video options, frames, faces, playlists, frame rates --------------------------------


cv2 = pytest.importorskip("cv2")


def write_clip(path: Path, fps: float, size: tuple[int, int] = (64, 48), frames: int = 4) -> Path:
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened()
    for index in range(frames):
        writer.write(np.full((size[1], size[0], 3), 20 * index, dtype=np.uint8))
    writer.release()
    return path


class Recorder:
    """A stand-in recognizer: records what each predict_faces call received, finds no faces."""

    labels = ("a", "b")

    def __init__(self, max_faces: int | None = None) -> None:
        self.max_faces = max_faces
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def predict_faces(self, image: Any, **kwargs: Any) -> list[list[Any]]:
        self.calls.append((image, kwargs))
        return [[]]


def test_absurd_fps_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from emotionnet.video import analyze_video

    clip = write_clip(tmp_path / "clip.avi", 10.0)
    with pytest.raises(InvalidArgumentError, match="fps 1e-310 is far below"):
        next(analyze_video(clip, Recorder(), fps=1e-310))
    for bad in ("nan", "inf", "-1", "0"):
        with pytest.raises(SystemExit) as exit_info:
            main(["video", str(clip), "--fps", bad])
        assert exit_info.value.code == 2
        assert "--fps" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["video", str(clip), "--smoothing", "nan"])
    assert "finite" in capsys.readouterr().err


def test_large_frames_are_reduced_like_image_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import emotionnet.images
    from emotionnet.images import original_size
    from emotionnet.video import analyze_video

    clip = write_clip(tmp_path / "clip.avi", 10.0, size=(320, 240), frames=2)
    monkeypatch.setattr(emotionnet.images, "MAX_WORKING_SIDE", 100)
    recorder = Recorder()
    list(analyze_video(clip, recorder))
    image = recorder.calls[0][0]
    assert image.size == (80, 60)  # the factor ceil(320 / 100) = 4, as for an image file
    assert original_size(image) == (320, 240)  # boxes come back in the frame's pixels


def test_frames_larger_than_the_pixel_limit_are_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import emotionnet.images
    from emotionnet.errors import InvalidImageError
    from emotionnet.video import analyze_video

    clip = write_clip(tmp_path / "clip.avi", 10.0)
    monkeypatch.setattr(emotionnet.images, "MAX_IMAGE_PIXELS", 1000)
    recorder = Recorder()
    with pytest.raises(InvalidImageError, match="64x48"):
        next(analyze_video(clip, recorder))
    assert recorder.calls == []


def test_video_bounds_the_faces_per_frame(tmp_path: Path) -> None:
    from emotionnet.video import VIDEO_MAX_FACES, analyze_video

    clip = write_clip(tmp_path / "clip.avi", 10.0, frames=1)
    recorder = Recorder()
    list(analyze_video(clip, recorder))
    assert recorder.calls[0][1]["max_faces"] == VIDEO_MAX_FACES == 32
    own = Recorder(max_faces=5)  # the recognizer's own setting is kept
    list(analyze_video(clip, own))
    assert own.calls[0][1]["max_faces"] is None
    list(analyze_video(clip, recorder, max_faces=100))
    assert recorder.calls[-1][1]["max_faces"] == 100


def reference_update(tracker: Any, faces: list[Any]) -> list[int]:
    """The tracker's matching rule, one box_iou call at a time (the old code)."""
    from emotionnet.video import _Track, box_iou

    unmatched = list(tracker.tracks)
    numbers = []
    for box, probabilities, _ in faces:
        best = max(unmatched, key=lambda t: box_iou(t.box, box), default=None)
        if best is not None and box_iou(best.box, box) >= tracker.min_iou:
            unmatched.remove(best)
            best.box = box
            best.missed = 0
            numbers.append(best.number)
        else:
            tracker.tracks.append(_Track(tracker.count, box, probabilities))
            numbers.append(tracker.count)
            tracker.count += 1
    return numbers


boxes = st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(1, 30), st.integers(1, 30))


@given(st.lists(st.lists(boxes, max_size=12), min_size=1, max_size=4))
def test_vectorised_tracker_matches_the_pairwise_rule(frames: list[list[Any]]) -> None:
    from emotionnet.video import _Tracker

    fast, slow = _Tracker(0.0, 0.3, max_missed=100), _Tracker(0.0, 0.3, max_missed=100)
    for frame in frames:
        faces = [(box, np.array([1.0, 0.0]), None) for box in frame]
        got = [track.number for track in fast.update(faces)]
        # The reference keeps every track (max_missed=100 above: none expires here).
        assert got == reference_update(slow, faces)


def test_tracker_follows_many_faces(tmp_path: Path) -> None:
    from emotionnet.video import _Tracker

    tracker = _Tracker(0.0, 0.3)
    grid = [(x * 20, y * 20, 16, 16) for x in range(30) for y in range(30)]
    first = tracker.update([(box, np.array([1.0]), None) for box in grid])
    moved = [((x + 1, y + 1, w, h), np.array([1.0]), None) for x, y, w, h in grid]
    second = tracker.update(moved)
    assert [t.number for t in second] == [t.number for t in first] == list(range(900))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("list.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nclip.avi\n#EXT-X-ENDLIST\n"),
        ("list.mp4", "ffconcat version 1.0\nfile 'clip.avi'\n"),
        ("notes.avi", "just text"),
    ],
)
def test_playlists_and_other_non_videos_are_refused(
    name: str, content: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from emotionnet.errors import MalformedDataError
    from emotionnet.video import analyze_video

    write_clip(tmp_path / "clip.avi", 10.0)
    playlist = tmp_path / name
    playlist.write_text(content)
    recorder = Recorder()
    with pytest.raises(MalformedDataError, match=r"playlist|video container"):
        next(analyze_video(playlist, recorder))
    assert recorder.calls == []


def test_container_frame_rates_below_one_and_broken(tmp_path: Path, caplog: Any) -> None:
    from emotionnet.video import _frame_rate, analyze_video

    assert _frame_rate(0.5) == 0.5
    for broken in (0.0, -3.0, float("nan"), float("inf"), 1e9, None):
        assert _frame_rate(broken) == 25.0
    clip = write_clip(tmp_path / "slow.mp4", 1.0, frames=3)
    out = tmp_path / "annotated.avi"
    frames = list(analyze_video(clip, Recorder(), fps=0.25, annotate=out))
    assert [f.index for f in frames] == [0]  # one frame in four
    assert "gets 1 frame a second, not 0.25" in caplog.text
    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(1.0)
    assert capture.read()[0]
    capture.release()


def test_annotated_video_is_renamed_when_the_caller_stops_early(tmp_path: Path) -> None:
    from emotionnet.video import analyze_video

    clip = write_clip(tmp_path / "clip.avi", 10.0, frames=6)
    out = tmp_path / "annotated.mp4"
    frames = analyze_video(clip, Recorder(), annotate=out)
    next(frames)
    next(frames)
    frames.close()
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    capture.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.mp4", "clip.avi"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes as on POSIX")
def test_annotated_video_never_replaces_a_special_file(tmp_path: Path) -> None:
    from emotionnet.video import analyze_video

    clip = write_clip(tmp_path / "clip.avi", 10.0)
    fifo = tmp_path / "out.mp4"
    os.mkfifo(fifo)
    link = tmp_path / "link.avi"
    link.symlink_to(tmp_path)  # a folder, through a link
    for target in (fifo, link):
        with pytest.raises(InvalidArgumentError, match="not a regular file"):
            next(analyze_video(clip, Recorder(), annotate=target))
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and link.is_symlink()


def test_video_outputs_that_are_inputs_are_refused(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = write_clip(tmp_path / "clip.avi", 10.0)
    before = clip.read_bytes()
    link = tmp_path / "link.avi"
    link.symlink_to(clip)
    for argv in (
        ["--annotate", str(clip)],
        ["--annotate", str(link)],
        ["-o", str(clip)],
        ["-o", str(tmp_path / "x.csv"), "--annotate", str(tmp_path / "x.csv")],
    ):
        code, _, err = run(["video", str(clip), *argv, "--model", str(model_dir)], capsys)
        assert code == 2, (argv, err)
    assert clip.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "link.avi"]


# ---- 5. a closed pipe ends quietly ---------------------------------------------------------


class ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_stdout_ends_quietly_with_141(
    image: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_predict(monkeypatch)
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["predict", str(image), "--format", "jsonl"]) == 141
    assert "Broken pipe" not in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="pipes and SIGPIPE as on POSIX")
def test_predict_into_head_exits_141_without_a_message(model_dir: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emotionnet",
            "predict",
            *[str(FACE)] * 3000,
            "--model",
            str(model_dir),
            "--tta",
            "none",
            "--format",
            "jsonl",
            "--quiet",
            "--device",
            "cpu",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # as `head -1` does
    err = process.stderr.read().decode()
    assert process.wait(timeout=300) == 141, err
    assert json.loads(first)["image"] == str(FACE)
    assert "Broken pipe" not in err and "Traceback" not in err
