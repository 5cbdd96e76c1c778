"""Tests of emotionnet.training: learning, exact resume, atomic checkpoints, DDP on gloo."""

from __future__ import annotations

import errno
import hashlib
import inspect
import json
import logging
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from dataclasses import replace as dataclass_replace
from pathlib import Path
from typing import Any, cast

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from emotionnet.augmentation import AugmentConfig
from emotionnet.errors import (
    CheckpointError,
    InvalidArgumentError,
    NonFiniteLossError,
    UnsupportedInputError,
)
from emotionnet.models import ModelConfig
from emotionnet.training import (
    Callback,
    History,
    TrainConfig,
    Trainer,
    bf16_supported,
    load_checkpoint,
    read_config_file,
)

TIMING = ("seconds", "images_per_sec")


class TinyNet(nn.Module):
    """A two-conv network: learns the stripe data in a few epochs on one CPU core."""

    def __init__(self, classes: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.fc(self.dropout(self.features(x)))
        return logits


def make_data(n: int, seed: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy images of 4 classes: horizontal stripes, vertical stripes, a blob, nothing."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = (size - 1) / 2
    patterns = torch.stack(
        [
            ((ys // 2) % 2).float(),
            ((xs // 2) % 2).float(),
            (((ys - centre) ** 2 + (xs - centre) ** 2) < (size / 4) ** 2).float(),
            torch.zeros(size, size),
        ]
    )
    noise = torch.rand(n, size, size, generator=generator) * 80 + 30
    images = (noise + 140 * patterns[labels]).clamp(0, 255).to(torch.uint8)
    return images, labels


def model_with_seed(seed: int = 0, dropout: float = 0.0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(dropout=dropout)


def quick(**overrides: Any) -> TrainConfig:
    settings: dict[str, Any] = {
        "max_epochs": 3,
        "batch_size": 16,
        "lr": 0.05,
        "warmup_epochs": 1,
        "progress": False,
        "num_workers": 0,
        "device": "cpu",
    }
    settings.update(overrides)
    return TrainConfig(**settings)


def without_timing(history: History) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


TRAIN = make_data(96, seed=1)
VAL = make_data(32, seed=2)
# Ten validation images (labels 0 1 2 3 0 1 2 3 0 1), for models that answer them as scripted.
VAL_10 = make_data(10, seed=6)
RIGHT = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
WRONG = [1, 2, 3, 0, 1, 2, 3, 0, 1, 2]  # 30% at most for one class


def right_first(k: int) -> list[int]:
    """Answers with accuracy k/10 on VAL_10."""
    return RIGHT[:k] + WRONG[k:]


class Scripted(TinyNet):
    """TinyNet that trains as usual but answers each epoch's validation as scripted.

    The trainer validates VAL_10 once per epoch, in one batch: the n-th such batch gets the
    classes ``answers[n]``, so a test sets the metrics the trainer sees from the outside.
    """

    def __init__(self, *answers: list[int]) -> None:
        torch.manual_seed(0)
        super().__init__()
        self.answers = list(answers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        if self.training or x.shape[0] != len(VAL_10[1]):  # a training step, or a probe
            return logits
        return F.one_hot(torch.tensor(self.answers.pop(0)), logits.shape[1]).float()


# ---- learning ------------------------------------------------------------------------------


def test_trainer_learns_a_learnable_signal(tmp_path: Path) -> None:
    train, val = make_data(256, seed=3), make_data(64, seed=4)
    config = quick(
        max_epochs=4, batch_size=32, lr=0.1, label_smoothing=0.1, checkpoint_dir=str(tmp_path)
    )
    history = Trainer(model_with_seed(), train, val, config).fit()
    assert len(history) == 4
    assert history[-1]["val_accuracy"] >= 0.9
    assert history[-1]["val_macro_f1"] >= 0.85
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(row["images_per_sec"] > 0 for row in history)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"last.ckpt", "best.safetensors", "history.json", "history.csv"} <= names
    assert "train_config.json" in names
    assert History.from_json(tmp_path / "history.json") == history
    assert TrainConfig.from_file(tmp_path / "train_config.json") == config


def test_a_model_that_answers_one_class_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    # Every training label is 'vertical stripes': the model learns to answer it for everything.
    images, labels = TRAIN
    one_class = (images, torch.ones_like(labels))
    with caplog.at_level(logging.WARNING, logger="emotionnet.training"):
        Trainer(model_with_seed(), one_class, VAL, quick(max_epochs=2)).fit()
    (warning,) = [r for r in caplog.records if "tell the classes apart" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "predicts 'class_1' for 100% of the 32 validation images" in warning.getMessage()
    # A model that learnt the four classes is not warned about, nor a run without validation.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emotionnet.training"):
        Trainer(model_with_seed(), TRAIN, VAL, quick(max_epochs=4, lr=0.1)).fit()
        Trainer(model_with_seed(), one_class, None, quick(max_epochs=1, monitor="train_loss")).fit()
    assert "tell the classes apart" not in caplog.text


ONE_CLASS_90 = [1] * 9 + [3]  # 90% 'class_1', accuracy 0.2
ONE_CLASS_80 = [1] * 8 + [3] * 2  # 80% 'class_1', accuracy 0.2


@pytest.mark.parametrize(
    ("answers", "finite", "warned_epoch"),
    [
        ((ONE_CLASS_90, WRONG), True, 1),  # the best epoch is released: warned, not the last
        ((ONE_CLASS_80, WRONG), True, None),  # 80% is under the threshold (90%)
        ((RIGHT, ONE_CLASS_90), True, None),  # the last epoch is not the one released
        # No best epoch (every epoch's weights hold a NaN): the last epoch is looked at.
        ((ONE_CLASS_90, WRONG), False, None),
        ((WRONG, ONE_CLASS_90), False, 2),
    ],
)
def test_the_one_class_warning_looks_at_the_released_epoch(
    answers: tuple[list[int], ...],
    finite: bool,
    warned_epoch: int | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = Scripted(*answers)
    if not finite:
        model.register_buffer("spare", torch.tensor(math.nan))  # never read by forward
    with caplog.at_level(logging.WARNING, logger="emotionnet.training"):
        trainer = Trainer(model, TRAIN, VAL_10, quick(max_epochs=2))
        trainer.fit()
    assert trainer.best_epoch == (1 if finite else None)
    warned = [
        record.getMessage().split(":")[0]
        for record in caplog.records
        if "tell the classes apart" in record.getMessage()
    ]
    expected = (
        f"The model of epoch {warned_epoch} predicts 'class_1' for 90% of the 10 validation images"
    )
    assert warned == ([] if warned_epoch is None else [expected])


def test_best_weights_and_model_config_are_saved_for_the_recognizer(tmp_path: Path) -> None:
    from emotionnet.models import build_model

    model_config = ModelConfig(
        stem="imagenet", num_classes=4, input_size=16, labels=("h", "v", "blob", "none")
    )
    config = quick(max_epochs=1, checkpoint_dir=str(tmp_path))
    small = make_data(32, seed=5)
    torch.manual_seed(0)  # the model's initial weights; unseeded, they followed earlier tests
    trainer = Trainer(build_model(model_config), small, small, config, model_config=model_config)
    trainer.fit()
    assert ModelConfig.load(tmp_path) == model_config
    rebuilt = build_model(model_config, weights=tmp_path / "best.safetensors")
    assert_same_weights(rebuilt, trainer.model)
    assert load_file(str(tmp_path / "best.safetensors")).keys() == trainer.model.state_dict().keys()


# ---- exact resume --------------------------------------------------------------------------


class Kill:
    """A duck-typed callback: the process dies right after an epoch's checkpoint is written."""

    def __init__(self, after_epoch: int) -> None:
        self.after_epoch = after_epoch

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if row["epoch"] == self.after_epoch:
            raise KeyboardInterrupt("killed")


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "plateau"])
def test_resume_continues_exactly(tmp_path: Path, schedule: str) -> None:
    config = quick(
        schedule=schedule,
        mixup_alpha=0.4,
        cutmix_alpha=1.0,
        mix_prob=0.8,
        plateau_patience=0,
        grad_clip=5.0,
        checkpoint_dir=str(tmp_path / "straight"),
    )
    straight = model_with_seed(dropout=0.3)
    history = Trainer(straight, TRAIN, VAL, config).fit()

    killed = dataclass_replace(config, checkpoint_dir=str(tmp_path / "killed"))
    first = model_with_seed(dropout=0.3)
    with pytest.raises(KeyboardInterrupt):
        Trainer(first, TRAIN, VAL, killed, callbacks=[Kill(after_epoch=1)]).fit()
    assert load_checkpoint(tmp_path / "killed" / "last.ckpt")["epoch"] == 1

    resumed_model = model_with_seed(seed=99, dropout=0.3)  # weights come from the checkpoint
    resumed = Trainer(resumed_model, TRAIN, VAL, killed)
    resumed_history = resumed.fit(resume=True)
    assert_same_weights(resumed_model, straight)
    assert without_timing(resumed_history) == without_timing(history)
    assert resumed.global_step == 3 * 6


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_resume_with_another_max_epochs_is_refused_when_the_schedule_spans_the_run(
    tmp_path: Path, schedule: str
) -> None:
    # One-cycle used to fail mid-epoch inside torch ("Tried to step 17 times"), cosine to
    # jump from its end back up to a high LR.
    config = quick(max_epochs=2, schedule=schedule, checkpoint_dir=str(tmp_path))
    Trainer(model_with_seed(), TRAIN, VAL, config).fit()
    before = (tmp_path / "last.ckpt").read_bytes()
    longer = Trainer(model_with_seed(), TRAIN, VAL, dataclass_replace(config, max_epochs=4))
    with pytest.raises(CheckpointError, match=r"max_epochs=2 .* max_epochs=4") as info:
        longer.fit(resume=True)
    assert "start a new run" in str(info.value) and "best.safetensors" in str(info.value)
    assert (tmp_path / "last.ckpt").read_bytes() == before
    assert len(longer.history) == 0


def test_resume_warns_about_changed_training_settings_but_not_run_only_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = quick(max_epochs=2, schedule="constant", checkpoint_dir=str(tmp_path))
    Trainer(model_with_seed(), TRAIN, VAL, dataclass_replace(config, max_epochs=1)).fit()
    # Where and how the run reports or checkpoints does not change what it trains.
    run_only = dataclass_replace(config, save_every=5, progress=not config.progress)
    with caplog.at_level(logging.WARNING, logger="emotionnet.training"):
        Trainer(model_with_seed(), TRAIN, VAL, run_only).fit(resume=True)
    assert "changed settings" not in caplog.text

    Trainer(model_with_seed(), TRAIN, VAL, dataclass_replace(config, max_epochs=1)).fit()
    caplog.clear()
    other_lr = dataclass_replace(config, lr=config.lr / 2, save_every=5)
    with caplog.at_level(logging.WARNING, logger="emotionnet.training"):
        Trainer(model_with_seed(), TRAIN, VAL, other_lr).fit(resume=True)
    assert "changed settings ['lr']" in caplog.text


@pytest.mark.parametrize("schedule", ["constant", "plateau"])
def test_resume_can_extend_schedules_that_do_not_span_the_run(
    tmp_path: Path, schedule: str
) -> None:
    config = quick(schedule=schedule, plateau_patience=0, checkpoint_dir=str(tmp_path / "a"))
    straight = model_with_seed()
    history = Trainer(straight, TRAIN, VAL, config).fit()

    short = dataclass_replace(config, max_epochs=1, checkpoint_dir=str(tmp_path / "b"))
    Trainer(model_with_seed(), TRAIN, VAL, short).fit()
    extended = model_with_seed(seed=99)
    resumed = Trainer(extended, TRAIN, VAL, dataclass_replace(short, max_epochs=3))
    assert without_timing(resumed.fit(resume=True)) == without_timing(history)
    assert_same_weights(extended, straight)


def test_resuming_a_run_that_stopped_early_trains_no_more(tmp_path: Path) -> None:
    config = quick(max_epochs=10, early_stopping_patience=1, checkpoint_dir=str(tmp_path))
    trainer = Trainer(Scripted(right_first(5), right_first(4)), TRAIN, VAL_10, config)
    history = trainer.fit()
    assert history.column("val_accuracy") == [0.5, 0.4]
    assert len(history) == 2 and trainer.should_stop

    class NoEpochs:
        def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
            raise AssertionError(f"epoch {epoch} trained after early stopping")

    model = model_with_seed(seed=99)
    resumed = Trainer(model, TRAIN, VAL_10, config, callbacks=[NoEpochs()])
    assert resumed.fit(resume=True).rows == history.rows
    assert resumed.should_stop and resumed.global_step == trainer.global_step
    assert_same_weights(model, trainer.model)

    # Checkpoints written before the flag was saved: the stop follows from the patience.
    state = load_checkpoint(tmp_path / "last.ckpt")
    assert state["should_stop"] is True
    del state["should_stop"]
    torch.save(state, tmp_path / "old.ckpt")
    old = Trainer(model_with_seed(), TRAIN, VAL_10, config, callbacks=[NoEpochs()])
    assert len(old.fit(resume=tmp_path / "old.ckpt")) == 2


def test_dataloader_workers_build_the_same_batches_as_the_loop() -> None:
    config = quick(max_epochs=2, mixup_alpha=0.2)
    in_loop = model_with_seed()
    Trainer(in_loop, TRAIN, None, dataclass_replace(config, monitor="train_loss")).fit()
    workers = model_with_seed()
    with_workers = dataclass_replace(config, monitor="train_loss", num_workers=1)
    Trainer(workers, TRAIN, None, with_workers).fit()
    assert_same_weights(in_loop, workers)


def test_resume_errors_are_clear(tmp_path: Path) -> None:
    trainer = Trainer(model_with_seed(), TRAIN, VAL, quick(checkpoint_dir=str(tmp_path)))
    with pytest.raises(CheckpointError, match="No checkpoint at"):
        trainer.fit(resume=True)
    with pytest.raises(InvalidArgumentError, match=r"resume=True needs config\.checkpoint_dir"):
        Trainer(model_with_seed(), TRAIN, VAL, quick()).fit(resume=True)
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="corrupt"):
        trainer.fit(resume=tmp_path / "junk.ckpt")


# ---- atomic checkpoints ----------------------------------------------------------------------


@pytest.fixture
def trained(tmp_path: Path) -> Trainer:
    # The constant schedule lets the tests resume it for more epochs.
    config = quick(max_epochs=1, schedule="constant", checkpoint_dir=str(tmp_path))
    trainer = Trainer(model_with_seed(), TRAIN, VAL, config)
    trainer.fit()
    return trainer


def test_a_crash_while_writing_leaves_the_previous_checkpoint(
    trained: Trainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = tmp_path / "last.ckpt"
    before = checkpoint.read_bytes()

    def crash_midway(obj: object, handle: Any, *args: object, **kwargs: object) -> None:
        handle.write(b"partial checkpoint bytes")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", crash_midway)
    longer = dataclass_replace(trained.config, max_epochs=3)
    resumed = Trainer(model_with_seed(), TRAIN, VAL, longer)
    with pytest.raises(CheckpointError, match="previous checkpoint there is intact"):
        resumed.fit(resume=True)
    assert checkpoint.read_bytes() == before
    assert load_checkpoint(checkpoint)["epoch"] == 1
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_kill_during_the_rename_leaves_the_previous_checkpoint(
    trained: Trainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = tmp_path / "last.ckpt"
    before = checkpoint.read_bytes()
    real_replace = os.replace

    def killed_replace(src: Any, dst: Any) -> None:
        if Path(dst).name == "last.ckpt":
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_replace)
    trained.epoch = 5  # the state about to be written differs from the one on disk
    with pytest.raises(KeyboardInterrupt):
        trained.save_checkpoint()
    assert checkpoint.read_bytes() == before
    assert load_checkpoint(checkpoint)["epoch"] == 1
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_checkpoint_loads_with_weights_only_and_holds_the_documented_keys(
    trained: Trainer, tmp_path: Path
) -> None:
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert {
        "model",
        "optimizer",
        "scheduler",
        "scaler",
        "rng",
        "history",
        "config",
        "epoch",
        "best",
    } <= set(state)
    assert TrainConfig.from_dict(state["config"]) == trained.config
    assert len(state["rng"]) == 1 and isinstance(state["rng"][0]["torch"], torch.Tensor)


# ---- selection, early stopping, schedules --------------------------------------------------


def test_best_checkpoint_and_early_stopping_follow_the_monitor(tmp_path: Path) -> None:
    config = quick(
        max_epochs=10, monitor="macro_f1", early_stopping_patience=2, checkpoint_dir=str(tmp_path)
    )
    # Accuracy 0.6 in epochs 1 to 4; macro-F1 0.4, 0.617, 0.608, 0.4; then 1.0 (never reached).
    low, best, lower = (
        [0, 1, 0, 0, 0, 1, 0, 0, 0, 1],
        [*RIGHT[:5], 3, 3, 3, 3, 3],
        RIGHT[:5] + [0] * 5,
    )
    trainer = Trainer(Scripted(low, best, lower, low, RIGHT), TRAIN, VAL_10, config)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    class Snapshot:
        def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
            snapshots[row["epoch"]] = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    trainer.callbacks.append(Snapshot())
    history = trainer.fit()
    assert history.column("val_accuracy") == pytest.approx([0.6] * 4)
    assert history.column("val_macro_f1") == pytest.approx([0.4, 0.617, 0.608, 0.4], abs=1e-3)
    assert len(history) == 4  # epochs 3 and 4 did not beat epoch 2
    assert trainer.best_epoch == 2 and (history.best("macro_f1") or {}).get("epoch") == 2
    best = load_file(str(tmp_path / "best.safetensors"))
    assert all(torch.equal(best[k], snapshots[2][k]) for k in best)
    trainer.load_best()
    assert all(torch.equal(v, snapshots[2][k]) for k, v in trainer.model.state_dict().items())


def test_learning_rate_schedules() -> None:
    # 96 images, batch 16: 6 steps per epoch; the history records each epoch's first LR.
    cosine = Trainer(model_with_seed(), TRAIN, VAL, quick(lr=0.1, min_lr=0.01)).fit()
    assert cosine.column("lr")[0] == pytest.approx(0.1 / 6)
    assert cosine.column("lr")[1] == pytest.approx(0.1)
    # Epoch 3 starts half-way through the cosine part: min_lr + (lr - min_lr) / 2.
    assert cosine.column("lr")[2] == pytest.approx(0.055)
    onecycle = Trainer(model_with_seed(), TRAIN, VAL, quick(schedule="onecycle")).fit()
    assert onecycle.column("lr")[0] == pytest.approx(0.05 / 25)
    # Batch 48: 2 steps per epoch, so half an epoch is one warm-up step, which OneCycleLR
    # divides by zero on; 0 keeps its default 30% warm-up.
    one_step = quick(schedule="onecycle", max_epochs=2, batch_size=48, warmup_epochs=0.5)
    with pytest.raises(InvalidArgumentError, match=r"warmup_epochs=0\.5 is 1 optimizer step"):
        Trainer(model_with_seed(), TRAIN, VAL, one_step).fit()
    default = Trainer(model_with_seed(), TRAIN, VAL, dataclass_replace(one_step, warmup_epochs=0))
    assert len(default.fit()) == 2
    constant = Trainer(model_with_seed(), TRAIN, VAL, quick(schedule="constant", warmup_epochs=0))
    assert constant.fit().column("lr") == pytest.approx([0.05] * 3)


def test_cpu_bf16_autocast_channels_last_and_class_weights() -> None:
    config = quick(
        max_epochs=1,
        amp="bf16",
        channels_last=True,
        class_weights=[1.0, 2.0, 1.0, 0.5],
        optimizer="adamw",
        lr=1e-3,
        augment=AugmentConfig.disabled(),
    )
    history = Trainer(model_with_seed(), TRAIN, VAL, config).fit()
    assert history[0]["train_loss"] > 0


def test_class_weight_method_from_the_class_weights_module() -> None:
    trainer = Trainer(model_with_seed(), TRAIN, VAL, quick(class_weights="balanced"))
    assert trainer.class_weights is not None and trainer.class_weights.shape == (4,)


# ---- CPU defaults: bf16 where native, channels_last, batches built in-process -------------


def fake_cpu(
    monkeypatch: pytest.MonkeyPatch, *, avx512_bf16: bool, amx: bool, vendor: str = "AuthenticAMD"
) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr("emotionnet.training.config._cpu_vendor", lambda: vendor)


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "vendor", "expected"),
    [
        (True, False, "AuthenticAMD", torch.bfloat16),  # Zen 4/5: 3x float32 measured
        (True, False, "GenuineIntel", None),  # AVX512-BF16 without AMX: 0.8x measured
        (True, False, "", None),
        (False, True, "GenuineIntel", torch.bfloat16),  # AMX
        (True, True, "GenuineIntel", torch.bfloat16),
        (False, False, "AuthenticAMD", None),
        (False, False, "GenuineIntel", None),
    ],
)
def test_amp_auto_is_bf16_exactly_on_cpus_where_it_measured_faster(
    monkeypatch: pytest.MonkeyPatch,
    avx512_bf16: bool,
    amx: bool,
    vendor: str,
    expected: torch.dtype | None,
) -> None:
    fake_cpu(monkeypatch, avx512_bf16=avx512_bf16, amx=amx, vendor=vendor)
    assert bf16_supported("cpu") is (expected is not None)
    trainer = Trainer(model_with_seed(), TRAIN, VAL, TrainConfig(device="cpu", progress=False))
    assert trainer.amp_dtype == expected
    # An explicit choice wins over the detection either way.
    off = Trainer(model_with_seed(), TRAIN, VAL, quick(amp="off"))
    forced = Trainer(model_with_seed(), TRAIN, VAL, quick(amp="bf16"))
    assert (off.amp_dtype, forced.amp_dtype) == (None, torch.bfloat16)


def test_the_cpu_vendor_is_read_from_cpuinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    from emotionnet.training.config import _cpu_vendor

    assert isinstance(_cpu_vendor(), str)  # this machine's, whatever it is
    real_open = open

    def fake_open(path: object, *args: object, **kwargs: object) -> object:
        if path == "/proc/cpuinfo":
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", fake_open)
    monkeypatch.setattr("platform.processor", lambda: "AMD64 Family 25 Model 97, AuthenticAMD")
    assert _cpu_vendor() == "AuthenticAMD"
    monkeypatch.setattr("platform.processor", lambda: "Intel64 Family 6 Model 85")
    assert _cpu_vendor() == "GenuineIntel"
    monkeypatch.setattr("platform.processor", lambda: "")
    assert _cpu_vendor() == ""


def test_bf16_detection_is_false_where_bf16_would_be_emulated() -> None:
    assert bf16_supported("meta") is False
    if not torch.cuda.is_available():
        assert bf16_supported("cuda") is False


def test_cpu_defaults_build_batches_in_process_in_channels_last() -> None:
    trainer = Trainer(model_with_seed(), TRAIN, VAL, TrainConfig(device="cpu", progress=False))
    assert (trainer.channels_last, trainer.data_on_device, trainer.num_workers) == (True, True, 0)
    workers = Trainer(model_with_seed(), TRAIN, VAL, quick(num_workers=2))
    assert (workers.data_on_device, workers.num_workers) == (False, 2)
    nchw = Trainer(model_with_seed(), TRAIN, VAL, quick(channels_last=False))
    assert nchw.channels_last is False
    with pytest.raises(InvalidArgumentError, match="set num_workers=0"):
        TrainConfig(data_on_device=True, num_workers=2)


def test_cpu_training_with_the_default_config_learns(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, avx512_bf16=True, amx=False)  # the bf16 path, on any CPU
    train, val = make_data(256, seed=3), make_data(64, seed=4)
    # Only the run's size is set: precision, memory format and batch building are the defaults.
    config = TrainConfig(max_epochs=4, batch_size=32, device="cpu", progress=False)
    trainer = Trainer(model_with_seed(), train, val, config)
    assert trainer.amp_dtype == torch.bfloat16 and trainer.channels_last
    history = trainer.fit()
    assert history[-1]["val_accuracy"] >= 0.9
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_resume_is_exact_with_the_cpu_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_cpu(monkeypatch, avx512_bf16=True, amx=False)
    config = TrainConfig(
        max_epochs=3,
        batch_size=16,
        lr=0.05,
        label_smoothing=0.1,
        mixup_alpha=0.2,
        mix_prob=0.5,
        device="cpu",
        progress=False,
        checkpoint_dir=str(tmp_path / "straight"),
    )
    straight = model_with_seed()
    history = Trainer(straight, TRAIN, VAL, config).fit()
    killed = dataclass_replace(config, checkpoint_dir=str(tmp_path / "killed"))
    with pytest.raises(KeyboardInterrupt):
        Trainer(model_with_seed(), TRAIN, VAL, killed, callbacks=[Kill(after_epoch=2)]).fit()
    resumed_model = model_with_seed(seed=5)
    resumed = Trainer(resumed_model, TRAIN, VAL, killed)
    assert resumed.amp_dtype == torch.bfloat16 and resumed.channels_last
    assert without_timing(resumed.fit(resume=True)) == without_timing(history)
    assert_same_weights(resumed_model, straight)


def test_num_threads_holds_during_fit_and_is_restored() -> None:
    seen: list[int] = []

    class Threads(Callback):
        def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
            seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    Trainer(model_with_seed(), TRAIN, VAL, quick(num_threads=wanted), callbacks=[Threads()]).fit()
    assert seen == [wanted] * 3
    assert torch.get_num_threads() == before
    with pytest.raises(InvalidArgumentError, match="num_threads"):
        TrainConfig(num_threads=0)


# ---- CUDA graphs ---------------------------------------------------------------------------


def test_cuda_graph_is_refused_where_it_cannot_run() -> None:
    with pytest.raises(InvalidArgumentError, match=r"device is cpu; set cuda_graph=False"):
        Trainer(model_with_seed(), TRAIN, VAL, quick(cuda_graph=True))
    with pytest.raises(InvalidArgumentError, match="choose one of them"):
        quick(cuda_graph=True, compile=True)


def test_the_graph_capture_leaves_the_run_and_the_model_as_they_were(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The capture's warm-up steps move batch-norm statistics; the run must not see them.

    CUDA is not needed to check the trainer's side: a stand-in for make_graphed_callables
    runs warm-up forward passes in training mode, as the real one does, and returns the
    module it was given, so the run must match a run without graphs bit for bit.
    """
    calls: list[tuple[torch.Size, bool]] = []

    def make_graphed_callables(module: nn.Module, sample_args: tuple[torch.Tensor, ...]) -> Any:
        (sample,) = sample_args
        calls.append((sample.shape, module.training))
        with torch.no_grad():
            for _ in range(3):
                module(torch.randn_like(sample) * 5)
        return module

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", make_graphed_callables)
    reference = model_with_seed()
    expected = Trainer(reference, TRAIN, VAL, quick(seed=3)).fit()
    model = model_with_seed()
    trainer = Trainer(model, TRAIN, VAL, quick(seed=3))
    # The device check refuses a CPU run: switch graphs on past it.
    trainer.config = dataclass_replace(trainer.config, cuda_graph=True)
    history = trainer.fit()
    assert calls == [(torch.Size([16, 1, 16, 16]), True)]  # captured once, for every step
    assert without_timing(history) == without_timing(expected)
    assert_same_weights(model, reference)
    assert "forward" not in vars(model)  # the graph wraps the model; it is not patched


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_training_matches_eager_training_on_a_gpu() -> None:
    runs = []
    for graph in (False, True):
        model = model_with_seed()
        config = quick(device="cuda", amp="off", cuda_graph=graph, seed=5)
        history = Trainer(model, TRAIN, VAL, config).fit()
        runs.append((model.cpu().state_dict(), [row["train_loss"] for row in history]))
    (eager, eager_losses), (graphed, graphed_losses) = runs
    assert graphed_losses == pytest.approx(eager_losses, rel=1e-4)
    for key, value in eager.items():
        torch.testing.assert_close(graphed[key], value, rtol=1e-3, atol=1e-4, msg=key)


# ---- weight averaging and the end of the run ------------------------------------------------


def float_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


def test_ema_is_the_hand_computed_average_of_weights_and_batch_norm_buffers(
    tmp_path: Path,
) -> None:
    decay = 0.8
    raw: list[dict[str, torch.Tensor]] = []
    averaged: list[dict[str, torch.Tensor]] = []

    class Record(Callback):
        def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
            raw.append(float_state(trainer.model))
            averaged.append(float_state(trainer.evaluated_model))

    # One optimizer step per epoch (96 images, batch 96): the model after each step is recorded.
    config = quick(
        max_epochs=4, batch_size=96, ema_decay=decay, checkpoint_dir=str(tmp_path), amp="off"
    )
    trainer = Trainer(model_with_seed(), TRAIN, VAL, config, callbacks=[Record()])
    trainer.fit()
    expected = raw[0]  # the first update copies the weights
    for step, state in enumerate(raw[1:], start=1):
        expected = {k: decay * expected[k] + (1 - decay) * state[k] for k in expected}
        for key in expected:
            torch.testing.assert_close(averaged[step][key], expected[key], rtol=0, atol=1e-6)
    assert any("running_mean" in key for key in expected)  # batch-norm buffers are averaged
    assert not torch.equal(
        averaged[-1]["features.1.running_mean"], raw[-1]["features.1.running_mean"]
    )
    # Validation, best.safetensors and load_best use the averaged weights.
    assert trainer.best_epoch is not None
    best = load_file(tmp_path / "best.safetensors")
    for key, value in averaged[trainer.best_epoch - 1].items():
        assert torch.equal(best[key], value), key
    trainer.load_best()
    for key, value in averaged[trainer.best_epoch - 1].items():
        assert torch.equal(trainer.model.state_dict()[key], value), key


def test_validation_scores_the_averaged_model() -> None:
    from emotionnet.inference import predict_logits

    seen: list[float] = []

    class Score(Callback):
        def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
            logits = predict_logits(trainer.evaluated_model, VAL[0], tta=False)
            seen.append(float((logits.argmax(1) == VAL[1]).float().mean()))
            assert row["val_accuracy"] == pytest.approx(seen[-1])

    config = quick(max_epochs=2, ema_decay=0.5, amp="off")
    trainer = Trainer(model_with_seed(), TRAIN, VAL, config, callbacks=[Score()])
    trainer.fit()
    assert len(seen) == 2 and trainer.evaluated_model is not trainer.model


def test_resume_is_exact_with_a_weight_average(tmp_path: Path) -> None:
    config = quick(ema_decay=0.9, mixup_alpha=0.2, checkpoint_dir=str(tmp_path / "straight"))
    straight = Trainer(model_with_seed(), TRAIN, VAL, config)
    history = straight.fit()
    killed = dataclass_replace(config, checkpoint_dir=str(tmp_path / "killed"))
    with pytest.raises(KeyboardInterrupt):
        Trainer(model_with_seed(), TRAIN, VAL, killed, callbacks=[Kill(after_epoch=1)]).fit()
    resumed = Trainer(model_with_seed(seed=3), TRAIN, VAL, killed)
    assert without_timing(resumed.fit(resume=True)) == without_timing(history)
    assert_same_weights(resumed.evaluated_model, straight.evaluated_model)
    assert_same_weights(resumed.model, straight.model)
    # A checkpoint without an average cannot continue a run that keeps one.
    plain = dataclass_replace(config, ema_decay=None, checkpoint_dir=str(tmp_path / "plain"))
    with pytest.raises(KeyboardInterrupt):
        Trainer(model_with_seed(), TRAIN, VAL, plain, callbacks=[Kill(after_epoch=1)]).fit()
    averaged = dataclass_replace(plain, ema_decay=0.9)
    with pytest.raises(CheckpointError, match="trained without ema_decay"):
        Trainer(model_with_seed(), TRAIN, VAL, averaged).fit(resume=True)


def test_mixing_stops_for_the_last_epochs() -> None:
    from emotionnet.preprocessing import normalize

    batches: list[torch.Tensor] = []

    class Recorder(TinyNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.training:
                batches.append(x.detach().flatten(1))
            return super().forward(x)

    config = quick(
        max_epochs=3,
        mixup_alpha=0.4,
        mix_prob=1.0,
        mix_off_epochs=1,
        augment=AugmentConfig.disabled(),
    )
    torch.manual_seed(0)
    Trainer(Recorder(), TRAIN, VAL, config).fit()
    # Without augmentation, an unmixed batch holds training faces as they are, a mixed one
    # blends of two: 6 batches per epoch, the last epoch's unmixed.
    faces = normalize(TRAIN[0]).flatten(1)
    as_they_are = [bool(torch.isclose(b[:, None], faces).all(2).any(1).all()) for b in batches]
    assert as_they_are == [False] * 12 + [True] * 6
    with pytest.raises(InvalidArgumentError, match="mix_off_epochs"):
        quick(max_epochs=3, mix_off_epochs=4)
    with pytest.raises(InvalidArgumentError, match="ema_decay"):
        quick(ema_decay=1.0)


# ---- input checks --------------------------------------------------------------------------


def test_bad_trainer_inputs_are_named() -> None:
    images, labels = TRAIN
    with pytest.raises(InvalidArgumentError, match="-1 marks unlabelled"):
        Trainer(model_with_seed(), (images, torch.full_like(labels, -1)), VAL, quick())
    with pytest.raises(InvalidArgumentError, match="labels from 0 to 3"):
        Trainer(TinyNet(classes=3), TRAIN, VAL, quick())
    with pytest.raises(InvalidArgumentError, match="needs a val_set"):
        Trainer(model_with_seed(), TRAIN, None, quick())
    with pytest.raises(InvalidArgumentError, match="class_weights has 2 values"):
        Trainer(model_with_seed(), TRAIN, VAL, quick(class_weights=[1.0, 2.0]))
    with pytest.raises(InvalidArgumentError, match="logits shaped"):
        Trainer(nn.Identity(), TRAIN, VAL, quick())
    with pytest.raises(UnsupportedInputError, match="config must be a TrainConfig"):
        Trainer(model_with_seed(), TRAIN, VAL, {"max_epochs": 1})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="amp='fp16' needs CUDA"):
        Trainer(model_with_seed(), TRAIN, VAL, quick(amp="fp16"))


# ---- config and history --------------------------------------------------------------------


def test_train_config_round_trips_through_json_and_toml(tmp_path: Path) -> None:
    config = TrainConfig(
        max_epochs=40,
        class_weights=[1.0, 2.0],
        augment=AugmentConfig(rotation=15.0),
        monitor="accuracy",
        checkpoint_dir=str(tmp_path),
    )
    assert config.monitor == "val_accuracy" and config.monitor_mode == "max"
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig.from_file(config.save(tmp_path / "train.json")) == config
    (tmp_path / "recipe.toml").write_text(
        textwrap.dedent(
            """
            [model]
            stem = "small"
            [train]
            epochs = 60
            optimizer = "adamw"
            class_weights = "balanced"
            [train.augment]
            scale = [0.8, 1.2]
            """
        )
    )
    recipe = TrainConfig.from_file(tmp_path / "recipe.toml", section="train")
    assert (recipe.max_epochs, recipe.optimizer, recipe.class_weights) == (60, "adamw", "balanced")
    assert recipe.augment.scale == (0.8, 1.2)
    assert read_config_file(tmp_path / "recipe.toml")["model"] == {"stem": "small"}
    with pytest.raises(InvalidArgumentError, match=r"has no table \[data\]"):
        TrainConfig.from_file(tmp_path / "recipe.toml", section="data")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"max_epoch": 3}, r"Unknown training config keys \['max_epoch'\]"),
        ({"epochs": 3, "max_epochs": 3}, "either epochs or max_epochs"),
        ({"optimizer": "adam"}, "'adam' for argument optimizer"),
        ({"schedule": "step"}, "'step' for argument schedule"),
        ({"lr": 0}, "lr must be a positive number"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"monitor": "f1"}, "'f1' for argument monitor"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"amp": "fp8"}, "'fp8' for argument amp"),
        ({"augment": {"hflip": 2}}, "hflip must be a probability"),
        ({"schedule": "onecycle", "max_epochs": 1}, "shorter than max_epochs"),
        ({"device": "tpu:x"}, "device='tpu:x' is not a device"),
        ({"class_weights": "balance"}, "'balance' for argument class_weights"),
        ({"eval_tta": "flp"}, r"'flp' for argument eval_tta\. Valid values are False, True"),
        ({"max_nonfinite_steps": -1}, "max_nonfinite_steps must be an integer >= 0"),
        ({"max_nonfinite_steps": 1.5}, "max_nonfinite_steps must be an integer >= 0"),
    ],
)
def test_train_config_rejects_bad_values(data: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        TrainConfig.from_dict(data)


def test_read_config_file_rejects_other_formats(tmp_path: Path) -> None:
    (tmp_path / "train.yaml").write_text("max_epochs: 3")
    with pytest.raises(InvalidArgumentError, match=r"use a \.json or \.toml file"):
        read_config_file(tmp_path / "train.yaml")
    (tmp_path / "bad.toml").write_text("max_epochs = ")
    with pytest.raises(InvalidArgumentError, match="Could not parse"):
        read_config_file(tmp_path / "bad.toml")


def test_history_exports(tmp_path: Path) -> None:
    history = History(
        [
            {"epoch": 1, "train_loss": 1.0, "val_loss": None, "lr": 0.1},
            {"epoch": 2, "train_loss": 0.5, "val_loss": None, "lr": 0.05, "note": "x"},
        ]
    )
    lines = history.to_csv(tmp_path / "h.csv").splitlines()
    assert lines[0].endswith(",seconds,note")
    assert lines[1].startswith("1,1.0,,")
    assert (tmp_path / "h.csv").read_text().splitlines() == lines
    assert History.from_json(history.to_json()) == history
    assert (history.best("train_loss") or {}).get("epoch") == 2
    assert history.best("accuracy") is None


# ---- checkpoint integrity ------------------------------------------------------------------


def flip_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x04
    path.write_bytes(bytes(data))


def resume_after_one_epoch(config: TrainConfig) -> Trainer:
    return Trainer(model_with_seed(seed=7), TRAIN, VAL, dataclass_replace(config, max_epochs=2))


def test_checkpoints_carry_a_digest_that_any_zip_reader_ignores(
    trained: Trainer, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "last.ckpt"
    with zipfile.ZipFile(checkpoint) as archive:
        assert archive.comment.startswith(b"emotionnet-sha256:")
        assert archive.testzip() is None
    expected = hashlib.sha256(checkpoint.read_bytes()[: -len(archive.comment) - 2]).hexdigest()
    assert archive.comment.decode().endswith(expected)
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1


@pytest.mark.parametrize(
    "where", ["first byte", "tensor data", "zip directory", "digest", "truncated", "appended"]
)
def test_a_damaged_checkpoint_is_refused_on_resume(
    trained: Trainer, tmp_path: Path, where: str
) -> None:
    checkpoint = tmp_path / "last.ckpt"
    data = checkpoint.read_bytes()
    model_bytes = trained.model.state_dict()["fc.weight"].numpy().tobytes()
    offsets = {
        "first byte": 0,
        "tensor data": data.index(model_bytes) + 5,
        "zip directory": len(data) - 200,
        "digest": len(data) - 1,
    }
    if where in offsets:
        flip_bit(checkpoint, offsets[where])
    elif where == "truncated":
        checkpoint.write_bytes(data[: len(data) // 2])
    else:
        checkpoint.write_bytes(data + b"\0")
    damaged = checkpoint.read_bytes()
    resumed = resume_after_one_epoch(trained.config)
    with pytest.raises(CheckpointError, match="is corrupt") as info:
        resumed.fit(resume=True)
    message = str(info.value)
    assert str(checkpoint) in message and "Delete it" in message and "resume=False" in message
    assert len(resumed.history) == 0 and resumed.global_step == 0
    assert checkpoint.read_bytes() == damaged  # refused, not overwritten
    with pytest.raises(CheckpointError, match="is corrupt"):
        load_checkpoint(checkpoint)


def test_a_checkpoint_without_a_digest_still_resumes_with_a_warning(
    trained: Trainer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # What emotionnet wrote before checkpoints carried a digest: torch.save's plain zip.
    old = tmp_path / "old.ckpt"
    torch.save(load_checkpoint(tmp_path / "last.ckpt"), old)
    with caplog.at_level(logging.WARNING, logger="emotionnet.training"):
        state = load_checkpoint(old)
    assert state["epoch"] == 1 and "nonfinite_steps" in state
    assert "has no integrity digest" in caplog.text and str(old) in caplog.text
    del state["nonfinite_steps"]  # older checkpoints also lack the newest key
    torch.save(state, old)
    resumed = resume_after_one_epoch(trained.config)
    assert len(resumed.fit(resume=old)) == 2
    with zipfile.ZipFile(tmp_path / "last.ckpt") as archive:  # the new one has a digest
        assert archive.comment.startswith(b"emotionnet-sha256:")


class Payload:
    """Pickles to a call that creates a file: proof of code run while loading."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_code_in_a_checkpoint_never_runs_even_with_a_matching_digest(
    trained: Trainer, tmp_path: Path
) -> None:
    from emotionnet.training.checkpoint import save_checkpoint_file

    marker = tmp_path / "code-ran"
    state = {**load_checkpoint(tmp_path / "last.ckpt"), "extra": Payload(marker)}
    signed = tmp_path / "signed.ckpt"  # the digest proves integrity, not trustworthiness
    with signed.open("wb") as handle:
        save_checkpoint_file(state, handle)
    plain = tmp_path / "plain.ckpt"
    torch.save(state, plain)
    for path in (signed, plain):
        with pytest.raises(CheckpointError, match="Could not read the checkpoint"):
            resume_after_one_epoch(trained.config).fit(resume=path)
    assert not marker.exists()


def test_checkpoints_with_missing_or_malformed_keys_raise_checkpoint_errors(
    trained: Trainer, tmp_path: Path
) -> None:
    state = load_checkpoint(tmp_path / "last.ckpt")
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "missing": ({k: v for k, v in state.items() if k != "history"}, r"lacks the keys \["),
        "wrong type": ({**state, "best": 3}, "best is of type int, expected dict"),
        "bad rng": ({**state, "rng": [{}]}, "malformed"),
        "bad history": ({**state, "history": [1, 2]}, "malformed"),
    }
    for name, (broken, match) in cases.items():
        path = tmp_path / f"{name}.ckpt"
        torch.save(broken, path)
        with pytest.raises(CheckpointError, match=match):
            resume_after_one_epoch(trained.config).fit(resume=path)


def test_best_weights_carry_a_digest_and_damaged_ones_are_refused(
    trained: Trainer, tmp_path: Path
) -> None:
    from safetensors import safe_open

    best = tmp_path / "best.safetensors"
    with safe_open(str(best), "pt") as handle:
        assert len(handle.metadata()["emotionnet.sha256"]) == 64

    def reloaded() -> Trainer:
        # A resumed trainer keeps no best weights in memory: load_best reads the file.
        trainer = Trainer(model_with_seed(seed=7), TRAIN, VAL, trained.config)
        trainer.fit(resume=True)
        return trainer

    assert_same_weights(reloaded().load_best(), trained.load_best())
    data = best.read_bytes()
    damaged = {
        "tensor data": (bytes([*data[:-3], data[-3] ^ 1, *data[-2:]]), "does not match"),
        "truncated": (data[:-10], "corrupt"),
        "not safetensors": (b"junk", "corrupt or not a safetensors file"),
    }
    for content, match in damaged.values():
        best.write_bytes(content)
        with pytest.raises(CheckpointError, match=match) as info:
            reloaded().load_best()
        assert str(best) in str(info.value)
    from safetensors.torch import save_file

    save_file({"other.weight": torch.zeros(2)}, str(best))  # intact, but another model's
    with pytest.raises(CheckpointError, match="do not fit the model"):
        reloaded().load_best()


KILL_SCRIPT = """
import sys
import torch
from torch import nn
torch.set_num_threads(1)
from emotionnet.training import TrainConfig, Trainer

torch.manual_seed(0)
# About 8 MB of weights and momentum: a write takes long enough to be killed half-way.
model = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 4096), nn.Linear(4096, 4))
images = torch.randint(0, 256, (32, 16, 16), dtype=torch.uint8)
data = (images, torch.arange(32) % 4)
config = TrainConfig(max_epochs=1, batch_size=16, progress=False, device="cpu",
                     schedule="constant", checkpoint_dir=sys.argv[1])
trainer = Trainer(model, data, data, config)
trainer.fit()
while True:
    trainer.epoch += 1
    trainer.save_checkpoint()
    print(trainer.epoch, flush=True)
"""


def kill_while_writing(script: Path, folder: Path, seed: int) -> int:
    """Run the writer until it has written twice, SIGKILL it at a random moment; its pid."""
    process = subprocess.Popen(
        [sys.executable, str(script), str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    for _ in range(2):
        assert process.stdout.readline(), "the writer died before writing"
    time.sleep(random.Random(seed).uniform(0.0, 0.3))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    process.stdout.close()
    return process.pid


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_sigkill_at_a_random_moment_leaves_a_verified_checkpoint(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(KILL_SCRIPT)
    folder = tmp_path / "run"
    pid = kill_while_writing(script, folder, seed=0)
    assert load_checkpoint(folder / "last.ckpt")["epoch"] >= 3  # the digest matches
    leftovers = [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert all(p.name.startswith(f".last.ckpt.{pid}.") for p in leftovers)
    for leftover in leftovers:  # as if the kill happened a while ago
        os.utime(leftover, (time.time() - 3600,) * 2)
    # The next process's writes remove what the killed one left behind; killed in turn, it
    # leaves a checkpoint that verifies again.
    kill_while_writing(script, folder, seed=1)
    assert not [p for p in folder.iterdir() if f".{pid}." in p.name]
    assert load_checkpoint(folder / "last.ckpt")["epoch"] >= 3


# ---- stale temporary files -----------------------------------------------------------------

DEAD_PID = 2**22 + 1  # above any Linux pid_max: no process can have it


def stale(folder: Path, name: str, *, age: float = 3600.0) -> Path:
    path = folder / name
    path.write_bytes(b"half of a killed write")
    os.utime(path, (time.time() - age,) * 2)
    return path


def test_the_next_checkpoint_write_removes_a_killed_writes_temporary_file(
    trained: Trainer, tmp_path: Path
) -> None:
    leftover = stale(tmp_path, f".last.ckpt.{DEAD_PID}.0123abcd.tmp")
    trained.save_checkpoint()
    assert not leftover.exists()
    assert load_checkpoint(tmp_path / "last.ckpt")["epoch"] == 1


@pytest.mark.skipif(os.name != "posix", reason="process liveness is checked on POSIX")
def test_only_this_targets_stale_temporaries_of_gone_processes_are_removed(
    tmp_path: Path,
) -> None:
    from emotionnet._atomic import atomic_write, atomic_write_bytes

    gone = [
        stale(tmp_path, f".a.bin.{DEAD_PID}.0123abcd.tmp"),
        # This process's id, not being written by it: left by an earlier process with the
        # same id (a restarted container).
        stale(tmp_path, f".a.bin.{os.getpid()}.89abcdef.tmp"),
    ]
    kept = [
        stale(tmp_path, f".a.bin.{DEAD_PID}.00000000.tmp", age=1.0),  # maybe still written
        stale(tmp_path, f".a.bin.{os.getppid()}.11111111.tmp"),  # its writer is alive
        stale(tmp_path, f".b.bin.{DEAD_PID}.22222222.tmp"),  # another file's
        stale(tmp_path, f".a.bin.{DEAD_PID}.33333333.tmp.bak"),  # not our name
        stale(tmp_path, f"a.bin.{DEAD_PID}.44444444.tmp"),
        stale(tmp_path, f".a.bin.x{DEAD_PID}.55555555.tmp"),
    ]
    folder = tmp_path / f".a.bin.{DEAD_PID}.66666666.tmp"
    folder.mkdir()  # not a regular file
    link = tmp_path / f".a.bin.{DEAD_PID}.77777777.tmp"
    link.symlink_to(tmp_path / "elsewhere")
    kept += [folder, link]

    def nested_write(handle: Any) -> None:
        # A write of the same file from this process while an older one is in flight (as
        # from another thread) must not remove the in-flight temporary file.
        own_name = re.compile(rf"\.a\.bin\.{os.getpid()}\.[0-9a-f]{{8}}\.tmp")
        (own,) = [p for p in tmp_path.iterdir() if own_name.fullmatch(p.name)]
        os.utime(own, (time.time() - 3600,) * 2)
        atomic_write_bytes(tmp_path / "a.bin", b"inner")
        assert own.exists()
        handle.write(b"outer")

    atomic_write(tmp_path / "a.bin", nested_write)
    assert (tmp_path / "a.bin").read_bytes() == b"outer"
    assert [p.name for p in gone if p.exists()] == []
    assert [p.name for p in kept if not os.path.lexists(p)] == []


# ---- non-finite losses ---------------------------------------------------------------------


class Poisoned(TinyNet):
    """TinyNet with NaN logits (or NaN gradients) at chosen (epoch, batch) training steps."""

    def __init__(self, steps: set[tuple[int, int]], *, gradients: bool = False) -> None:
        torch.manual_seed(0)  # the weights of model_with_seed()
        super().__init__()
        self.steps = steps
        self.gradients = gradients
        self.epoch = self.batch = 0
        self.states: dict[tuple[int, int], dict[str, torch.Tensor]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        key = (self.epoch, self.batch)
        self.batch += 1
        self.states[key] = {k: v.clone() for k, v in self.state_dict().items()}
        logits = super().forward(x)
        if key in self.steps:
            if self.gradients:
                logits.register_hook(lambda grad: grad * float("nan"))
            else:
                logits = logits * float("nan")
        return logits


class Clock(Callback):
    """Tells a Poisoned model which epoch it is in."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        model = cast(Poisoned, trainer.model)
        model.epoch, model.batch = epoch, 0


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_nan_loss_stops_the_run_and_the_last_checkpoint_resumes_exactly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = quick(max_nonfinite_steps=2, mixup_alpha=0.2, checkpoint_dir=str(tmp_path / "a"))
    straight = model_with_seed()
    history = Trainer(straight, TRAIN, VAL, config).fit()

    poisoned_config = dataclass_replace(config, checkpoint_dir=str(tmp_path / "b"))
    checkpoint = tmp_path / "b" / "last.ckpt"
    model = Poisoned({(2, b) for b in range(6)})  # epoch 2 diverges from its first batch
    trainer = Trainer(model, TRAIN, VAL, poisoned_config, callbacks=[Clock()])
    stopped = pytest.raises(NonFiniteLossError, match=r"epoch 2, batch 3/6: the loss is nan")
    with caplog.at_level(logging.WARNING, logger="emotionnet.training"), stopped as info:
        trainer.fit()
    assert isinstance(info.value, FloatingPointError)
    message = str(info.value)
    assert "3 steps in a row (max_nonfinite_steps=2)" in message
    assert f"The last checkpoint, {checkpoint}, is intact" in message
    assert caplog.text.count("the step is skipped") == 2
    # The bad steps changed nothing: not the weights, not the batch-norm statistics.
    assert_same_state(model.state_dict(), model.states[(2, 0)])
    assert trainer.global_step == 6 + 2 and len(trainer.history) == 1
    assert load_checkpoint(checkpoint)["epoch"] == 1
    assert len(History.from_json(tmp_path / "b" / "history.json")) == 1

    # After the error the checkpoint resumes, here with the divergence gone, exactly.
    resumed_model = model_with_seed(seed=99)
    resumed = Trainer(resumed_model, TRAIN, VAL, poisoned_config)
    assert without_timing(resumed.fit(resume=True)) == without_timing(history)
    assert_same_weights(resumed_model, straight)


def test_isolated_nonfinite_steps_are_skipped_and_training_goes_on(tmp_path: Path) -> None:
    config = quick(max_nonfinite_steps=2, ema_decay=0.9, checkpoint_dir=str(tmp_path))
    model = Poisoned({(1, 2), (1, 3), (2, 5)})
    trainer = Trainer(model, TRAIN, VAL, config, callbacks=[Clock()])
    history = trainer.fit()
    assert len(history) == 3 and all(math.isfinite(row["train_loss"]) for row in history)
    assert_same_state(model.states[(1, 2)], model.states[(1, 4)])  # 2 and 3 were skipped
    assert not torch.equal(model.states[(1, 1)]["fc.weight"], model.states[(1, 2)]["fc.weight"])
    assert trainer.global_step == 18
    # The LR schedule still follows the position in the run.
    clean = Trainer(model_with_seed(), TRAIN, VAL, dataclass_replace(config, checkpoint_dir=None))
    assert clean.fit().column("lr") == history.column("lr")
    assert load_checkpoint(tmp_path / "last.ckpt")["nonfinite_steps"] == 0


def test_nonfinite_gradients_are_skipped_too_when_they_are_clipped() -> None:
    config = quick(max_nonfinite_steps=0, grad_clip=1.0)
    model = Poisoned({(1, 1)}, gradients=True)
    trainer = Trainer(model, TRAIN, VAL, config, callbacks=[Clock()])
    with pytest.raises(
        NonFiniteLossError, match="batch 2/6: the gradient norm is not finite"
    ) as info:
        trainer.fit()
    assert_same_state(model.state_dict(), model.states[(1, 1)])
    assert "No checkpoint_dir is set, so there is no checkpoint" in str(info.value)


def test_the_count_of_nonfinite_steps_in_a_row_survives_a_resume(tmp_path: Path) -> None:
    # The last batch of epoch 1 and the first of epoch 2 are bad: two in a row, one too many.
    steps = {(1, 5), (2, 0)}
    config = quick(max_nonfinite_steps=1, checkpoint_dir=str(tmp_path / "straight"))
    with pytest.raises(NonFiniteLossError, match="epoch 2, batch 1/6"):
        Trainer(Poisoned(steps), TRAIN, VAL, config, callbacks=[Clock()]).fit()
    killed = dataclass_replace(config, checkpoint_dir=str(tmp_path / "killed"))
    with pytest.raises(KeyboardInterrupt):
        Trainer(Poisoned(steps), TRAIN, VAL, killed, callbacks=[Clock(), Kill(1)]).fit()
    assert load_checkpoint(tmp_path / "killed" / "last.ckpt")["nonfinite_steps"] == 1
    with pytest.raises(NonFiniteLossError, match="epoch 2, batch 1/6"):
        Trainer(Poisoned(steps), TRAIN, VAL, killed, callbacks=[Clock()]).fit(resume=True)


# ---- files and folders that are not what they should be ------------------------------------


def test_a_checkpoint_dir_that_is_a_file_is_refused_before_training(tmp_path: Path) -> None:
    file = tmp_path / "runs"
    file.write_text("not a folder")
    trainer = Trainer(model_with_seed(), TRAIN, VAL, quick(checkpoint_dir=str(file)))
    with pytest.raises(InvalidArgumentError, match=r"checkpoint_dir .*runs is a file"):
        trainer.fit()
    with pytest.raises(InvalidArgumentError, match="is a file"):
        trainer.fit(resume=True)
    assert trainer.global_step == 0
    below = Trainer(model_with_seed(), TRAIN, VAL, quick(checkpoint_dir=str(file / "sub")))
    with pytest.raises(CheckpointError, match="Not a directory"):
        below.fit()


def test_a_read_only_checkpoint_dir_raises_a_checkpoint_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT and Path(path).parent == folder:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    trainer = Trainer(model_with_seed(), TRAIN, VAL, quick(checkpoint_dir=str(folder)))
    # The first file a run creates there is its lock (see test_checkpoint_folder.py).
    with pytest.raises(CheckpointError, match=r"lock the checkpoint folder .*Read-only file"):
        trainer.fit()
    assert trainer.global_step == 0  # refused before the first epoch


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_a_checkpoint_dir_without_write_permission_raises_a_checkpoint_error(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        trainer = Trainer(model_with_seed(), TRAIN, VAL, quick(checkpoint_dir=str(folder)))
        with pytest.raises(CheckpointError, match="Permission denied"):
            trainer.fit()
    finally:
        folder.chmod(0o755)


def test_config_files_that_are_not_utf8_text_raise_invalid_argument_errors(
    tmp_path: Path,
) -> None:
    (tmp_path / "latin1.toml").write_bytes("name = 'Söze'\n".encode("latin-1"))
    with pytest.raises(InvalidArgumentError, match=r"latin1\.toml is not UTF-8 .*offset 9"):
        TrainConfig.from_file(tmp_path / "latin1.toml")
    (tmp_path / "utf16.json").write_text('{"max_epochs": 3}', encoding="utf-16")
    with pytest.raises(InvalidArgumentError, match="not UTF-8"):
        read_config_file(tmp_path / "utf16.json")
    (tmp_path / "folder.toml").mkdir()
    with pytest.raises(InvalidArgumentError, match="is a directory, not a regular file"):
        read_config_file(tmp_path / "folder.toml")
    with pytest.raises(FileNotFoundError):
        read_config_file(tmp_path / "missing.toml")
    (tmp_path / "history.json").write_bytes(b'[{"note": "\xff"}]')
    with pytest.raises(InvalidArgumentError, match="not UTF-8"):
        History.from_json(tmp_path / "history.json")
    (tmp_path / "history.json").write_text("[{")
    with pytest.raises(InvalidArgumentError, match="Could not parse the history JSON"):
        History.from_json(tmp_path / "history.json")


def test_config_files_nested_too_deeply_or_too_large_raise_invalid_argument_errors(
    tmp_path: Path,
) -> None:
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "deep.toml").write_text("a = " + "[" * 100_000 + "]" * 100_000)
    for name in ("deep.json", "deep.toml"):
        with pytest.raises(InvalidArgumentError, match="nested too deeply"):
            read_config_file(tmp_path / name)
    with pytest.raises(InvalidArgumentError, match="nested too deeply"):
        History.from_json(tmp_path / "deep.json")
    with (tmp_path / "huge.toml").open("wb") as file:
        file.truncate(17 << 20)  # sparse: nothing is written
    with pytest.raises(InvalidArgumentError, match="larger than 16 MiB"):
        read_config_file(tmp_path / "huge.toml")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_config_file_that_is_a_named_pipe_is_refused_without_waiting(tmp_path: Path) -> None:
    pipe = tmp_path / "recipe.toml"
    os.mkfifo(pipe)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            read_config_file(pipe)
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # blocked in open(): give it a writer so the thread can end
        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("read_config_file waited for a writer on a named pipe")
    (error,) = outcome
    assert isinstance(error, InvalidArgumentError)
    assert "named pipe (FIFO), not a regular file" in str(error)


# ---- distributed ---------------------------------------------------------------------------

DDP_SCRIPT = """
import json, os, sys
from pathlib import Path
import torch
from torch import nn
torch.set_num_threads(1)
from emotionnet.training import Trainer, TrainConfig

{helpers}

out = Path(sys.argv[1])
rank = int(os.environ["RANK"])


class Flaky(TinyNet):
    # Rank 1's loss is NaN at its third training step: every rank must skip that step.
    steps = 0

    def forward(self, x):
        logits = super().forward(x)
        if self.training:
            self.steps += 1
            if rank == 1 and self.steps == 3:
                logits = logits * float("nan")
        return logits


torch.manual_seed(rank)  # different init per rank: DDP must broadcast rank 0's weights
model = Flaky(dropout=0.2)
config = TrainConfig(
    max_epochs=2, batch_size=8, lr=0.05, progress=False, device="cpu", num_workers=0,
    mixup_alpha=0.2, checkpoint_dir=str(out / f"run_rank{{rank}}"),
)
trainer = Trainer(model, make_data(64, seed=1), make_data(16, seed=2), config)
history = trainer.fit()
torch.save(model.state_dict(), out / f"weights_rank{{rank}}.pt")
(out / f"result_rank{{rank}}.json").write_text(json.dumps(
    {{"history": history.rows, "steps": trainer.global_step, "world": trainer.world_size,
      "keeps_best": trainer.best_weights.weights is not None}}
))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_ddp_with_gloo_on_two_cpu_processes(tmp_path: Path) -> None:
    helpers = inspect.getsource(TinyNet) + "\n\n" + inspect.getsource(make_data)
    script = tmp_path / "ddp_train.py"
    script.write_text(
        DDP_SCRIPT.format(helpers=helpers).replace("from __future__ import annotations", "")
    )
    port = free_port()
    processes = []
    for rank in range(2):
        env = {
            **os.environ,
            "WORLD_SIZE": "2",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        if Path("/sys/class/net/lo").exists():
            env["GLOO_SOCKET_IFNAME"] = "lo"
        processes.append(
            subprocess.Popen(
                [sys.executable, str(script), str(tmp_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            pytest.fail("the DDP processes did not finish in 240 s")
    for rank, process in enumerate(processes):
        assert process.returncode == 0, f"rank {rank} failed:\n{outputs[rank]}"

    weights = [torch.load(tmp_path / f"weights_rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    results = [json.loads((tmp_path / f"result_rank{r}.json").read_text()) for r in (0, 1)]
    assert results[0]["world"] == 2
    assert [r["keeps_best"] for r in results] == [True, False]  # rank 0 alone copies them
    # Each rank gets half of the 64 images: 32 / batch 8 = 4 steps per epoch.
    assert results[0]["steps"] == results[1]["steps"] == 2 * 4
    strip = [
        [{k: v for k, v in row.items() if k not in TIMING} for row in r["history"]] for r in results
    ]
    assert strip[0] == strip[1] and strip[0][-1]["val_accuracy"] is not None
    # Rank 1's NaN loss made both ranks skip the step (rank 0 alone logs).
    assert "epoch 1, batch 3/4: the loss is not finite; the step is skipped" in outputs[0]
    assert all(math.isfinite(row["train_loss"]) for row in strip[0])
    assert (tmp_path / "run_rank0" / "last.ckpt").is_file()
    assert not (tmp_path / "run_rank1").exists()  # only rank 0 writes
    checkpoint = load_checkpoint(tmp_path / "run_rank0" / "last.ckpt")
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng"]) == 2
