"""A web app: upload a photo or take one with the camera, see each face's emotion.

This is the original project's Streamlit app rebuilt on emotionnet: faces are found with
the detector chosen in the sidebar (dlib's when installed, else OpenCV's Haar cascade; size,
confidence and count filters there too), boxed and labelled on the photo, and each gets a bar
chart of the seven emotion probabilities. When no face is found the whole picture is treated as
one face, and the app says so (useful for tightly cropped face pictures, where the detector has
nothing to find).

Run it (needs the ``app`` extra: ``pip install "emotionnet[app]"``) from the repository's
root, whose ``.streamlit/config.toml`` binds the server to this computer only
(``server.address = "127.0.0.1"``) with Streamlit's usage statistics off; from elsewhere, give
the same settings on the command line:

    streamlit run examples/streamlit_app.py
    streamlit run examples/streamlit_app.py --server.address 127.0.0.1 \
        --browser.gatherUsageStats false -- --models org/name,runs/my_model

The page is public to whoever can reach the server, so visitors choose only among the models
the operator allowed when starting it: the bundled one, plus those of ``--models`` (after
``--``; Hub ids or local folders, separated by commas) or of the ``EMOTIONNET_APP_MODELS``
environment variable (same form). ``--model NAME`` makes one model the first choice. Error
texts on the page never show the server's paths (details go to the server's log), and at most
:data:`MAX_CACHED_MODELS` loaded models are kept in memory. Serving it to others: put it
behind a reverse proxy with authentication, and bind it to a public address only there.

The image-processing part, :func:`analyze`, is a plain function, so it can be tested and reused
without Streamlit.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import pandas as pd
import streamlit as st
from PIL import Image, ImageDraw

from emotionnet import EMOTIONS, EmotionNetError, EmotionRecognizer, Prediction
from emotionnet.errors import NotAFaceCropWarning
from emotionnet.faces import DEFAULT_DETECTOR, DETECTORS, get_detector
from emotionnet.images import load_image
from emotionnet.recognizer import DEFAULT_TTA
from emotionnet.tta import TTA_MODES

# The whole-picture fallback below is deliberate, and the page says so: no console warning.
warnings.filterwarnings("ignore", category=NotAFaceCropWarning, module=re.escape(__name__) + "$")

TITLE = "Facial emotion recognition"
BOX_COLOUR = (255, 64, 64)
LABEL_TEXT_COLOUR = (255, 255, 255)
# The app shows a photo at most this wide (Streamlit's centred layout); boxes and labels are
# drawn to look the same size on screen whatever the photo's size.
DISPLAY_WIDTH = 704
LABEL_FONT_PX = 18  # on screen
BOX_LINE_PX = 3  # on screen
MODELS_ENV = "EMOTIONNET_APP_MODELS"
MAX_CACHED_MODELS = 4  # loaded recognizers kept in memory (about 150 MB each at most)
BUNDLED = ""  # the model choice that stands for the bundled default model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceResult:
    """One analysed face: where it is on the photo and what the model says."""

    box: tuple[int, int, int, int]  # (x, y, w, h) in photo pixels
    prediction: Prediction


def analyze(
    photo: Image.Image,
    recognizer: EmotionRecognizer,
    tta: str | None = None,
    *,
    min_face_size: int | None = None,
    min_confidence: float | None = None,
    max_faces: int | None = None,
) -> tuple[list[FaceResult], bool]:
    """Find the faces on a photo and predict their emotions (with test-time augmentation).

    ``min_face_size``, ``min_confidence`` (on the detector's scale) and ``max_faces`` filter
    the faces found (``None``: the recognizer's settings). Returns the faces (largest first)
    and whether the whole photo had to stand in for a face because the detector found none.
    """
    (found,) = recognizer.predict_faces(
        photo,
        tta=tta,
        min_face_size=min_face_size,
        min_face_confidence=min_confidence,
        max_faces=max_faces,
    )
    faces = [FaceResult(face.box, face.prediction) for face in found]
    if faces:
        return faces, False
    whole = FaceResult((0, 0, photo.width, photo.height), recognizer.predict(photo, tta=tta)[0])
    return [whole], True


def label_sizes(size: tuple[int, int]) -> tuple[int, int]:
    """Font size and box line width, in photo pixels, for a photo of ``size``.

    The app shows photos at most :data:`DISPLAY_WIDTH` wide, so a 4000 px phone picture is
    shown at a sixth of its size: its labels are drawn six times larger, to read as
    :data:`LABEL_FONT_PX` on screen, like those of a small picture shown as it is.
    """
    shrink = max(1.0, size[0] / DISPLAY_WIDTH)
    return round(LABEL_FONT_PX * shrink), max(2, round(BOX_LINE_PX * shrink))


def annotate(photo: Image.Image, faces: list[FaceResult]) -> Image.Image:
    """Return a copy of the photo with each face boxed and labelled with its emotion.

    Each label is white text on a box-coloured band, above the face (inside the top of its
    box when there is no room above), sized to read the same on screen whatever the photo's
    size (:func:`label_sizes`).
    """
    canvas = photo.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    font_size, line = label_sizes(canvas.size)
    pad = max(1, font_size // 6)
    for number, face in enumerate(faces, start=1):
        x, y, w, h = face.box
        draw.rectangle((x, y, x + w - 1, y + h - 1), outline=BOX_COLOUR, width=line)
        text = f"{number}: {face.prediction.label} {face.prediction.score:.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font_size=font_size)
        band_w, band_h = right - left + 2 * pad, bottom - top + 2 * pad
        band_x = max(0, min(x, canvas.width - band_w))  # kept on the photo
        band_y = y - band_h if y >= band_h else y + line
        draw.rectangle((band_x, band_y, band_x + band_w, band_y + band_h), fill=BOX_COLOUR)
        draw.text(
            (band_x + pad - left, band_y + pad - top),
            text,
            fill=LABEL_TEXT_COLOUR,
            font_size=font_size,
        )
    return canvas


def probability_chart(prediction: Prediction) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The data and Vega-Lite spec of a face's chart: one bar per emotion, on a 0-100% axis.

    The axis is fixed, so a 30% bar looks like 30% whatever the other bars are, and the
    emotions keep their FER2013 order.
    """
    data = pd.DataFrame(
        {
            "emotion": list(prediction.probabilities),
            "probability": list(prediction.probabilities.values()),
        }
    )
    spec = {
        "mark": {"type": "bar", "color": "#ff4040"},
        "encoding": {
            "y": {
                "field": "emotion",
                "type": "nominal",
                "sort": list(prediction.probabilities),
                "title": None,
            },
            "x": {
                "field": "probability",
                "type": "quantitative",
                "scale": {"domain": [0, 1], "nice": False},
                "axis": {"format": ".0%", "values": [0, 0.25, 0.5, 0.75, 1]},
                "title": "probability",
            },
            "tooltip": [
                {"field": "emotion", "type": "nominal"},
                {"field": "probability", "type": "quantitative", "format": ".1%"},
            ],
        },
    }
    return data, spec


def _parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    # Streamlit passes what follows `--` on its command line to the script.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="the first choice (default: bundled)")
    parser.add_argument(
        "--models",
        default=None,
        help=f"Hub ids or local folders the page offers besides the bundled model, separated "
        f"by commas (default: ${MODELS_ENV})",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: automatic)")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return args


def allowed_models(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> list[str]:
    """The models a visitor may choose, in order: ``--model``, the bundled one, the others.

    The operator names them when starting the app (``--models a,b`` or
    ``EMOTIONNET_APP_MODELS=a,b``); nothing a visitor sends can add to them.
    """
    environ = os.environ if environ is None else environ
    listed = args.models if args.models is not None else environ.get(MODELS_ENV, "")
    names = [args.model or BUNDLED, BUNDLED, *listed.split(",")]
    chosen: list[str] = []
    for name in (name.strip() for name in names):
        if name not in chosen and (name or BUNDLED not in chosen):
            chosen.append(name)
    return chosen


def model_label(name: str) -> str:
    """How a model is named on the page: a Hub id as it is, a local folder by its last part
    only (the server's folders are not the visitors' business)."""
    if name == BUNDLED:
        return "the bundled default model"
    if os.path.isdir(os.path.expanduser(name)):
        return PurePath(name).name or "a local model"
    return name


_PATH = re.compile(r"(?<![\w.:/~-])(?:~[\w.-]*|[A-Za-z]:[\\/]|/|\.{1,2}/)[^\s'\"()\[\],;]*")


def without_paths(text: str) -> str:
    """The text with file paths (``/...``, ``~...``, ``./...``, ``C:\\...``) replaced by
    ``<path>``: the server's folders are not the visitors' business."""
    return _PATH.sub("`<path>`", text)


def public_text(text: str) -> str:
    """A message as a visitor may read it: file paths replaced by ``<path>``, Markdown
    escaped (no links, images or HTML), at most 500 characters."""
    text = _PATH.sub("<path>", text)
    # No links, images, HTML or emphasis from the text (underscores inside words are plain).
    text = re.sub(r"([\\`*\[\]<>])", r"\\\1", text).replace("\\<path\\>", "`<path>`")
    return text if len(text) <= 500 else text[:500] + "..."


def uploaded_name(name: str) -> str:
    """A visitor's file name as the page repeats it: the last part, escaped, short."""
    return public_text(PurePath(name.replace("\\", "/")).name[:80] or "the picture")


@st.cache_resource(max_entries=MAX_CACHED_MODELS)
def load_recognizer(model: str, device: str | None, detector: str = "auto") -> EmotionRecognizer:
    # Loaded once per model, detector and server process, not on every rerun of the script;
    # sessions share it, so per-session settings go to predict, never onto the recognizer.
    # At most MAX_CACHED_MODELS stay loaded (least recently used ones are dropped).
    recognizer = EmotionRecognizer.from_pretrained(model or None, device=device)
    recognizer.face_detector = detector
    return recognizer


def load_allowed(
    model: str, allowed: Sequence[str], device: str | None, detector: str
) -> EmotionRecognizer:
    """Load one of the allowed models; anything else is refused before any file is looked at.

    Raises:
        EmotionNetError: If the model is not allowed or cannot be loaded.
    """
    if model not in allowed:
        raise EmotionNetError("This model is not offered by this app.")
    return load_recognizer(model, device, detector)


def read_photo(data: bytes) -> Image.Image:
    """Decode an uploaded picture, turned upright as the phone that took it meant it.

    Goes through :func:`emotionnet.images.load_image`, so only the usual photo formats are
    decoded and an oversize picture (a decompression bomb) is refused from its header.

    Raises:
        EmotionNetError: If the bytes are not a supported image, or it is too large.
    """
    return load_image(data)


def main() -> None:
    args = _parse_args()
    # An unexpected error shows no traceback on the page (the server's paths are in it).
    st.set_option("client.showErrorDetails", "none")
    st.set_page_config(page_title=TITLE)
    st.title(TITLE)
    st.caption(
        "Seven emotions from the FER2013 data set: " + ", ".join(EMOTIONS) + ". "
        "Pictures are processed in memory and not stored."
    )

    allowed = allowed_models(args)
    with st.sidebar:
        model = st.selectbox(
            "Model",
            allowed,
            index=0,
            key="model",
            format_func=model_label,
            help="The models this app offers (its operator chooses them with --models)",
        )
        tta = st.selectbox(
            "Test-time augmentation",
            TTA_MODES,
            index=TTA_MODES.index(DEFAULT_TTA),
            key="tta",
            help="Average the prediction over several views of each face: 'flip_crop' (the "
            "default) is about as accurate as 'ten_crop' for 4 views instead of 10; 'none' is "
            "the fastest",
        )
        st.subheader("Face detection")
        detector = st.selectbox(
            "Detector",
            DETECTORS,
            index=DETECTORS.index(DEFAULT_DETECTOR),
            key="detector",
            help="'dlib' (pip install \"emotionnet[dlib]\") finds more faces with far fewer "
            "false positives than OpenCV's 'haar' cascade; 'auto' uses dlib when installed",
        )
        min_face_size = st.number_input(
            "Smallest face (pixels)",
            min_value=0,
            value=0,
            step=8,
            key="min_face_size",
            help="Ignore faces narrower or shorter than this",
        )
        min_confidence = st.number_input(
            "Minimum detector confidence",
            value=None,
            step=0.25,
            key="min_confidence",
            placeholder="keep every face",
            help="On the detector's own scale: dlib's score (real faces about 0.9; dlib drops "
            "boxes under 0.08 itself) or the Haar cascade's last-stage weight (real faces "
            "about 6, false positives 3.5)",
        )
        max_faces = st.number_input(
            "Most faces",
            min_value=1,
            value=None,
            step=1,
            key="max_faces",
            placeholder="no limit",
            help="Keep only the largest faces",
        )
        st.markdown("Made with [emotionnet](https://emotionnet.readthedocs.io).")

    upload_tab, camera_tab = st.tabs(["Upload a photo", "Take a photo"])
    with upload_tab:
        uploaded = st.file_uploader("Photo", type=["jpg", "jpeg", "png", "bmp", "webp"])
    with camera_tab:
        snapshot = st.camera_input("Camera")
    picture = uploaded if uploaded is not None else snapshot
    if picture is None:
        st.info("Upload a photo or take one to see the emotions of the faces on it.")
        return

    name = uploaded_name(picture.name)
    try:
        photo = read_photo(picture.getvalue())
    except EmotionNetError as error:  # not an image, an unsupported format, too large
        st.error(f"Could not read {name} as an image: {public_text(str(error))}")
        return

    try:
        get_detector(detector)
    except EmotionNetError as error:  # dlib chosen but not installed
        st.error(f"Could not use the face detector {detector!r}: {without_paths(str(error))}")
        return
    try:
        recognizer = load_allowed(model, allowed, args.device, detector)
    except EmotionNetError as error:  # a broken model must not take the app down
        # The message names the server's folders and cache: for its log, not the page.
        logger.error("Could not load the model %r: %s", model, error)
        st.error(
            f"Could not load the model {public_text(model_label(model))!r} "
            f"({type(error).__name__}); the server's log says why."
        )
        return
    try:
        faces, whole_image = analyze(
            photo,
            recognizer,
            tta,
            min_face_size=int(min_face_size) or None,
            min_confidence=min_confidence,
            max_faces=None if max_faces is None else int(max_faces),
        )
    except EmotionNetError as error:  # a picture that decodes but cannot be analysed
        st.error(f"Could not analyse {name}: {public_text(str(error))}")
        return
    if whole_image:
        st.warning(
            "No face found: the whole picture was analysed as one face. "
            "For best results use a photo with a clearly visible, upright face."
        )
    else:
        st.success(f"Found {len(faces)} face{'s' if len(faces) != 1 else ''}.")
    st.image(annotate(photo, faces), caption=name)

    for number, face in enumerate(faces, start=1):
        prediction = face.prediction
        st.subheader(f"Face {number}: {prediction.label} ({prediction.score:.0%})")
        data, spec = probability_chart(prediction)
        st.vega_lite_chart(data, spec, width="stretch")


if __name__ == "__main__":
    main()
