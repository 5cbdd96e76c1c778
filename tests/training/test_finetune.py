"""finetune: a labelled folder of any label set -> a model folder that predicts those labels.

Integration tests use FER2013 subsets copied into tmp_path (3 labels, and the 7 emotions plus a
made-up eighth), a few steps each; unit tests use tiny generated images for the errors.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from emotionnet import EMOTIONS, EmotionRecognizer, LabelledFolder, evaluate, finetune
from emotionnet.cli import build_parser, main
from emotionnet.errors import InvalidArgumentError
from emotionnet.models import ModelConfig, build_model, replace_head
from emotionnet.models.hub import read_config
from emotionnet.training import Trainer

THREE = ("happy", "sad", "neutral")
# The module, not the function that emotionnet.training re-exports under the same name.
finetune_module = importlib.import_module("emotionnet.training.finetune")


def _fer_subset(
    fer2013_root: Path, target: Path, layout: dict[str, str], per_label: int, seed: int = 0
) -> Path:
    """``target/<label>/`` with ``per_label`` FER2013 training images of the emotion named."""
    rng = random.Random(seed)
    for label, emotion in layout.items():
        files = sorted((fer2013_root / "train" / emotion).iterdir())
        (target / label).mkdir(parents=True)
        for file in rng.sample(files, per_label):
            shutil.copy(file, target / label / file.name)
    return target


def _tiny_folder(root: Path, labels: tuple[str, ...] = ("a", "b"), count: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for index, label in enumerate(labels):
        (root / label).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (48, 48), dtype=np.uint8) // (index + 1)
            Image.fromarray(pixels).save(root / label / f"s{i % 3}_{i}.png")
    return root


class _Spy:
    """Records the first conv of the model each Trainer starts with (phase by phase)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.conv: list[torch.Tensor] = []
        self.trainable: list[list[str]] = []
        spy = self

        class Recording(Trainer):
            def __init__(self, model: Any, *args: Any, **kwargs: Any) -> None:
                spy.conv.append(model.layer1[0].conv1.weight.detach().clone())
                spy.trainable.append([n for n, p in model.named_parameters() if p.requires_grad])
                super().__init__(model, *args, **kwargs)

        monkeypatch.setattr(finetune_module, "Trainer", Recording)


def _options(**kwargs: Any) -> dict[str, Any]:
    return {"epochs": 3, "progress": False, "num_threads": 1, "val_split": 0.25, **kwargs}


@pytest.mark.slow
def test_three_labels_make_a_model_folder_that_predicts_them(
    fer2013_root: Path, tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _fer_subset(fer2013_root, tmp_path / "data", {e: e for e in THREE}, 12)
    spy = _Spy(monkeypatch)
    init = EmotionRecognizer.from_pretrained(model_dir, backend="torch").model
    result = finetune(data, tmp_path / "out", init=model_dir, **_options())

    # The backbone started from the init weights, and the head phase trained only the head.
    assert len(spy.conv) == 2
    assert torch.equal(spy.conv[0], init.layer1[0].conv1.weight)
    assert torch.equal(spy.conv[1], init.layer1[0].conv1.weight)
    assert spy.trainable[0] == ["fc.weight", "fc.bias"]
    assert len(spy.trainable[1]) == len(list(init.parameters()))

    folder = tmp_path / "out"
    assert result.folder == folder and result.labels == THREE
    assert (result.train_size, result.val_size) == (27, 9)
    assert {row["phase"] for row in result.history} == {"head", "all"}
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    for name in ("model.safetensors", "config.json", "README.md", "history.json", "history.csv"):
        assert (folder / name).is_file(), name

    recognizer = EmotionRecognizer.from_pretrained(folder, backend="torch")
    assert recognizer.labels == THREE
    assert recognizer.config.input_size == 48 and recognizer.config.stem == "imagenet"
    image = next((data / "sad").iterdir())
    (prediction,) = recognizer.predict(image)
    assert prediction.label in THREE and set(prediction.probabilities) == set(THREE)

    # Metrics over the model's own three labels: report, saved report, card.
    assert tuple(result.report.per_class) == THREE
    saved = json.loads((folder / "evaluation_validation.json").read_text())
    assert saved["labels"] == list(THREE) and len(saved["confusion_matrix"]) == 3
    card = (folder / "README.md").read_text()
    assert "| classes | happy, sad, neutral |" in card and "angry" not in card
    assert f"{result.report.accuracy:.2%}" in card
    summary = json.loads((folder / "finetune.json").read_text())
    assert summary["labels"] == list(THREE) and len(summary["val_files"]) == 9
    assert summary["val_accuracy"] == result.report.accuracy


def test_eight_labels_the_seven_and_a_made_up_one(
    fer2013_root: Path, tmp_path: Path, model_dir: Path
) -> None:
    layout = {**{e: e for e in EMOTIONS}, "contempt": "disgust"}
    data = _fer_subset(fer2013_root, tmp_path / "data", layout, 5)
    # The made-up folder must not share files with disgust/: take other images for it.
    for file in (data / "contempt").iterdir():
        if (data / "disgust" / file.name).exists():
            file.unlink()
    spare = sorted((fer2013_root / "train" / "disgust").iterdir())[-5:]
    for file in spare:
        if not (data / "disgust" / file.name).exists():
            shutil.copy(file, data / "contempt" / file.name)
    result = finetune(data, tmp_path / "out", init=model_dir, **_options(epochs=2))
    labels = tuple(sorted([*EMOTIONS, "contempt"]))
    assert result.labels == labels
    recognizer = EmotionRecognizer.from_pretrained(tmp_path / "out", backend="torch")
    assert recognizer.labels == labels and recognizer.model.fc.out_features == 8
    predictions = recognizer.predict([next((data / "contempt").iterdir()), image_of(data)])
    assert all(p.label in labels and len(p.probabilities) == 8 for p in predictions)
    # evaluate() without labels= uses the model's own eight.
    report = evaluate(recognizer.model, LabelledFolder(data))
    assert report.labels == labels and len(report.per_class) == 8
    assert report.num_samples == len(list(data.glob("*/*")))


def image_of(data: Path) -> Path:
    return next((data / "happy").iterdir())


def test_the_default_init_is_the_bundled_model_with_a_new_head(
    fer2013_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _fer_subset(fer2013_root, tmp_path / "data", {e: e for e in THREE}, 6)
    spy = _Spy(monkeypatch)
    result = finetune(data, tmp_path / "out", **_options(epochs=1))
    bundled = EmotionRecognizer.from_pretrained(None, backend="torch").model
    assert torch.equal(spy.conv[0], bundled.layer1[0].conv1.weight)
    config, _ = read_config(tmp_path / "out" / "config.json")
    assert config.labels == THREE and config.stem == bundled.config.stem
    assert (config.mean, config.std, config.input_size) == (
        bundled.config.mean,
        bundled.config.std,
        bundled.config.input_size,
    )
    assert result.labels == THREE


def test_validation_groups_never_straddle_the_split(
    fer2013_root: Path, tmp_path: Path, model_dir: Path
) -> None:
    data = _fer_subset(fer2013_root, tmp_path / "data", {"happy": "happy", "sad": "sad"}, 12)
    # Subject ids in the file names: three images per subject, subjects in both labels.
    for label in ("happy", "sad"):
        for i, file in enumerate(sorted((data / label).iterdir())):
            file.rename(file.with_name(f"subj{i // 3}_{file.name}"))
    result = finetune(
        data, tmp_path / "out", init=model_dir, group_pattern=r"^(subj\d+)_", **_options(epochs=1)
    )
    summary = json.loads((result.folder / "finetune.json").read_text())
    pattern = re.compile(r"^(subj\d+)_")

    def group(file: str) -> str:
        match = pattern.match(file.split("/")[-1])
        assert match is not None
        return match.group(1)

    val_groups = {group(file) for file in summary["val_files"]}
    all_files = [f"{p.parent.name}/{p.name}" for p in data.glob("*/*")]
    train_groups = {group(f) for f in all_files if f not in set(summary["val_files"])}
    assert val_groups and train_groups and not val_groups & train_groups


def test_a_separate_validation_folder(tmp_path: Path, model_dir: Path) -> None:
    train = _tiny_folder(tmp_path / "train")
    val = _tiny_folder(tmp_path / "val", count=2)
    result = finetune(train, tmp_path / "out", init=model_dir, val=val, **_options(epochs=1))
    assert (result.train_size, result.val_size) == (12, 4)
    val_other = _tiny_folder(tmp_path / "val_other", labels=("a", "c"), count=2)
    with pytest.raises(InvalidArgumentError, match=r"/c' is not one of the labels"):
        finetune(train, tmp_path / "out2", init=model_dir, val=val_other, **_options())


def test_an_existing_output_folder_is_refused_unless_overwrite(
    tmp_path: Path, model_dir: Path
) -> None:
    data = _tiny_folder(tmp_path / "data")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InvalidArgumentError, match=r"exists and is not empty.*--overwrite"):
        finetune(data, out, init=model_dir, **_options())
    finetune(data, out, init=model_dir, overwrite=True, **_options(epochs=1))
    assert (out / "keep.txt").read_text() == "mine" and (out / "model.safetensors").is_file()


def test_an_output_inside_the_data_folder_is_refused(tmp_path: Path, model_dir: Path) -> None:
    data = _tiny_folder(tmp_path / "data")
    with pytest.raises(InvalidArgumentError, match="inside the data folder"):
        finetune(data, data / "model", init=model_dir, **_options())


def test_an_init_model_with_another_input_size_is_an_error(tmp_path: Path) -> None:
    data = LabelledFolder(_tiny_folder(tmp_path / "data"))  # read at 48x48
    init = build_model(ModelConfig(stem="imagenet", input_size=64))
    with pytest.raises(InvalidArgumentError, match=r"read at 48x48.*takes 64x64.*size=64"):
        finetune(data, tmp_path / "out", init=init, **_options())
    # Given as a path, the folder is read at the init model's own size.
    result = finetune(
        tmp_path / "data", tmp_path / "out", init=init, **_options(epochs=1, val_split=0.5)
    )
    assert EmotionRecognizer.from_pretrained(result.folder).config.input_size == 64


def test_a_colour_init_model_is_an_error(tmp_path: Path) -> None:
    data = _tiny_folder(tmp_path / "data")
    init = build_model(ModelConfig(stem="imagenet", in_chans=3, mean=(0.5,) * 3, std=(0.2,) * 3))
    with pytest.raises(InvalidArgumentError, match=r"3-channel input.*grayscale"):
        finetune(data, tmp_path / "out", init=init, **_options())


def test_a_bad_data_folder_fails_before_training(tmp_path: Path, model_dir: Path) -> None:
    data = _tiny_folder(tmp_path / "data", labels=("only",))
    with pytest.raises(InvalidArgumentError, match="at least two labels"):
        finetune(data, tmp_path / "out", init=model_dir, **_options())
    assert not (tmp_path / "out").exists()


def test_replace_head_keeps_the_backbone_and_the_rows_of_known_labels() -> None:
    torch.manual_seed(0)
    old = build_model(ModelConfig(stem="imagenet"))
    new = replace_head(old, ["contempt", "sad", "happy"])
    assert new.config.labels == ("contempt", "sad", "happy") and new.fc.out_features == 3
    assert torch.equal(new.fc.weight[1], old.fc.weight[4])
    assert torch.equal(new.fc.bias[2], old.fc.bias[3])
    for key, value in old.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(new.state_dict()[key], value), key
    with pytest.raises(InvalidArgumentError, match="at least two labels"):
        replace_head(old, ["one"])


def test_the_cli_has_the_issue_shape_and_prints_the_validation_accuracy(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(
        ["finetune", "d", "--output", "o", "--init", "m", "--epochs", "4", "--val-split", "0.3"]
    )
    assert (args.data, args.output, args.init, args.epochs, args.val_split, args.seed) == (
        "d",
        "o",
        "m",
        4,
        0.3,
        0,
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["finetune", "d", "--output", "o", "--val-split", "0.2", "--val", "v"]
        )
    data = _tiny_folder(tmp_path / "data")
    out = tmp_path / "out"
    argv = ["finetune", str(data), "--output", str(out), "--init", str(model_dir), "--epochs", "1"]
    assert main([*argv, "--seed", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"validation accuracy: \d+\.\d\d% \(macro F1", printed)
    assert f"model folder: {out}" in printed
    assert main(argv) == 2  # the folder now exists
    assert "exists and is not empty" in capsys.readouterr().err


@pytest.mark.slow  # a subprocess: imports, training, an ONNX export to predict
def test_the_example_script_fine_tunes_and_predicts(tmp_path: Path, model_dir: Path) -> None:
    data = _tiny_folder(tmp_path / "data", labels=("calm", "excited"))
    script = Path(__file__).resolve().parents[2] / "examples" / "finetune_folder.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    args = [str(data), "--output", str(tmp_path / "out"), "--init", str(model_dir)]
    result = subprocess.run(
        [sys.executable, str(script), *args, "--epochs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "labels: calm, excited" in result.stdout
    assert re.search(r"^calm/s0_0\.png: (calm|excited) \(\d+%\)$", result.stdout, re.MULTILINE)


@pytest.mark.parametrize(("busy_share", "threads"), [(0.0, 2), (0.5, 1), (1.0, 1)])
def test_free_cores_leaves_the_cores_other_processes_keep_busy(
    monkeypatch: pytest.MonkeyPatch, busy_share: float, threads: int
) -> None:
    # Two cores for 0.2 s are 40 ticks: busy_share of them spent by other processes.
    samples = iter(
        [
            [0, 0, 0, 0, 0, 0, 0, 0],
            [round(40 * busy_share), 0, 0, 40 - round(40 * busy_share), 0, 0, 0, 0],
        ]
    )
    monkeypatch.setattr(finetune_module, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(finetune_module.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(finetune_module.os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    monkeypatch.setattr(finetune_module.time, "sleep", lambda _: None)
    assert finetune_module.free_cores() == threads
