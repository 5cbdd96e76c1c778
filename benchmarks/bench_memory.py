"""Peak memory and time of ``predict`` and ``predict_faces`` on images near the size limit.

Each case runs in a fresh Python process (so one case's peak does not hide another's) and
reports the process's peak resident memory (``ru_maxrss``) and the wall time of the
call. The images are composed here, small on disk and large in pixels (the
shape of a decompression-bomb-like input that stays under
:data:`emotionnet.images.MAX_IMAGE_PIXELS`):

* ``baseline``: one 48x48 face; the cost of Python, torch and the model alone;
* ``png_faces``: a 9400x9400 grayscale PNG (about 90 KB) through ``predict_faces``;
* ``png_rgb``: a 9400x9400 RGB PNG as one face (``predict``);
* ``jpeg_faces``: a 9400x9400 JPEG through ``predict_faces``;
* ``float_tiff``: a 9400x9400 32-bit float TIFF (deflate, under 1 MB) as one face.

    python benchmarks/bench_memory.py
    python benchmarks/bench_memory.py --cases baseline png_faces

Peak memory is what the limits are about (see the docs' "Security and limits" page); the
times are for orientation on this machine, not a target.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SIDE = 9400

_CHILD = r"""
import json, resource, sys, time
from emotionnet import EmotionRecognizer
recognizer = EmotionRecognizer.from_pretrained(backend="torch")
path, faces = sys.argv[1], sys.argv[2] == "1"
start = time.perf_counter()
predict = recognizer.predict_faces if faces else recognizer.predict
result = predict(path, tta="none")
seconds = time.perf_counter() - start
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "result": str(result)[:80]}))
"""


def _compose(folder: Path) -> dict[str, tuple[Path, bool]]:
    import numpy as np
    from PIL import Image, ImageDraw

    face = Image.new("L", (48, 48), 128)
    face.save(folder / "face.png")
    big = Image.new("L", (SIDE, SIDE), 90)
    draw = ImageDraw.Draw(big)
    for i in range(0, SIDE, 800):  # some structure, so the detector has work to do
        draw.ellipse((i, i, i + 600, i + 700), fill=200)
    big.save(folder / "big.png", optimize=True)
    big.convert("RGB").save(folder / "big_rgb.png", optimize=True)
    big.save(folder / "big.jpg", quality=80)
    values = np.full((SIDE, SIDE), 0.35, dtype=np.float32)
    Image.fromarray(values, mode="F").save(folder / "big_float.tif", compression="tiff_deflate")
    return {
        "baseline": (folder / "face.png", False),
        "png_faces": (folder / "big.png", True),
        "png_rgb": (folder / "big_rgb.png", False),
        "jpeg_faces": (folder / "big.jpg", True),
        "float_tiff": (folder / "big_float.tif", False),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", help="cases to run (default: all)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cases = _compose(Path(tmp))
        print(f"{'case':<12} {'file KB':>8} {'peak MB':>8} {'seconds':>8}  result")
        for name, (path, faces) in cases.items():
            if args.cases and name not in args.cases:
                continue
            run = subprocess.run(
                [sys.executable, "-c", _CHILD, str(path), "1" if faces else "0"],
                capture_output=True,
                text=True,
                check=False,
            )
            if run.returncode != 0:
                print(f"{name:<12} failed: {run.stderr.strip().splitlines()[-1:]}")
                continue
            row = json.loads(run.stdout.strip().splitlines()[-1])
            row["file_kb"] = path.stat().st_size / 1024
            results[name] = row
            print(
                f"{name:<12} {row['file_kb']:>8.0f} {row['peak_mb']:>8.0f} "
                f"{row['seconds']:>8.2f}  {row['result']}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
