"""One run per checkpoint folder (the lock), resume on the same data, images of the right size."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace as dataclass_replace
from pathlib import Path
from typing import Any

import pytest
import torch
from test_training import TRAIN, VAL, Kill, make_data, model_with_seed, quick

from emotionnet.errors import CheckpointError, InvalidArgumentError
from emotionnet.models import ModelConfig
from emotionnet.training import LOCK_FILE, Trainer, load_checkpoint


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


class SecondRun:
    """While the first run trains, a second one on the same folder tries to start."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.error: CheckpointError | None = None
        self.unchanged = False

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if row["epoch"] != 1:
            return
        folder = Path(self.config.checkpoint_dir)
        before = snapshot(folder)
        with pytest.raises(CheckpointError) as info:
            Trainer(model_with_seed(seed=5), TRAIN, VAL, self.config).fit()
        self.error = info.value
        self.unchanged = snapshot(folder) == before


def test_a_second_run_on_a_folder_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    config = quick(max_epochs=2, checkpoint_dir=str(tmp_path))
    second = SecondRun(dataclass_replace(config, lr=0.01))
    Trainer(model_with_seed(), TRAIN, VAL, config, callbacks=[second]).fit()
    assert second.error is not None and second.unchanged
    message = str(second.error)
    assert f"process {os.getpid()}" in message and repr(socket.gethostname()) in message
    assert "started 20" in message and "another checkpoint_dir" in message
    # The first run finished, with its own files, and let go of the folder.
    assert load_checkpoint(tmp_path / "last.ckpt")["epoch"] == 2
    assert not (tmp_path / LOCK_FILE).exists()
    Trainer(model_with_seed(), TRAIN, VAL, config).fit(resume=True)  # the folder is free


def test_the_lock_is_let_go_when_a_run_fails(tmp_path: Path) -> None:
    config = quick(max_epochs=2, checkpoint_dir=str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        Trainer(model_with_seed(), TRAIN, VAL, config, callbacks=[Kill(after_epoch=1)]).fit()
    assert not (tmp_path / LOCK_FILE).exists()
    assert len(Trainer(model_with_seed(), TRAIN, VAL, config).fit(resume=True)) == 2


def test_the_lock_works_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def no_links(source: Any, target: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)  # as on FAT or some network shares
    config = quick(max_epochs=2, checkpoint_dir=str(tmp_path))
    second = SecondRun(config)
    Trainer(model_with_seed(), TRAIN, VAL, config, callbacks=[second]).fit()
    assert second.error is not None and f"process {os.getpid()}" in str(second.error)
    assert not (tmp_path / LOCK_FILE).exists()


def write_lock(folder: Path, pid: int, host: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "host": host, "started": time.time() - 3600}
    (folder / LOCK_FILE).write_text(json.dumps(record))


def test_a_stale_lock_of_a_dead_process_is_taken_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_lock(tmp_path, dead.pid, socket.gethostname())
    config = quick(max_epochs=1, checkpoint_dir=str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="emotionnet.training"):
        Trainer(model_with_seed(), TRAIN, VAL, config).fit()
    assert f"taking over the stale lock {tmp_path / LOCK_FILE}" in caplog.text
    assert f"process {dead.pid}" in caplog.text
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_lock_of_a_live_process_or_another_host_is_kept(tmp_path: Path) -> None:
    config = quick(max_epochs=1, checkpoint_dir=str(tmp_path))
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for pid, host in ((live.pid, socket.gethostname()), (12345, "other-host.example")):
            write_lock(tmp_path, pid, host)
            lock = (tmp_path / LOCK_FILE).read_bytes()
            with pytest.raises(CheckpointError, match=rf"process {pid} on host '{host}'"):
                Trainer(model_with_seed(), TRAIN, VAL, config).fit()
            assert (tmp_path / LOCK_FILE).read_bytes() == lock
            assert not (tmp_path / "last.ckpt").exists()
    finally:
        live.kill()
        live.wait()


# ---- resume on the same data ---------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "constant"])
def test_resume_on_data_of_another_size_is_refused(tmp_path: Path, schedule: str) -> None:
    # One-cycle used to fail mid-epoch with torch's "Tried to step N times"; cosine silently
    # stretched or cut its schedule.
    config = quick(max_epochs=2, schedule=schedule, checkpoint_dir=str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        Trainer(model_with_seed(), TRAIN, VAL, config, callbacks=[Kill(after_epoch=1)]).fit()
    before = (tmp_path / "last.ckpt").read_bytes()
    assert load_checkpoint(tmp_path / "last.ckpt")["data"] == {
        "num_samples": 96,
        "steps_per_epoch": 6,
    }
    fewer = make_data(64, seed=1)
    for data, now in ((fewer, "64 (4 steps per epoch)"), (make_data(200, seed=1), "200 (12")):
        resumed = Trainer(model_with_seed(), data, VAL, config)
        with pytest.raises(CheckpointError, match=r"96 images \(6 steps per epoch\)") as info:
            resumed.fit(resume=True)
        assert now in str(info.value) and "--max-train-samples" in str(info.value)
        assert len(resumed.history) == 0
    assert (tmp_path / "last.ckpt").read_bytes() == before
    # The same data resumes.
    assert len(Trainer(model_with_seed(), TRAIN, VAL, config).fit(resume=True)) == 2


# ---- images of the model's size ------------------------------------------------------------


def test_images_of_another_size_than_the_model_takes_are_refused() -> None:
    model_config = ModelConfig(stem="imagenet", num_classes=4, labels=("h", "v", "blob", "none"))
    from emotionnet.models import build_model

    torch.manual_seed(0)
    model = build_model(model_config)
    config = quick(max_epochs=1)
    with pytest.raises(InvalidArgumentError, match=r"train_set holds 16x16 images.*48x48"):
        Trainer(model, TRAIN, VAL, config, model_config=model_config)
    sized = dataclass_replace(model_config, input_size=16)
    with pytest.raises(InvalidArgumentError, match=r"val_set holds 20x20 images.*16x16"):
        Trainer(model, TRAIN, make_data(8, seed=3, size=20), config, model_config=sized)
    Trainer(model, TRAIN, VAL, config, model_config=sized)  # the right size is accepted
