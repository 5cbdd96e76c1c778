"""FER2013 in every on-disk form, as_tensors, and the data summary entry point."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import Subset, TensorDataset

import emotionnet.data as data_module
import emotionnet.data.csvfiles as csv_module
import emotionnet.data.folders as folders_module
import emotionnet.data.sources as sources_module
from emotionnet import EMOTIONS
from emotionnet.data import FER2013, SOURCES, SPLITS, as_tensors, default_cache_dir, main
from emotionnet.errors import (
    CorruptImageError,
    DatasetNotFoundError,
    EmotionNetError,
    InvalidArgumentError,
    InvalidImageError,
    MalformedDataError,
    MissingLabelsError,
    SplitNotAvailableError,
    UnknownEmotionError,
    UnsupportedInputError,
)
from emotionnet.preprocessing import to_face_array

USAGES = ("Training", "PublicTest", "PrivateTest")
SPLIT_USAGES = {
    "train": ("Training",),
    "public_test": ("PublicTest",),
    "private_test": ("PrivateTest",),
    "test": ("PublicTest", "PrivateTest"),
}


# ---------------------------------------------------------------------------------------------
# Tiny generated FER2013, written the same way in every format


@dataclass(frozen=True)
class Face:
    ident: int
    label: int
    usage: str
    pixels: np.ndarray

    @property
    def file_name(self) -> str:
        return f"{self.usage}_{self.ident:04d}.png"

    @property
    def pixel_text(self) -> str:
        return " ".join(str(v) for v in self.pixels.ravel())


def make_faces(seed: int = 0) -> list[Face]:
    """21 random faces; all seven classes in train. Ordered as every format lists them:
    usage, then emotion folder name (alphabetical), then file name."""
    rng = np.random.default_rng(seed)
    labels = {
        "Training": [*range(7), 3, 3, 6],
        "PublicTest": list(rng.integers(0, 7, 6)),
        "PrivateTest": list(rng.integers(0, 7, 5)),
    }
    faces = []
    ident = 0
    for usage in USAGES:
        for label in labels[usage]:
            pixels = rng.integers(0, 256, (48, 48), dtype=np.uint8)
            faces.append(Face(ident, int(label), usage, pixels))
            ident += 1
    return sorted(faces, key=lambda f: (USAGES.index(f.usage), EMOTIONS[f.label], f.ident))


def expected(faces: list[Face], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    chosen = [f for f in faces if f.usage in SPLIT_USAGES[split]]
    images = torch.from_numpy(np.stack([f.pixels for f in chosen]))
    return images, torch.tensor([f.label for f in chosen], dtype=torch.int64)


def write_folders(root: Path, faces: list[Face], ext: str = ".png", **save: object) -> Path:
    for face in faces:
        folder = root / ("train" if face.usage == "Training" else "test") / EMOTIONS[face.label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(face.pixels).save(folder / face.file_name.replace(".png", ext), **save)
    return root


def write_fer2013_csv(root: Path, faces: list[Face], newline: str = "\n") -> Path:
    lines = ["emotion,pixels,Usage"] + [f"{f.label},{f.pixel_text},{f.usage}" for f in faces]
    (root / "fer2013.csv").write_bytes((newline.join(lines) + newline).encode())
    return root


def write_icml_csv(root: Path, faces: list[Face]) -> Path:
    lines = ["emotion, Usage, pixels"] + [f"{f.label},{f.usage},{f.pixel_text}" for f in faces]
    (root / "icml_face_data.csv").write_text("\n".join(lines) + "\n")
    return root


def write_challenge(root: Path, faces: list[Face], with_id: bool = False) -> Path:
    train = [f"{f.label},{f.pixel_text}" for f in faces if f.usage == "Training"]
    (root / "train.csv").write_text("\n".join(["emotion,pixels", *train]) + "\n")
    tests = [f for f in faces if f.usage != "Training"]
    if with_id:
        rows = ["id,pixels"] + [f"{i},{f.pixel_text}" for i, f in enumerate(tests)]
    else:
        rows = ["pixels"] + [f.pixel_text for f in tests]
    (root / "test.csv").write_text("\n".join(rows) + "\n")
    return root


WRITERS = {
    "folders": write_folders,
    "fer2013_csv": write_fer2013_csv,
    "icml_csv": write_icml_csv,
    "challenge_csv": write_challenge,
}


@pytest.fixture(scope="module")
def faces() -> list[Face]:
    return make_faces()


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory, faces: list[Face]) -> dict[str, Path]:
    return {name: writer(tmp_path_factory.mktemp(name), faces) for name, writer in WRITERS.items()}


@pytest.fixture
def folder_root(tmp_path: Path, faces: list[Face]) -> Path:
    return write_folders(tmp_path / "data", faces)


@pytest.fixture
def csv_root(tmp_path: Path, faces: list[Face]) -> Path:
    (tmp_path / "data").mkdir()
    return write_fer2013_csv(tmp_path / "data", faces)


def load(root: Path, split: str = "train", **kwargs: object) -> FER2013:
    kwargs.setdefault("cache", False)
    return FER2013(root, split, **kwargs)  # type: ignore[arg-type]


def shade_folders(root: Path, names: list[str]) -> None:
    """One image per folder, its pixel value 30 * position, to tell folders apart."""
    for position, name in enumerate(names):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        Image.new("L", (48, 48), 30 * position).save(folder / "Training_0.png")


# ---------------------------------------------------------------------------------------------
# Every format, every split


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("source", ["folders", "fer2013_csv", "icml_csv"])
def test_every_format_gives_identical_tensors(roots, faces, source, split):
    data = load(roots[source], split)
    images, targets = expected(faces, split)
    assert data.source == source
    assert data.images.dtype == torch.uint8 and data.targets.dtype == torch.int64
    assert torch.equal(data.images, images)
    assert torch.equal(data.targets, targets)


def test_challenge_train_csv_matches_the_other_formats(roots, faces):
    data = load(roots["challenge_csv"], "train")
    images, targets = expected(faces, "train")
    assert data.source == "challenge_csv"
    assert torch.equal(data.images, images) and torch.equal(data.targets, targets)


@pytest.mark.parametrize("with_id", [False, True])
def test_challenge_test_csv_is_unlabeled(tmp_path, faces, with_id):
    root = write_challenge(tmp_path, faces, with_id=with_id)
    data = load(root, "test", target_transform=lambda t: pytest.fail("called on None"))
    images, _ = expected(faces, "test")
    assert torch.equal(data.images, images)
    assert data.targets.tolist() == [-1] * len(images)
    image, target = data[0]
    assert target is None and image.size == (48, 48)
    with pytest.raises(MissingLabelsError, match="no label"):
        data.class_counts()


@pytest.mark.parametrize("split", ["public_test", "private_test"])
def test_challenge_files_do_not_split_the_test_set(roots, split):
    with pytest.raises(SplitNotAvailableError) as error:
        load(roots["challenge_csv"], split)
    message = str(error.value)
    assert "'train', 'test'" in message and "fer2013.csv" in message


def test_labels_come_from_folder_names_not_alphabetical_position(tmp_path):
    alphabetical = sorted(EMOTIONS)  # angry disgust fear happy neutral sad surprise
    shade_folders(tmp_path, alphabetical)
    data = load(tmp_path)
    label_of_shade = {
        int(img[0, 0]): int(t) for img, t in zip(data.images, data.targets, strict=True)
    }
    assert label_of_shade == {30 * i: EMOTIONS.index(name) for i, name in enumerate(alphabetical)}
    # "neutral" is folder 4 alphabetically but label 6.
    assert label_of_shade[30 * alphabetical.index("neutral")] == 6


def test_folder_names_in_any_case_and_aliases(tmp_path):
    shade_folders(tmp_path, ["ANGRY", "Happiness", "Sadness", "surprised"])
    data = load(tmp_path)
    label_of_shade = {
        int(img[0, 0]): int(t) for img, t in zip(data.images, data.targets, strict=True)
    }
    assert label_of_shade == {0: 0, 30: 3, 60: 4, 90: 5}


def test_stray_files_are_ignored(tmp_path, faces, caplog):
    root = write_folders(tmp_path, faces)
    happy = root / "train" / "happy"
    for junk in (".DS_Store", "Thumbs.db", "desktop.ini", "._Training_9999.png"):
        (happy / junk).write_bytes(b"\x00junk")
    (root / "train" / ".DS_Store").write_bytes(b"junk")
    (root / "train" / ".hidden").mkdir()
    (root / "train" / "__MACOSX").mkdir()
    (happy / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="emotionnet.data"):
        data = load(root)
    images, targets = expected(faces, "train")
    assert torch.equal(data.images, images) and torch.equal(data.targets, targets)
    assert "notes.txt" in caplog.text and ".DS_Store" not in caplog.text


def test_unknown_emotion_folder_is_named(folder_root):
    (folder_root / "train" / "bored").mkdir()
    with pytest.raises(UnknownEmotionError, match="bored") as error:
        load(folder_root)
    assert "Rename or remove it" in str(error.value)


def test_jpeg_folders_give_the_same_labels_and_close_pixels(tmp_path, faces):
    root = write_folders(tmp_path, faces, ext=".jpg", quality=95)
    for split in ("train", "test"):
        data = load(root, split)
        images, targets = expected(faces, split)
        assert torch.equal(data.targets, targets)
        assert data.images.shape == images.shape
        difference = (data.images.float() - images.float()).abs().mean()
        assert difference < 20  # random noise is JPEG's worst case; real faces agree far better


def test_other_sizes_and_modes_go_through_the_shared_rule(tmp_path):
    folder = tmp_path / "train" / "fear"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    originals = {
        "Training_a.png": Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)),
        "Training_b.BMP": Image.fromarray(rng.integers(0, 256, (30, 40), dtype=np.uint8)),
        "Training_c.png": Image.fromarray(rng.integers(0, 256, (48, 48, 4), dtype=np.uint8)),
        "Training_d.jpeg": Image.fromarray(rng.integers(0, 256, (60, 48, 3), dtype=np.uint8)),
    }
    for name, image in originals.items():
        image.save(folder / name)
    data = load(tmp_path)
    for index, name in enumerate(sorted(originals)):
        with Image.open(folder / name) as image:
            assert np.array_equal(data.images[index].numpy(), to_face_array(image))
    assert data.targets.tolist() == [2, 2, 2, 2]


def test_items_are_pil_images_and_transforms_apply(roots, faces):
    data = load(roots["folders"], "public_test")
    images, targets = expected(faces, "public_test")
    image, target = data[1]
    assert isinstance(image, Image.Image) and image.mode == "L" and image.size == (48, 48)
    assert np.array_equal(np.asarray(image), images[1].numpy())
    assert target == int(targets[1]) and isinstance(target, int)
    assert len(data) == len(images)
    transformed = load(
        roots["folders"],
        "public_test",
        transform=lambda im: np.asarray(im).astype(np.int64).sum(),
        target_transform=lambda t: EMOTIONS[t],
    )
    value, name = transformed[1]
    assert value == int(images[1].long().sum()) and name == EMOTIONS[int(targets[1])]


def test_works_with_torchvision_transforms_a_dataloader_and_pickle(roots, faces):
    import pickle

    from torchvision.transforms import ToTensor

    data = load(roots["folders"], "train", transform=ToTensor())
    batch, labels = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
    assert batch.shape == (4, 1, 48, 48) and batch.dtype == torch.float32
    assert torch.equal(labels, expected(faces, "train")[1][:4])
    copy = pickle.loads(pickle.dumps(data))
    assert torch.equal(copy.images, data.images) and copy.split == "train"


def test_repr_and_attributes_follow_torchvision(roots):
    data = load(roots["fer2013_csv"], "private_test", transform=lambda im: im)
    text = repr(data)
    assert text.startswith("Dataset FER2013\n    Number of datapoints: 5\n")
    assert f"    Root location: {roots['fer2013_csv']}" in text
    assert "    Split: private_test\n    Source: fer2013_csv" in text and "Transform:" in text
    assert data.classes == EMOTIONS and data.split == "private_test"
    assert data.source_path == roots["fer2013_csv"]


def test_class_counts(roots, faces):
    data = load(roots["icml_csv"], "train")
    counts = data.class_counts()
    assert counts.dtype == torch.int64
    assert counts.tolist() == [1, 1, 1, 3, 1, 1, 2]


def test_order_is_deterministic(roots):
    first = load(roots["folders"], "test", num_workers=0)
    second = load(roots["folders"], "test", num_workers=0)
    assert torch.equal(first.images, second.images)


# ---------------------------------------------------------------------------------------------
# Argument and split errors


def test_unknown_split_message_is_like_torchvision(roots):
    with pytest.raises(InvalidArgumentError) as error:
        load(roots["folders"], "vall")
    assert str(error.value) == (
        "Unknown value 'vall' for argument split. "
        "Valid values are {'train', 'public_test', 'private_test', 'test'}."
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"source": "xml"}, "argument source"),
        ({"on_error": "ignore"}, "argument on_error"),
        ({"md5": "1234"}, "32-character"),
        ({"num_workers": -1}, "num_workers"),
        ({"split": 1}, "Unknown value 1 for argument split"),
    ],
)
def test_invalid_arguments(roots, kwargs, match):
    split = kwargs.pop("split", "train")
    with pytest.raises(InvalidArgumentError, match=match):
        FER2013(roots["folders"], split, cache=False, **kwargs)


def test_missing_split_names_the_held_ones(tmp_path, faces):
    public_only = [f for f in faces if f.usage != "PrivateTest"]
    write_folders(tmp_path / "folders", public_only)
    with pytest.raises(SplitNotAvailableError) as error:
        load(tmp_path / "folders", "private_test")
    assert "'train', 'public_test', 'test'" in str(error.value)
    (tmp_path / "csv").mkdir()
    write_fer2013_csv(tmp_path / "csv", [f for f in faces if f.usage == "Training"])
    with pytest.raises(SplitNotAvailableError, match="it holds 'train'"):
        load(tmp_path / "csv", "test")


def test_test_folder_without_prefixes_is_only_test(tmp_path):
    folder = tmp_path / "test" / "sad"
    folder.mkdir(parents=True)
    Image.new("L", (48, 48), 5).save(folder / "img.png")
    assert load(tmp_path, "test").targets.tolist() == [4]
    with pytest.raises(SplitNotAvailableError, match="they hold 'test'"):
        load(tmp_path, "public_test")


def test_missing_root_says_what_was_looked_for(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist") as error:
        load(tmp_path / "nowhere")
    assert isinstance(error.value, FileNotFoundError)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError) as error:
        load(tmp_path / "empty")
    message = str(error.value)
    for looked_for in ("fer2013.csv", "icml_face_data.csv", "train/ and test/", "train.csv"):
        assert looked_for in message
    assert str(tmp_path / "empty" / "fer2013") not in message or "or" in message


def test_data_in_a_fer2013_subfolder_is_found(tmp_path, faces):
    (tmp_path / "FER2013").mkdir()
    write_fer2013_csv(tmp_path / "FER2013", faces)
    data = load(tmp_path, "public_test")
    assert torch.equal(data.images, expected(faces, "public_test")[0])


def test_source_priority_and_explicit_choice(tmp_path, faces):
    write_folders(tmp_path, faces)
    inverted = [Face(f.ident, f.label, f.usage, 255 - f.pixels) for f in faces]
    write_fer2013_csv(tmp_path, inverted)
    assert [s for s in SOURCES] == ["fer2013_csv", "icml_csv", "folders", "challenge_csv"]
    auto = load(tmp_path)
    assert auto.source == "fer2013_csv"
    assert torch.equal(auto.images, 255 - expected(faces, "train")[0])
    chosen = load(tmp_path, source="folders")
    assert chosen.source == "folders"
    assert torch.equal(chosen.images, expected(faces, "train")[0])
    with pytest.raises(DatasetNotFoundError, match=r"icml_face_data\.csv") as error:
        load(tmp_path, source="icml_csv")
    assert "fer2013_csv, folders" in str(error.value)


# ---------------------------------------------------------------------------------------------
# Malformed CSV files and corrupt images


def csv_with_row(root: Path, faces: list[Face], position: int, row: str) -> Path:
    lines = ["emotion,pixels,Usage"] + [f"{f.label},{f.pixel_text},{f.usage}" for f in faces]
    lines.insert(position + 1, row)  # data row `position` (0-based) is on line position + 2
    (root / "fer2013.csv").write_text("\n".join(lines) + "\n")
    return root


GOOD = " ".join(["7"] * 2304)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (f"3,{' '.join(['7'] * 2303)},Training", "has 2303 pixel values, expected 2304"),
        (f"3,{' '.join(['7'] * 2305)},Training", "has 2305 pixel values"),
        ("3,,Training", "has 0 pixel values"),
        (f"3,12a {GOOD[4:]},Training", "pixel 1 is '12a', not an integer"),
        (f"3,{GOOD[:-1]}1.5,Training", "pixel 2304 is '1.5', not an integer"),
        (f"3,256 {GOOD[2:]},Training", "pixel 1 is 256, outside 0..255"),
        (f"3,-3 {GOOD[2:]},Training", "pixel 1 is -3, outside 0..255"),
        (f"7,{GOOD},Training", "unknown emotion code '7'"),
        (f"happy,{GOOD},Training", "unknown emotion code 'happy'"),
        (f"3,{GOOD},Validation", "unknown Usage 'Validation'"),
        (f"3,{GOOD}", "has 2 fields, expected 3"),
    ],
)
def test_malformed_csv_row_names_its_line(tmp_path, faces, row, problem):
    csv_with_row(tmp_path, faces, 4, row)
    with pytest.raises(MalformedDataError) as error:
        load(tmp_path, "train")
    assert f"fer2013.csv line 6: {problem}" in str(error.value)
    assert "on_error='skip'" in str(error.value)


def test_first_bad_line_is_reported(tmp_path, faces):
    lines = ["emotion,pixels,Usage"] + [f"{f.label},{f.pixel_text},{f.usage}" for f in faces]
    lines[3] = "3,1 2 3,Training"  # pixel count: found when the chunk is parsed
    lines[5] = "9," + GOOD + ",Training"  # emotion code: found while reading
    (tmp_path / "fer2013.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(MalformedDataError, match="line 4: has 3 pixel values"):
        load(tmp_path)


def test_missing_csv_column(tmp_path):
    (tmp_path / "fer2013.csv").write_text(f"label,pixels,Usage\n3,{GOOD},Training\n")
    with pytest.raises(MalformedDataError, match="no emotion column"):
        load(tmp_path)


def test_on_error_skip_logs_and_counts_bad_rows(tmp_path, faces, caplog):
    lines = ["emotion,pixels,Usage"] + [f"{f.label},{f.pixel_text},{f.usage}" for f in faces]
    lines[2] = "3,1 2 3,Training"
    lines[7] = "3," + GOOD + ",Testing"
    (tmp_path / "fer2013.csv").write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="emotionnet.data"):
        data = load(tmp_path, on_error="skip")
    kept = [f for i, f in enumerate(faces) if f.usage == "Training" and i not in (1, 6)]
    assert torch.equal(data.images, torch.from_numpy(np.stack([f.pixels for f in kept])))
    assert len(data.skipped) == 2
    assert data.skipped[0].startswith("fer2013.csv line 3: has 3 pixel values")
    assert data.skipped[1].startswith("fer2013.csv line 8: unknown Usage 'Testing'")
    assert "line 3" in caplog.text and "line 8" in caplog.text
    assert "Skipped: 2" in repr(data)


@pytest.mark.parametrize("content", [b"not a png", b"", "truncated"])
def test_corrupt_image_names_the_file(folder_root, content):
    if content == "truncated":
        content = next((folder_root / "train" / "happy").glob("*.png")).read_bytes()[:60]
    broken = folder_root / "train" / "happy" / "Training_9999.png"
    broken.write_bytes(content)
    with pytest.raises(CorruptImageError, match=r"Training_9999\.png"):
        load(folder_root)


def test_corrupt_image_skipped(folder_root, faces, caplog):
    (folder_root / "train" / "sad" / "Training_9999.png").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="emotionnet.data"):
        data = load(folder_root, on_error="skip")
    assert torch.equal(data.images, expected(faces, "train")[0])
    assert len(data.skipped) == 1 and "Training_9999.png" in data.skipped[0]
    assert "Training_9999.png" in caplog.text


def test_process_pool_decoding_gives_the_same_result(folder_root, faces, monkeypatch):
    monkeypatch.setattr(folders_module, "_MIN_FILES_FOR_POOL", 0)
    data = load(folder_root, "train", num_workers=2)
    assert torch.equal(data.images, expected(faces, "train")[0])
    (folder_root / "train" / "fear" / "Training_9999.png").write_bytes(b"garbage")
    with pytest.raises(CorruptImageError, match=r"Training_9999\.png"):
        load(folder_root, "train", num_workers=2)


# ---------------------------------------------------------------------------------------------
# CSV details


def test_csv_variants_parse_the_same(tmp_path, faces):
    write_fer2013_csv(tmp_path, faces, newline="\r\n")
    text = (tmp_path / "fer2013.csv").read_bytes()
    first = faces[0]
    padded = " ".join(f"{v:03d}" for v in first.pixels.ravel())  # leading zeros
    text = text.replace(first.pixel_text.encode(), f'"{padded}"'.encode(), 1)  # quoted
    (tmp_path / "fer2013.csv").write_bytes(b"\xef\xbb\xbf" + text + b"\r\n\r\n")  # BOM, blanks
    data = load(tmp_path)
    assert torch.equal(data.images, expected(faces, "train")[0])


odd_token = st.one_of(
    st.integers(0, 255).map(lambda v: f"{v:04d}"),  # leading zeros: valid
    st.sampled_from(["256", "999", "-1", "+5", "x", "1.0", "12345", "٣"]),
)


@given(
    rows=st.lists(
        st.tuples(
            st.integers(-2, 2),  # pixel count off by this
            st.lists(st.tuples(st.integers(0, 2303), odd_token), max_size=3),
            st.sampled_from([" ", "  ", "\t"]),
        ),
        min_size=1,
        max_size=4,
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_vectorised_pixel_parser_agrees_with_python(rows, seed):
    rng = np.random.default_rng(seed)
    texts = []
    for delta, replacements, separator in rows:
        tokens = [str(v) for v in rng.integers(0, 256, 2304 + delta)]
        for position, token in replacements:
            tokens[min(position, len(tokens) - 1)] = token
        texts.append(separator.join(tokens).encode())
    images, errors = csv_module._parse_pixel_rows(texts)
    for index, text in enumerate(texts):
        slow = csv_module._parse_pixels_slowly(text)
        if isinstance(slow, str):
            assert errors[index] == slow
        else:
            assert index not in errors
            assert np.array_equal(images[index], slow)


# ---------------------------------------------------------------------------------------------
# Cache


def forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(folders_module, "_decode_image_files", fail)
    monkeypatch.setattr(sources_module, "_read_csv", fail)


@pytest.mark.parametrize("source", ["folders", "fer2013_csv"])
def test_second_load_comes_from_the_cache(roots, faces, tmp_path, monkeypatch, source):
    first = FER2013(roots[source], "test", cache_dir=tmp_path)
    assert first.cache_file is not None and first.cache_file.is_file()
    assert first.cache_file.parent == tmp_path
    forbid_decoding(monkeypatch)
    second = FER2013(roots[source], "test", cache_dir=tmp_path)
    assert torch.equal(second.images, expected(faces, "test")[0])
    assert torch.equal(second.targets, first.targets)
    assert [p.name for p in tmp_path.iterdir()] == [first.cache_file.name]  # no temp files


def test_cache_file_is_private_to_its_owner(csv_root, tmp_path, umask_022):
    cache_file = FER2013(csv_root, cache_dir=tmp_path / "cache").cache_file
    assert cache_file is not None
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o600


def test_touching_or_changing_an_image_rebuilds_the_cache(folder_root, faces, tmp_path):
    cache = tmp_path / "cache"
    FER2013(folder_root, cache_dir=cache)
    path = folder_root / "train" / EMOTIONS[faces[0].label] / faces[0].file_name
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    calls = []
    original = folders_module._decode_image_files

    def counting(paths):
        calls.append(len(paths))
        return original(paths)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(folders_module, "_decode_image_files", counting)
        FER2013(folder_root, cache_dir=cache)
    assert calls == [10]
    Image.fromarray(np.full((48, 48), 77, np.uint8)).save(path)
    assert bool((FER2013(folder_root, cache_dir=cache).images[0] == 77).all())
    path.unlink()
    assert len(FER2013(folder_root, cache_dir=cache)) == 9


def test_changing_the_csv_rebuilds_the_cache(csv_root, faces, tmp_path):
    cache = tmp_path / "cache"
    assert len(FER2013(csv_root, cache_dir=cache)) == 10
    write_fer2013_csv(csv_root, faces[:5])
    assert len(FER2013(csv_root, cache_dir=cache)) == 5


def test_corrupt_cache_file_is_rebuilt(csv_root, faces, tmp_path, caplog):
    first = FER2013(csv_root, cache_dir=tmp_path)
    assert first.cache_file is not None
    first.cache_file.write_bytes(b"\x00" * 100)
    with caplog.at_level(logging.WARNING, logger="emotionnet.data"):
        second = FER2013(csv_root, cache_dir=tmp_path)
    assert "unreadable cache file" in caplog.text
    assert torch.equal(second.images, expected(faces, "train")[0])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emotionnet.data"):
        FER2013(csv_root, cache_dir=tmp_path)
    assert caplog.text == ""  # the rebuilt file is valid again


def test_cache_with_wrong_content_is_not_trusted(csv_root, faces, tmp_path, caplog):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    first = FER2013(csv_root, cache_dir=tmp_path)
    assert first.cache_file is not None
    with safe_open(str(first.cache_file), framework="np") as file:
        metadata = file.metadata()
    bad = {"images": np.zeros((10, 47, 48), np.uint8), "targets": np.zeros(10, np.int64)}
    save_file(bad, str(first.cache_file), metadata=metadata)
    with caplog.at_level(logging.WARNING, logger="emotionnet.data"):
        second = FER2013(csv_root, cache_dir=tmp_path)
    assert "unreadable cache file" in caplog.text
    assert torch.equal(second.images, expected(faces, "train")[0])


def test_cache_disabled_writes_nothing(csv_root, tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTIONNET_CACHE_DIR", str(tmp_path / "env"))
    data = FER2013(csv_root, cache=False)
    assert data.cache_file is None and not (tmp_path / "env").exists()


def test_default_cache_dir_follows_the_environment(csv_root, tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTIONNET_CACHE_DIR", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env" / "fer2013"
    data = FER2013(csv_root)
    assert data.cache_file is not None and data.cache_file.parent == tmp_path / "env" / "fer2013"
    monkeypatch.delenv("EMOTIONNET_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "emotionnet" / "fer2013"


def test_skip_mode_has_its_own_cache_that_keeps_the_skipped_list(tmp_path, faces, monkeypatch):
    csv_with_row(tmp_path, faces, 0, "3,1 2,Training")
    cache = tmp_path / "cache"
    first = FER2013(tmp_path, cache_dir=cache, on_error="skip")
    forbid_decoding(monkeypatch)
    second = FER2013(tmp_path, cache_dir=cache, on_error="skip")
    assert second.skipped == first.skipped and len(second.skipped) == 1
    monkeypatch.undo()
    with pytest.raises(MalformedDataError):  # a cached skip never hides the error
        FER2013(tmp_path, cache_dir=cache)


def test_unwritable_cache_only_warns(csv_root, faces, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="emotionnet.data"):
        data = FER2013(csv_root, cache_dir=blocker)
    assert "Could not write the cache file" in caplog.text
    assert torch.equal(data.images, expected(faces, "train")[0])


# ---------------------------------------------------------------------------------------------
# md5


def test_md5_check(csv_root, caplog):
    digest = hashlib.md5((csv_root / "fer2013.csv").read_bytes()).hexdigest()
    assert len(load(csv_root, md5=digest.upper())) == 10
    wrong = "0" * 32
    with pytest.raises(MalformedDataError) as error:
        load(csv_root, md5=wrong)
    assert digest in str(error.value) and wrong in str(error.value)


def test_md5_is_skipped_with_a_note_for_folders(folder_root, caplog):
    with caplog.at_level(logging.WARNING, logger="emotionnet.data"):
        load(folder_root, md5="0" * 32)
    assert "md5 is ignored for the image-folder layout" in caplog.text


# ---------------------------------------------------------------------------------------------
# The summary entry point


def test_main_prints_counts_per_split_and_class(roots, tmp_path, capsys):
    assert main([str(roots["fer2013_csv"]), "--cache-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"FER2013 (fer2013_csv) in {roots['fer2013_csv']}"
    assert lines[1].split() == ["split", "images", *EMOTIONS]
    assert lines[2].split() == ["train", "10", "1", "1", "1", "3", "1", "1", "2"]
    assert [line.split()[0] for line in lines[2:]] == list(SPLITS)


def test_main_marks_unlabeled_and_missing_splits(roots, capsys):
    assert main([str(roots["challenge_csv"]), "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "unlabeled" in out and "not held: public_test, private_test" in out


def test_main_reports_errors(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), "--no-cache"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_python_m_emotionnet_data_runs_without_warnings(roots):
    result = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-m",
            "emotionnet.data",
            str(roots["icml_csv"]),
            "--no-cache",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "private_test" in result.stdout and "not held" not in result.stdout


# ---------------------------------------------------------------------------------------------
# as_tensors


def test_as_tensors_of_a_dataset_returns_its_tensors(roots):
    data = load(roots["folders"], "train")
    images, targets = as_tensors(data)
    assert images.data_ptr() == data.images.data_ptr()  # no copy
    assert targets.data_ptr() == data.targets.data_ptr()


def test_as_tensors_of_a_subset_indexes_without_decoding(roots):
    data = load(roots["folders"], "train")
    images, targets = as_tensors(Subset(Subset(data, [5, 1, 2]), [2, 0]))
    assert torch.equal(images, data.images[[2, 5]]) and targets.tolist() == [
        int(data.targets[2]),
        int(data.targets[5]),
    ]


def test_as_tensors_of_tuples_and_tensor_datasets():
    images = np.arange(2 * 48 * 48, dtype=np.int64).astype(np.uint8).reshape(2, 1, 48, 48)
    out_images, out_targets = as_tensors((images, np.array([1, 2], dtype=np.int32)))
    assert out_images.shape == (2, 48, 48) and out_targets.dtype == torch.int64
    tensors = as_tensors(TensorDataset(torch.from_numpy(images), torch.tensor([3, 4])))
    assert torch.equal(tensors[0], out_images) and tensors[1].tolist() == [3, 4]


def test_as_tensors_of_a_plain_dataset_uses_the_shared_rule():
    big = Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 80), dtype=np.uint8))
    samples = [
        (big, 1),
        (torch.full((1, 48, 48), 9, dtype=torch.uint8), torch.tensor(2)),
        (np.zeros((48, 48), np.uint8), None),
    ]
    images, targets = as_tensors(samples)
    assert np.array_equal(images[0].numpy(), to_face_array(big))
    assert int(images[1, 0, 0]) == 9 and targets.tolist() == [1, 2, -1]


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (42, UnsupportedInputError, "cannot read a int"),
        ("images", UnsupportedInputError, "cannot read a str"),
        ((torch.zeros(2, 48, 48), [0, 1]), InvalidImageError, "uint8"),
        ((torch.zeros(2, 3, 48, 48, dtype=torch.uint8), [0, 1]), InvalidImageError, "N x H"),
        ((torch.zeros(2, 48, 48, dtype=torch.uint8), [0]), InvalidArgumentError, "one label"),
        ((torch.zeros(2, 48, 48, dtype=torch.uint8), [0.0, 1.0]), InvalidArgumentError, "integ"),
        ([(torch.zeros(1, 48, 48), 0)], InvalidArgumentError, "ToTensor"),
        (
            [(np.zeros((48, 48), np.uint8), 0), (np.zeros((40, 40), np.uint8), 1)],
            InvalidArgumentError,
            "same size",
        ),
        ([(Image.new("L", (48, 48)), "happy")], InvalidArgumentError, "integer label"),
        ([Image.new("L", (48, 48))], UnsupportedInputError, r"\(image, label\) pairs"),
    ],
)
def test_as_tensors_errors(data, error, match):
    with pytest.raises(error, match=match):
        as_tensors(data)
    assert issubclass(error, EmotionNetError)


# ---------------------------------------------------------------------------------------------
# The shared FER2013 (integration)

SHARED_COUNTS = {
    "train": {
        "angry": 3995,
        "disgust": 436,
        "fear": 4097,
        "happy": 7215,
        "neutral": 4965,
        "sad": 4830,
        "surprise": 3171,
    },
    "public_test": {
        "angry": 467,
        "disgust": 56,
        "fear": 496,
        "happy": 895,
        "neutral": 607,
        "sad": 653,
        "surprise": 415,
    },
}


@pytest.mark.slow
@pytest.mark.integration
def test_shared_fer2013_counts_and_sizes(fer2013_root, tmp_path):
    for split, counts in SHARED_COUNTS.items():
        data = FER2013(fer2013_root, split, cache_dir=tmp_path)  # cold: fresh cache folder
        total = sum(counts.values())
        assert data.source == "folders" and not data.skipped
        assert data.images.shape == (total, 48, 48) and data.images.dtype == torch.uint8
        per_class = dict(zip(EMOTIONS, data.class_counts().tolist(), strict=True))
        assert per_class == counts
    assert sum(SHARED_COUNTS["train"].values()) == 28_709
    assert sum(SHARED_COUNTS["public_test"].values()) == 3_589
    warm = FER2013(fer2013_root, "public_test", cache_dir=tmp_path)
    assert torch.equal(warm.images, data.images)
    with pytest.raises(SplitNotAvailableError, match="'train', 'public_test', 'test'"):
        FER2013(fer2013_root, "private_test", cache_dir=tmp_path)
    # The decoded tensor is 48x48 by construction; the files themselves must be too.
    sizes = set()
    for path in sorted(Path(fer2013_root).glob("*/*/*")):
        if path.suffix.lower() in data_module.IMAGE_EXTENSIONS:
            with Image.open(path) as image:
                sizes.add((image.size, image.mode))
    assert sizes == {((48, 48), "L")}


@pytest.mark.parametrize("writer", [write_fer2013_csv, write_icml_csv, write_folders])
def test_test_split_is_public_then_private_whatever_the_file_order(
    tmp_path: Path, faces: list[Face], writer: Callable[[Path, list[Face]], Path]
) -> None:
    # PrivateTest rows first in the file: the "test" split still starts with PublicTest.
    shuffled = [f for f in faces if f.usage == "PrivateTest"] + [
        f for f in faces if f.usage != "PrivateTest"
    ]
    root = writer(tmp_path, shuffled)
    data = FER2013(root, "test", cache=False)
    public = FER2013(root, "public_test", cache=False)
    private = FER2013(root, "private_test", cache=False)
    assert torch.equal(data.images, torch.cat([public.images, private.images]))
    assert torch.equal(data.targets, torch.cat([public.targets, private.targets]))
