"""A web app: upload a photo or take one with the camera, see each face's emotion.

This is the original project's Streamlit app rebuilt on emotionnet: faces are found with
OpenCV's Haar cascade, boxed and labelled on the photo, and each gets a bar chart of the seven
emotion probabilities. When no face is found the whole picture is treated as one face, and the
app says so (useful for tightly cropped face pictures, where the detector has nothing to find).

Run it (needs the ``app`` extra: ``pip install "emotionnet[app]"``):

    streamlit run examples/streamlit_app.py
    streamlit run examples/streamlit_app.py -- --model org/name   # start with another model

The sidebar's "Model" field switches models while the app runs (empty: the bundled one).

The image-processing part, :func:`analyze`, is a plain function, so it can be tested and reused
without Streamlit.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import pandas as pd
import streamlit as st
from PIL import Image, ImageDraw

from emotionnet import EMOTIONS, EmotionNetError, EmotionRecognizer, Prediction
from emotionnet.images import load_image
from emotionnet.metrics import TTA_MODES
from emotionnet.recognizer import DEFAULT_TTA

TITLE = "Facial emotion recognition"
BOX_COLOUR = (255, 64, 64)


@dataclass(frozen=True)
class FaceResult:
    """One analysed face: where it is on the photo and what the model says."""

    box: tuple[int, int, int, int]  # (x, y, w, h) in photo pixels
    prediction: Prediction


def analyze(
    photo: Image.Image, recognizer: EmotionRecognizer, tta: str | None = None
) -> tuple[list[FaceResult], bool]:
    """Find the faces on a photo and predict their emotions (with test-time augmentation).

    Returns the faces (largest first) and whether the whole photo had to stand in for a face
    because the detector found none.
    """
    found = recognizer.predict(photo, faces=True, tta=tta)
    faces = [FaceResult(face.box, face.prediction) for face in found]
    if faces:
        return faces, False
    whole = FaceResult((0, 0, photo.width, photo.height), recognizer.predict(photo, tta=tta))
    return [whole], True


def annotate(photo: Image.Image, faces: list[FaceResult]) -> Image.Image:
    """Return a copy of the photo with each face boxed and numbered with its emotion."""
    canvas = photo.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    # Scale line and text to the photo, so boxes stay visible on large phone pictures.
    line = max(2, round(max(canvas.size) / 200))
    font_size = max(12, round(max(canvas.size) / 30))
    for number, face in enumerate(faces, start=1):
        x, y, w, h = face.box
        draw.rectangle((x, y, x + w - 1, y + h - 1), outline=BOX_COLOUR, width=line)
        text = f"{number}: {face.prediction.label} {face.prediction.score:.0%}"
        # Above the box when there is room, else inside its top edge.
        text_y = y - font_size - line if y >= font_size + line else y + line
        draw.text((x + line, text_y), text, fill=BOX_COLOUR, font_size=font_size)
    return canvas


def _parse_args() -> argparse.Namespace:
    # Streamlit passes what follows `--` on its command line to the script.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Hub id or local folder (default: bundled)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: automatic)")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args


@st.cache_resource
def load_recognizer(model: str, device: str | None) -> EmotionRecognizer:
    # Loaded once per model and server process, not on every rerun of the script.
    return EmotionRecognizer.from_pretrained(model or None, device=device)


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
    st.set_page_config(page_title=TITLE)
    st.title(TITLE)
    st.caption(
        "Seven emotions from the FER2013 data set: " + ", ".join(EMOTIONS) + ". "
        "Pictures are processed in memory and not stored."
    )

    with st.sidebar:
        model = st.text_input(
            "Model",
            value=args.model or "",
            key="model",
            help="Hub id or local folder; empty for the model bundled with emotionnet",
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

    try:
        photo = read_photo(picture.getvalue())
    except EmotionNetError as error:  # not an image, an unsupported format, too large
        st.error(f"Could not read {picture.name} as an image: {error}")
        return

    try:
        recognizer = load_recognizer(model.strip(), args.device)
    except EmotionNetError as error:  # a mistyped model name must not take the app down
        st.error(f"Could not load the model {model!r}: {error}")
        return
    try:
        faces, whole_image = analyze(photo, recognizer, tta)
    except EmotionNetError as error:  # a picture that decodes but cannot be analysed
        st.error(f"Could not analyse {picture.name}: {error}")
        return
    if whole_image:
        st.warning(
            "No face found: the whole picture was analysed as one face. "
            "For best results use a photo with a clearly visible, upright face."
        )
    else:
        st.success(f"Found {len(faces)} face{'s' if len(faces) != 1 else ''}.")
    st.image(annotate(photo, faces), caption=picture.name)

    for number, face in enumerate(faces, start=1):
        prediction = face.prediction
        st.subheader(f"Face {number}: {prediction.label} ({prediction.score:.0%})")
        chart = pd.DataFrame(
            {"probability": list(prediction.probabilities.values())},
            index=pd.Index(list(prediction.probabilities), name="emotion"),
        )
        # sort=False keeps the canonical FER2013 order instead of alphabetical bars.
        st.bar_chart(chart, horizontal=True, sort=False)


if __name__ == "__main__":
    main()
