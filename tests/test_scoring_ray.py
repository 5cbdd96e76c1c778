"""The documented Ray recipe, run: ``examples/score_with_ray.py`` on 64 images, in local mode.

Ray advertises the machine's non-loopback address and probes an outside one to find it, so
Ray never runs in the test process: the example runs in a subprocess inside a network
namespace that has only loopback (``unshare -n`` with ``lo`` up, as root, as in CI), with
usage statistics off. Where no such namespace can be made, the test skips and says why.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotionnet import EmotionRecognizer, predict_paths

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "score_with_ray.py"
LOOPBACK_ONLY = ("unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh")


def _namespace_problem() -> str | None:
    """Why a loopback-only network namespace cannot be made here, or None."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if not shutil.which("unshare") or not shutil.which("ip"):
        return "unshare (util-linux) or ip (iproute2) is not installed"
    try:
        done = subprocess.run(
            [*LOOPBACK_ONLY, "ip", "-o", "link"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unshare -n failed: {error}"
    if done.returncode != 0:
        return f"unshare -n failed (needs root or user namespaces): {done.stderr.strip()}"
    links = [line.split(":")[1].strip() for line in done.stdout.splitlines()]
    if links != ["lo"]:
        return f"the namespace has links other than loopback: {links}"
    return None


def run_loopback_only(command: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in a loopback-only network namespace, Ray's telemetry off."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are limited
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TMPDIR": temp,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("RAY_ADDRESS", None)
    try:
        return subprocess.run(
            [*LOOPBACK_ONLY, *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as error:  # a stuck Ray job: show where it stood
        tail = (error.stderr or b"")[-3000:]
        text = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        pytest.fail(f"{command[1:2]} ran past {timeout} s; its log ends with:\n{text}")
    finally:
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def loopback_only() -> None:
    if importlib.util.find_spec("ray") is None:
        pytest.skip('Ray is not installed: pip install "emotionnet[ray]"')
    problem = _namespace_problem()
    if problem is not None:
        pytest.skip(f"Ray runs only in a loopback-only network namespace here: {problem}")


def _images(folder: Path, count: int) -> Iterator[Path]:
    """FER2013 test faces when the data set is here, else synthetic faces."""
    env = os.environ.get("EMOTIONNET_FER2013")
    root = Path(env) if env else ROOT.parent / "shared" / "data" / "fer2013"
    found = sorted((root / "test").glob("*/*.jpg"))[::50][:count] if root.is_dir() else []
    yield from found
    rng = np.random.default_rng(0)
    for index in range(count - len(found)):
        y, x = np.mgrid[:48, :48]
        face = 128 + 60 * np.sin(x / (3 + index % 5)) * np.cos(y / (4 + index % 3))
        face += rng.normal(0, 10, face.shape)
        path = folder / f"synthetic{index:02d}.png"
        Image.fromarray(face.clip(0, 255).astype(np.uint8)).save(path)
        yield path


@pytest.mark.slow
def test_ray_data_scores_64_images_as_predict_paths_does(
    loopback_only: None, tmp_path: Path
) -> None:
    pandas = pytest.importorskip("pandas")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 a truncated JPEG")
    paths = [str(path) for path in _images(tmp_path, 62)]
    paths[10:10] = [str(tmp_path / "missing.jpg")]
    paths[40:40] = [str(corrupt)]
    assert len(paths) == 64
    listing = tmp_path / "paths.txt"
    listing.write_text("\n".join(paths) + "\n", encoding="utf-8")
    output = tmp_path / "scores"

    done = run_loopback_only(
        [
            sys.executable,
            str(EXAMPLE),
            "--paths-from",
            str(listing),
            "--output",
            str(output),
            "--workers",
            "2",
            "--threads",
            "1",
            "--num-cpus",
            "2",
            "--batch-size",
            "16",
            "--tta",
            "flip_crop",
            "--keep-order",
        ],
        timeout=240,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "64 rows (2 errors)" in done.stdout, done.stdout[-2000:]

    table = pandas.read_parquet(output)
    assert table["path"].tolist() == paths  # --keep-order: the files hold the input order
    recognizer = EmotionRecognizer.from_pretrained(num_threads=1)
    expected = predict_paths(recognizer, paths, tta="flip_crop", batch_size=16)
    for row, result in zip(table.to_dict("records"), expected, strict=True):
        if result.error is not None:
            assert row["error"] == result.to_dict()["error"]
            assert row["label"] == "" and math.isnan(row["score"])
            continue
        assert result.prediction is not None
        assert row["error"] == ""
        assert row["label"] == result.prediction.label
        for label, probability in result.prediction.probabilities.items():
            assert row[f"prob_{label}"] == probability, (result.path, label)
