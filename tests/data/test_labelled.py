"""LabelledFolder: any label set from <root>/<label>/<image>, the split, and every bad input."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from emotionnet.data import LabelledFolder, as_tensors, folder_labels
from emotionnet.errors import DatasetNotFoundError, InvalidArgumentError
from emotionnet.images import load_image
from emotionnet.labels import EMOTIONS
from emotionnet.preprocessing import to_face_array


def _write(root: Path, layout: dict[str, int], *, size: tuple[int, int] = (48, 48)) -> Path:
    """One folder per label with ``count`` small images named ``s<subject>_<i>.png``."""
    rng = np.random.default_rng(0)
    for label, count in layout.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"s{i % 5}_{i}.png")
    return root


def test_folder_names_are_the_labels_sorted_with_their_images(tmp_path: Path) -> None:
    root = _write(tmp_path, {"positive": 3, "negative": 2, "neutral": 1})
    data = LabelledFolder(root)
    assert data.labels == ("negative", "neutral", "positive")
    assert data.class_counts().tolist() == [2, 1, 3]
    assert data.images.dtype == torch.uint8 and data.images.shape == (6, 48, 48)
    # Every image is what predict feeds the model for the same file.
    for image, target, file in zip(data.images, data.targets, data.files, strict=True):
        assert data.labels[int(target)] == file.split("/")[0]
        expected = to_face_array(load_image(root / file))
        assert np.array_equal(image.numpy(), expected)


def test_the_seven_emotions_keep_the_canonical_order_whatever_the_folder_names(
    tmp_path: Path,
) -> None:
    names = ["Angry", "disgusted", "fear", "HAPPINESS", "sad", "surprised", "neutral"]
    root = _write(tmp_path, dict.fromkeys(names, 1))
    data = LabelledFolder(root)
    assert data.labels == EMOTIONS
    assert data.targets.tolist() == list(range(7))  # the file in HAPPINESS/ is label 3


def test_an_eighth_label_is_sorted_with_the_emotion_names(tmp_path: Path) -> None:
    root = _write(tmp_path, {**dict.fromkeys(EMOTIONS, 1), "contempt": 1})
    assert LabelledFolder(root).labels == tuple(sorted([*EMOTIONS, "contempt"]))


@given(st.lists(st.sampled_from(EMOTIONS), min_size=2, max_size=7, unique=True))
def test_a_subset_of_the_emotions_keeps_the_canonical_order(names: list[str]) -> None:
    assert folder_labels(names) == tuple(e for e in EMOTIONS if e in names)


def test_images_of_any_size_and_mode_are_resized_to_the_given_size(tmp_path: Path) -> None:
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
    Image.new("RGB", (200, 120), (255, 0, 0)).save(tmp_path / "a" / "x.jpg")
    Image.new("RGBA", (30, 30), (0, 0, 255, 128)).save(tmp_path / "b" / "y.png")
    Image.new("I;16", (64, 64)).save(tmp_path / "b" / "z.png")
    data = LabelledFolder(tmp_path, size=64)
    assert data.images.shape == (3, 64, 64)
    assert np.array_equal(
        data.images[0].numpy(), to_face_array(Image.open(tmp_path / "a/x.jpg"), 64)
    )


def test_unreadable_images_are_skipped_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _write(tmp_path, {"a": 2, "b": 2})
    (root / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "b" / "empty.jpg").write_bytes(b"")
    (root / "b" / "notes.txt").write_text("ignored, not an image")
    with caplog.at_level(logging.WARNING, logger="emotionnet.data"):
        data = LabelledFolder(root)
    assert len(data) == 4
    assert sorted(file for file, _ in data.skipped) == ["a/broken.png", "b/empty.jpg"]
    assert "Skipped 2 of 6 images" in caplog.text and "a/broken.png" in caplog.text
    assert "b/notes.txt" in caplog.text  # ignored, and said so


def test_a_label_whose_images_are_all_unreadable_is_an_error(tmp_path: Path) -> None:
    root = _write(tmp_path, {"a": 2})
    (root / "b").mkdir()
    (root / "b" / "broken.png").write_bytes(b"junk")
    with pytest.raises(InvalidArgumentError, match=r"No image in the label folder\(s\) \['b'\]"):
        LabelledFolder(root)


def test_an_empty_label_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    root = _write(tmp_path, {"a": 2, "b": 2})
    (root / "c").mkdir()
    with pytest.raises(InvalidArgumentError, match=r"label folder '.*c' holds no image"):
        LabelledFolder(root)


def test_a_single_label_is_an_error(tmp_path: Path) -> None:
    root = _write(tmp_path, {"only": 3})
    with pytest.raises(InvalidArgumentError, match=r"only \['only'\].*at least two labels"):
        LabelledFolder(root)


def test_no_label_folder_at_all_is_an_error(tmp_path: Path) -> None:
    Image.new("L", (48, 48)).save(tmp_path / "loose.png")
    with pytest.raises(InvalidArgumentError, match="holds none as label folders"):
        LabelledFolder(tmp_path)


@pytest.mark.parametrize("name", ["#tag", "-dash", "a" * 65, "a\tb"])
def test_a_folder_name_that_is_not_a_valid_label_is_an_error(tmp_path: Path, name: str) -> None:
    root = _write(tmp_path, {"good": 1, name: 1})
    with pytest.raises(InvalidArgumentError, match="cannot be a label"):
        LabelledFolder(root)


def test_two_folders_for_one_emotion_are_an_error(tmp_path: Path) -> None:
    root = _write(tmp_path, {"happy": 1, "Happiness": 1, "sad": 1})
    with pytest.raises(InvalidArgumentError, match="both stand for the label 'happy'"):
        LabelledFolder(root)


def test_a_missing_folder_is_dataset_not_found(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="No data folder at"):
        LabelledFolder(tmp_path / "nope")


def test_a_validation_folder_takes_the_training_labels(tmp_path: Path) -> None:
    train = _write(tmp_path / "train", {"a": 2, "b": 2, "c": 2})
    val = _write(tmp_path / "val", {"c": 1, "a": 1})
    data = LabelledFolder(val, labels=LabelledFolder(train).labels)
    assert data.labels == ("a", "b", "c") and data.targets.tolist() == [0, 2]
    shutil.copytree(val / "a", val / "d")
    with pytest.raises(InvalidArgumentError, match=r"/d' is not one of the labels"):
        LabelledFolder(val, labels=("a", "b", "c"))


def test_the_split_is_stratified_seeded_and_disjoint(tmp_path: Path) -> None:
    root = _write(tmp_path, {"a": 20, "b": 10, "c": 5})
    data = LabelledFolder(root)
    train, val = data.split(0.2, seed=3)
    assert sorted(train.indices + val.indices) == list(range(35))
    val_targets = as_tensors(val)[1]
    assert torch.bincount(val_targets, minlength=3).tolist() == [4, 2, 1]
    again = data.split(0.2, seed=3)
    assert again[1].indices == val.indices
    assert data.split(0.2, seed=4)[1].indices != val.indices


def test_groups_never_straddle_the_split(tmp_path: Path) -> None:
    root = _write(tmp_path, {"a": 30, "b": 30})  # subjects s0..s4 in both labels
    data = LabelledFolder(root, group_pattern=r"^(s\d+)_")
    assert data.groups is not None and set(data.groups) == {f"s{i}" for i in range(5)}
    for seed in range(5):
        train, val = data.split(0.2, seed=seed)
        train_groups = {data.groups[i] for i in train.indices}
        val_groups = {data.groups[i] for i in val.indices}
        assert val_groups and train_groups and not train_groups & val_groups


def test_a_file_name_outside_the_group_pattern_is_an_error(tmp_path: Path) -> None:
    root = _write(tmp_path, {"a": 2, "b": 2})
    Image.new("L", (48, 48)).save(root / "a" / "other.png")
    with pytest.raises(InvalidArgumentError, match=r"'other.png'.*does not match group_pattern"):
        LabelledFolder(root, group_pattern=r"^(s\d+)_")


def test_too_few_images_for_a_split_is_an_error(tmp_path: Path) -> None:
    data = LabelledFolder(_write(tmp_path, {"a": 5, "b": 1}))
    with pytest.raises(InvalidArgumentError, match=r"b \(1\) have fewer than 2 images"):
        data.split(0.2)
    with pytest.raises(InvalidArgumentError, match=r"fraction must be a number in \(0, 0.5\]"):
        data.split(0.9)


def test_faces_crops_the_largest_face_and_reports_images_without_one(tmp_path: Path) -> None:
    from emotionnet.faces import DEFAULT_MARGIN, crop_face

    rng = np.random.default_rng(0)
    for file, corner in (("a/1.png", 255), ("a/2.png", 0), ("b/1.png", 255), ("b/2.png", 255)):
        pixels = rng.integers(0, 256, (96, 96), dtype=np.uint8)
        pixels[0, 0] = corner
        (tmp_path / file).parent.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(tmp_path / file)

    def detector(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        # Two "faces" where the first pixel is bright, none elsewhere.
        return [(10, 10, 40, 40), (5, 5, 60, 60)] if gray[0, 0] == 255 else []

    data = LabelledFolder(tmp_path, faces=True, detector=detector)
    assert data.files == ["a/1.png", "b/1.png", "b/2.png"]
    assert data.no_face == ["a/2.png"]
    largest = crop_face(Image.open(tmp_path / "a/1.png"), (5, 5, 60, 60), margin=DEFAULT_MARGIN)
    assert np.array_equal(data.images[0].numpy(), to_face_array(largest))


def _in_memory(targets: list[int], groups: list[str] | None = None) -> LabelledFolder:
    """A LabelledFolder without files: only what split() reads."""
    data = LabelledFolder.__new__(LabelledFolder)
    data.labels = tuple(f"l{i}" for i in range(max(targets) + 1))
    data.targets = torch.tensor(targets, dtype=torch.int64)
    data.groups = None if groups is None else tuple(groups)
    return data


@given(
    counts=st.lists(st.integers(2, 40), min_size=2, max_size=8),
    fraction=st.sampled_from([0.1, 0.2, 0.25, 0.5]),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_split_holds_every_label_on_both_sides(
    counts: list[int], fraction: float, seed: int
) -> None:
    targets = [label for label, count in enumerate(counts) for _ in range(count)]
    train, val = _in_memory(targets).split(fraction, seed=seed)
    assert sorted(train.indices + val.indices) == list(range(len(targets)))
    for part in (train, val):
        assert {targets[i] for i in part.indices} == set(range(len(counts)))
    expected = sum(min(max(1, round(fraction * count)), count - 1) for count in counts)
    assert len(val.indices) == expected


@given(
    subjects=st.lists(st.integers(0, 11), min_size=12, max_size=80),
    seed=st.integers(0, 1000),
)
def test_a_grouped_split_never_puts_a_group_on_both_sides(subjects: list[int], seed: int) -> None:
    targets = [i % 2 for i in range(len(subjects))]
    groups = [f"s{subject}" for subject in subjects]
    data = _in_memory(targets, groups)
    try:
        train, val = data.split(0.25, seed=seed)
    except InvalidArgumentError as error:
        assert "too few to hold out" in str(error)
        return
    assert {groups[i] for i in train.indices}.isdisjoint({groups[i] for i in val.indices})
    assert val.indices and train.indices
